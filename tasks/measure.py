"""Measure a variant (benchmark worker in its own process) and evaluate its outputs (rubric).

The worker only produces raw facts (outputs, latencies, memory); everything
judged against other variants (rubric, cost, size) is computed here, in plain
functions, so it can be tested without a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant, size_mb
from ratchet.evals.rubric import RubricResult, RubricSpec, score_rubric
from ratchet.evals.scorers import EvalContext
from ratchet.evals.workloads import SPLITS, Workload, WorkloadSpec
from ratchet.hardware.benchmark.generation_stats import GENERATION_METRICS
from ratchet.hardware.benchmark.machine import fingerprint
from ratchet.hardware.benchmark.stats import cost_per_1k, cost_per_1k_busy
from ratchet.hardware.environments import EnvironmentBuildError, WorkerError, run_module
from ratchet.tasks.gate import Evidence

ProgressFn = Callable[..., None]  # (phase, done, total, note=None): a bar per phase; note: e.g. that it was capped


class MeasurementError(RuntimeError):
    """The worker process failed; the message carries its last error line."""


@dataclass
class Measurement:
    """Everything measured about one variant."""

    perf: dict[str, float | None]
    outputs: dict[str, np.ndarray] = field(repr=False)
    artifacts_dir: Path | None = None
    rubric: dict[str, RubricResult] = field(default_factory=dict)  # split -> result, filled by ``evaluate``
    machine: dict = field(default_factory=dict)  # the machine's fingerprint, and the threads and cores used
    measured_at: str = ""  # UTC, ISO 8601: a result reused from the cache says when it was measured

    def evidence(self, split: str) -> Evidence:
        """Flat metrics with quality from ``split``, for the gate."""
        return Evidence({**self.perf, **self.rubric[split].metrics()}, split)

    def summary_metrics(self, split: str = "tuning") -> dict[str, float | None]:
        return {**self.perf, **self.rubric[split].metrics()}


def served_requests(workload: Workload, workload_spec: WorkloadSpec) -> dict:
    """What a benchmark worker sends and knows: the workload's tuning requests, or its traffic trace with the
    arrival schedule the server scenario replays; and the labelled questions a response cache is checked on."""
    trace = getattr(workload, "trace", ())
    labelled = getattr(workload, "labelled_questions", None)
    questions = {split: [(q.text, q.label) for q in labelled(split)] for split in SPLITS} if labelled else {}
    if trace:
        from ratchet.evals.traffic import replay_schedule

        return {"requests": [r.prompt for r in trace], "arrivals": replay_schedule(trace, workload_spec.target_qps or 1.0),
                "questions": questions}
    return {"requests": workload.request_texts("tuning"), "arrivals": None, "questions": questions}


def run_worker(variant: Variant, hardware: HardwareSpec, workload_spec: WorkloadSpec, workload: Workload,
               out_dir: Path, on_progress: ProgressFn | None = None) -> dict:
    """Run ``ratchet.hardware.benchmark.worker`` on ``variant``, in the variant's environment; return its result."""
    job = {
        "variant": variant.model_dump(mode="json"),
        "out_dir": str(out_dir),
        "hardware": hardware.model_dump(),
        "scenario": workload_spec.scenario,
        "target_qps": workload_spec.target_qps,
        "batch_sizes": workload_spec.batch_sizes,
        "sequence_length": workload_spec.sequence_length,
        "max_new_tokens": workload_spec.max_new_tokens,
        "slo": workload_spec.slo,
        "budget": workload_spec.measurement.model_dump(),
        "eval_inputs": workload.eval_inputs(),
        **served_requests(workload, workload_spec),
    }
    report = (lambda msg: on_progress(msg["phase"], msg["done"], msg["total"], msg.get("note"))) if on_progress else None
    try:
        return run_module(variant.environment, "ratchet.hardware.benchmark.worker", job, out_dir / "job.json", report)
    except (WorkerError, EnvironmentBuildError) as exc:
        raise MeasurementError(f"measurement of {variant.name!r} failed: {exc}") from None


def perf_metrics(result: dict, batch_sizes: list[int], variant: Variant, hardware: HardwareSpec) -> dict[str, float | None]:
    """Headline metrics come from the first batch size; the others are kept as ``bsN.metric``."""
    metrics: dict[str, float | None] = {}
    for i, bs in enumerate(batch_sizes):
        summary = result["runs"][str(bs)]["summary"]
        prefix = "" if i == 0 else f"bs{bs}."
        for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "stdev_pct", "throughput_rps"):
            metrics[prefix + key] = summary[key]
        metrics[prefix + "cost_per_1k"] = cost_per_1k(hardware.price_per_hour, summary["throughput_rps"])
        metrics.update({prefix + key: summary[key] for key in GENERATION_METRICS if key in summary})
        if summary.get("busy_s_per_request") is not None:  # server scenario: what the machine was busy for
            metrics[prefix + "cost_per_1k"] = cost_per_1k_busy(hardware.price_per_hour, summary["busy_s_per_request"])
    metrics.update(
        **result.get("cache", {}),
        **({"kv_bytes_per_token": result["kv_bytes_per_token"]} if result.get("kv_bytes_per_token") else {}),
        peak_rss_mb=result["peak_rss_mb"], peak_device_mb=result["peak_device_mb"],
        size_mb=size_mb(variant.path), load_s=result["load_s"],
    )
    return metrics


def evaluate(rubric: RubricSpec, workload: Workload, outputs: dict[str, np.ndarray],
             reference: dict[str, np.ndarray]) -> dict[str, RubricResult]:
    """The rubric on every split; the baseline's outputs are the fidelity reference. A generator's answers join
    their examples' rows (logged to MLflow with the scores), so a reviewer reads what was said next to its score."""
    results = {split: score_rubric(rubric, EvalContext(workload, split, outputs, reference)) for split in SPLITS}
    texts = outputs.get("prompts.text")
    if texts is not None:
        answers = {p.id: str(t) for p, t in zip(workload.prompts, texts)}
        for result in results.values():
            for row in result.examples:
                row.setdefault("answer", answers.get(row["id"]))
    return results


def load_outputs(out_dir: Path) -> dict[str, np.ndarray]:
    with np.load(out_dir / "outputs.npz") as data:
        return {k: data[k] for k in data.files}


def measure_variant(variant: Variant, hardware: HardwareSpec, workload_spec: WorkloadSpec, workload: Workload,
                    out_dir: Path, on_progress: ProgressFn | None = None) -> Measurement:
    """Benchmark ``variant`` in its own process and collect its outputs on the eval inputs."""
    measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = run_worker(variant, hardware, workload_spec, workload, out_dir, on_progress)
    return Measurement(
        perf=perf_metrics(result, workload_spec.batch_sizes, variant, hardware),
        outputs=load_outputs(out_dir),
        artifacts_dir=out_dir,
        machine={"fingerprint": fingerprint(hardware), "placement": result["placement"]},
        measured_at=measured_at,
    )
