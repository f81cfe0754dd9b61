"""Paired, interleaved comparison of two variants' latencies: what a gate's speed verdict rests on.

Two variants measured one after the other, in separate time windows, compare
the machine as much as the variants: anything that changes between the two
windows (another tenant, CPU frequency, a backup job) becomes part of the
"effect", and a bootstrap over the pooled samples, which treats them as
independent, cannot see it. Here the reference (the champion, or the baseline
at the final gate) and the candidate run in alternating short blocks, each in
its own warm process, in ABBA order (Google Benchmark's random interleaving
and pyperf's many-runs comparison are the same idea): slow drift of the
machine hits both sides of every adjacent pair alike.

The estimate is the geometric mean of the per-pair ratios of a block
statistic (p50, p95, mean, ...), with a Student-t interval on the log ratios:
a paired design with few, independent pairs, like ``pyperf compare_to``. The
reference's own block-to-block spread (its coefficient of variation) says how
stable the machine was during the comparison; above the spec's tolerance the
comparison is *inconclusive*, never "faster" or "slower".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

STATS = ("p50", "p90", "p95", "p99", "mean")


def abba_order(pairs: int) -> list[str]:
    """Block order for ``pairs`` pairs: ``R C C R R C C R ...`` (``R`` reference, ``C`` candidate).

    Within each ABBA quad a linear drift adds the same amount to both sides; equal counts either way.
    """
    quad = ["R", "C", "C", "R"]
    return [quad[i % 4] for i in range(2 * pairs)]


def min_block_queries(stat: str) -> int:
    """Queries a block needs before its statistic means something: at least two samples beyond a percentile."""
    if stat == "mean":
        return 2
    q = _percentile(stat)
    return math.ceil(2 / (1 - q / 100))


def block_statistic(latencies_s: Sequence[float], stat: str) -> float:
    values = np.asarray(latencies_s, dtype=float)
    if len(values) < min_block_queries(stat):
        raise ValueError(f"a block's {stat} needs at least {min_block_queries(stat)} queries, got {len(values)}")
    return float(values.mean() if stat == "mean" else np.percentile(values, _percentile(stat)))


def _percentile(stat: str) -> int:
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; use one of {STATS}")
    return int(stat[1:])


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation over the mean (0 for fewer than two values)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / values.mean()) if len(values) > 1 and values.mean() > 0 else 0.0


@dataclass(frozen=True)
class PairedRatio:
    """candidate / reference for one statistic, from adjacent block pairs, and how stable the machine was."""

    stat: str
    ratio: float  # geometric mean of the per-pair ratios
    low: float
    high: float
    confidence: float
    pairs: int
    reference_cv: float  # block-to-block coefficient of variation of the reference's statistic
    candidate_cv: float

    @property
    def significantly_lower(self) -> bool:
        return self.high < 1.0

    @property
    def significantly_higher(self) -> bool:
        return self.low > 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def paired_ratio(reference_blocks: Sequence[Sequence[float]], candidate_blocks: Sequence[Sequence[float]],
                 stat: str = "p95", confidence: float = 0.95) -> PairedRatio:
    """The paired estimate from blocks given in run order (block i of each side ran next to the other's block i).

    Raises ValueError when there are fewer than two pairs or a block is too small for ``stat``.
    """
    from scipy import stats  # only where a comparison is computed: the CLI's fast paths never get here

    if len(reference_blocks) != len(candidate_blocks):
        raise ValueError(f"unpaired blocks: {len(reference_blocks)} reference, {len(candidate_blocks)} candidate")
    if len(reference_blocks) < 2:
        raise ValueError(f"a paired comparison needs at least 2 pairs of blocks, got {len(reference_blocks)}")
    ref = np.array([block_statistic(b, stat) for b in reference_blocks])
    cand = np.array([block_statistic(b, stat) for b in candidate_blocks])
    logs = np.log(cand / ref)
    n = len(logs)
    centre = float(logs.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * logs.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return PairedRatio(stat, math.exp(centre), math.exp(centre - half), math.exp(centre + half), confidence, n,
                       coefficient_of_variation(ref), coefficient_of_variation(cand))
