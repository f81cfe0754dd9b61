"""The compile stage: the champion, compiled for each target of the spec, parity-checked, measured, gated.

Like a ratchet step, each target is three plain functions so that the Prefect
flow can make each a task (and cache the expensive one) while tests call them
directly: ``try_compile`` (is the backend usable here, compile, benchmark),
``evaluate_compile`` (rubric and parity) and ``gate_compile``. A target that
cannot run here is *skipped* with the backend's reason; one that breaks, or
whose artifact no longer computes what its source computes, is *failed*.
Neither ends the run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from flows.ratchet import RatchetState, StepRecord, measurement_key, run_dir
from flows.spec import PipelineSpec, Prepared
from hardware.backends import CompileContext, CompileSpec, backend_for
from hardware.compile import Parity, availability, compile_variant, parity, pick_source
from tasks.gate import GateDecision, decide, parity_criteria
from tasks.measure import Measurement, ProgressFn, evaluate, measure_variant
from tasks.variant import Variant, content_hash, stable_hash

Status = Literal["measured", "compiled", "skipped", "failed"]
SAMPLE_TEXTS = 128  # inputs a backend may trace shapes or calibrate with (NNCF: ~100)


@dataclass
class CompileRecord:
    """What happened to one compile target: status, why, and what was measured."""

    target: str
    backend: str
    status: Status
    reason: str
    settings: dict = field(default_factory=dict)
    backend_version: str = ""
    source: str | None = None
    variant: Variant | None = None
    measurement: Measurement | None = None
    parity: Parity | None = None
    gate: GateDecision | None = None


def lineage(state: RatchetState) -> list[StepRecord]:
    """The champion's record, then its ancestors' (newest first), down to the baseline."""
    by_name = {r.variant.name: r for r in state.records if r.variant is not None and r.measurement is not None}
    names = [state.champion.variant.name, *reversed(state.champion.variant.lineage)]
    return [by_name[n] for n in names if n in by_name]


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
    source, passed_over = pick_source(backend, spec, [r.variant for r in lineage(state)])
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
    source = next(r for r in lineage(state) if r.variant.name == record.source)
    try:
        agreement = parity(record.measurement.outputs, source.measurement.outputs)
    except ValueError as exc:
        return replace(record, status="failed", reason=str(exc))
    rubric = evaluate(prepared.spec.rubric, prepared.workload, record.measurement.outputs,
                      state.baseline.measurement.outputs)
    return replace(record, measurement=replace(record.measurement, rubric=rubric), parity=agreement)


def gate_compile(spec: PipelineSpec, state: RatchetState, record: CompileRecord, target: CompileSpec) -> CompileRecord:
    """Parity within the target's tolerances, quality/memory/size targets on held-out data; speed recorded."""
    if record.status != "measured":
        return record
    tol = target.parity
    gate = decide("compile", spec.targets, spec.thresholds(), record.measurement.evidence("heldout"),
                  state.baseline.measurement.evidence("heldout"), state.champion.measurement.evidence("heldout"),
                  spec.objective, spec.noise, "heldout",
                  extra=parity_criteria(record.parity.max_abs_diff, record.parity.mean_cosine,
                                        tol.max_abs_diff, tol.min_cosine))
    status: Status = "compiled" if gate.passed else "failed"
    return replace(record, status=status, reason=record.reason if gate.passed else gate.reason, gate=gate)


def compile_targets(prepared: Prepared, state: RatchetState, on_progress: ProgressFn | None = None) -> list[CompileRecord]:
    """Every compile target in order, without Prefect."""
    return [gate_compile(prepared.spec, state, evaluate_compile(prepared, state, try_compile(prepared, state, t, on_progress)), t)
            for t in prepared.spec.compile]
