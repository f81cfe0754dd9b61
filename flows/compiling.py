"""The compile stage: the champion, compiled for each target of the spec, parity-checked, measured, gated.

Like a ratchet step, each target is plain functions so that the Prefect flow
can make each a task (and cache the expensive ones) while tests call them
directly: ``try_compile`` (is the backend usable here, compile, benchmark),
``evaluate_compile`` (rubric and parity), a paired comparison with the
champion (``flows.ratchet.compare``: its speed is recorded, not required) and
``gate_compile``. A target that
cannot run here is *skipped* with the backend's reason; one that breaks, or
whose artifact no longer computes what its source computes, is *failed*.
Neither ends the run.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

from ratchet.core.hashing import stable_hash
from ratchet.core.variant import content_hash
from ratchet.flows.ratchet import measurement_key, run_dir
from ratchet.flows.spec import Prepared
from ratchet.hardware.backends import CompileContext, CompileSpec, backend_for
from ratchet.hardware.compile import availability, compile_variant, pick_source
from ratchet.hardware.parity import parity
from ratchet.tasks.measure import ProgressFn, evaluate, measure_variant
from ratchet.tasks.records import CompileRecord, CompileStatus, RatchetState

SAMPLE_TEXTS = 128  # inputs a backend may trace shapes or calibrate with (NNCF: ~100)


def compile_task_key(prepared: Prepared, state: RatchetState, spec: CompileSpec) -> str:
    """Cache identity of a whole compile target, before its source is picked: the champion and its lineage."""
    env = backend_for(spec.target).environment
    champion = state.champion.variant
    return stable_hash([content_hash(champion.path), champion.runtime, champion.runtime_options, champion.lineage,
                        spec.model_dump(), env.fingerprint if env else None, measurement_key(prepared)])


def try_compile(prepared: Prepared, state: RatchetState, spec: CompileSpec,
                on_progress: ProgressFn | None = None) -> CompileRecord:
    """Check the backend, pick what it compiles, compile it in its environment, benchmark the artifact."""
    backend = backend_for(spec.target)
    record = CompileRecord(spec.label, spec.target, "skipped", "", settings=spec.settings())
    log = (lambda line: on_progress(f"{spec.label}: {line}", 0, 1)) if on_progress else None
    available = availability(backend, spec, prepared.spec.hardware, build=True, log=log)
    if not available.ok:
        return replace(record, reason=available.reason)
    record = replace(record, backend_version=available.reason)
    source, passed_over = pick_source(backend, spec, [r.variant for r in state.lineage()])
    if source is None:
        return replace(record, reason=f"{spec.target} compiles none of the champion's lineage: {'; '.join(passed_over)}")
    pipeline = prepared.spec
    key = compile_task_key(prepared, state, spec)[:12]
    out_dir = run_dir(pipeline) / "compiled" / f"{spec.label}-{key}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    texts = prepared.workload.calibration_texts()
    ctx = CompileContext(texts[:: max(1, len(texts) // SAMPLE_TEXTS)][:SAMPLE_TEXTS], pipeline.workload.sequence_length,
                         pipeline.workload.batch_sizes, pipeline.hardware)
    note = f"compiled from {source.name!r} ({passed_over[0]})" if passed_over else f"compiled from {source.name!r}"
    report = on_progress or (lambda *_: None)
    try:
        report(f"compile from {source.name}", 0, 1)
        variant = compile_variant(backend, spec, source, out_dir, ctx, log)
        report(f"compile from {source.name}", 1, 1)
        measurement = measure_variant(variant, pipeline.hardware, pipeline.workload, prepared.workload,
                                      run_dir(pipeline) / "measurements" / f"compile-{spec.label}-{key}", on_progress)
    except (RuntimeError, ValueError, OSError) as exc:  # worker, environment and measurement errors: recorded
        return replace(record, status="failed", source=source.name,
                       reason=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}")
    return replace(record, status="measured", reason=note, source=source.name, variant=variant, measurement=measurement)


def evaluate_compile(prepared: Prepared, state: RatchetState, record: CompileRecord) -> CompileRecord:
    """Rubric (fidelity against the baseline) and parity (against the variant it was compiled from)."""
    if record.status != "measured":
        return record
    source = next(r for r in state.lineage() if r.variant.name == record.source)
    try:
        agreement = parity(record.measurement.outputs, source.measurement.outputs)
    except ValueError as exc:
        return replace(record, status="failed", reason=str(exc))
    rubric = evaluate(prepared.spec.rubric, prepared.workload, record.measurement.outputs,
                      state.baseline.measurement.outputs)
    return replace(record, measurement=replace(record.measurement, rubric=rubric), parity=agreement)


def gate_compile(prepared: Prepared, state: RatchetState, record: CompileRecord, target: CompileSpec) -> CompileRecord:
    """Parity within the target's tolerances, quality/memory/size targets on held-out data; speed recorded."""
    if record.status != "measured":
        return record
    gate = prepared.policy.compile(record.measurement.evidence("heldout"), state.baseline.measurement.evidence("heldout"),
                                   record.comparison, record.parity, target.parity.max_abs_diff, target.parity.min_cosine)
    status: CompileStatus = "compiled" if gate.passed else "failed"
    return replace(record, status=status, reason=record.reason if gate.passed else gate.reason, gate=gate)



