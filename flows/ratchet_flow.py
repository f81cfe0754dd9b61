"""The Prefect flow: thin tasks around ``flows.ratchet``'s plain functions.

Task boundaries follow the pipeline's stages (baseline, each step's
candidate, evaluation, gate, final gate, registration). The two expensive ones
(baseline and candidate) are cached by (model content hash, step spec,
hardware and workload settings), so rerunning the same spec reuses them.
MLflow logging stays in the flow body: MLflow's active run is per thread.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows import progress  # noqa: E402
from flows.ratchet import (  # noqa: E402
    FinalDecision, RatchetState, StepRecord, baseline_key, evaluate_step, finalize, gate_step, run_baseline,
    ratchet_steps, run_dir, step_key, try_step,
)
from flows.compiling import CompileRecord, compile_task_key, evaluate_compile, gate_compile, try_compile  # noqa: E402
from flows.plot import plot_steps  # noqa: E402
from flows.report import HEADERS, build_summary, markdown_report, table_rows  # noqa: E402
from flows.spec import PipelineSpec, Prepared, preflight, with_quick_measurement  # noqa: E402
from registry.tracking import Tracker  # noqa: E402
from hardware.backends import CompileSpec  # noqa: E402
from tasks.techniques import TechniqueSpec  # noqa: E402
from tasks.variant import Variant, stable_hash  # noqa: E402

CACHE = {"persist_result": True, "cache_expiration": timedelta(days=7)}


@task(name="baseline", cache_key_fn=lambda _, p: "baseline-" + baseline_key(p["prepared"]), **CACHE)
def baseline_task(prepared: Prepared) -> StepRecord:
    return run_baseline(prepared, progress.reporter("baseline"))


@task(name="candidate", cache_key_fn=lambda _, p: "step-" + step_key(p["prepared"], p["champion"], p["step"]), **CACHE)
def candidate_task(prepared: Prepared, champion: Variant, step: TechniqueSpec) -> StepRecord:
    return try_step(prepared, champion, step, progress.reporter(step.label))


@task(name="compile", cache_key_fn=lambda _, p: "compile-" + compile_task_key(p["prepared"], p["state"], p["target"]), **CACHE)
def compile_task(prepared: Prepared, state: RatchetState, target: CompileSpec) -> CompileRecord:
    return try_compile(prepared, state, target, progress.reporter(f"compile {target.label}"))


@task(name="compile-check", cache_policy=NO_CACHE)
def compile_check_task(prepared: Prepared, state: RatchetState, record: CompileRecord, target: CompileSpec) -> CompileRecord:
    """Parity, rubric and gate of a compiled artifact (cheap: from the cached measurement)."""
    return gate_compile(prepared.spec, state, evaluate_compile(prepared, state, record), target)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(prepared: Prepared, baseline: StepRecord, record: StepRecord) -> StepRecord:
    return evaluate_step(prepared, baseline, record)


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(spec: PipelineSpec, state: RatchetState, record: StepRecord) -> StepRecord:
    return gate_step(spec, state, record)


@task(name="final-gate", cache_policy=NO_CACHE)
def final_gate_task(spec: PipelineSpec, state: RatchetState) -> FinalDecision:
    return finalize(spec, state)


@task(name="register", cache_policy=NO_CACHE)
def register_task(tracker: Tracker, final: FinalDecision, records: list[StepRecord], compiled: list[CompileRecord]) -> int | None:
    return tracker.promote(final, records, compiled)


def resolve_tracking_uri(spec: PipelineSpec, override: str | None) -> str:
    return override or os.environ.get("MLFLOW_TRACKING_URI") or spec.registry.tracking_uri


def _cached(task_fn, refresh: bool, name: str):
    return task_fn.with_options(task_run_name=name, refresh_cache=refresh or None)


def _compiled(prepared: Prepared, state: RatchetState, target: CompileSpec, refresh: bool) -> CompileRecord:
    record = _cached(compile_task, refresh, f"compile: {target.label}")(prepared, state, target)
    if record.variant is not None and not record.variant.path.exists():  # cached, but its files were deleted
        record = _cached(compile_task, True, f"compile: {target.label}")(prepared, state, target)
    return compile_check_task.with_options(task_run_name=f"compile-check: {target.label}")(prepared, state, record, target)


def _candidate(prepared: Prepared, state: RatchetState, step: TechniqueSpec, refresh: bool) -> StepRecord:
    """Try (cached), evaluate and gate one candidate against the current champion."""
    record = _cached(candidate_task, refresh, f"candidate: {step.label}")(prepared, state.champion.variant, step)
    if record.variant is not None and not record.variant.path.exists():  # cached, but its files were deleted
        record = _cached(candidate_task, True, f"candidate: {step.label}")(prepared, state.champion.variant, step)
    record = evaluate_task(prepared, state.baseline, record)
    return gate_task(prepared.spec, state, record)


@flow(name="ratchet", log_prints=True)
def ratchet(spec: PipelineSpec, quick: bool = False, tracking_uri: str | None = None, refresh: bool = False) -> dict:
    """Baseline, gated steps, final gate on held-out data, registration; returns the run summary.

    ``refresh`` re-measures everything instead of reusing cached steps (e.g. after a noisy run).
    """
    if quick:
        spec = with_quick_measurement(spec)
    prepared = preflight(spec)
    tracker = Tracker(spec, resolve_tracking_uri(spec, tracking_uri), stable_hash(spec.model_dump(mode="json")))
    run_id = tracker.start()
    try:
        baseline = _cached(baseline_task, refresh, "baseline")(prepared)
        tracker.log_record(baseline)
        state = ratchet_steps(spec.steps, RatchetState.start(baseline), spec.objective,
                              lambda st, step: _candidate(prepared, st, step, refresh),
                              lambda records: [tracker.log_record(r) for r in records])
        final = final_gate_task(spec, state)
        compiled = [_compiled(prepared, state, target, refresh) for target in spec.compile]
        for record in compiled:
            tracker.log_compiled(record)
        version = register_task(tracker, final, state.records, compiled)
        summary = build_summary(state, final, run_id, version, spec.name, compiled)
        summary["plot"] = str(plot_steps(summary, run_dir(spec) / "reports" / f"{run_id}.png"))
        tracker.log_summary(summary, markdown_report(summary), Path(summary["plot"]))
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end()
    create_table_artifact(key="ratchet-steps", table=[dict(zip(HEADERS, row)) for row in table_rows(summary)],
                          description=f"Steps of {spec.name}")
    create_markdown_artifact(key="ratchet-report", markdown=markdown_report(summary), description=f"Report of {spec.name}")
    return summary
