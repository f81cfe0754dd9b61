"""Semantic similarity to the reference answer: cosine of MiniLM sentence embeddings (the default workload's
embedder, which ships with the project), so a right answer in other words still scores."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._answers import answers
from ratchet.hardware.runtimes.embedder import EMBEDDER, sentence_embedder


class SimilarityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(EMBEDDER, description="The shipped MiniLM, or a local folder of a feature-extraction model "
                                             "(mean-pooled embeddings).")


def similarities(candidates: list[str], references: list[str], model_id: str = EMBEDDER) -> np.ndarray:
    embed = sentence_embedder(model_id)
    return np.clip((embed(candidates) * embed(references)).sum(axis=1), 0.0, 1.0)


@SCORERS.register("semantic_similarity", aliases=("similarity",))
class SemanticSimilarity:
    params_type: ClassVar[type[BaseModel]] = SimilarityParams

    def score(self, ctx: EvalContext, params: SimilarityParams) -> ScoreResult:
        pairs = list(answers(ctx))
        if not pairs:
            return ScoreResult(0.0)
        sims = similarities([a or " " for _, a in pairs], [p.reference for p, _ in pairs], params.model)
        rows = {p.id: {"similarity": float(s)} for (p, _), s in zip(pairs, sims)}
        return ScoreResult(float(sims.mean()), rows)
