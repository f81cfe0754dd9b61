"""Tests for ratchet.hardware.benchmark.paired on synthetic latency streams with a drifting machine.

A variant's latency is its own cost times the machine's slowness at that moment (times lognormal noise).
The candidate truly takes 0.7x the reference. Measured one after the other, a machine that slows down in
between makes the candidate look slower with a tight interval: a confident, wrong verdict. Measured in
interleaved blocks, the drift hits both sides of every pair and the estimate recovers 0.7.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from ratchet.hardware.benchmark.paired import (
    abba_order, block_statistic, coefficient_of_variation, min_block_queries, paired_ratio,
)

TRUE_RATIO = 0.7
REFERENCE_S, BLOCK, PAIRS = 0.010, 200, 10
Slowness = Callable[[float], float]  # time in [0, 1) -> machine slowdown factor


def step(t: float) -> float:
    """A neighbour starts a job halfway through: everything takes twice as long."""
    return 1.0 if t < 0.5 else 2.0


def ramp(t: float) -> float:
    """The machine slows down steadily (thermal throttling, a growing backlog), to 4x by the end."""
    return 1.0 + 3 * t


def quiet(t: float) -> float:
    return 1.0


def sequential_ratio(candidate: list[float], reference: list[float], stat: str) -> tuple[float, float]:
    """The estimate the gate used before paired comparisons: a percentile bootstrap (95%) of the ratio of the
    statistic over two independently resampled pools, as if the samples were i.i.d."""
    rng = np.random.default_rng(0)
    cand, ref = np.asarray(candidate), np.asarray(reference)

    def of(rows: np.ndarray) -> np.ndarray:
        return rows.mean(axis=-1) if stat == "mean" else np.percentile(rows, int(stat[1:]), axis=-1)

    ratios = of(cand[rng.integers(0, cand.size, (1000, cand.size))]) / of(ref[rng.integers(0, ref.size, (1000, ref.size))])
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def run(cost_s: float, start: float, end: float, n: int, slowness: Slowness, rng: np.random.Generator) -> list[float]:
    times = np.linspace(start, end, n, endpoint=False)
    return [cost_s * slowness(t) * rng.lognormal(0, 0.1) for t in times]


def interleaved(slowness: Slowness, seed: int = 0) -> tuple[list[list[float]], list[list[float]]]:
    """ABBA blocks spread over the whole window."""
    rng = np.random.default_rng(seed)
    order = abba_order(PAIRS)
    ref, cand = [], []
    for i, side in enumerate(order):
        start, end = i / len(order), (i + 1) / len(order)
        if side == "R":
            ref.append(run(REFERENCE_S, start, end, BLOCK, slowness, rng))
        else:
            cand.append(run(REFERENCE_S * TRUE_RATIO, start, end, BLOCK, slowness, rng))
    return ref, cand


def sequential(slowness: Slowness, seed: int = 0) -> tuple[list[float], list[float]]:
    """Reference in the first half of the window, candidate in the second."""
    rng = np.random.default_rng(seed)
    n = BLOCK * PAIRS
    return run(REFERENCE_S, 0, 0.5, n, slowness, rng), run(REFERENCE_S * TRUE_RATIO, 0.5, 1, n, slowness, rng)


@pytest.mark.parametrize("slowness", [step, ramp], ids=["step-change", "slow-ramp"])
@pytest.mark.parametrize("stat", ["p50", "p95", "mean"])
def test_interleaved_recovers_the_true_ratio_where_sequential_is_confidently_wrong(slowness: Slowness, stat: str) -> None:
    ref, cand = sequential(slowness)
    low, high = sequential_ratio(cand, ref, stat)
    assert low > 1.0, "the sequential estimate calls the faster candidate slower, with a tight interval"
    paired = paired_ratio(*interleaved(slowness), stat=stat)
    assert paired.low <= TRUE_RATIO <= paired.high
    assert paired.significantly_lower
    assert paired.ratio == pytest.approx(TRUE_RATIO, rel=0.05)


def test_on_a_quiet_machine_the_interval_is_tight_and_the_reference_stable() -> None:
    paired = paired_ratio(*interleaved(quiet), stat="p95")
    assert paired.ratio == pytest.approx(TRUE_RATIO, rel=0.03) and paired.high - paired.low < 0.05
    assert paired.reference_cv < 0.03 and paired.pairs == PAIRS


@pytest.mark.parametrize(("slowness", "noisy"), [(step, True), (ramp, True), (quiet, False)])
def test_the_reference_spread_flags_a_drifting_machine(slowness: Slowness, noisy: bool) -> None:
    assert (paired_ratio(*interleaved(slowness), stat="p95").reference_cv > 0.10) is noisy


def test_same_variant_on_both_sides_is_not_a_difference() -> None:
    """The ABBA order matters: plain alternation (RCRC...) would put every candidate block later on the ramp."""
    rng = np.random.default_rng(3)
    order = abba_order(PAIRS)
    blocks = [run(REFERENCE_S, i / len(order), (i + 1) / len(order), BLOCK, ramp, rng) for i in range(len(order))]
    ref = [b for b, side in zip(blocks, order) if side == "R"]
    cand = [b for b, side in zip(blocks, order) if side == "C"]
    assert paired_ratio(ref, cand, stat="p50").low <= 1.0 <= paired_ratio(ref, cand, stat="p50").high
    alternating = paired_ratio(blocks[0::2], blocks[1::2], stat="p50")
    assert alternating.significantly_higher


def test_abba_order_alternates_in_quads_with_equal_counts() -> None:
    order = abba_order(4)
    assert "".join(order) == "RCCRRCCR"
    assert order.count("R") == order.count("C") == 4


def test_blocks_too_small_or_too_few_are_refused() -> None:
    assert min_block_queries("p95") == 40 and min_block_queries("p99") == 200 and min_block_queries("mean") == 2
    with pytest.raises(ValueError, match="at least 40 queries"):
        block_statistic([0.01] * 39, "p95")
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_ratio([[0.01] * 50], [[0.01] * 50], stat="p95")
    with pytest.raises(ValueError, match="unpaired"):
        paired_ratio([[0.01] * 50] * 3, [[0.01] * 50] * 2)


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([1.0, 1.0, 1.0]) == 0.0
    assert coefficient_of_variation([1.0]) == 0.0
    assert coefficient_of_variation([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2)
