"""Accuracy: the share of the split's labelled texts whose most probable class is their label."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult


@SCORERS.register("accuracy")
class Accuracy:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        idx = ctx.workload.split_indices(ctx.split)
        predicted = ctx.outputs["texts"][idx].argmax(axis=-1)
        labels = np.array([ctx.workload.label_index(i) for i in idx])
        per_example = {ctx.workload.examples[i].id: {"predicted": ctx.workload.labels[p], "correct": bool(p == y)}
                       for i, p, y in zip(idx, predicted, labels)}
        return ScoreResult(float((predicted == labels).mean()) if idx else 0.0, per_example)
