"""Normalized exact match with the reference answer (SQuAD's normalization), for closed answers.

Open-ended answers rarely match word for word, so a rubric gives this a small
weight or limits it to the unanswerable prompts, whose one right answer is
the workload's refusal (``only: unanswerable``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._answers import answers, normalize


class ExactMatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only: Literal["all", "answerable", "unanswerable"] = "all"


@SCORERS.register("exact_match", aliases=("em",))
class ExactMatch:
    params_type: ClassVar[type[BaseModel]] = ExactMatchParams

    def score(self, ctx: EvalContext, params: ExactMatchParams) -> ScoreResult:
        keep = {"all": lambda p: True, "answerable": lambda p: p.answerable,
                "unanswerable": lambda p: not p.answerable}[params.only]
        rows = {p.id: {"exact_match": float(normalize(a) == normalize(p.reference))}
                for p, a in answers(ctx) if keep(p)}
        return ScoreResult(float(np.mean([r["exact_match"] for r in rows.values()])) if rows else 0.0, rows)
