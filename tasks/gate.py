"""Gates: does a candidate replace the champion, and does the final champion meet every target?

Targets are Olive-style goals: absolute (``p95_ms`` at most X) or relative to
the baseline (a quality drop at most X, a latency improvement at least X).
Speed claims must beat the measurement noise: a candidate is faster only when
the bootstrap confidence interval of its latency ratio lies below 1.

Three stages use the same criteria:
* ``step``: quality, memory and size targets and the rubric thresholds must hold
  (on the tuning split), and the objective must improve on the champion beyond
  noise. Absolute latency and cost targets are recorded but do not block: the
  pipeline is allowed to get there in several steps.
* ``final``: every target must hold, quality re-checked on the held-out split.
* ``compile``: a compiled artifact must compute what its source computes (parity)
  and hold the quality, memory and size targets on the held-out split; its speed
  against the champion is recorded, not required (it is the champion's form for
  another engine, not a new candidate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratchet.hardware.benchmark.stats import bootstrap_ratio_ci
from ratchet.hardware.parity import Parity

Family = Literal["latency", "throughput", "cost", "memory", "size", "quality"]


@dataclass(frozen=True)
class MetricInfo:
    family: Family
    higher_is_better: bool
    unit: str


METRICS: dict[str, MetricInfo] = {
    "p50_ms": MetricInfo("latency", False, "ms"),
    "p90_ms": MetricInfo("latency", False, "ms"),
    "p95_ms": MetricInfo("latency", False, "ms"),
    "p99_ms": MetricInfo("latency", False, "ms"),
    "mean_ms": MetricInfo("latency", False, "ms"),
    "throughput_rps": MetricInfo("throughput", True, "req/s"),
    "cost_per_1k": MetricInfo("cost", False, "USD"),
    "peak_rss_mb": MetricInfo("memory", False, "MB"),
    "peak_device_mb": MetricInfo("memory", False, "MB"),
    "size_mb": MetricInfo("size", False, "MB"),
    "rubric_score": MetricInfo("quality", True, ""),
}
# Which latency statistic a speed metric is bootstrapped on (cost and throughput follow the mean).
BOOTSTRAP_STAT = {"p50_ms": "p50", "p90_ms": "p90", "p95_ms": "p95", "p99_ms": "p99", "mean_ms": "mean",
                  "cost_per_1k": "mean", "throughput_rps": "mean"}
OBJECTIVES = tuple(BOOTSTRAP_STAT)
STEP_BLOCKING: set[Family] = {"quality", "memory", "size"}


def metric_info(name: str) -> MetricInfo:
    """Known metrics, plus rubric criterion names, which are quality scores in [0, 1]."""
    return METRICS.get(name, MetricInfo("quality", True, ""))


class TargetSpec(BaseModel):
    """One goal on one metric; exactly one bound is given."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    max: float | None = None
    min: float | None = None
    max_drop: float | None = Field(None, ge=0, description="Largest allowed worsening vs the baseline, in the metric's units.")
    max_relative_drop: float | None = Field(None, ge=0, le=1, description="Largest allowed worsening vs the baseline, as a fraction.")
    min_improvement: float | None = Field(None, ge=0, lt=1, description="Smallest required improvement vs the baseline, as a fraction.")

    @model_validator(mode="after")
    def _one_bound(self) -> "TargetSpec":
        given = [k for k in ("max", "min", "max_drop", "max_relative_drop", "min_improvement") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"target on {self.metric!r} needs exactly one of max, min, max_drop, max_relative_drop, min_improvement (got {given or 'none'})"
            )
        if self.min_improvement is not None and self.metric not in BOOTSTRAP_STAT:
            raise ValueError(f"min_improvement applies to latency, cost or throughput metrics, not {self.metric!r}")
        return self

    @property
    def bound(self) -> tuple[str, float]:
        """The one bound given, as (kind, value)."""
        return next((k, v) for k, v in self.model_dump().items() if k != "metric" and v is not None)


class NoiseSpec(BaseModel):
    """How sure a speed-up must be before it counts."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(0.95, gt=0.5, lt=1)
    n_resamples: int = Field(1000, ge=100, le=100_000)


@dataclass
class GateCriterion:
    """One line of a gate decision: what was measured, against what, and why it passed or failed."""

    name: str
    metric: str
    measured: float | None
    threshold: float | None
    passed: bool
    blocking: bool
    reason: str


Stage = Literal["step", "final", "compile"]


@dataclass
class GateDecision:
    stage: Stage
    criteria: list[GateCriterion]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria if c.blocking)

    @property
    def reason(self) -> str:
        """The first blocking failure, or a one-line success."""
        failed = [c.reason for c in self.criteria if c.blocking and not c.passed]
        return "; ".join(failed) if failed else "all criteria passed"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "passed": self.passed, "reason": self.reason,
                "criteria": [asdict(c) for c in self.criteria]}


@dataclass
class Evidence:
    """What the gate needs about one variant: flat metrics and the raw latencies behind them."""

    metrics: dict[str, float | None]
    latencies_s: Sequence[float]
    split: str = "tuning"  # where the quality metrics come from


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def check_target(target: TargetSpec, candidate: Evidence, baseline: Evidence, blocking: bool, noise: NoiseSpec) -> GateCriterion:
    """Evaluate one target; a missing metric fails it."""
    kind, bound = target.bound
    name = f"{target.metric} {kind} {bound:g}"
    value = candidate.metrics.get(target.metric)
    if value is None:
        return GateCriterion(name, target.metric, None, bound, False, blocking, f"{target.metric} was not measured")
    info = metric_info(target.metric)
    if kind == "max":
        ok = value <= bound
        return GateCriterion(name, target.metric, value, bound, ok, blocking, f"{target.metric} {_fmt(value)} {'<=' if ok else '>'} {bound:g}")
    if kind == "min":
        ok = value >= bound
        return GateCriterion(name, target.metric, value, bound, ok, blocking, f"{target.metric} {_fmt(value)} {'>=' if ok else '<'} {bound:g}")
    base = baseline.metrics.get(target.metric)
    if base is None:
        return GateCriterion(name, target.metric, value, bound, False, blocking, f"baseline {target.metric} was not measured")
    if kind == "min_improvement":
        ci = speed_ratio(target.metric, candidate, baseline, noise)
        limit = 1 - bound
        ok = ci is not None and ci.high <= limit
        detail = "too few latencies to bootstrap" if ci is None else f"ratio to baseline {ci.ratio:.3f} [{ci.low:.3f}, {ci.high:.3f}]"
        return GateCriterion(name, target.metric, value, limit, ok, blocking,
                             f"{target.metric} {detail}, needs <= {limit:.3f} beyond noise")
    worsening = (base - value) if info.higher_is_better else (value - base)
    if kind == "max_relative_drop":
        worsening = worsening / abs(base) if base else (math.inf if worsening > 0 else 0.0)
    ok = worsening <= bound
    change = f"worse by {worsening:.4g}" if worsening > 0 else "no worse"
    return GateCriterion(name, target.metric, value, bound, ok, blocking,
                         f"{target.metric} {_fmt(value)} vs baseline {_fmt(base)}: {change} ({kind} {bound:g})")


def speed_ratio(metric: str, candidate: Evidence, reference: Evidence, noise: NoiseSpec):
    """Bootstrap CI of candidate/reference latency for ``metric``; None when samples are too small."""
    try:
        return bootstrap_ratio_ci(candidate.latencies_s, reference.latencies_s, stat=BOOTSTRAP_STAT[metric],
                                  n_resamples=noise.n_resamples, confidence=noise.confidence)
    except ValueError:
        return None


def improvement_criterion(objective: str, candidate: Evidence, champion: Evidence, noise: NoiseSpec) -> GateCriterion:
    """The ratchet's own rule: the candidate must beat the champion on the objective beyond noise."""
    ci = speed_ratio(objective, candidate, champion, noise)
    value = candidate.metrics.get(objective)
    name = f"{objective} improves on champion"
    if ci is None:
        return GateCriterion(name, objective, value, 1.0, False, True, f"{objective}: too few latencies to compare with the champion")
    # Throughput is higher-is-better, but its bootstrap runs on latency: a lower latency ratio is always better.
    span = f"{ci.ratio:.2f}x the champion's latency ({noise.confidence:.0%} CI {ci.low:.2f}-{ci.high:.2f})"
    if ci.significantly_lower:
        return GateCriterion(name, objective, value, 1.0, True, True, f"{objective}: {span}, faster beyond noise")
    verdict = "slower" if ci.significantly_higher else "no speed-up beyond noise"
    return GateCriterion(name, objective, value, 1.0, False, True, f"{objective}: {span}, {verdict}")


def rubric_criteria(thresholds: dict[str, float], candidate: Evidence) -> list[GateCriterion]:
    """Each rubric criterion must reach its own threshold (on the split the evidence comes from)."""
    out = []
    for name, threshold in thresholds.items():
        value = candidate.metrics.get(name)
        ok = value is not None and value >= threshold
        out.append(GateCriterion(f"rubric {name} >= {threshold:g}", name, value, threshold, ok, True,
                                 f"{name} on {candidate.split} {_fmt(value)} {'>=' if ok else '<'} threshold {threshold:g}"))
    return out


def parity_criteria(parity: Parity, max_abs_tol: float, min_cosine: float) -> list[GateCriterion]:
    """A compiled artifact against its source's outputs, with the numbers in the reason (like optimum's export check)."""
    max_abs_diff, mean_cosine = parity.max_abs_diff, parity.mean_cosine
    diff_ok, cos_ok = max_abs_diff <= max_abs_tol, mean_cosine >= min_cosine
    return [
        GateCriterion(f"parity max_abs_diff <= {max_abs_tol:g}", "parity_max_abs_diff", max_abs_diff, max_abs_tol, diff_ok,
                      True, f"parity: max abs diff {max_abs_diff:.3g} {'<=' if diff_ok else '>'} {max_abs_tol:g}"),
        GateCriterion(f"parity mean_cosine >= {min_cosine:g}", "parity_mean_cosine", mean_cosine, min_cosine, cos_ok,
                      True, f"parity: mean cosine {mean_cosine:.6f} {'>=' if cos_ok else '<'} {min_cosine:g}"),
    ]


@dataclass(frozen=True)
class GatePolicy:
    """The spec's rules for judging a candidate, built once from it: targets, rubric thresholds, the objective
    every step must improve, and how sure a speed-up must be. Each stage (see the module docstring) is a method."""

    targets: tuple[TargetSpec, ...]
    thresholds: dict[str, float]
    objective: str
    noise: NoiseSpec

    def step(self, candidate: Evidence, baseline: Evidence, champion: Evidence) -> GateDecision:
        """Quality, memory and size targets and the rubric thresholds must hold; the objective must improve on the
        champion beyond noise. Latency and cost targets are recorded without blocking."""
        criteria = self._criteria("step", candidate, baseline)
        return GateDecision("step", [*criteria, improvement_criterion(self.objective, candidate, champion, self.noise)])

    def final(self, candidate: Evidence, baseline: Evidence) -> GateDecision:
        """Every target and rubric threshold on the final champion (held-out evidence)."""
        return GateDecision("final", self._criteria("final", candidate, baseline))

    def compile(self, candidate: Evidence, baseline: Evidence, champion: Evidence, parity: Parity,
                max_abs_diff: float, min_cosine: float) -> GateDecision:
        """Parity with the artifact's source within tolerances, quality/memory/size targets (held-out evidence);
        its speed against the champion is recorded, not required."""
        versus = improvement_criterion(self.objective, candidate, champion, self.noise)
        return GateDecision("compile", [*parity_criteria(parity, max_abs_diff, min_cosine),
                                        *self._criteria("compile", candidate, baseline),
                                        replace(versus, name=f"{self.objective} vs champion", blocking=False)])

    def _criteria(self, stage: Stage, candidate: Evidence, baseline: Evidence) -> list[GateCriterion]:
        criteria = rubric_criteria(self.thresholds, candidate)
        for target in self.targets:
            blocking = stage == "final" or metric_info(target.metric).family in STEP_BLOCKING
            criteria.append(check_target(target, candidate, baseline, blocking, self.noise))
        return criteria
