"""Tests for hardware.benchmark.stats: MLPerf percentile rules, bootstrap CI, cost."""

from __future__ import annotations

import numpy as np
import pytest

from ratchet.hardware.benchmark.stats import (
    MIN_QUERIES_FOR_PERCENTILE,
    cost_per_1k,
    percentile_ms,
    summarize,
)


def test_min_queries_table_matches_mlperf() -> None:
    assert MIN_QUERIES_FOR_PERCENTILE == {50: 1, 90: 64, 95: 300, 99: 662}


@pytest.mark.parametrize("q", [50, 90, 95, 99])
def test_percentile_matches_numpy_linear(q: int) -> None:
    rng = np.random.default_rng(1)
    latencies = rng.lognormal(mean=-4.0, sigma=0.5, size=1000)
    expected = np.percentile(latencies, q, method="linear") * 1e3
    assert percentile_ms(latencies.tolist(), q) == pytest.approx(expected)


def test_percentile_known_values() -> None:
    latencies = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile_ms(latencies, 50) == pytest.approx(50.5)
    assert percentile_ms(latencies, 90) == pytest.approx(90.1)


@pytest.mark.parametrize(("q", "threshold"), [(50, 1), (90, 64), (95, 300), (99, 662)])
def test_percentile_none_below_threshold(q: int, threshold: int) -> None:
    assert percentile_ms([0.001] * (threshold - 1), q) is None
    assert percentile_ms([0.001] * threshold, q) == pytest.approx(1.0)


def test_percentile_rejects_untabulated_q() -> None:
    with pytest.raises(ValueError, match="p97"):
        percentile_ms([0.001] * 1000, 97)


def test_summarize_fields() -> None:
    summary = summarize([1.0, 2.0, 3.0], duration_s=2.0, samples_per_query=4)
    assert summary.count == 3
    assert summary.mean_ms == pytest.approx(2000.0)
    assert summary.stdev_pct == pytest.approx(50.0)  # sd 1 s / mean 2 s
    assert summary.throughput_rps == pytest.approx(6.0)  # 3 queries * 4 samples / 2 s
    assert summary.p50_ms == pytest.approx(2000.0)
    assert summary.p90_ms is None and summary.p95_ms is None and summary.p99_ms is None


def test_summarize_single_query_has_zero_spread() -> None:
    assert summarize([0.5], duration_s=1.0).stdev_pct == 0.0


def test_summarize_to_dict_is_plain_data() -> None:
    data = summarize([0.001] * 100, duration_s=0.1).to_dict()
    assert data["count"] == 100
    assert data["p90_ms"] == pytest.approx(1.0)
    assert data["p95_ms"] is None
    assert data["throughput_rps"] == pytest.approx(1000.0)
    assert all(v is None or isinstance(v, (int, float)) for v in data.values())


def test_summarize_rejects_empty_and_zero_duration() -> None:
    with pytest.raises(ValueError):
        summarize([], duration_s=1.0)
    with pytest.raises(ValueError):
        summarize([0.1], duration_s=0.0)


def test_cost_per_1k_worked_examples() -> None:
    # $3.60/h at 1 req/s: 1000 requests take 1000 s = 1/3.6 h -> $1.00
    assert cost_per_1k(3.6, 1.0) == pytest.approx(1.0)
    # $2.00/h at 50 req/s: 1000 requests take 20 s -> 2 * 20 / 3600 = $0.01111
    assert cost_per_1k(2.0, 50.0) == pytest.approx(2.0 * 20 / 3600)


def test_cost_per_1k_without_throughput() -> None:
    assert cost_per_1k(2.0, 0.0) is None
    assert cost_per_1k(2.0, None) is None
    with pytest.raises(ValueError):
        cost_per_1k(2.0, -1.0)
