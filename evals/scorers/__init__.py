"""Rubric scorers: one module per scorer, registered by name in ``SCORERS``.

A scorer turns a variant's outputs on the eval data into a value in [0, 1] plus
per-example values keyed by example id (kept for inspection in MLflow). Which
scorers can judge which model's outputs is declared by the model task
(``ratchet.core.model_tasks``), in one place.

Hugging Face ``evaluate`` has no retrieval recall@k / MRR metric (its
``trec_eval`` needs the ``trectools`` package and fetches its script from the
Hub, which the offline default forbids), so these few lines of numpy are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from ratchet.core.plugins import Registry
from ratchet.evals.workloads import Workload


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class EvalContext:
    """What a scorer sees: the workload, the split, the candidate's and the reference's outputs."""

    workload: Workload
    split: str
    outputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]


@dataclass
class ScoreResult:
    value: float
    per_example: dict[str, dict[str, Any]] = field(default_factory=dict)


class Scorer(Protocol):
    params_type: ClassVar[type[BaseModel]]

    def score(self, ctx: EvalContext, params: BaseModel) -> ScoreResult: ...


SCORERS: Registry[type[Scorer]] = Registry("scorer")
