"""Gates: does a candidate replace the champion, and does the final champion meet every target?

Targets are Olive-style goals: absolute (``p95_ms`` at most X) or relative to
the baseline (a quality drop at most X, a latency improvement at least X).
Speed claims rest on a paired, interleaved comparison (``tasks.compare``):
a candidate is faster only when the interval of its latency ratio to the
reference lies below 1, and when the reference itself wobbled more than the
spec tolerates during the comparison, the verdict is *inconclusive*, never
"faster" or "slower".

Three stages use the same criteria:
* ``step``: quality, memory and size targets and the rubric thresholds must hold
  (on the tuning split), and the objective must improve on the champion beyond
  noise. Absolute latency and cost targets are recorded but do not block: the
  pipeline is allowed to get there in several steps. An *enabling* step (a
  representation change such as an ONNX export, which exists to make later
  steps possible) needs no speed-up, but is still refused when it is slower
  beyond noise.
* ``final``: every target must hold, quality re-checked on the held-out split,
  speed targets against the baseline in a paired comparison of their own.
* ``compile``: a compiled artifact must compute what its source computes (parity)
  and hold the quality, memory and size targets on the held-out split; its speed
  against the champion is recorded, not required (it is the champion's form for
  another engine, not a new candidate).

A metric that was not measured or is not reportable (too few queries, a run
cut short) fails its criterion and says why; nothing here divides by it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratchet.hardware.benchmark.paired import min_block_queries
from ratchet.hardware.parity import Parity

if TYPE_CHECKING:
    from ratchet.tasks.compare import Comparison

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
    # A response cache's share of requests answered from it, and of held-out lookups served a wrong answer.
    "cache_hit_rate": MetricInfo("throughput", True, ""),
    "cache_false_hit_rate": MetricInfo("quality", False, ""),
}
# Which block statistic of the paired comparison a speed metric is judged on (cost and throughput follow the
# mean latency: at a fixed batch size, throughput is its inverse and cost proportional to it).
SPEED_STAT = {"p50_ms": "p50", "p90_ms": "p90", "p95_ms": "p95", "p99_ms": "p99", "mean_ms": "mean",
              "cost_per_1k": "mean", "throughput_rps": "mean"}
OBJECTIVES = tuple(SPEED_STAT)
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
        if self.min_improvement is not None and self.metric not in SPEED_STAT:
            raise ValueError(f"min_improvement applies to latency, cost or throughput metrics, not {self.metric!r}")
        return self

    @property
    def bound(self) -> tuple[str, float]:
        """The one bound given, as (kind, value)."""
        return next((k, v) for k, v in self.model_dump().items() if k != "metric" and v is not None)


class NoiseSpec(BaseModel):
    """How a speed comparison is measured, and how sure and how stable it must be before it counts.

    The reference and the candidate run ``pairs`` pairs of blocks of ``block_queries`` queries each, in
    alternation (``tasks.compare``). When the reference's block-to-block coefficient of variation (of its block
    medians: how steady the machine was, apart from the sampling noise of a tail) exceeds ``max_reference_cv``
    the machine was too unstable to tell: the verdict is inconclusive, retried up to
    ``retries`` times after ``retry_backoff_s`` seconds (doubling each time).
    """

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(0.95, gt=0.5, lt=1)
    pairs: int = Field(8, ge=2, le=64, description="Pairs of interleaved blocks (reference, candidate) per comparison.")
    block_queries: int = Field(100, ge=2, le=100_000, description="Queries per block.")
    max_reference_cv: float = Field(0.10, gt=0, le=1, description="Largest block-to-block CV of the reference "
                                                                   "before a comparison is inconclusive.")
    retries: int = Field(2, ge=0, le=5, description="Times an inconclusive comparison is measured again.")
    retry_backoff_s: float = Field(20.0, ge=0, le=3600, description="Wait before the first retry; doubles each time.")

    def too_noisy(self, comparison: Comparison) -> bool:
        """The machine wobbled more during the comparison than a verdict can rest on."""
        return comparison.reference_cv > self.max_reference_cv

    def check_objective(self, objective: str) -> None:
        """A block must be large enough for the objective's statistic (a block p99 needs 200 queries)."""
        stat = SPEED_STAT[objective]
        if self.block_queries < min_block_queries(stat):
            raise ValueError(f"noise.block_queries: {self.block_queries} queries per block cannot estimate a block "
                             f"{stat} (the objective {objective}); needs at least {min_block_queries(stat)}")


@dataclass
class GateCriterion:
    """One line of a gate decision: what was measured, against what, and why it passed or failed.

    ``inconclusive``: it failed because the measurement could not decide (an unstable machine), not because the
    candidate was found wanting; measuring again on a quieter machine may pass it.
    """

    name: str
    metric: str
    measured: float | None
    threshold: float | None
    passed: bool
    blocking: bool
    reason: str
    inconclusive: bool = False


Stage = Literal["step", "final", "compile"]


@dataclass
class GateDecision:
    stage: Stage
    criteria: list[GateCriterion]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria if c.blocking)

    @property
    def inconclusive(self) -> bool:
        """Failed only on criteria the measurement could not decide: neither accepted nor rejected."""
        failed = [c for c in self.criteria if c.blocking and not c.passed]
        return bool(failed) and all(c.inconclusive for c in failed)

    @property
    def reason(self) -> str:
        """The blocking failures, or a one-line success."""
        failed = [c.reason for c in self.criteria if c.blocking and not c.passed]
        return "; ".join(failed) if failed else "all criteria passed"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "passed": self.passed, "inconclusive": self.inconclusive, "reason": self.reason,
                "criteria": [asdict(c) for c in self.criteria]}


@dataclass
class Evidence:
    """What the gate needs about one variant: flat metrics, quality from ``split``."""

    metrics: dict[str, float | None]
    split: str = "tuning"


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def _absent(metric: str, evidence: Evidence) -> str:
    """Why ``metric`` has no value: measured but not reportable (a percentile needs more queries than the run
    made, or the run was cut short by ``max_duration_s``), or not measured at all."""
    if metric in evidence.metrics:
        return f"{metric} is not reportable (e.g. too few queries for a percentile, or a capped latency run)"
    return f"{metric} was not measured"


def speed_criterion(name: str, metric: str, versus: Comparison | None, noise: NoiseSpec, limit: float = 1.0,
                    blocking: bool = True, enabling: bool = False) -> GateCriterion:
    """``metric`` of the candidate over the reference's, from their paired comparison, must be below ``limit``
    beyond noise (an enabling step: must not be above 1 beyond noise).

    Throughput is higher-is-better, but the comparison runs on latency: a lower latency ratio is always better.
    """
    def result(passed: bool, reason: str, measured: float | None = None, inconclusive: bool = False) -> GateCriterion:
        return GateCriterion(name, metric, measured, limit, passed, blocking, f"{metric}: {reason}", inconclusive)

    if versus is None:
        return result(False, "no paired comparison was measured")
    if versus.error:
        return result(False, versus.error)
    stat = SPEED_STAT[metric]
    ratio = versus.ratios.get(stat)
    if ratio is None:
        return result(False, f"block {stat} is not reportable with {versus.block_queries}-query blocks "
                             f"(needs {min_block_queries(stat)})")
    span = (f"{ratio.ratio:.2f}x the {versus.reference_role}'s latency ({ratio.confidence:.0%} CI "
            f"{ratio.low:.2f}-{ratio.high:.2f}, {ratio.pairs} interleaved pairs)")
    if noise.too_noisy(versus):
        noisy = (f"inconclusive: machine too noisy (reference CV {versus.reference_cv:.0%} > "
                 f"{noise.max_reference_cv:.0%}); {span}")
        return result(enabling, noisy if not enabling else f"speed not judged, {noisy}", ratio.ratio, not enabling)
    if enabling:
        ok = not ratio.significantly_higher
        return result(ok, f"{span}, {'not slower beyond noise (no speed-up needed)' if ok else 'slower'}", ratio.ratio)
    if ratio.high < limit:
        return result(True, f"{span}, {'faster beyond noise' if limit == 1.0 else f'below {limit:.2f} beyond noise'}",
                      ratio.ratio)
    verdict = "slower" if ratio.significantly_higher else (
        "no speed-up beyond noise" if limit == 1.0 else f"needs <= {limit:.2f} beyond noise")
    return result(False, f"{span}, {verdict}", ratio.ratio)


def check_target(target: TargetSpec, candidate: Evidence, baseline: Evidence, blocking: bool, noise: NoiseSpec,
                 versus_baseline: Comparison | None = None) -> GateCriterion:
    """Evaluate one target; a missing metric fails it. ``min_improvement`` is judged on ``versus_baseline``."""
    kind, bound = target.bound
    name = f"{target.metric} {kind} {bound:g}"
    if kind == "min_improvement":
        if versus_baseline is None and not blocking:
            return GateCriterion(name, target.metric, None, 1 - bound, False, False,
                                 f"{target.metric}: judged at the final gate, in a paired comparison with the baseline")
        return speed_criterion(name, target.metric, versus_baseline, noise, limit=1 - bound, blocking=blocking)
    value = candidate.metrics.get(target.metric)
    if value is None:
        return GateCriterion(name, target.metric, None, bound, False, blocking, _absent(target.metric, candidate))
    info = metric_info(target.metric)
    if kind == "max":
        ok = value <= bound
        return GateCriterion(name, target.metric, value, bound, ok, blocking, f"{target.metric} {_fmt(value)} {'<=' if ok else '>'} {bound:g}")
    if kind == "min":
        ok = value >= bound
        return GateCriterion(name, target.metric, value, bound, ok, blocking, f"{target.metric} {_fmt(value)} {'>=' if ok else '<'} {bound:g}")
    base = baseline.metrics.get(target.metric)
    if base is None:
        return GateCriterion(name, target.metric, value, bound, False, blocking,
                             f"baseline {_absent(target.metric, baseline)}")
    worsening = (base - value) if info.higher_is_better else (value - base)
    if kind == "max_relative_drop":
        worsening = worsening / abs(base) if base else (math.inf if worsening > 0 else 0.0)
    ok = worsening <= bound
    change = f"worse by {worsening:.4g}" if worsening > 0 else "no worse"
    return GateCriterion(name, target.metric, value, bound, ok, blocking,
                         f"{target.metric} {_fmt(value)} vs baseline {_fmt(base)}: {change} ({kind} {bound:g})")


def rubric_criteria(thresholds: dict[str, float], candidate: Evidence) -> list[GateCriterion]:
    """Each rubric criterion must reach its own threshold (on the split the evidence comes from)."""
    out = []
    for name, threshold in thresholds.items():
        value = candidate.metrics.get(name)
        ok = value is not None and value >= threshold
        out.append(GateCriterion(f"rubric {name} >= {threshold:g}", name, value, threshold, ok, True,
                                 f"{name} on {candidate.split} {_fmt(value)} {'>=' if ok else '<'} threshold {threshold:g}"))
    return out


def identical_output_criterion(mismatched: int, total: int) -> GateCriterion:
    """A lossless decoding method (speculative decoding under greedy search) must give the champion's outputs."""
    ok = mismatched == 0
    reason = (f"greedy output identical to the champion's on all {total} prompts" if ok else
              f"greedy output differs from the champion's on {mismatched} of {total} prompts; this step must not "
              "change the output")
    return GateCriterion("output identical to champion", "output_mismatches", float(mismatched), 0.0, ok, True, reason)


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
    every step must improve, and how speed is measured and trusted. Each stage is a method."""

    targets: tuple[TargetSpec, ...]
    thresholds: dict[str, float]
    objective: str
    noise: NoiseSpec

    @property
    def needs_final_comparison(self) -> bool:
        """Whether the final gate compares the champion with the baseline (a ``min_improvement`` target)."""
        return any(t.bound[0] == "min_improvement" for t in self.targets)

    def step(self, candidate: Evidence, baseline: Evidence, versus_champion: Comparison | None,
             enabling: bool = False, output_mismatch: tuple[int, int] | None = None,
             limits: Sequence[TargetSpec] = ()) -> GateDecision:
        """Quality, memory and size targets and the rubric thresholds must hold; the objective must improve on the
        champion beyond noise (an enabling step: must not be slower). Latency and cost targets are recorded. A step
        that must not change the outputs (``output_mismatch``: differing prompts, all prompts) fails on any
        difference; a step's own ``limits`` (a cache's false-hit rate) block like quality targets."""
        name = f"{self.objective} {'not slower than' if enabling else 'improves on'} champion"
        versus = speed_criterion(name, self.objective, versus_champion, self.noise, enabling=enabling)
        exact = [identical_output_criterion(*output_mismatch)] if output_mismatch is not None else []
        own = [check_target(limit, candidate, baseline, True, self.noise, None) for limit in limits]
        return GateDecision("step", [*exact, *own, *self._criteria("step", candidate, baseline, None), versus])

    def final(self, candidate: Evidence, baseline: Evidence, versus_baseline: Comparison | None) -> GateDecision:
        """Every target and rubric threshold on the final champion (held-out evidence, paired speed vs baseline)."""
        return GateDecision("final", self._criteria("final", candidate, baseline, versus_baseline))

    def compile(self, candidate: Evidence, baseline: Evidence, versus_champion: Comparison | None, parity: Parity,
                max_abs_diff: float, min_cosine: float) -> GateDecision:
        """Parity with the artifact's source within tolerances, quality/memory/size targets (held-out evidence);
        its speed against the champion is recorded, not required."""
        versus = speed_criterion(f"{self.objective} vs champion", self.objective, versus_champion, self.noise,
                                 blocking=False)
        return GateDecision("compile", [*parity_criteria(parity, max_abs_diff, min_cosine),
                                        *self._criteria("compile", candidate, baseline, None), versus])

    def _criteria(self, stage: Stage, candidate: Evidence, baseline: Evidence,
                  versus_baseline: Comparison | None) -> list[GateCriterion]:
        criteria = rubric_criteria(self.thresholds, candidate)
        for target in self.targets:
            blocking = stage == "final" or metric_info(target.metric).family in STEP_BLOCKING
            criteria.append(check_target(target, candidate, baseline, blocking, self.noise, versus_baseline))
        return criteria
