"""Token agreement: how much of the baseline's greedy continuation a generator still produces, token for token.

A text-generation variant's outputs are the token ids it generated for each
prompt (``-1`` after its end of sequence). Per prompt, the score is the share
of positions, up to the longer of the two continuations, where the candidate
emits the baseline's token; an early divergence costs every later position,
which is what a user reading the answer sees. HF ``evaluate`` has no metric
for token-level agreement between two generators, hence these few lines.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult

PAD = -1


def agreement(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(share of agreeing positions, first position where they differ, or -1) for one prompt."""
    length = max(int((candidate != PAD).sum()), int((reference != PAD).sum()))
    if length == 0:
        return 1.0, -1
    same = candidate[:length] == reference[:length]
    return float(same.mean()), (int(np.argmin(same)) if not same.all() else -1)


@SCORERS.register("token_agreement", aliases=("agreement",))
class TokenAgreement:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        idx = ctx.workload.split_indices(ctx.split)
        rows = [agreement(ctx.outputs["prompts"][i], ctx.reference["prompts"][i]) for i in idx]
        ids = [ctx.workload.prompts[i].id for i in idx]
        per_example = {pid: {"token_agreement": share, "first_divergence": where} for pid, (share, where) in zip(ids, rows)}
        return ScoreResult(float(np.mean([share for share, _ in rows])) if rows else 0.0, per_example)
