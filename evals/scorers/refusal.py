"""Refusal: declining exactly the questions the data does not cover.

An answer is a refusal when its normalized text contains one of the markers
(by default the usual ways of declining) or is close (ROUGE-L) to the
workload's own refusal sentence. The score is the mean of the two recalls:
refused when unanswerable, answered when answerable, so a model that refuses
everything scores 0.5, not the share of unanswerable prompts.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._answers import answers, normalize
from ratchet.evals.scorers.rouge_l import rouge_l

MARKERS = ("sorry", "cant help", "cannot help", "not able to help", "not covered", "dont know", "unable to")


class RefusalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markers: list[str] = Field(default_factory=lambda: list(MARKERS), min_length=1)
    similarity: float = Field(0.6, gt=0, le=1, description="ROUGE-L to the workload's refusal that counts as one.")


def is_refusal(answer: str, params: RefusalParams, canonical: str = "") -> bool:
    said = normalize(answer)
    if any(normalize(m) in said for m in params.markers):
        return True
    return bool(canonical) and rouge_l(answer, canonical) >= params.similarity


@SCORERS.register("refusal", aliases=("refusals",))
class Refusal:
    params_type: ClassVar[type[BaseModel]] = RefusalParams

    def score(self, ctx: EvalContext, params: RefusalParams) -> ScoreResult:
        canonical = getattr(ctx.workload, "refusal", "")
        rows, right = {}, {True: [], False: []}
        for p, a in answers(ctx):
            refused = is_refusal(a, params, canonical)
            correct = refused != p.answerable
            right[p.answerable].append(correct)
            rows[p.id] = {"refused": refused, "refusal_correct": float(correct)}
        recalls = [float(np.mean(v)) for v in right.values() if v]
        return ScoreResult(float(np.mean(recalls)) if recalls else 0.0, rows)
