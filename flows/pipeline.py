"""The whole run as one plain function: baseline, gated steps, final gate, compile targets, tracking, registry.

``run_pipeline`` is what ``ratchet run --no-prefect``, the benchmark scripts and
the Prefect flow all run. What differs between them is only how each stage is
executed: the defaults are the plain functions of ``flows.ratchet`` and
``flows.compiling``; the Prefect flow passes its cached, observable tasks as
``Stages``. How the stages fit together (a candidate is made, evaluated,
compared with the champion in interleaved blocks and gated, and an
inconclusive comparison is measured again after a pause) lives here, once.
MLflow logging stays in the calling thread, because MLflow's active run is
per thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ratchet.core.variant import Variant
from ratchet.flows import progress
from ratchet.flows.compiling import evaluate_compile, gate_compile, try_compile
from ratchet.flows.plot import plot_pareto, plot_steps
from ratchet.flows.ratchet import (
    compare, evaluate_step, finalize, gate_step, ratchet_steps, run_baseline, run_dir, try_step,
)
from ratchet.flows.report import build_summary, html_report, markdown_report
from ratchet.flows.spec import PipelineSpec, Prepared
from ratchet.hardware.backends import CompileSpec
from ratchet.hardware.runtimes import Shape
from ratchet.registry.tracking import RunInfo, Tracker
from ratchet.tasks.compare import Comparison
from ratchet.tasks.records import CompileRecord, FinalDecision, RatchetState, StepRecord
from ratchet.tasks.techniques import TechniqueSpec


def _baseline(prepared: Prepared) -> StepRecord:
    return run_baseline(prepared, progress.reporter("baseline"))


def _make(prepared: Prepared, champion: Variant, step: TechniqueSpec) -> StepRecord:
    return try_step(prepared, champion, step, progress.reporter(step.label))


def _compare(prepared: Prepared, reference: Variant, candidate: Variant, role: str, refresh: bool) -> Comparison:
    """Plain Python keeps no cache: every comparison is measured (``refresh`` matters to the Prefect flow's)."""
    return compare(prepared, reference, candidate, role, progress.reporter(candidate.name))


def _compile(prepared: Prepared, state: RatchetState, target: CompileSpec) -> CompileRecord:
    record = try_compile(prepared, state, target, progress.reporter(f"compile {target.label}"))
    return evaluate_compile(prepared, state, record)


def _register(tracker: Tracker, final: FinalDecision, records: list[StepRecord], compiled: list[CompileRecord]) -> int | None:
    return tracker.promote(final, records, compiled)


@dataclass(frozen=True)
class Stages:
    """How each stage of a run is executed: plain functions here, Prefect tasks in ``flows.ratchet_flow``."""

    baseline: Callable[[Prepared], StepRecord] = _baseline
    make: Callable[[Prepared, Variant, TechniqueSpec], StepRecord] = _make  # apply a technique, measure the result
    evaluate: Callable[[Prepared, StepRecord, StepRecord], StepRecord] = evaluate_step
    compare: Callable[[Prepared, Variant, Variant, str, bool], Comparison] = _compare
    gate: Callable[[Prepared, RatchetState, StepRecord], StepRecord] = gate_step
    final: Callable[[Prepared, RatchetState, Comparison | None], FinalDecision] = finalize
    compile: Callable[[Prepared, RatchetState, CompileSpec], CompileRecord] = _compile  # compile, measure, evaluate
    compile_gate: Callable[[Prepared, RatchetState, CompileRecord, CompileSpec], CompileRecord] = gate_compile
    register: Callable[[Tracker, FinalDecision, list[StepRecord], list[CompileRecord]], int | None] = _register


def retried(prepared: Prepared, attempt: Callable[[int], Any], inconclusive: Callable[[Any], bool]) -> Any:
    """``attempt(0)``, then while its result is inconclusive, up to ``noise.retries`` more attempts, waiting
    ``retry_backoff_s`` before the first and twice as long before each next: a busy spell may pass."""
    noise = prepared.spec.noise
    result = attempt(0)
    for n in range(1, noise.retries + 1):
        if not inconclusive(result):
            break
        time.sleep(noise.retry_backoff_s * 2 ** (n - 1))
        result = attempt(n)
    return result


def candidate(prepared: Prepared, state: RatchetState, step: TechniqueSpec, stages: Stages) -> StepRecord:
    """One candidate: made from the champion, evaluated, compared with the champion, gated."""
    record = stages.evaluate(prepared, state.baseline, stages.make(prepared, state.champion.variant, step))
    if record.decision != "measured":
        return record

    def attempt(n: int) -> StepRecord:
        versus = stages.compare(prepared, state.champion.variant, record.variant, "champion", n > 0)
        return replace(stages.gate(prepared, state, replace(record, comparison=versus)), attempts=n + 1)

    return retried(prepared, attempt, lambda r: r.decision == "inconclusive")


def final(prepared: Prepared, state: RatchetState, stages: Stages) -> FinalDecision:
    """The final gate; the champion is compared with the baseline when a target asks for a speed-up."""
    champion, base = state.champion.variant, state.baseline.variant
    if not prepared.policy.needs_final_comparison:
        return stages.final(prepared, state, None)
    if state.champion is state.baseline:
        none = Comparison(base.name, champion.name, "baseline", error="the champion is the baseline: no step was accepted")
        return stages.final(prepared, state, none)

    def attempt(n: int) -> FinalDecision:
        versus = stages.compare(prepared, base, champion, "baseline", n > 0)
        return replace(stages.final(prepared, state, versus), attempts=n + 1)

    return retried(prepared, attempt, lambda d: d.inconclusive)


def compile_target(prepared: Prepared, state: RatchetState, target: CompileSpec, stages: Stages) -> CompileRecord:
    """One compile target: compiled, measured and evaluated, compared with the champion (recorded), gated."""
    record = stages.compile(prepared, state, target)
    if record.status == "measured":
        versus = stages.compare(prepared, state.champion.variant, record.variant, "champion", False)
        record = replace(record, comparison=versus)
    return stages.compile_gate(prepared, state, record, target)


def resolve_tracking_uri(spec: PipelineSpec, override: str | None) -> str:
    """The ``--tracking-uri`` given, else ``$MLFLOW_TRACKING_URI``, else the spec's."""
    return override or os.environ.get("MLFLOW_TRACKING_URI") or spec.registry.tracking_uri


def run_info(spec: PipelineSpec) -> RunInfo:
    """What MLflow records about the run: the spec, its headline parameters, and how its variants are served."""
    params = {"model": spec.model.id, "task": spec.model.task, "scenario": spec.workload.scenario,
              "hardware": spec.hardware.name, "objective": spec.objective}
    shape = Shape(spec.workload.sequence_length, spec.workload.max_new_tokens)
    return RunInfo(spec.name, spec.model_dump(mode="json"), params, spec.hardware, shape)


@dataclass(frozen=True)
class RunResult:
    """A finished run: its records (for callers that compute their own tables) and its summary (the CLI's JSON)."""

    state: RatchetState
    final: FinalDecision
    compiled: list[CompileRecord]
    summary: dict[str, Any]


def run_pipeline(prepared: Prepared, tracking_uri: str | None = None, stages: Stages = Stages()) -> RunResult:
    """Baseline, gated steps, final gate on held-out data, compile targets, registration.

    Every record is logged to MLflow as it is made; a run that raises is marked FAILED there.
    """
    spec = prepared.spec
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tracker = Tracker(spec.registry, resolve_tracking_uri(spec, tracking_uri), run_info(spec))
    run_id = tracker.start()
    try:
        base = stages.baseline(prepared)
        tracker.log_record(base)
        state = ratchet_steps(spec.steps, RatchetState.start(base), spec.objective,
                              lambda st, step: candidate(prepared, st, step, stages),
                              lambda records: [tracker.log_record(r) for r in records])
        decision = final(prepared, state, stages)
        targets = [compile_target(prepared, state, target, stages) for target in spec.compile]
        for record in targets:
            tracker.log_compiled(record)
        version = stages.register(tracker, decision, state.records, targets)
        summary = build_summary(state, decision, run_id, version, spec.name, targets, started_at, spec.reference)
        reports = run_dir(spec) / "reports"
        summary["plot"] = str(plot_steps(summary, reports / f"{run_id}.png"))
        summary["pareto_plot"] = str(plot_pareto(summary, reports / f"{run_id}-pareto.png"))
        plots = [Path(summary["plot"]), Path(summary["pareto_plot"])]
        report = markdown_report(summary)
        tracker.log_summary(summary, report, html_report(report, plots), plots)
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end()
    return RunResult(state, decision, targets, summary)
