"""Rubrics: weighted criteria, each a registered scorer with a threshold; the score is in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ratchet.evals.scorers import SCORERS, EvalContext


class CriterionSpec(BaseModel):
    """One rubric line: which scorer, how much it weighs, and the score it must reach."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_@.\-]+$")
    scorer: str
    weight: float = Field(1.0, ge=0)
    threshold: float = Field(0.0, ge=0, le=1, description="The criterion passes when its score is at least this.")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        return SCORERS.canonical(value)  # raises a did-you-mean LookupError -> ValueError below

    @model_validator(mode="after")
    def _params_fit_scorer(self) -> "CriterionSpec":
        SCORERS.get(self.scorer).params_type.model_validate(self.params)
        return self


class RubricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criteria: list[CriterionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights_and_names(self) -> "RubricSpec":
        total = sum(c.weight for c in self.criteria)
        if total <= 0:
            raise ValueError(f"criterion weights must sum to a positive number, they sum to {total}")
        names = [c.name for c in self.criteria]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"criterion names must be unique, repeated: {dupes}")
        return self


@dataclass
class CriterionResult:
    name: str
    scorer: str
    value: float
    weight: float
    threshold: float

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold


@dataclass
class RubricResult:
    """The weighted score, each criterion's value, and one row per example for inspection."""

    split: str
    score: float
    criteria: list[CriterionResult]
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    def metrics(self) -> dict[str, float]:
        return {"rubric_score": self.score, **{c.name: c.value for c in self.criteria}}


def score_rubric(rubric: RubricSpec, ctx: EvalContext) -> RubricResult:
    """Run every criterion's scorer and combine them by weight."""
    results: list[CriterionResult] = []
    rows: dict[str, dict[str, Any]] = {}
    for crit in rubric.criteria:
        scorer = SCORERS.get(crit.scorer)()
        scored = scorer.score(ctx, scorer.params_type.model_validate(crit.params))
        results.append(CriterionResult(crit.name, crit.scorer, scored.value, crit.weight, crit.threshold))
        for example_id, values in scored.per_example.items():
            rows.setdefault(example_id, {"id": example_id}).update(values)
    total = sum(r.weight for r in results)
    score = sum(r.value * r.weight for r in results) / total
    return RubricResult(ctx.split, score, results, list(rows.values()))
