"""Tests for hardware.benchmark.loadgen: scenarios, stop rules, queueing, truncation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from ratchet.hardware.benchmark.loadgen import Budget, LoadResult, Scenario, run_scenario


class FakeTime:
    """A clock that only moves when the SUT works or the harness sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeSut:
    """Takes `service_s` per batch on the fake clock and records what it saw."""

    def __init__(self, fake_time: FakeTime, service_s: float) -> None:
        self.fake_time = fake_time
        self.service_s = service_s
        self.batches: list[list[str]] = []

    def __call__(self, batch: Sequence[str]) -> None:
        self.batches.append(list(batch))
        self.fake_time.now += self.service_s


def _run_fake(
    scenario: Scenario, budget: Budget, service_s: float = 0.01, **kwargs: Any
) -> tuple[LoadResult, FakeSut]:
    """Run `scenario` on queries a, b, c against a FakeSut on a fresh fake clock."""
    fake_time = FakeTime()
    sut = FakeSut(fake_time, service_s)
    result = run_scenario(
        sut, ["a", "b", "c"], scenario, budget, clock=fake_time.clock, sleep=fake_time.sleep, **kwargs
    )
    return result, sut


def test_single_stream_real_clock_latency_matches_service_time() -> None:
    calls: list[int] = []

    def sut(batch: Sequence[str]) -> None:
        calls.append(len(batch))
        time.sleep(0.002)

    result = run_scenario(sut, ["q"], Scenario.SINGLE_STREAM, Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=30))
    summary = result.summary()
    assert summary.count == 30
    assert min(result.latencies_s) >= 0.002
    assert 2.0 <= summary.p50_ms < 10.0  # generous upper bound for loaded CI machines
    assert len(calls) == 31  # one warm-up call plus 30 measured
    assert not result.truncated


def test_single_stream_stop_rule_needs_min_queries() -> None:
    result, _ = _run_fake(Scenario.SINGLE_STREAM, Budget(warmup_s=0.0, min_duration_s=0.05, min_queries=20))
    assert len(result.latencies_s) == 20
    assert result.duration_s == pytest.approx(0.2)
    assert result.latencies_s == pytest.approx([0.01] * 20)


def test_single_stream_stop_rule_needs_min_duration() -> None:
    result, _ = _run_fake(Scenario.SINGLE_STREAM, Budget(warmup_s=0.0, min_duration_s=0.5, min_queries=5))
    assert result.duration_s >= 0.5
    assert len(result.latencies_s) == pytest.approx(50, abs=1)


def test_warmup_is_not_recorded() -> None:
    result, sut = _run_fake(Scenario.SINGLE_STREAM, Budget(warmup_s=0.05, min_duration_s=0.0, min_queries=10))
    assert len(result.latencies_s) == 10
    assert len(sut.batches) - len(result.latencies_s) == pytest.approx(5, abs=1)


def test_batches_cycle_through_queries() -> None:
    result, sut = _run_fake(
        Scenario.SINGLE_STREAM, Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=2), batch_size=2
    )
    assert sut.batches == [["a", "b"], ["c", "a"], ["b", "c"]]  # warm-up, then two measured
    assert result.samples_per_query == 2


def test_offline_throughput_counts_samples_fake_clock() -> None:
    result, _ = _run_fake(
        Scenario.OFFLINE, Budget(warmup_s=0.0, min_duration_s=0.1, min_queries=4), service_s=0.002, batch_size=8
    )
    summary = result.summary()
    assert result.scenario is Scenario.OFFLINE
    assert summary.throughput_rps == pytest.approx(8 / 0.002)
    assert summary.count == len(result.latencies_s) >= 4


def test_offline_throughput_real_clock() -> None:
    def sut(batch: Sequence[str]) -> None:
        time.sleep(0.002)

    result = run_scenario(
        sut, ["q"], Scenario.OFFLINE, Budget(warmup_s=0.0, min_duration_s=0.1, min_queries=10), batch_size=16
    )
    ideal = 16 / 0.002
    assert 0.25 * ideal < result.summary().throughput_rps <= ideal  # sleep only overshoots


def test_server_low_load_latency_is_service_time() -> None:
    result, _ = _run_fake(
        Scenario.SERVER, Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=50), target_qps=1.0
    )
    # Arrivals are 100x slower than service, so a query almost never finds the
    # server busy (an exponential gap < 10 ms has probability ~1%).
    at_service_time = [lat for lat in result.latencies_s if lat == pytest.approx(0.01)]
    assert len(at_service_time) >= 0.9 * len(result.latencies_s)
    assert min(result.latencies_s) >= 0.01 - 1e-12
    assert result.summary().p50_ms == pytest.approx(10.0)
    assert result.duration_s > 10.0  # ~50 arrivals at 1/s, all waited for


def test_server_overload_counts_queueing() -> None:
    result, _ = _run_fake(
        Scenario.SERVER, Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=200), target_qps=1000.0
    )
    latencies = result.latencies_s
    assert min(latencies) >= 0.01 - 1e-12
    # Arrivals at 1000/s vs service at 100/s: the queue (and latency) grows steadily.
    assert sum(latencies[-20:]) / 20 > 10 * sum(latencies[:20]) / 20
    assert latencies[-1] > 1.0


def test_server_is_deterministic_per_seed() -> None:
    budget = Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=30)
    first, _ = _run_fake(Scenario.SERVER, budget, target_qps=150.0, seed=3)
    second, _ = _run_fake(Scenario.SERVER, budget, target_qps=150.0, seed=3)
    other, _ = _run_fake(Scenario.SERVER, budget, target_qps=150.0, seed=4)
    assert first.latencies_s == second.latencies_s
    assert first.latencies_s != other.latencies_s


@pytest.mark.parametrize("target_qps", [None, 0.0, -5.0])
def test_server_requires_positive_target_qps(target_qps: float | None) -> None:
    def sut(batch: Sequence[str]) -> None:
        raise AssertionError("must fail before calling the SUT")

    with pytest.raises(ValueError, match="target_qps"):
        run_scenario(sut, ["q"], Scenario.SERVER, Budget(0.0, 0.0, 1), target_qps=target_qps)


def test_max_duration_truncates() -> None:
    result, _ = _run_fake(
        Scenario.SINGLE_STREAM, Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=1000, max_duration_s=0.1)
    )
    assert result.truncated
    assert len(result.latencies_s) == pytest.approx(10, abs=1)
    assert result.summary().count == len(result.latencies_s)


def test_budget_met_before_cap_is_not_truncated() -> None:
    result, _ = _run_fake(
        Scenario.SERVER,
        Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=5, max_duration_s=100.0),
        target_qps=10.0,
    )
    assert not result.truncated
    assert len(result.latencies_s) == 5


def test_on_progress_reports_each_query() -> None:
    seen: list[tuple[int, int]] = []
    _run_fake(
        Scenario.OFFLINE,
        Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=3),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_budget_validation() -> None:
    with pytest.raises(ValueError):
        Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=0)
    with pytest.raises(ValueError):
        Budget(warmup_s=-1.0, min_duration_s=0.0, min_queries=1)
    with pytest.raises(ValueError):
        Budget(warmup_s=0.0, min_duration_s=0.0, min_queries=1, max_duration_s=0.0)


def test_scenario_values() -> None:
    assert [s.value for s in Scenario] == ["single-stream", "server", "offline"]
