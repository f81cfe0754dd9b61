"""MLflow tracking and registry: one parent run per pipeline run, one nested run per variant.

Accepted variants are logged as MLflow models; the final champion is registered
and the alias moves to it only when every target is met.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ratchet.core.hashing import stable_hash
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import VARIANT_FILE, Variant, companions, content_hash
from ratchet.hardware.runtimes import Shape
from ratchet.registry.spec import RegistrySpec
from ratchet.tasks.compare import Comparison
from ratchet.tasks.measure import Measurement
from ratchet.tasks.records import CompileRecord, FinalDecision, StepRecord

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
SERVING_FILE = "serving.json"
RUNTIME_PACKAGES = ("torch", "transformers", "torchao", "onnxruntime", "numpy", "pydantic")


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Beside a SQLite store, keep artifacts in a sibling folder rather than the shell's cwd."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    return (db.parent.resolve() / "artifacts" / experiment).as_uri()


def _pip_requirements() -> list[str]:
    reqs = []
    for name in RUNTIME_PACKAGES:
        try:
            reqs.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return reqs


def _flat(prefix: str, metrics: dict[str, float | None]) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if v is not None}


@dataclass(frozen=True)
class RunInfo:
    """What the tracker records about a pipeline run besides its step records: the spec as data, the run's
    headline parameters, and how its variants are served (hardware and shape, kept with every logged model)."""

    name: str
    spec: dict[str, Any]
    params: dict[str, str]
    hardware: HardwareSpec
    shape: Shape

    @property
    def spec_hash(self) -> str:
        return stable_hash(self.spec)


class Tracker:
    """Everything Ratchet writes to MLflow, for one pipeline run."""

    def __init__(self, registry: RegistrySpec, tracking_uri: str, run: RunInfo) -> None:
        self.registry = registry
        self.run = run
        self.spec_hash = run.spec_hash
        self.tracking_uri = tracking_uri
        self.model_uris: dict[str, str] = {}
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        name = registry.experiment
        experiment = self.client.get_experiment_by_name(name)
        self.experiment_id = (
            experiment.experiment_id if experiment
            else self.client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
        )
        self.parent_run_id: str | None = None

    def start(self) -> str:
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.run.name,
                               tags={"ratchet.spec_hash": self.spec_hash, "ratchet.model": self.run.params.get("model", "")})
        self.parent_run_id = run.info.run_id
        mlflow.log_dict(self.run.spec, "spec.json")
        mlflow.log_params({"spec_hash": self.spec_hash, **self.run.params})
        return self.parent_run_id

    def log_summary(self, summary: dict, report: str, html: str, plots: Sequence[Path]) -> None:
        """The run's summary JSON, its report (markdown, and one HTML page with the plots embedded) and the plots
        on the parent run."""
        mlflow.log_dict(summary, "summary.json")
        mlflow.log_text(report, "report.md")
        mlflow.log_text(html, "report.html")
        for plot in plots:
            mlflow.log_artifact(str(plot))

    def end(self, status: str = "FINISHED") -> None:
        mlflow.end_run(status=status)

    def log_record(self, record: StepRecord) -> str:
        """A nested run for one variant: params, metrics, raw latencies, per-example outputs, gate."""
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=record.step, nested=True) as run:
            mlflow.set_tags({"ratchet.decision": record.decision, "ratchet.reason": record.reason[:5000],
                             "ratchet.step": record.step})
            params: dict[str, Any] = {"technique": record.kind or "baseline", "spec_hash": self.spec_hash,
                                      "parent_variant": record.champion_before or "", "decision": record.decision}
            params.update({f"setting.{k}": v for k, v in record.settings.items()})
            if record.variant is not None:  # what the technique decided beyond its settings (a tuned threshold)
                params.update({f"chosen.{k}": v for k, v in record.variant.params.items()
                               if record.settings.get(k, object()) != v})
                mlflow.log_text(record.variant.model_dump_json(indent=1), VARIANT_FILE)
            mlflow.log_params(params)
            if record.measurement is not None:
                self._log_measurement(record.measurement)
            if record.comparison is not None:
                self._log_comparison(record.comparison, run.info.run_id)
            if record.gate is not None:
                mlflow.log_dict(record.gate.to_dict(), "gate.json")
            if record.decision in ("baseline", "accepted") and record.variant is not None:
                self.model_uris[record.step] = self._log_model(record.variant)
            return run.info.run_id

    def log_compiled(self, record: CompileRecord) -> str:
        """A nested run for one compile target; a compiled artifact that passed its gate is logged as a model,
        tagged with the backend, its version and the hardware."""
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=f"compile: {record.target}", nested=True) as run:
            mlflow.set_tags({"ratchet.stage": "compile", "ratchet.status": record.status,
                             "ratchet.reason": record.reason[:5000], "ratchet.backend": record.backend,
                             "ratchet.backend_version": record.backend_version[:500],
                             "ratchet.hardware": self.run.hardware.name, "ratchet.compiled_from": record.source or ""})
            mlflow.log_params({"backend": record.backend, "spec_hash": self.spec_hash, "status": record.status,
                               **{f"setting.{k}": v for k, v in record.settings.items()}})
            if record.measurement is not None and record.measurement.rubric:
                self._log_measurement(record.measurement)
            if record.parity is not None:
                mlflow.log_metrics({f"parity_{k}": v for k, v in record.parity.to_dict().items()})
            if record.comparison is not None:
                self._log_comparison(record.comparison, run.info.run_id)
            if record.gate is not None:
                mlflow.log_dict(record.gate.to_dict(), "gate.json")
            if record.status == "compiled":
                self.model_uris[f"compile:{record.target}"] = self._log_model(record.variant)
            return run.info.run_id

    def _log_measurement(self, m: Measurement) -> None:
        metrics = _flat("", m.perf)
        for split, result in m.rubric.items():
            metrics.update(_flat(f"{split}.", result.metrics()))
            mlflow.log_dict({"split": split, "criteria": [vars(c) for c in result.criteria],
                             "examples": result.examples}, f"eval/{split}.json")
        metrics.update(_flat("", m.rubric["tuning"].metrics()))
        mlflow.log_metrics(metrics)
        if m.artifacts_dir is not None:
            for name in ("latencies.json", "job.result.json"):
                if (m.artifacts_dir / name).exists():
                    mlflow.log_artifact(str(m.artifacts_dir / name), "benchmark")

    def _log_comparison(self, comparison: Comparison, run_id: str) -> None:
        """A paired comparison: each statistic's ratio, interval and the reference's CV as metrics
        (``versus_<role>.<stat>.ratio``, ...), the whole record and every block's latencies as files."""
        prefix = f"versus_{comparison.reference_role}"
        for stat, r in comparison.ratios.items():
            for key in ("ratio", "low", "high", "reference_cv"):
                self.client.log_metric(run_id, f"{prefix}.{stat}.{key}", getattr(r, key))
        self.client.log_dict(run_id, comparison.to_dict(), f"comparison/{prefix}.json")
        self.client.log_dict(run_id, comparison.blocks, f"comparison/{prefix}.blocks.json")

    def _log_model(self, variant: Variant) -> str:
        """The variant as a pyfunc model: its files, its description, and how it is served (hardware, shape)."""
        with tempfile.TemporaryDirectory() as tmp:
            description, serving = Path(tmp) / VARIANT_FILE, Path(tmp) / SERVING_FILE
            description.write_text(variant.model_dump_json(indent=1))
            serving.write_text(json.dumps({"hardware": self.run.hardware.model_dump(), "shape": asdict(self.run.shape)}))
            artifacts = {"model": str(variant.path), "variant": str(description), "serving": str(serving),
                         **companions(variant)}  # a draft model, a router's small model: they travel with it
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(MODEL_CODE), artifacts=artifacts,
                pip_requirements=_pip_requirements(),
            )
        return info.model_uri

    def promote(self, final: FinalDecision, records: list[StepRecord], compiled: list[CompileRecord] = ()) -> int | None:
        """Register the champion and move the alias, only when every target is met; the version records which
        compile targets the champion is available for (and their models)."""
        self.client.log_dict(self.parent_run_id, final.gate.to_dict(), "final_gate.json")
        if final.comparison is not None:
            self._log_comparison(final.comparison, self.parent_run_id)
        self.client.set_tag(self.parent_run_id, "ratchet.targets_met", str(final.targets_met).lower())
        self.client.set_tag(self.parent_run_id, "ratchet.champion", final.champion.step)
        if not final.targets_met:
            return None
        name, alias = self.registry.model_name, self.registry.alias
        variant = final.champion.variant
        # Same files run differently (e.g. under torch.compile) are a different model.
        digest = stable_hash([content_hash(variant.path), variant.runtime, variant.runtime_options])
        version = self._version_with_content(name, digest)
        if version is None:  # a nightly run that found the same champion re-points the alias, no new version
            lineage = " -> ".join([*final.champion.variant.lineage, final.champion.step])
            tags = {"lineage": lineage, "spec_hash": self.spec_hash, "targets_met": "true", "content_hash": digest,
                    "runtime": final.champion.variant.runtime,
                    "gate": json.dumps({c.name: c.passed for c in final.gate.criteria})[:5000],
                    "decisions": json.dumps({r.step: r.decision for r in records})[:5000]}
            version = int(mlflow.register_model(self.model_uris[final.champion.step], name, tags=tags).version)
        available = {r.target: self.model_uris[f"compile:{r.target}"] for r in compiled if r.status == "compiled"}
        self.client.set_model_version_tag(name, str(version), "compiled_targets", ",".join(available) or "none")
        for target, uri in available.items():
            self.client.set_model_version_tag(name, str(version), f"compiled.{target}", uri)
        self.client.set_registered_model_alias(name, alias, str(version))
        return version

    def _version_with_content(self, name: str, digest: str) -> int | None:
        """An existing version of ``name`` with the same model files, if any."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except mlflow.exceptions.MlflowException:
            return None
        same = [int(v.version) for v in versions if v.tags.get("content_hash") == digest]
        return max(same) if same else None

