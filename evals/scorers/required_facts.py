"""Required facts: the share of an answer's required facts (numbers, menu paths, quoted labels) it states.

Only answerable prompts count: a refusal has no facts to state (``refusal``
judges those). Matching is on normalized text, so "Profile > Account" matches
"profile account".
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from ratchet.evals.scorers import SCORERS, EvalContext, NoParams, ScoreResult
from ratchet.evals.scorers._answers import answers, normalize


def facts_found(answer: str, facts: list[str]) -> float:
    said = normalize(answer)
    return float(np.mean([normalize(f) in said for f in facts])) if facts else 1.0


@SCORERS.register("required_facts", aliases=("facts",))
class RequiredFacts:
    params_type: ClassVar[type[BaseModel]] = NoParams

    def score(self, ctx: EvalContext, params: NoParams) -> ScoreResult:
        rows = {p.id: {"facts_found": facts_found(a, p.facts)} for p, a in answers(ctx) if p.answerable and p.facts}
        return ScoreResult(float(np.mean([r["facts_found"] for r in rows.values()])) if rows else 0.0, rows)
