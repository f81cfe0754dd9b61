"""Label agreement: the share of the split's texts on which the candidate predicts the baseline's class.

Accuracy can hold while individual predictions flip in both directions; users
who route on a classifier's output notice the flips, so they are scored too.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult


@SCORERS.register("label_agreement")
class LabelAgreement:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        idx = ctx.workload.split_indices(ctx.split)
        same = ctx.outputs["texts"][idx].argmax(axis=-1) == ctx.reference["texts"][idx].argmax(axis=-1)
        per_example = {ctx.workload.examples[i].id: {"agrees_with_baseline": bool(s)} for i, s in zip(idx, same)}
        return ScoreResult(float(same.mean()) if idx else 0.0, per_example)
