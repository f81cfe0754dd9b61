"""Length bound: the share of answers whose length in words lies within the rubric's bounds (an empty answer and
a rambling one both fail; cutting answers short to save tokens shows up here)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._answers import answers


class LengthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_words: int = Field(1, ge=0)
    max_words: int = Field(60, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "LengthParams":
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must not exceed max_words ({self.max_words})")
        return self


@SCORERS.register("length_bound", aliases=("length",))
class LengthBound:
    params_type: ClassVar[type[BaseModel]] = LengthParams

    def score(self, ctx: EvalContext, params: LengthParams) -> ScoreResult:
        rows = {}
        for p, a in answers(ctx):
            words = len(a.split())
            rows[p.id] = {"words": words, "within_length": float(params.min_words <= words <= params.max_words)}
        return ScoreResult(float(np.mean([r["within_length"] for r in rows.values()])) if rows else 0.0, rows)
