"""Latency statistics for benchmark runs, following MLPerf LoadGen conventions.

Tail percentiles of small samples are noise: the p99 of 50 queries is just the
largest value seen.  MLPerf LoadGen therefore refuses to report a percentile
unless the run issued enough queries, and this module applies the same rule so
that no report shows a meaningless tail.  Comparisons between two variants are
not made from two such summaries (each taken in its own time window) but from
interleaved blocks: ``paired.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_QUERIES_FOR_PERCENTILE: dict[int, int] = {50: 1, 90: 64, 95: 300, 99: 662}
"""Minimum sample size before a percentile is reported (MLPerf LoadGen minimums)."""

PERCENTILE_METHOD = "linear"
"""numpy's default interpolation (Hyndman-Fan type 7); fixed here so results never
silently change with a numpy default."""

def _min_queries(q: float) -> int:
    """Look up the sample-size rule; untabulated percentiles have no agreed minimum."""
    if q not in MIN_QUERIES_FOR_PERCENTILE:
        supported = sorted(MIN_QUERIES_FOR_PERCENTILE)
        raise ValueError(f"no minimum sample size defined for p{q}; use one of {supported}")
    return MIN_QUERIES_FOR_PERCENTILE[int(q)]


def percentile_ms(latencies_s: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile of `latencies_s` in milliseconds, or None if the
    sample is below the MLPerf minimum for that percentile.

    Interpolation is numpy's "linear" method.  Only the percentiles listed in
    MIN_QUERIES_FOR_PERCENTILE are accepted, since others have no defined minimum.
    """
    if len(latencies_s) < _min_queries(q):
        return None
    return float(np.percentile(np.asarray(latencies_s, dtype=float), q, method=PERCENTILE_METHOD)) * 1e3


def _stdev_pct(values: np.ndarray) -> float:
    """Coefficient of variation in percent (sample stdev, ddof=1).

    Zero when it is undefined (fewer than two values, or a zero mean as produced by
    an instantaneous fake system) so summaries stay plain floats.
    """
    mean = float(values.mean())
    if values.size < 2 or mean == 0.0:
        return 0.0
    return float(values.std(ddof=1)) / mean * 100.0


@dataclass(frozen=True)
class LatencySummary:
    """What one benchmark run reports: tail latencies, spread and throughput.

    `throughput_rps` counts requests, where one request is one *sample*: a query
    that carries a batch of N samples contributes N, so batched and unbatched
    runs are comparable.
    """

    count: int
    duration_s: float
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float
    stdev_pct: float
    throughput_rps: float

    def to_dict(self) -> dict[str, int | float | None]:
        """Plain-data form for JSON reports and registries."""
        return asdict(self)


def summarize(latencies_s: Sequence[float], duration_s: float, samples_per_query: int = 1) -> LatencySummary:
    """Summarise one run: `latencies_s` has one entry per query, `duration_s` is the
    wall time of the measured window, and each query carried `samples_per_query`
    samples (throughput = queries * samples_per_query / duration_s).
    """
    if not latencies_s:
        raise ValueError("cannot summarise a run with no completed queries")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if samples_per_query < 1:
        raise ValueError(f"samples_per_query must be >= 1, got {samples_per_query}")
    values = np.asarray(latencies_s, dtype=float)
    return LatencySummary(
        count=int(values.size),
        duration_s=float(duration_s),
        p50_ms=percentile_ms(latencies_s, 50),
        p90_ms=percentile_ms(latencies_s, 90),
        p95_ms=percentile_ms(latencies_s, 95),
        p99_ms=percentile_ms(latencies_s, 99),
        mean_ms=float(values.mean()) * 1e3,
        stdev_pct=_stdev_pct(values),
        throughput_rps=values.size * samples_per_query / duration_s,
    )


def cost_per_1k(price_per_hour: float, throughput_rps: float | None) -> float | None:
    """Cost of serving 1,000 requests at a sustained throughput.

    cost_per_1k = price_per_hour * 1000 / (3600 * throughput_rps)

    None when there is no throughput (0 or None), since the cost is then unbounded
    rather than a number a ranking could use.
    """
    if not throughput_rps:
        return None
    if throughput_rps < 0 or math.isnan(throughput_rps):
        raise ValueError(f"throughput_rps must be non-negative, got {throughput_rps}")
    return price_per_hour * 1000.0 / (3600.0 * throughput_rps)


def cost_per_1k_busy(price_per_hour: float, busy_s_per_request: float) -> float:
    """Cost of 1,000 requests from the time the machine was busy serving them (open-loop arrivals).

    Under open-loop arrivals the throughput is the arrival rate whatever the variant, so the throughput formula
    would price every variant alike; what a faster stack saves is busy time (an idle machine can take other
    work, or fewer replicas serve the rate): cost_per_1k = price_per_hour * 1000 * busy_s_per_request / 3600.
    """
    return price_per_hour * 1000.0 * busy_s_per_request / 3600.0
