"""Recall@k: the share of answerable queries whose relevant document is in the top k."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._retrieval import first_relevant_ranks


class RecallParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(5, ge=1, le=1000)


@SCORERS.register("recall_at_k", aliases=("recall",))
class RecallAtK:
    params_type: ClassVar[type[BaseModel]] = RecallParams

    def score(self, ctx: EvalContext, params: RecallParams) -> ScoreResult:
        ranks = first_relevant_ranks(ctx)
        hits = {qid: float(rank <= params.k) for qid, (rank, _) in ranks.items()}
        per_example = {qid: {f"recall@{params.k}": hit, "rank": ranks[qid][0], "top5": ranks[qid][1]} for qid, hit in hits.items()}
        return ScoreResult(sum(hits.values()) / max(len(hits), 1), per_example)
