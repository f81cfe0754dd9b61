"""The Prefect flow: ``run_pipeline`` with each stage run as a Prefect task.

Task boundaries follow the pipeline's stages (baseline, each step's
candidate, evaluation, paired comparison, gate, final gate, compile targets,
registration). The expensive ones (baseline, candidate, comparison, compile)
are cached by (model content hash, step or target spec, hardware, the
machine's fingerprint and workload settings), so rerunning the same spec on
the same machine reuses them; a comparison measured on a machine too noisy to
decide is never reused. Deployments name a spec file (``spec_path``, resolved
against the checkout the worker runs in); the UI's form takes an ad-hoc
``spec`` instead.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Without a Prefect server, each run starts a temporary one; on a fresh machine its first start creates its
# database, which on a busy 2-core machine takes longer than Prefect's default 20 s wait ("Timed out while
# attempting to connect to ephemeral Prefect API server", 3 times out of 3 here). Wait as long as it takes.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from ratchet.core.variant import Variant  # noqa: E402
from ratchet.flows import progress  # noqa: E402
from ratchet.flows.compiling import compile_task_key, evaluate_compile, gate_compile, try_compile  # noqa: E402
from ratchet.flows.pipeline import Stages, run_pipeline  # noqa: E402
from ratchet.flows.ratchet import (  # noqa: E402
    baseline_key, compare, comparison_key, evaluate_step, finalize, gate_step, reusable, run_baseline, step_key, try_step,
)
from ratchet.flows.report import headers, markdown_report, table_rows  # noqa: E402
from ratchet.flows.spec import PipelineSpec, Prepared, SpecError, load_spec, preflight, with_quick_measurement  # noqa: E402
from ratchet.hardware.backends import CompileSpec  # noqa: E402
from ratchet.registry.tracking import Tracker  # noqa: E402
from ratchet.tasks.compare import Comparison  # noqa: E402
from ratchet.tasks.records import CompileRecord, FinalDecision, RatchetState, StepRecord  # noqa: E402
from ratchet.tasks.techniques import TechniqueSpec  # noqa: E402

CACHE = {"persist_result": True, "cache_expiration": timedelta(days=7)}


@task(name="baseline", cache_key_fn=lambda _, p: "baseline-" + baseline_key(p["prepared"]), **CACHE)
def baseline_task(prepared: Prepared) -> StepRecord:
    return run_baseline(prepared, progress.reporter("baseline"))


@task(name="candidate", cache_key_fn=lambda _, p: "step-" + step_key(p["prepared"], p["champion"], p["step"]), **CACHE)
def candidate_task(prepared: Prepared, champion: Variant, step: TechniqueSpec) -> StepRecord:
    return try_step(prepared, champion, step, progress.reporter(step.label))


@task(name="compare", cache_key_fn=lambda _, p: "compare-" + comparison_key(p["prepared"], p["reference"], p["candidate"]),
      **CACHE)
def compare_task(prepared: Prepared, reference: Variant, candidate: Variant, role: str) -> Comparison:
    return compare(prepared, reference, candidate, role, progress.reporter(candidate.name))


@task(name="compile", cache_key_fn=lambda _, p: "compile-" + compile_task_key(p["prepared"], p["state"], p["target"]), **CACHE)
def compile_task(prepared: Prepared, state: RatchetState, target: CompileSpec) -> CompileRecord:
    return try_compile(prepared, state, target, progress.reporter(f"compile {target.label}"))


@task(name="compile-check", cache_policy=NO_CACHE)
def compile_check_task(prepared: Prepared, state: RatchetState, record: CompileRecord) -> CompileRecord:
    """Parity and rubric of a compiled artifact (cheap: from the cached measurement)."""
    return evaluate_compile(prepared, state, record)


@task(name="compile-gate", cache_policy=NO_CACHE)
def compile_gate_task(prepared: Prepared, state: RatchetState, record: CompileRecord, target: CompileSpec) -> CompileRecord:
    return gate_compile(prepared, state, record, target)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(prepared: Prepared, baseline: StepRecord, record: StepRecord) -> StepRecord:
    return evaluate_step(prepared, baseline, record)


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(prepared: Prepared, state: RatchetState, record: StepRecord) -> StepRecord:
    return gate_step(prepared, state, record)


@task(name="final-gate", cache_policy=NO_CACHE)
def final_gate_task(prepared: Prepared, state: RatchetState, versus_baseline: Comparison | None) -> FinalDecision:
    return finalize(prepared, state, versus_baseline)


@task(name="register", cache_policy=NO_CACHE)
def register_task(tracker: Tracker, final: FinalDecision, records: list[StepRecord], compiled: list[CompileRecord]) -> int | None:
    return tracker.promote(final, records, compiled)


def prefect_stages(refresh: bool) -> Stages:
    """The pipeline's stages as Prefect tasks; ``refresh`` re-measures instead of reusing cached results.

    A cached result is not reused when its files are gone (a candidate's folder was deleted), nor, for a paired
    comparison, when it is not evidence any more: it failed, or its machine was too noisy to decide.
    """

    def cached(task_fn, name: str, *args, refresh_now: bool = False):
        record = task_fn.with_options(task_run_name=name, refresh_cache=refresh or refresh_now or None)(*args)
        if record.variant is not None and not record.variant.path.exists():
            record = task_fn.with_options(task_run_name=name, refresh_cache=True)(*args)
        return record

    def compared(prepared: Prepared, reference: Variant, candidate: Variant, role: str, again: bool) -> Comparison:
        name = f"compare: {candidate.name} vs {role}"
        result = compare_task.with_options(task_run_name=name, refresh_cache=refresh or again or None)(
            prepared, reference, candidate, role)
        if not again and not refresh and not reusable(prepared, result):  # maybe a cached noisy one: measure anew
            result = compare_task.with_options(task_run_name=name, refresh_cache=True)(prepared, reference, candidate, role)
        return result

    def compiled(prepared: Prepared, state: RatchetState, target: CompileSpec) -> CompileRecord:
        record = cached(compile_task, f"compile: {target.label}", prepared, state, target)
        return compile_check_task.with_options(task_run_name=f"compile-check: {target.label}")(prepared, state, record)

    return Stages(
        baseline=lambda prepared: cached(baseline_task, "baseline", prepared),
        make=lambda prepared, champion, step: cached(candidate_task, f"candidate: {step.label}", prepared, champion, step),
        evaluate=evaluate_task, compare=compared, gate=gate_task, final=final_gate_task, compile=compiled,
        compile_gate=compile_gate_task, register=register_task,
    )


def deployment_spec(spec_path: str | None, spec: PipelineSpec | None) -> PipelineSpec:
    """Exactly one of a spec file (relative paths against the working directory: the checkout) or a spec."""
    if (spec_path is None) == (spec is None):
        raise SpecError("give the flow either spec_path (a spec file in the checkout) or spec (a whole spec), not "
                        f"{'both' if spec is not None else 'neither'}")
    return load_spec(Path(spec_path)) if spec_path is not None else spec


@flow(name="ratchet", log_prints=True)
def ratchet(spec_path: str | None = None, spec: PipelineSpec | None = None, quick: bool = False,
            tracking_uri: str | None = None, refresh: bool = False) -> dict:
    """Baseline, gated steps, final gate on held-out data, compile targets, registration; returns the run summary.

    ``refresh`` re-measures everything instead of reusing cached steps (e.g. after a noisy run).
    """
    spec = deployment_spec(spec_path, spec)
    summary = run_pipeline(preflight(with_quick_measurement(spec) if quick else spec), tracking_uri,
                           prefect_stages(refresh)).summary
    create_table_artifact(key="ratchet-steps", table=[dict(zip(headers(summary), row)) for row in table_rows(summary)],
                          description=f"Steps of {spec.name}")
    create_markdown_artifact(key="ratchet-report", markdown=markdown_report(summary), description=f"Report of {spec.name}")
    return summary
