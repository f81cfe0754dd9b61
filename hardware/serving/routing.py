"""Cheap-first routing: the small model answers, and the large one answers again when the small one was unsure.

Confidence is a low quantile of the small model's token log-probabilities
(its worst tokens), not their mean: the mean is biased by length (a long,
fluent answer hides one guessed fact), and the quantile is what a single
wrong span shows up in. A refusal by the small model can escalate too
(``escalate_refusals``): a cheap model declines more often than it should.

An escalated request pays for both models: its latency and its busy time are
the small model's answer plus the large model's. The threshold is tuned on
the tuning split (``routing_curve``, ``pick_threshold``): the lowest one whose
quality stays within the allowed drop of the large model's; the gate checks
the rubric on held-out prompts like any step's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ratchet.hardware.runtimes.generation import Generated


class RouterSettings(BaseModel):
    """A variant's router: ``runtime_options["serving"]["router"]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    small: str = Field(description="Folder of the small (cheap) model; it shares the large model's tokenizer.")
    threshold: float = Field(description="Escalate when the confidence is below this (log-probability).")
    quantile: float = Field(0.1, ge=0, le=1, description="Which quantile of the token log-probabilities is the "
                                                         "confidence (0: the least likely token).")
    refusal: str | None = Field(None, description="Escalate answers that contain this refusal (normalized).")


def confidence(logprobs: Sequence[float] | None, quantile: float) -> float:
    """The ``quantile`` of an answer's token log-probabilities; an empty answer is not confident at all."""
    return float(np.quantile(logprobs, quantile)) if logprobs else float("-inf")


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def refused(text: str, refusal: str | None) -> bool:
    return bool(refusal) and _normal(refusal) in _normal(text)


def escalates(settings: RouterSettings, logprobs: Sequence[float] | None, text: str) -> bool:
    """Whether the small model's answer goes to the large model: unsure, or (if asked) a refusal."""
    return confidence(logprobs, settings.quantile) < settings.threshold or refused(text, settings.refusal)


class RoutedGenerator:
    """The small generator first; requests it was unsure of go to the large one (in one batch)."""

    def __init__(self, large: Any, small: Any, settings: RouterSettings) -> None:
        self.large = large
        self.small = small
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.large, name)

    def answer(self, texts: Sequence[str]) -> list[Generated]:
        start = time.perf_counter()
        out = self.small.answer(texts)
        for a in out:
            a.meta.update(model="small", confidence=confidence(a.logprobs, self.settings.quantile))
        unsure = [i for i, a in enumerate(out) if escalates(self.settings, a.logprobs, a.text)]
        if unsure:
            spent = time.perf_counter() - start
            for i, fresh in zip(unsure, self.large.answer([texts[i] for i in unsure])):
                fresh.token_times_s = [spent + t for t in fresh.token_times_s]
                fresh.meta.update(model="large", confidence=out[i].meta["confidence"])
                out[i] = fresh
        return out


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    small_share: float  # of requests the small model answers alone
    quality: float  # mean quality of the routed answers
    relative_cost: float  # model time per request, relative to the large model alone


def routing_curve(confidences: Sequence[float], q_small: Sequence[float], q_large: Sequence[float],
                  cost_small: float, cost_large: float) -> list[CurvePoint]:
    """Quality and cost as the threshold moves, from each request's small-model confidence and both models'
    answer quality; the costs are each model's mean time per answer (an escalated request pays both)."""
    conf, qs, ql = (np.asarray(x, dtype=float) for x in (confidences, q_small, q_large))
    thresholds = np.unique(np.concatenate([conf[np.isfinite(conf)], [np.inf]]))
    points = []
    for t in thresholds:
        kept = conf >= t
        cost = cost_small + (~kept).mean() * cost_large
        points.append(CurvePoint(float(t), float(kept.mean()), float(np.where(kept, qs, ql).mean()),
                                 cost / cost_large))
    return points


def pick_threshold(curve: Sequence[CurvePoint], large_quality: float, max_drop: float) -> CurvePoint:
    """The cheapest point whose quality is within ``max_drop`` of the large model's (the strictest threshold,
    everything escalated, always qualifies)."""
    allowed = [p for p in curve if p.quality >= large_quality - max_drop]
    return min(allowed, key=lambda p: (p.relative_cost, -p.quality))
