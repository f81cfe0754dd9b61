"""Fidelity: mean cosine between the candidate's and the baseline's embeddings of the split's queries.

It catches drift that labels miss: a quantized model can keep recall@5 on an
easy query set while moving every embedding, which breaks a vector index built
with the baseline.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult
from ratchet.hardware.parity import row_cosines


@SCORERS.register("fidelity_cosine", aliases=("fidelity",))
class FidelityCosine:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        idx = ctx.workload.split_indices(ctx.split)
        cos = row_cosines(ctx.outputs["queries"][idx], ctx.reference["queries"][idx])
        ids = [ctx.workload.queries[i].id for i in idx]
        per_example = {qid: {"cosine_to_baseline": float(c)} for qid, c in zip(ids, cos)}
        return ScoreResult(float(np.clip(cos.mean(), 0.0, 1.0)), per_example)
