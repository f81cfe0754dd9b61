"""The compile stage's machinery: is a backend usable here, what it compiles, and running it.

Plain functions, so the pipeline, ``ratchet backends`` and the tests share them.
A backend is probed and run through this module's own worker entry point, in
its environment (the pipeline's own when it declares none)::

    <env python> -m ratchet.hardware.compile JOB.json   # {"op": "probe" | "compile", ...}

which answers with the probe's availability, or the compiled variant's
description (``hardware.environments``' job-file convention).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ratchet.core.availability import Availability
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.backends import BACKENDS, Backend, CompileContext, CompileSpec, backend_for
from ratchet.hardware.environments import EnvironmentBuildError, LogFn, WorkerError, read_job, run_module, write_result

WORKER = "ratchet.hardware.compile"


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
            return Availability(*run_module(env.name, WORKER, {"op": "probe", "target": spec.target}, job, log=log))
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
    variant = Variant.model_validate(run_module(env.name if env else None, WORKER, job, job_path, log=log))
    variant.save(out_dir)
    return variant


def _main(argv: list[str]) -> None:
    """The worker side: probe or compile inside this environment."""
    job_path, job = read_job(argv)
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
    write_result(job_path, result)


if __name__ == "__main__":
    _main(sys.argv)
