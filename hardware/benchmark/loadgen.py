"""Drive a synchronous system under test through MLPerf-LoadGen-style scenarios.

The three scenarios answer different questions: single-stream gives the latency
one user sees, server gives the latency under a Poisson arrival rate (queueing
included, which is what a deployment actually experiences), and offline gives
peak throughput.  The system under test is any callable taking a batch of query
payloads, so the same harness measures a model, an HTTP client or a test fake.
`clock` and `sleep` are injectable so the timing logic is testable without
real waiting.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

import numpy as np

from ratchet.hardware.benchmark.stats import LatencySummary, summarize

Q = TypeVar("Q")
SystemUnderTest = Callable[[Sequence[Q]], object]
Clock = Callable[[], float]
Sleep = Callable[[float], None]
ProgressFn = Callable[[int, int], None]


class Scenario(str, Enum):
    """MLPerf inference scenarios; values match MLPerf's spelling for reports."""

    SINGLE_STREAM = "single-stream"
    SERVER = "server"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Budget:
    """How long to measure.

    Measurement stops only once both `min_duration_s` and `min_queries` are met
    (MLPerf rule: enough time to see slow periodic effects, enough queries for the
    tail percentiles).  `max_duration_s` is a safety cap for slow systems; hitting
    it marks the result as truncated.
    """

    warmup_s: float
    min_duration_s: float
    min_queries: int
    max_duration_s: float | None = None

    def __post_init__(self) -> None:
        """Reject budgets that could never start or never stop sensibly."""
        if self.warmup_s < 0 or self.min_duration_s < 0:
            raise ValueError("warmup_s and min_duration_s must be non-negative")
        if self.min_queries < 1:
            raise ValueError(f"min_queries must be >= 1, got {self.min_queries}")
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive or None, got {self.max_duration_s}")


@dataclass
class LoadResult:
    """Raw outcome of one scenario run: one latency per issued query."""

    scenario: Scenario
    latencies_s: list[float]
    duration_s: float
    samples_per_query: int
    truncated: bool

    def summary(self) -> LatencySummary:
        """Percentiles, spread and per-sample throughput of this run."""
        return summarize(self.latencies_s, self.duration_s, self.samples_per_query)


@dataclass
class _Measurement:
    """Mutable state shared by the scenario loops: timing, stop rule and recording."""

    budget: Budget
    clock: Clock
    on_progress: ProgressFn | None
    start: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    truncated: bool = False

    def begin(self) -> None:
        """Mark the start of the measured window."""
        self.start = self.clock()

    def should_stop(self) -> bool:
        """Apply the MLPerf stop rule, falling back to the hard cap."""
        elapsed = self.clock() - self.start
        done = len(self.latencies_s)
        if done >= self.budget.min_queries and elapsed >= self.budget.min_duration_s:
            return True
        cap = self.budget.max_duration_s
        self.truncated = cap is not None and elapsed >= cap
        return self.truncated

    def record(self, latency_s: float) -> None:
        """Store one query's latency and report progress."""
        self.latencies_s.append(latency_s)
        if self.on_progress is not None:
            self.on_progress(len(self.latencies_s), self.budget.min_queries)

    def result(self, scenario: Scenario, batch_size: int) -> LoadResult:
        """Close the measured window at the last completion."""
        return LoadResult(
            scenario=scenario,
            latencies_s=self.latencies_s,
            duration_s=self.clock() - self.start,
            samples_per_query=batch_size,
            truncated=self.truncated,
        )


def _cyclic_batches(queries: Sequence[Q], batch_size: int) -> Iterator[list[Q]]:
    """Endless batches drawn cyclically from `queries`, so any budget can be met
    with a finite query set."""
    payloads = itertools.cycle(queries)
    while True:
        yield list(itertools.islice(payloads, batch_size))


def _warm_up(sut: SystemUnderTest[Q], batches: Iterator[list[Q]], warmup_s: float, clock: Clock) -> None:
    """Call the SUT unrecorded for `warmup_s` (at least once) so lazy initialisation,
    JIT compilation and caches do not pollute the measurement."""
    start = clock()
    sut(next(batches))
    while clock() - start < warmup_s:
        sut(next(batches))


def _sleep_until(deadline: float, clock: Clock, sleep: Sleep) -> None:
    """Sleep until `deadline`, re-checking because sleep may wake early."""
    while (remaining := deadline - clock()) > 0:
        sleep(remaining)


def _run_back_to_back(sut: SystemUnderTest[Q], batches: Iterator[list[Q]], run: _Measurement) -> None:
    """Issue each batch as soon as the previous one completes; latency = completion - issue.

    This is single-stream, and also offline: with a synchronous SUT, "all queries
    available at once" means feeding batches without gaps, and the metric of
    interest is the resulting throughput.
    """
    while not run.should_stop():
        issued = run.clock()
        sut(next(batches))
        run.record(run.clock() - issued)


def _run_server(
    sut: SystemUnderTest[Q],
    batches: Iterator[list[Q]],
    run: _Measurement,
    target_qps: float,
    seed: int,
    sleep: Sleep,
) -> None:
    """Serve a simulated Poisson arrival stream FIFO with a single server.

    Latency is measured from each query's *scheduled* arrival, so time spent
    queueing behind earlier queries counts, as it would for a real client.
    """
    rng = np.random.default_rng(seed)
    mean_gap_s = 1.0 / target_qps
    arrival = run.start + rng.exponential(mean_gap_s)
    while not run.should_stop():
        _sleep_until(arrival, run.clock, sleep)
        sut(next(batches))
        run.record(run.clock() - arrival)
        arrival += rng.exponential(mean_gap_s)


def _validate(queries: Sequence[Q], scenario: Scenario, batch_size: int, target_qps: float | None) -> None:
    """Fail before warm-up, so a misconfigured run costs nothing."""
    if not queries:
        raise ValueError("queries must not be empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if scenario is Scenario.SERVER and (target_qps is None or target_qps <= 0):
        raise ValueError(f"the server scenario needs target_qps > 0 (Poisson arrival rate), got {target_qps}")


def run_scenario(
    sut: SystemUnderTest[Q],
    queries: Sequence[Q],
    scenario: Scenario,
    budget: Budget,
    batch_size: int = 1,
    target_qps: float | None = None,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
    clock: Clock = time.perf_counter,
    sleep: Sleep = time.sleep,
) -> LoadResult:
    """Warm up `sut`, then measure it under `scenario` until `budget` is satisfied.

    Each query is a batch of `batch_size` payloads taken cyclically from `queries`.
    `target_qps` (queries per second) and `seed` drive the server scenario's
    arrivals; `on_progress(done, min_queries)` is called after every query.
    """
    _validate(queries, scenario, batch_size, target_qps)
    batches = _cyclic_batches(queries, batch_size)
    _warm_up(sut, batches, budget.warmup_s, clock)
    run: _Measurement = _Measurement(budget=budget, clock=clock, on_progress=on_progress)
    run.begin()
    if scenario is Scenario.SERVER:
        assert target_qps is not None  # guaranteed by _validate; narrows the type
        _run_server(sut, batches, run, target_qps, seed, sleep)
    else:
        _run_back_to_back(sut, batches, run)
    return run.result(scenario, batch_size)
