"""Mean reciprocal rank of the first relevant document over answerable queries."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult
from ratchet.evals.scorers._retrieval import first_relevant_ranks


@SCORERS.register("mrr")
class MRR:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        rr = {qid: 1.0 / rank for qid, (rank, _) in first_relevant_ranks(ctx).items()}
        return ScoreResult(sum(rr.values()) / max(len(rr), 1), {qid: {"mrr": v} for qid, v in rr.items()})
