"""The whole run as one plain function: baseline, gated steps, final gate, compile targets, tracking, registry.

``run_pipeline`` is what ``ratchet run --no-prefect``, the benchmark scripts and
the Prefect flow all run. What differs between them is only how each stage is
executed: the defaults are the plain functions of ``flows.ratchet`` and
``flows.compiling``; the Prefect flow passes its cached, observable tasks as
``Stages``. MLflow logging stays here, in the calling thread, because MLflow's
active run is per thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.flows import progress
from ratchet.flows.compiling import compile_target
from ratchet.flows.plot import plot_steps
from ratchet.flows.ratchet import finalize, ratchet_steps, run_baseline, run_candidate, run_dir
from ratchet.flows.report import build_summary, markdown_report
from ratchet.flows.spec import PipelineSpec, Prepared
from ratchet.hardware.backends import CompileSpec
from ratchet.hardware.runtimes import Shape
from ratchet.registry.tracking import RunInfo, Tracker
from ratchet.tasks.records import CompileRecord, FinalDecision, RatchetState, StepRecord
from ratchet.tasks.techniques import TechniqueSpec


def baseline(prepared: Prepared) -> StepRecord:
    return run_baseline(prepared, progress.reporter("baseline"))


def candidate(prepared: Prepared, state: RatchetState, step: TechniqueSpec) -> StepRecord:
    return run_candidate(prepared, state, step, progress.reporter(step.label))


def compiled(prepared: Prepared, state: RatchetState, target: CompileSpec) -> CompileRecord:
    return compile_target(prepared, state, target, progress.reporter(f"compile {target.label}"))


def register(tracker: Tracker, final: FinalDecision, records: list[StepRecord], compiled: list[CompileRecord]) -> int | None:
    return tracker.promote(final, records, compiled)


@dataclass(frozen=True)
class Stages:
    """How each stage of a run is executed: plain functions here, Prefect tasks in ``flows.ratchet_flow``."""

    baseline: Callable[[Prepared], StepRecord] = baseline
    candidate: Callable[[Prepared, RatchetState, TechniqueSpec], StepRecord] = candidate
    final: Callable[[Prepared, RatchetState], FinalDecision] = finalize
    compile: Callable[[Prepared, RatchetState, CompileSpec], CompileRecord] = compiled
    register: Callable[[Tracker, FinalDecision, list[StepRecord], list[CompileRecord]], int | None] = register


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
    tracker = Tracker(spec.registry, resolve_tracking_uri(spec, tracking_uri), run_info(spec))
    run_id = tracker.start()
    try:
        base = stages.baseline(prepared)
        tracker.log_record(base)
        state = ratchet_steps(spec.steps, RatchetState.start(base), spec.objective,
                              lambda st, step: stages.candidate(prepared, st, step),
                              lambda records: [tracker.log_record(r) for r in records])
        final = stages.final(prepared, state)
        targets = [stages.compile(prepared, state, target) for target in spec.compile]
        for record in targets:
            tracker.log_compiled(record)
        version = stages.register(tracker, final, state.records, targets)
        summary = build_summary(state, final, run_id, version, spec.name, targets)
        summary["plot"] = str(plot_steps(summary, run_dir(spec) / "reports" / f"{run_id}.png"))
        tracker.log_summary(summary, markdown_report(summary), Path(summary["plot"]))
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end()
    return RunResult(state, final, targets, summary)
