"""The compile stage's machinery: is a backend usable here, what it compiles, running it, and parity.

Plain functions, so the pipeline, ``ratchet backends`` and the tests share them.
A backend with an isolated environment is probed and run through this module's
own worker entry point in that environment::

    <env python> -m hardware.compile JOB.json   # {"op": "probe" | "compile", ...}

which writes ``<job>.result.json`` beside the job: the probe's availability, or
the compiled variant's description.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.backends import BACKENDS, Backend, CompileContext, CompileSpec, backend_for
from hardware.environments import EnvironmentBuildError, LogFn, WorkerError, run_module
from hardware.profile import HardwareSpec
from registry.plugins import Availability, import_submodules
from tasks.variant import Variant

WORKER = "hardware.compile"


def availability(backend: Backend, spec: CompileSpec, hardware: HardwareSpec, build: bool,
                 log: LogFn | None = None) -> Availability:
    """Machine preconditions, then the probe in the backend's own environment. Never raises.

    ``build``: build a missing environment first (the pipeline's first use); otherwise a missing
    environment is the reason (``ratchet backends`` only looks).
    """
    pre = backend.preconditions(spec, hardware)
    if not pre.ok:
        return pre
    env = backend.environment
    if env is None:
        return backend.probe()
    if not env.is_built() and not build:
        return Availability(False, env.describe())
    with tempfile.TemporaryDirectory(prefix="ratchet-probe-") as tmp:
        job = Path(tmp) / "job.json"
        try:
            run_module(env.name, WORKER, {"op": "probe", "target": spec.target}, job, log=log)
            return Availability(*json.loads(result_path(job).read_text()))
        except (WorkerError, EnvironmentBuildError, OSError, ValueError) as exc:
            return Availability(False, str(exc))


def pick_source(backend: Backend, spec: CompileSpec, lineage: list[Variant]) -> tuple[Variant | None, list[str]]:
    """The newest variant of ``lineage`` (champion first, then its ancestors) that the backend compiles.

    An INT8 ONNX champion goes straight to ONNX Runtime or OpenVINO; a backend that compiles only
    float PyTorch models gets the champion's nearest such ancestor, and the record says so.
    Returns the source (None if none fits) and why each newer variant was passed over.
    """
    passed_over = []
    for variant in lineage:
        accepted = backend.accepts(spec, variant)
        if accepted.ok:
            return variant, passed_over
        passed_over.append(f"{variant.name}: {accepted.reason}")
    return None, passed_over


def compile_variant(backend: Backend, spec: CompileSpec, source: Variant, out_dir: Path, ctx: CompileContext,
                    log: LogFn | None = None) -> Variant:
    """Compile ``source`` into ``out_dir`` in a subprocess, in the backend's environment (the pipeline's own when it
    has none): a backend's native crash, its memory and its own console output stay out of the pipeline."""
    env = backend.environment
    job = {"op": "compile", "target": spec.target, "spec": spec.model_dump(mode="json"),
           "source": source.model_dump(mode="json"), "out_dir": str(out_dir),
           "ctx": {"texts": ctx.texts, "sequence_length": ctx.sequence_length, "batch_sizes": ctx.batch_sizes,
                   "hardware": ctx.hardware.model_dump()}}
    job_path = out_dir.parent / f"{out_dir.name}.job.json"
    run_module(env.name if env else None, WORKER, job, job_path, log=log)
    variant = Variant.model_validate_json(result_path(job_path).read_text())
    variant.save()
    return variant


def result_path(job_path: Path) -> Path:
    return job_path.with_name(job_path.name.removesuffix(".json") + ".result.json")


@dataclass(frozen=True)
class Parity:
    """How far a compiled artifact's outputs are from its source's, over every eval input."""

    max_abs_diff: float
    mean_cosine: float

    def to_dict(self) -> dict[str, float]:
        return {"max_abs_diff": self.max_abs_diff, "mean_cosine": self.mean_cosine}


def parity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> Parity:
    """Max absolute difference and mean row cosine over every input set the reference has.

    Shapes must match: an artifact that answers with another shape computes another function.
    """
    diffs, cosines = [], []
    for name, ref in reference.items():
        out = outputs.get(name)
        if out is None or out.shape != ref.shape:
            got = "nothing" if out is None else f"shape {out.shape}"
            raise ValueError(f"parity: the artifact gave {got} for {name!r}, its source {ref.shape}")
        out, ref = out.astype(np.float64), ref.astype(np.float64)
        diffs.append(float(np.abs(out - ref).max()))
        norms = np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1)
        cosines.append((out * ref).sum(axis=-1) / np.clip(norms, 1e-12, None))
    return Parity(max(diffs), float(np.concatenate(cosines).mean()))


def _main(job_path: Path) -> None:
    """The worker side: probe or compile inside this environment, answer in ``result.json``."""
    import_submodules("hardware.backends")
    job = json.loads(job_path.read_text())
    backend = backend_for(job["target"])
    if job["op"] == "probe":
        result: object = list(backend.probe())
    else:
        spec = BACKENDS.get(job["target"]).spec_type.model_validate(job["spec"])
        ctx = job["ctx"]
        out_dir = Path(job["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        context = CompileContext(ctx["texts"], ctx["sequence_length"], ctx["batch_sizes"], HardwareSpec(**ctx["hardware"]))
        variant = backend.compile(spec, Variant.model_validate(job["source"]), out_dir, context)
        result = variant.model_dump(mode="json")
    result_path(job_path).write_text(json.dumps(result))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
