"""Tests for ratchet.tasks.gate: step and final gates on synthetic evidence with known latency ratios."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ratchet.hardware.benchmark.stats import bootstrap_ratio_ci
from ratchet.tasks.gate import (
    Evidence,
    GateCriterion,
    GatePolicy,
    NoiseSpec,
    TargetSpec,
    check_target,
    improvement_criterion,
    metric_info,
)

NOISE = NoiseSpec()
N = 800  # above the 662 latencies a p99 bootstrap needs


def latencies(scale: float, seed: int, n: int = N) -> np.ndarray:
    """Lognormal latencies around 10 ms * scale; the same seed gives exactly proportional samples."""
    return np.random.default_rng(seed).lognormal(math.log(0.010 * scale), 0.25, n)


def evidence(scale: float, seed: int, n: int = N, split: str = "tuning", **metrics: float | None) -> Evidence:
    """Evidence whose latency metrics are computed from its own samples, plus any extra metrics."""
    lat = latencies(scale, seed, n)
    flat: dict[str, float | None] = {
        "p50_ms": float(np.percentile(lat, 50)) * 1e3,
        "p95_ms": float(np.percentile(lat, 95)) * 1e3,
        "p99_ms": float(np.percentile(lat, 99)) * 1e3,
        "mean_ms": float(lat.mean()) * 1e3,
        "throughput_rps": 1.0 / float(lat.mean()),
        "recall_at_5": 0.95,
        "mrr": 0.80,
        "rubric_score": 0.90,
        "peak_rss_mb": 900.0,
        "size_mb": 90.0,
    }
    flat.update(metrics)
    return Evidence(flat, lat.tolist(), split)


THRESHOLDS = {"recall_at_5": 0.80, "mrr": 0.60}


def by_metric(criteria: list[GateCriterion], metric: str, rubric: bool = False) -> GateCriterion:
    """The one criterion on ``metric``: a rubric threshold line if ``rubric``, else a target or improvement line."""
    matches = [c for c in criteria if c.metric == metric and c.name.startswith("rubric ") is rubric]
    assert len(matches) == 1, matches
    return matches[0]


# --- the improvement rule -------------------------------------------------------------------


def test_faster_candidate_is_accepted() -> None:
    base = evidence(1.0, seed=1)
    decision = GatePolicy((), THRESHOLDS, "p95_ms", NOISE).step(evidence(0.6, seed=2), base, base)
    assert decision.passed
    crit = decision.criteria[-1]
    assert crit.name == "p95_ms improves on champion"
    assert crit.passed and crit.blocking
    assert "faster beyond noise" in crit.reason
    assert decision.reason == "all criteria passed"


def test_slower_candidate_is_rejected() -> None:
    base = evidence(1.0, seed=1)
    decision = GatePolicy((), THRESHOLDS, "p95_ms", NOISE).step(evidence(1.4, seed=2), base, base)
    assert not decision.passed
    assert "slower" in decision.reason
    assert "faster" not in decision.reason


@pytest.mark.parametrize("objective", ["p50_ms", "p95_ms", "p99_ms", "mean_ms"])
def test_same_distribution_is_not_a_speedup(objective: str) -> None:
    """Two independent draws of one distribution differ only by noise: rejected, and not called slower."""
    champion = evidence(1.0, seed=1)
    # Seed 5 is a draw whose CI contains 1 for every statistic (by chance ~5% of draws would not).
    crit = improvement_criterion(objective, evidence(1.0, seed=5), champion, NOISE)
    assert not crit.passed
    assert "no speed-up beyond noise" in crit.reason


def test_identical_samples_are_not_a_speedup() -> None:
    champion = evidence(1.0, seed=1)
    decision = GatePolicy((), {}, "p95_ms", NOISE).step(champion, champion, champion)
    assert not decision.passed
    assert "no speed-up beyond noise" in decision.reason


def test_throughput_objective_uses_latency_direction() -> None:
    """Throughput is higher-is-better but compared via latency: a faster candidate passes, a slower one fails."""
    champion = evidence(1.0, seed=1)
    assert improvement_criterion("throughput_rps", evidence(0.7, seed=2), champion, NOISE).passed
    slower = improvement_criterion("throughput_rps", evidence(1.4, seed=2), champion, NOISE)
    assert not slower.passed and "slower" in slower.reason


def test_candidate_is_compared_to_champion_not_baseline() -> None:
    """Faster than the baseline but not than the current champion: rejected (the ratchet never slips back)."""
    baseline, champion = evidence(1.0, seed=1), evidence(0.5, seed=4)
    decision = GatePolicy((), THRESHOLDS, "p95_ms", NOISE).step(evidence(0.7, seed=2), baseline, champion)
    assert not decision.passed
    assert "slower" in decision.reason


def test_too_few_latencies_for_the_tail() -> None:
    """p99 needs 662 samples: with 300 the gate refuses to compare rather than guessing."""
    champion = evidence(1.0, seed=1, n=300)
    crit = improvement_criterion("p99_ms", evidence(0.5, seed=2, n=300), champion, NOISE)
    assert not crit.passed
    assert "too few latencies" in crit.reason


# --- targets at the step and final stages ---------------------------------------------------


def test_quality_drop_blocks_a_faster_step() -> None:
    base = evidence(1.0, seed=1)
    target = TargetSpec(metric="recall_at_5", max_drop=0.01)
    cand = evidence(0.5, seed=2, recall_at_5=0.90)
    decision = GatePolicy(tuple([target]), THRESHOLDS, "p95_ms", NOISE).step(cand, base, base)
    assert not decision.passed
    crit = by_metric(decision.criteria, "recall_at_5")
    assert crit.blocking and not crit.passed
    assert crit.measured == pytest.approx(0.90)
    assert crit.threshold == pytest.approx(0.01)
    assert "recall_at_5" in decision.reason
    assert decision.criteria[-1].passed  # the speed-up itself was real


def test_quality_within_max_drop_passes() -> None:
    base = evidence(1.0, seed=1)
    target = TargetSpec(metric="recall_at_5", max_drop=0.01)
    cand = evidence(0.5, seed=2, recall_at_5=0.945)
    assert GatePolicy(tuple([target]), THRESHOLDS, "p95_ms", NOISE).step(cand, base, base).passed


def test_absolute_latency_target_blocks_only_at_final() -> None:
    """A p95 ceiling is recorded at each step (not blocking) and enforced on the final champion."""
    base = evidence(1.0, seed=1)
    cand = evidence(0.6, seed=2)
    target = TargetSpec(metric="p95_ms", max=1.0)  # ~9 ms measured: far above 1 ms
    step = GatePolicy(tuple([target]), THRESHOLDS, "p95_ms", NOISE).step(cand, base, base)
    crit = by_metric(step.criteria[:-1], "p95_ms")
    assert not crit.passed and not crit.blocking
    assert step.passed

    final = GatePolicy(tuple([target]), THRESHOLDS, "p95_ms", NOISE).final(cand, base)
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
    base = evidence(1.0, seed=1, cost_per_1k=0.01)
    target = TargetSpec(metric=metric, max=1e9)
    step = GatePolicy(tuple([target]), {}, "p95_ms", NOISE).step(evidence(0.6, seed=2, cost_per_1k=0.01), base, base)
    assert by_metric(step.criteria[:-1], metric).blocking is blocking_at_step


def test_missing_metric_fails_the_gate() -> None:
    base = evidence(1.0, seed=1)
    cand = evidence(0.5, seed=2, peak_rss_mb=None)
    target = TargetSpec(metric="peak_rss_mb", max=4000)
    decision = GatePolicy(tuple([target]), THRESHOLDS, "p95_ms", NOISE).step(cand, base, base)
    assert not decision.passed
    crit = by_metric(decision.criteria, "peak_rss_mb")
    assert crit.measured is None and not crit.passed
    assert "was not measured" in crit.reason


def test_missing_baseline_metric_fails_a_relative_target() -> None:
    target = TargetSpec(metric="recall_at_5", max_drop=0.01)
    crit = check_target(target, evidence(0.5, seed=2), evidence(1.0, seed=1, recall_at_5=None), True, NOISE)
    assert not crit.passed
    assert "baseline" in crit.reason and "was not measured" in crit.reason


def test_rubric_thresholds_are_enforced() -> None:
    base = evidence(1.0, seed=1)
    cand = evidence(0.5, seed=2, mrr=0.59)
    decision = GatePolicy((), THRESHOLDS, "p95_ms", NOISE).step(cand, base, base)
    assert not decision.passed
    crit = by_metric(decision.criteria, "mrr", rubric=True)
    assert crit.threshold == pytest.approx(0.60) and crit.blocking
    assert "mrr on tuning" in crit.reason
    # Exactly at the threshold passes; a missing rubric value fails.
    assert GatePolicy((), THRESHOLDS, "p95_ms", NOISE).step(evidence(0.5, seed=2, mrr=0.60), base, base).passed
    missing = GatePolicy((), THRESHOLDS, "p95_ms", NOISE).step(evidence(0.5, seed=2, mrr=None), base, base)
    assert not missing.passed


def test_final_stage_checks_every_target_on_heldout() -> None:
    base = evidence(1.0, seed=1)
    targets = [TargetSpec(metric="rubric_score", min=0.8), TargetSpec(metric="peak_rss_mb", max=4000),
               TargetSpec(metric="p95_ms", min_improvement=0.25)]
    good = GatePolicy(tuple(targets), THRESHOLDS, "p95_ms", NOISE).final(evidence(0.5, seed=2, split="heldout"), base)
    assert good.passed and good.stage == "final"
    assert len(good.criteria) == len(THRESHOLDS) + len(targets)
    assert all(c.blocking for c in good.criteria)
    assert "on heldout" in by_metric(good.criteria, "mrr", rubric=True).reason


# --- min_improvement ------------------------------------------------------------------------


def test_min_improvement_met_well_beyond_noise() -> None:
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    crit = check_target(target, evidence(0.5, seed=2), evidence(1.0, seed=1), True, NOISE)
    assert crit.passed
    assert crit.threshold == pytest.approx(0.75)


def test_min_improvement_not_met_by_a_small_real_speedup() -> None:
    """10% faster is beyond noise but short of the required 25%."""
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    crit = check_target(target, evidence(0.9, seed=2), evidence(1.0, seed=1), True, NOISE)
    assert not crit.passed


def test_min_improvement_too_few_latencies() -> None:
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    crit = check_target(target, evidence(0.5, seed=2, n=200), evidence(1.0, seed=1, n=200), True, NOISE)
    assert not crit.passed
    assert "too few latencies" in crit.reason


def test_min_improvement_needs_ci_below_limit() -> None:
    """A 26% point improvement whose CI reaches above 0.75 has not shown a 25% improvement beyond noise."""
    cand, base = evidence(0.74, seed=2), evidence(1.0, seed=1)
    ci = bootstrap_ratio_ci(cand.latencies_s, base.latencies_s, "p95", NOISE.n_resamples, NOISE.confidence)
    assert ci.ratio < 0.75 < ci.high < 1.0  # the premise of this test
    target = TargetSpec(metric="p95_ms", min_improvement=0.25)
    assert not check_target(target, cand, base, True, NOISE).passed


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
    cand, base = evidence(1.0, seed=2, **{metric: cand_value}), evidence(1.0, seed=1, **{metric: base_value})
    crit = check_target(target, cand, base, True, NOISE)
    assert crit.passed is passed
    assert crit.measured == pytest.approx(cand_value)
    assert crit.threshold == pytest.approx(bound)


def test_max_drop_direction_follows_metric() -> None:
    """For a lower-is-better metric, a larger value is the worsening."""
    assert not metric_info("size_mb").higher_is_better and metric_info("mrr").higher_is_better
    target = TargetSpec(metric="size_mb", max_drop=5)
    assert check_target(target, evidence(1, 2, size_mb=104), evidence(1, 1, size_mb=100), True, NOISE).passed
    assert not check_target(target, evidence(1, 2, size_mb=106), evidence(1, 1, size_mb=100), True, NOISE).passed


def test_max_relative_drop_zero_baseline_improvement_passes() -> None:
    target = TargetSpec(metric="recall_at_5", max_relative_drop=0.05)
    crit = check_target(target, evidence(1, 2, recall_at_5=0.5), evidence(1, 1, recall_at_5=0.0), True, NOISE)
    assert crit.passed


# --- the decision record --------------------------------------------------------------------


def test_to_dict_lists_every_criterion() -> None:
    base = evidence(1.0, seed=1)
    targets = [TargetSpec(metric="recall_at_5", max_drop=0.01), TargetSpec(metric="p95_ms", max=1.0)]
    decision = GatePolicy(tuple(targets), THRESHOLDS, "p95_ms", NOISE).step(evidence(0.5, seed=2, mrr=0.1), base, base)
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
    base = evidence(1.0, seed=1)
    target = TargetSpec(metric="p95_ms", max=1.0)
    decision = GatePolicy(tuple([target]), THRESHOLDS, "p95_ms", NOISE).step(evidence(0.5, seed=2, mrr=0.1), base, base)
    assert "mrr" in decision.reason
    assert "<= 1" not in decision.reason and "> 1" not in decision.reason
