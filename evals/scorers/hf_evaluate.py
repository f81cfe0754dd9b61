"""Any Hugging Face ``evaluate`` metric, so users bring the metrics they already use.

``metric`` is a local metric script (a path) or a name ``evaluate`` already has
in its cache: ``evaluate`` fetches unknown names from the Hub, which the
offline defaults never need. The metric gets the answers as ``predictions`` and
the reference answers as ``references``; ``key`` picks the value from its
result, which must lie in [0, 1] like every rubric score.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ratchet.evals.scorers import SCORERS, EvalContext, ScoreResult
from ratchet.evals.scorers._answers import answers


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="Path of a local evaluate metric script, or a metric name in the local cache.")
    key: str = Field(description="Which value of the metric's result is the score.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra arguments to the metric's compute().")


@cache
def _metric(name: str):
    try:
        import evaluate
    except ImportError:
        raise ValueError("scorer hf_evaluate needs the evaluate package: pip install 'ratchet[evaluate]'") from None
    try:
        return evaluate.load(name)
    except Exception as exc:  # offline and not cached, a broken script: the spec names a metric we cannot load
        raise ValueError(f"scorer hf_evaluate: cannot load metric {name!r} ({str(exc).splitlines()[0]})") from None


@SCORERS.register("hf_evaluate", aliases=("evaluate",))
class HfEvaluate:
    params_type: ClassVar[type[BaseModel]] = EvaluateParams

    def score(self, ctx: EvalContext, params: EvaluateParams) -> ScoreResult:
        pairs = list(answers(ctx))
        result = _metric(params.metric).compute(predictions=[a for _, a in pairs],
                                                references=[p.reference for p, _ in pairs], **params.kwargs)
        if params.key not in result:
            raise ValueError(f"scorer hf_evaluate: metric {params.metric!r} returned {sorted(result)}, "
                             f"not {params.key!r}")
        value = float(result[params.key])
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"scorer hf_evaluate: {params.metric}[{params.key}] = {value} is not in [0, 1]")
        return ScoreResult(value)
