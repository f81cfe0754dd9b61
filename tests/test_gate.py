"""Tests for ratchet.tasks.gate: step, final and compile gates on synthetic evidence and paired comparisons.

Speed verdicts come from paired comparisons built here from synthetic interleaved blocks through the real
estimator (``paired_ratio``): the candidate takes ``scale`` times the reference's latency, and the machine's
speed wobbles from pair to pair by ``wobble`` (the same for both blocks of a pair, as interleaving makes it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ratchet.hardware.benchmark.paired import STATS, min_block_queries, paired_ratio
from ratchet.hardware.parity import Parity
from ratchet.tasks.compare import Comparison
from ratchet.tasks.gate import (
    Evidence,
    GateCriterion,
    GatePolicy,
    NoiseSpec,
    TargetSpec,
    check_target,
    metric_info,
    speed_criterion,
)

NOISE = NoiseSpec()
THRESHOLDS = {"recall_at_5": 0.80, "mrr": 0.60}


def evidence(scale: float = 1.0, split: str = "tuning", **metrics: float | None) -> Evidence:
    """Evidence of a variant ``scale`` times as slow as a 10 ms reference, plus any extra metrics."""
    flat: dict[str, float | None] = {
        "p50_ms": 9.0 * scale, "p95_ms": 12.0 * scale, "p99_ms": 14.0 * scale, "mean_ms": 9.5 * scale,
        "throughput_rps": 105 / scale, "recall_at_5": 0.95, "mrr": 0.80, "rubric_score": 0.90,
        "peak_rss_mb": 900.0, "size_mb": 90.0,
    }
    flat.update(metrics)
    return Evidence(flat, split)


def versus(scale: float, wobble: float = 0.02, seed: int = 0, block: int = 100, pairs: int = 8,
           role: str = "champion", jitter: float = 0.1) -> Comparison:
    """A paired comparison of a candidate ``scale`` times the reference's latency, from synthetic blocks."""
    rng = np.random.default_rng(seed)
    machine = rng.lognormal(0, wobble, pairs)  # each pair's machine speed, shared by its two adjacent blocks
    ref = [list(0.010 * m * rng.lognormal(0, jitter, block)) for m in machine]
    cand = [list(0.010 * scale * m * rng.lognormal(0, jitter, block)) for m in machine]
    ratios = {s: paired_ratio(ref, cand, s) for s in STATS if block >= min_block_queries(s)}
    return Comparison("reference", "candidate", role, ratios=ratios, pairs=pairs, block_queries=block)


def policy(targets: tuple[TargetSpec, ...] = (), thresholds: dict[str, float] = THRESHOLDS,
           objective: str = "p95_ms", noise: NoiseSpec = NOISE) -> GatePolicy:
    return GatePolicy(targets, thresholds, objective, noise)


def by_metric(criteria: list[GateCriterion], metric: str, rubric: bool = False) -> GateCriterion:
    """The one criterion on ``metric``: a rubric threshold line if ``rubric``, else a target or improvement line."""
    matches = [c for c in criteria if c.metric == metric and c.name.startswith("rubric ") is rubric]
    assert len(matches) == 1, matches
    return matches[0]


# --- the improvement rule, on paired comparisons -------------------------------------------------


def test_faster_candidate_is_accepted() -> None:
    decision = policy().step(evidence(0.6), evidence(), versus(0.6))
    assert decision.passed and not decision.inconclusive
    crit = decision.criteria[-1]
    assert crit.name == "p95_ms improves on champion" and crit.passed and crit.blocking
    assert "faster beyond noise" in crit.reason and "8 interleaved pairs" in crit.reason
    assert crit.measured == pytest.approx(0.6, rel=0.05)
    assert decision.reason == "all criteria passed"


def test_slower_candidate_is_rejected() -> None:
    decision = policy().step(evidence(1.4), evidence(), versus(1.4))
    assert not decision.passed and not decision.inconclusive
    assert "slower" in decision.reason and "faster" not in decision.reason
    assert "the champion's latency" in decision.reason


@pytest.mark.parametrize("objective", ["p50_ms", "p95_ms", "mean_ms", "throughput_rps", "cost_per_1k"])
def test_same_speed_is_not_a_speedup(objective: str) -> None:
    """The candidate is the reference again: rejected for no speed-up, and not called slower."""
    crit = speed_criterion("x", objective, versus(1.0, seed=3), NOISE)
    assert not crit.passed and not crit.inconclusive
    assert "no speed-up beyond noise" in crit.reason


def test_throughput_objective_uses_latency_direction() -> None:
    """Throughput is higher-is-better but compared via latency: a faster candidate passes, a slower one fails."""
    assert speed_criterion("x", "throughput_rps", versus(0.7), NOISE).passed
    slower = speed_criterion("x", "throughput_rps", versus(1.4), NOISE)
    assert not slower.passed and "slower" in slower.reason


def test_a_tail_the_blocks_are_too_small_for_is_a_reason_not_a_verdict() -> None:
    """A block p99 needs 200 queries: with 100-query blocks the gate says so rather than guessing."""
    crit = speed_criterion("x", "p99_ms", versus(0.5), NOISE)
    assert not crit.passed and not crit.inconclusive
    assert "block p99 is not reportable with 100-query blocks (needs 200)" in crit.reason
    with pytest.raises(ValueError, match="block_queries: 100 queries per block cannot estimate a block p99"):
        NOISE.check_objective("p99_ms")
    NoiseSpec(block_queries=200).check_objective("p99_ms")


def test_a_noisy_reference_makes_the_verdict_inconclusive_never_slower_or_faster() -> None:
    """The machine's speed swung ~40% from block to block: whatever the ratio, no verdict."""
    for scale in (0.6, 1.4):
        decision = policy().step(evidence(scale), evidence(), versus(scale, wobble=0.4))
        assert not decision.passed and decision.inconclusive
        assert "inconclusive: machine too noisy (reference CV" in decision.reason and "> 10%)" in decision.reason
        assert decision.criteria[-1].inconclusive


def test_a_quality_failure_is_a_rejection_even_when_speed_is_inconclusive() -> None:
    decision = policy().step(evidence(0.6, mrr=0.1), evidence(), versus(0.6, wobble=0.4))
    assert not decision.passed and not decision.inconclusive
    assert "mrr" in decision.reason


def test_the_tolerance_comes_from_the_spec() -> None:
    lenient = NoiseSpec(max_reference_cv=0.9)
    assert policy(noise=lenient).step(evidence(0.6), evidence(), versus(0.6, wobble=0.4, seed=1)).passed


@pytest.mark.parametrize(("comparison", "reason"), [
    (None, "no paired comparison was measured"),
    (Comparison("a", "b", "champion", error="paired comparison failed: worker exited"), "worker exited"),
])
def test_a_missing_or_failed_comparison_fails_with_its_reason(comparison: Comparison | None, reason: str) -> None:
    decision = policy().step(evidence(0.6), evidence(), comparison)
    assert not decision.passed and not decision.inconclusive
    assert reason in decision.reason


def test_an_enabling_step_needs_no_speed_up_but_must_not_be_slower() -> None:
    """A representation change (ONNX export) is judged on quality; a confirmed slowdown is still refused."""
    even = policy().step(evidence(), evidence(), versus(1.0, seed=3), enabling=True)
    assert even.passed and "not slower beyond noise (no speed-up needed)" in even.criteria[-1].reason
    assert even.criteria[-1].name == "p95_ms not slower than champion"
    assert not policy().step(evidence(1.4), evidence(), versus(1.4), enabling=True).passed
    noisy = policy().step(evidence(), evidence(), versus(1.0, wobble=0.4), enabling=True)
    assert noisy.passed and "speed not judged" in noisy.criteria[-1].reason


# --- targets at the step and final stages ---------------------------------------------------


def test_quality_drop_blocks_a_faster_step() -> None:
    base = evidence(1.0)
    target = TargetSpec(metric="recall_at_5", max_drop=0.01)
    cand = evidence(0.5, recall_at_5=0.90)
    decision = policy((target,)).step(cand, base, versus(0.5))
    assert not decision.passed
    crit = by_metric(decision.criteria, "recall_at_5")
    assert crit.blocking and not crit.passed
    assert crit.measured == pytest.approx(0.90)
    assert crit.threshold == pytest.approx(0.01)
    assert "recall_at_5" in decision.reason
    assert decision.criteria[-1].passed  # the speed-up itself was real


def test_quality_within_max_drop_passes() -> None:
    base = evidence(1.0)
    target = TargetSpec(metric="recall_at_5", max_drop=0.01)
    cand = evidence(0.5, recall_at_5=0.945)
    assert policy((target,)).step(cand, base, versus(0.5)).passed


def test_absolute_latency_target_blocks_only_at_final() -> None:
    """A p95 ceiling is recorded at each step (not blocking) and enforced on the final champion."""
    base = evidence(1.0)
    cand = evidence(0.6)
    target = TargetSpec(metric="p95_ms", max=1.0)  # ~9 ms measured: far above 1 ms
    step = policy((target,)).step(cand, base, versus(0.5))
    crit = by_metric(step.criteria[:-1], "p95_ms")
    assert not crit.passed and not crit.blocking
    assert step.passed

    final = policy((target,)).final(cand, base, None)
    crit = by_metric(final.criteria, "p95_ms")
    assert not crit.passed and crit.blocking
    assert not final.passed
    assert "improves on champion" not in " ".join(c.name for c in final.criteria)


@pytest.mark.parametrize(
    ("metric", "blocking_at_step"),
    [("p95_ms", False), ("throughput_rps", False), ("cost_per_1k", False),
     ("peak_rss_mb", True), ("size_mb", True), ("rubric_score", True), ("mrr", True)],
)
def test_which_families_block_at_step(metric: str, blocking_at_step: bool) -> None:
    base = evidence(1.0, cost_per_1k=0.01)
    target = TargetSpec(metric=metric, max=1e9)
    step = policy((target,), {}).step(evidence(0.6, cost_per_1k=0.01), base, versus(0.5))
    assert by_metric(step.criteria[:-1], metric).blocking is blocking_at_step


def test_missing_metric_fails_the_gate() -> None:
    base = evidence(1.0)
    cand = Evidence({k: v for k, v in evidence(0.5).metrics.items() if k != "peak_rss_mb"})
    target = TargetSpec(metric="peak_rss_mb", max=4000)
    decision = policy((target,)).step(cand, base, versus(0.5))
    assert not decision.passed
    crit = by_metric(decision.criteria, "peak_rss_mb")
    assert crit.measured is None and not crit.passed
    assert "was not measured" in crit.reason


def test_a_metric_not_reportable_or_not_measured_fails_its_criterion_and_says_which() -> None:
    base = evidence(1.0)
    target = TargetSpec(metric="p99_ms", max=4000)
    truncated = evidence(0.5, p99_ms=None)  # measured, but too few queries for a p99
    unmeasured = Evidence({k: v for k, v in evidence(0.5).metrics.items() if k != "p99_ms"})
    for cand, why in ((truncated, "p99_ms is not reportable"), (unmeasured, "p99_ms was not measured")):
        crit = by_metric(policy((target,)).step(cand, base, versus(0.5)).criteria, "p99_ms")
        assert crit.measured is None and not crit.passed
        assert why in crit.reason


def test_missing_baseline_metric_fails_a_relative_target() -> None:
    target = TargetSpec(metric="recall_at_5", max_drop=0.01)
    crit = check_target(target, evidence(0.5), evidence(1.0, recall_at_5=None), True, NOISE)
    assert not crit.passed
    assert "baseline recall_at_5 is not reportable" in crit.reason


def test_rubric_thresholds_are_enforced() -> None:
    base = evidence(1.0)
    cand = evidence(0.5, mrr=0.59)
    decision = policy().step(cand, base, versus(0.5))
    assert not decision.passed
    crit = by_metric(decision.criteria, "mrr", rubric=True)
    assert crit.threshold == pytest.approx(0.60) and crit.blocking
    assert "mrr on tuning" in crit.reason
    # Exactly at the threshold passes; a missing rubric value fails.
    assert policy().step(evidence(0.5, mrr=0.60), base, versus(0.5)).passed
    missing = policy().step(evidence(0.5, mrr=None), base, versus(0.5))
    assert not missing.passed


def test_final_stage_checks_every_target_on_heldout() -> None:
    base = evidence(1.0)
    targets = [TargetSpec(metric="rubric_score", min=0.8), TargetSpec(metric="peak_rss_mb", max=4000),
               TargetSpec(metric="p95_ms", min_improvement=0.25)]
    good = policy(tuple(targets)).final(evidence(0.5, split="heldout"), base, versus(0.5, role="baseline"))
    assert good.passed and good.stage == "final"
    assert len(good.criteria) == len(THRESHOLDS) + len(targets)
    assert all(c.blocking for c in good.criteria)
    assert "on heldout" in by_metric(good.criteria, "mrr", rubric=True).reason


# --- min_improvement, against the baseline at the final gate -------------------------------------


def test_min_improvement_met_well_beyond_noise() -> None:
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    crit = check_target(target, evidence(0.5), evidence(), True, NOISE, versus(0.5, role="baseline"))
    assert crit.passed and crit.threshold == pytest.approx(0.75)
    assert "the baseline's latency" in crit.reason and "below 0.75 beyond noise" in crit.reason


def test_min_improvement_not_met_by_a_small_real_speedup() -> None:
    """10% faster is beyond noise but short of the required 25%."""
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    crit = check_target(target, evidence(0.9), evidence(), True, NOISE, versus(0.9, role="baseline"))
    assert not crit.passed and "needs <= 0.75 beyond noise" in crit.reason


def test_min_improvement_needs_the_interval_below_the_limit() -> None:
    """A 26% point improvement whose interval reaches above 0.75 has not shown a 25% improvement beyond noise."""
    comparison = versus(0.74, wobble=0.05, pairs=3, jitter=0.3, seed=0, role="baseline")
    ratio = comparison.ratios["p95"]
    assert ratio.ratio < 0.75 < ratio.high < 1.0  # the premise of this test
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    assert not check_target(target, evidence(0.74), evidence(), True, NOISE, comparison).passed


def test_min_improvement_at_a_step_is_left_to_the_final_gate() -> None:
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    step = policy((target,)).step(evidence(0.5), evidence(), versus(0.5))
    crit = by_metric(step.criteria[:-1], "p95_ms")
    assert not crit.blocking and "judged at the final gate" in crit.reason
    assert step.passed


def test_the_final_gate_asks_for_a_comparison_only_with_a_speed_target() -> None:
    assert policy((TargetSpec(metric="p95_ms", min_improvement=0.25),)).needs_final_comparison
    assert not policy((TargetSpec(metric="p95_ms", max=10),)).needs_final_comparison


def test_an_inconclusive_final_comparison_is_an_inconclusive_final_gate() -> None:
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    final = policy((target,)).final(evidence(0.5, split="heldout"), evidence(),
                                    versus(0.5, wobble=0.4, role="baseline"))
    assert not final.passed and final.inconclusive


def test_the_compile_gate_records_speed_without_requiring_it() -> None:
    gate = policy().compile(evidence(1.4, split="heldout"), evidence(), versus(1.4), Parity(0.0, 1.0), 1e-3, 0.999)
    assert gate.passed
    speed = gate.criteria[-1]
    assert speed.name == "p95_ms vs champion" and not speed.blocking and not speed.passed and "slower" in speed.reason
    assert not policy().compile(evidence(), evidence(), versus(1.0), Parity(0.1, 0.9), 1e-3, 0.999).passed


# --- relative drops -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "base_value", "cand_value", "bound", "passed"),
    [
        ("recall_at_5", 0.90, 0.85, 0.05, False),  # higher-is-better: (0.90-0.85)/0.90 = 5.6% drop
        ("recall_at_5", 0.90, 0.85, 0.06, True),
        ("recall_at_5", 0.90, 0.95, 0.0, True),  # an improvement is never a drop
        ("size_mb", 100.0, 104.0, 0.05, True),  # lower-is-better: 4% bigger
        ("size_mb", 100.0, 104.0, 0.03, False),
        ("size_mb", 100.0, 50.0, 0.0, True),
    ],
)
def test_max_relative_drop_math(metric: str, base_value: float, cand_value: float, bound: float, passed: bool) -> None:
    target = TargetSpec(metric=metric, max_relative_drop=bound)
    cand, base = evidence(1.0, **{metric: cand_value}), evidence(1.0, **{metric: base_value})
    crit = check_target(target, cand, base, True, NOISE)
    assert crit.passed is passed
    assert crit.measured == pytest.approx(cand_value)
    assert crit.threshold == pytest.approx(bound)


def test_max_drop_direction_follows_metric() -> None:
    """For a lower-is-better metric, a larger value is the worsening."""
    assert not metric_info("size_mb").higher_is_better and metric_info("mrr").higher_is_better
    target = TargetSpec(metric="size_mb", max_drop=5)
    assert check_target(target, evidence(1, size_mb=104), evidence(1, size_mb=100), True, NOISE).passed
    assert not check_target(target, evidence(1, size_mb=106), evidence(1, size_mb=100), True, NOISE).passed


def test_max_relative_drop_zero_baseline_improvement_passes() -> None:
    target = TargetSpec(metric="recall_at_5", max_relative_drop=0.05)
    crit = check_target(target, evidence(1, recall_at_5=0.5), evidence(1, recall_at_5=0.0), True, NOISE)
    assert crit.passed


# --- the decision record --------------------------------------------------------------------


def test_to_dict_lists_every_criterion() -> None:
    base = evidence(1.0)
    targets = [TargetSpec(metric="recall_at_5", max_drop=0.01), TargetSpec(metric="p95_ms", max=1.0)]
    decision = policy(tuple(targets)).step(evidence(0.5, mrr=0.1), base, versus(0.5))
    data = decision.to_dict()
    json.dumps(data)  # plain data, ready for MLflow
    assert data["stage"] == "step"
    assert data["passed"] is False
    assert "mrr" in data["reason"]
    assert len(data["criteria"]) == len(THRESHOLDS) + len(targets) + 1
    for row in data["criteria"]:
        assert {"name", "metric", "measured", "threshold", "passed", "blocking", "reason"} <= set(row)
        assert isinstance(row["passed"], bool) and row["reason"]
    assert [row["metric"] for row in data["criteria"]] == ["recall_at_5", "mrr", "recall_at_5", "p95_ms", "p95_ms"]


def test_reason_lists_only_blocking_failures() -> None:
    """A non-blocking miss (absolute latency at a step) never appears in the rejection reason."""
    base = evidence(1.0)
    target = TargetSpec(metric="p95_ms", max=1.0)
    decision = policy((target,)).step(evidence(0.5, mrr=0.1), base, versus(0.5))
    assert "mrr" in decision.reason
    assert "<= 1" not in decision.reason and "> 1" not in decision.reason
