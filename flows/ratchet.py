"""The ratchet itself: a baseline, then steps that replace the champion only when they pass their gate.

Each step is four plain functions, so the Prefect flow can make each one a
task (and cache the expensive ones) while tests call them directly:
``try_step`` (apply the technique, measure the candidate), ``evaluate_step``
(rubric on its outputs), ``compare`` (the candidate against the champion in
interleaved blocks) and ``gate_step`` (the decision). ``flows.pipeline``
strings them together, measuring an inconclusive comparison again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ratchet.core.hashing import stable_hash
from ratchet.core.variant import Variant, content_hash
from ratchet.flows.spec import PipelineSpec, Prepared
from ratchet.hardware.benchmark.machine import fingerprint
from ratchet.tasks.compare import Comparison, compare_variants
from ratchet.tasks.gate import SPEED_STAT
from ratchet.tasks.measure import ProgressFn, evaluate, measure_variant
from ratchet.tasks.records import FinalDecision, RatchetState, StepRecord
from ratchet.tasks.techniques import Technique, TechniqueContext, TechniqueSpec, technique_for
from ratchet.tasks.techniques._isolated import apply as apply_technique


def run_dir(spec: PipelineSpec) -> Path:
    return Path(spec.workdir).expanduser().resolve() / spec.name


def measurement_key(prepared: Prepared) -> dict:
    """What a measurement depends on besides the model: hardware, the machine it runs on (a result from another
    machine, or from this one after an upgrade, is never reused), workload settings, data (eval inputs, replayed
    traffic, labelled questions), and where its files live (a cached record points into that folder)."""
    spec = prepared.spec
    return {
        "run_dir": str(run_dir(spec)),
        "hardware": spec.hardware.model_dump(),
        "machine": fingerprint(spec.hardware),
        "workload": spec.workload.model_dump(exclude={"dataset"}),
        "data": stable_hash(prepared.workload.eval_inputs()),
        # What serving steps replay and tune on, when the workload has it (a trace file's content, not its name).
        "traffic": stable_hash([r.model_dump() for r in getattr(prepared.workload, "trace", ())]),
        "questions": stable_hash([q.model_dump() for q in getattr(prepared.workload, "questions", ())]),
    }


def variant_key(variant: Variant) -> list:
    """What makes two variants run differently: their files, and how they are run."""
    return [content_hash(variant.path), variant.runtime, variant.runtime_options, variant.environment]


def comparison_key(prepared: Prepared, reference: Variant, candidate: Variant) -> str:
    """Cache identity of a paired comparison: both variants, how it is measured, the machine and the workload."""
    return stable_hash([variant_key(reference), variant_key(candidate), prepared.spec.noise.model_dump(),
                        measurement_key(prepared)])


def baseline_key(prepared: Prepared) -> str:
    return stable_hash([content_hash(prepared.model_path), measurement_key(prepared)])


def step_key(prepared: Prepared, champion: Variant, step: TechniqueSpec) -> str:
    """Cache identity of a step: champion content, step spec, hardware and measurement settings."""
    return stable_hash([content_hash(champion.path), step.model_dump(), measurement_key(prepared)])


def run_baseline(prepared: Prepared, on_progress: ProgressFn | None = None) -> StepRecord:
    """Measure and evaluate the model as it is: every later step is judged against this."""
    spec = prepared.spec
    variant = Variant(name="baseline", path=prepared.model_path, task=spec.model.task,
                      trust_remote_code=spec.model.trust_remote_code, traits={"dtype": "fp32"})
    out_dir = run_dir(spec) / "measurements" / f"baseline-{baseline_key(prepared)[:12]}"
    measurement = measure_variant(variant, spec.hardware, spec.workload, prepared.workload, out_dir, on_progress)
    measurement.rubric = evaluate(spec.rubric, prepared.workload, measurement.outputs, measurement.outputs)
    return StepRecord("baseline", None, "baseline", "reference measurement", variant=variant, measurement=measurement)


def try_step(prepared: Prepared, champion: Variant, step: TechniqueSpec,
             on_progress: ProgressFn | None = None) -> StepRecord:
    """Make a candidate from the champion and benchmark it; skipped or failed records say why."""
    record = StepRecord(step.label, step.kind, "skipped", "", settings=step.settings(), champion_before=champion.name)
    technique = technique_for(step.kind)
    available = technique.availability(step, champion)
    if not available.ok:
        return replace(record, reason=available.reason)
    key = step_key(prepared, champion, step)[:12]
    spec = prepared.spec
    labelled = getattr(prepared.workload, "labelled_questions", None)
    ctx = TechniqueContext(prepared.workload.calibration_texts(), spec.workload.sequence_length, spec.hardware,
                           on_progress, tuple(labelled("tuning")) if labelled else (), spec.workload.max_new_tokens)
    try:
        variant = _make_candidate(technique, step, champion, run_dir(spec) / "variants" / f"{step.label}-{key}", ctx)
        measurement = measure_variant(variant, spec.hardware, spec.workload, prepared.workload,
                                      run_dir(spec) / "measurements" / f"{step.label}-{key}", on_progress)
    except (RuntimeError, ValueError, OSError) as exc:  # MeasurementError, WorkerError, ORT errors: recorded
        return replace(record, decision="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return replace(record, decision="measured", reason="measured", variant=variant, measurement=measurement)


def _make_candidate(technique: Technique, step: TechniqueSpec, source: Variant, out_dir: Path,
                    ctx: TechniqueContext) -> Variant:
    """Apply the technique into a fresh folder (a half-written folder from a crash is discarded)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    variant = apply_technique(technique, step, source, out_dir, ctx)
    variant.save(out_dir)
    return variant


def evaluate_step(prepared: Prepared, baseline: StepRecord, record: StepRecord) -> StepRecord:
    """The rubric on a measured candidate, with the baseline's outputs as the fidelity reference."""
    if record.decision != "measured":
        return record
    measurement = replace(record.measurement, rubric=evaluate(
        prepared.spec.rubric, prepared.workload, record.measurement.outputs, baseline.measurement.outputs))
    return replace(record, measurement=measurement)


def compare(prepared: Prepared, reference: Variant, candidate: Variant, role: str,
            on_progress: ProgressFn | None = None) -> Comparison:
    """``candidate`` against ``reference`` (the champion at a step, the baseline at the final gate) in interleaved
    blocks, each in a warm worker of its own."""
    spec = prepared.spec
    key = comparison_key(prepared, reference, candidate)[:12]
    out_dir = run_dir(spec) / "comparisons" / f"{candidate.name}-vs-{role}-{key}"
    return compare_variants(reference, candidate, role, spec.hardware, spec.workload, prepared.workload, spec.noise,
                            out_dir, on_progress)


def reusable(prepared: Prepared, comparison: Comparison) -> bool:
    """Whether a comparison may be reused from a cache as evidence: it was made, on a machine stable enough."""
    return comparison.error is None and bool(comparison.ratios) and not prepared.spec.noise.too_noisy(comparison)


def gate_step(prepared: Prepared, state: RatchetState, record: StepRecord) -> StepRecord:
    """Accept, reject, or (the machine was too unstable to tell) call inconclusive an evaluated candidate, against
    the targets and, through its paired comparison, the current champion."""
    if record.decision != "measured":
        return record
    technique = technique_for(record.kind)
    enabling = getattr(technique, "enabling", False)
    exact = getattr(technique, "exact_outputs", None)
    step_spec = technique.spec_type.model_validate({"kind": record.kind, **record.settings})
    mismatch = (output_mismatch(record.measurement.outputs, state.champion.measurement.outputs)
                if exact is not None and exact(step_spec) else None)
    limits = technique.limits(step_spec) if hasattr(technique, "limits") else []
    gate = prepared.policy.step(record.measurement.evidence("tuning"), state.baseline.measurement.evidence("tuning"),
                                record.comparison, enabling, mismatch, limits)
    decision = "accepted" if gate.passed else "inconclusive" if gate.inconclusive else "rejected"
    return replace(record, decision=decision, reason=gate.reason, gate=gate)


def output_mismatch(candidate: dict[str, np.ndarray], champion: dict[str, np.ndarray]) -> tuple[int, int]:
    """(rows that differ, rows) over every numeric output set the two share (token ids for a generator)."""
    differ = total = 0
    for name, theirs in champion.items():
        ours = candidate.get(name)
        if ours is None or theirs.dtype.kind not in "iuf":
            continue
        rows = theirs.reshape(len(theirs), -1)
        same = np.all(ours.reshape(len(ours), -1) == rows, axis=1) if ours.shape == theirs.shape else np.zeros(len(rows), bool)
        differ += int((~same).sum())
        total += len(rows)
    return differ, total


def pick_winner(records: list[StepRecord], objective: str) -> list[StepRecord]:
    """Of a search's accepted candidates keep the best on the objective; the others are rejected, saying why."""
    accepted = [r for r in records if r.decision == "accepted"]
    if len(accepted) < 2:
        return records
    best = min(accepted, key=lambda r: (speed(r, objective), -r.measurement.summary_metrics("tuning")["rubric_score"]))
    return [
        replace(r, decision="rejected", reason=f"passed its gate, but {best.step} is better on {objective} "
                                               f"({speed(best, objective):.2f}x vs {speed(r, objective):.2f}x the champion's)")
        if r.decision == "accepted" and r is not best else r
        for r in records
    ]


def speed(record: StepRecord, objective: str) -> float:
    """A candidate's paired ratio to the champion on the objective (lower is better; latency ratio, also for
    throughput); every candidate of one search was compared with the same champion."""
    ratio = record.comparison.ratios.get(SPEED_STAT[objective]) if record.comparison else None
    return ratio.ratio if ratio is not None else float("inf")


def ratchet_steps(steps: list[TechniqueSpec], state: RatchetState, objective: str,
                  candidate: Callable[[RatchetState, TechniqueSpec], StepRecord],
                  on_records: Callable[[list[StepRecord]], None] | None = None) -> RatchetState:
    """The loop itself: every candidate of a step meets the same champion, the best passing one replaces it.

    ``candidate`` makes, measures and gates one candidate (``flows.pipeline``: plain functions or Prefect tasks).
    """
    for step in steps:
        records = pick_winner([candidate(state, c) for c in step.candidates()], objective)
        if on_records is not None:
            on_records(records)
        state = state.advance(records)
    return state


def finalize(prepared: Prepared, state: RatchetState, versus_baseline: Comparison | None) -> FinalDecision:
    """Every target on the final champion, quality re-checked on the held-out split, speed targets judged on the
    champion's paired comparison with the baseline."""
    gate = prepared.policy.final(state.champion.measurement.evidence("heldout"),
                                 state.baseline.measurement.evidence("heldout"), versus_baseline)
    return FinalDecision(state.champion, gate, versus_baseline)
