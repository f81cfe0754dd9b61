"""ROUGE-L F-measure against the reference answer, with Google's ``rouge-score`` (the maintained implementation
``evaluate``'s ROUGE wraps)."""

from __future__ import annotations

from functools import cache
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult
from ratchet.evals.scorers._answers import answers


@cache
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> float:
    return float(_scorer().score(reference, answer)["rougeL"].fmeasure)


@SCORERS.register("rouge_l", aliases=("rougeL", "rouge"))
class RougeL:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        rows = {p.id: {"rouge_l": rouge_l(a, p.reference)} for p, a in answers(ctx)}
        return ScoreResult(float(np.mean([r["rouge_l"] for r in rows.values()])) if rows else 0.0, rows)
