"""Cheap-first routing as a step: the small model answers; the champion answers when the small one was unsure.

The candidate serves the champion behind a router
(``ratchet.hardware.serving.routing``). Its threshold is tuned here: both
models answer the labelled tuning questions, each answer is scored against its
reference (MiniLM similarity, the rubric's ``semantic_similarity``), and the
cheapest threshold whose routed quality is within ``max_quality_drop`` of the
champion's alone is chosen. The whole quality/cost curve is kept beside the
variant (``routing-curve.json`` and a plot), since the curve, not one point,
is what compares routers. The gate then judges the routed stack like any
step: rubric on the tuning split, speed in paired blocks, held-out at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.hardware.serving.routing import RouterSettings, confidence, pick_threshold, routing_curve
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import serving_availability, with_serving
from ratchet.tasks.techniques.speculative import check_companion

CURVE_FILE = "routing-curve.json"


class RoutingSpec(TechniqueSpec):
    kind: Literal["routing"] = "routing"
    small: str = Field(description="The cheap model's id or folder (it shares the champion's tokenizer).")
    quantile: float = Field(0.1, ge=0, le=1, description="Confidence: this quantile of the small model's token "
                                                         "log-probabilities.")
    threshold: float | None = Field(None, le=0, description="Escalate below this confidence; None: tuned.")
    max_quality_drop: float = Field(0.02, ge=0, le=1, description="Tuning: routed answers may lose at most this "
                                                                  "much similarity to the references.")
    escalate_refusals: bool = Field(False, description="Also escalate the small model's refusals.")
    tuning_prompts: int = Field(80, ge=4, le=10_000, description="Labelled tuning questions both models answer.")


@TECHNIQUES.register("routing", aliases=("cheap_first", "cascade"))
class Routing:
    spec_type: ClassVar[type[TechniqueSpec]] = RoutingSpec

    def preflight_files(self, spec: RoutingSpec, model_path: Path) -> None:
        """The small model must be a causal LM with the champion's tokenizer (its answers are the champion's
        tokens when it is confident)."""
        check_companion(spec.small, model_path, "small", "routing needs one tokenizer")

    def availability(self, spec: RoutingSpec, source: Variant) -> Availability:
        return serving_availability("cheap-first routing", source, "router",
                                    "the champion is already served behind a router")

    def apply(self, spec: RoutingSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from ratchet.tasks.model_source import resolve_model

        small = str(resolve_model(spec.small))
        refusal = _refusal(ctx) if spec.escalate_refusals else None
        threshold, tuned = spec.threshold, {}
        if threshold is None:
            threshold, tuned = tune(spec, source, small, refusal, out_dir, ctx)
        settings = RouterSettings(small=small, threshold=threshold, quantile=spec.quantile, refusal=refusal)
        options = with_serving(source, "router", settings.model_dump())
        return source.child(spec.label, source.path, "routing", {**spec.settings(), "threshold": threshold, **tuned},
                            runtime_options=options)


def _refusal(ctx: TechniqueContext) -> str | None:
    """The workload's refusal: the label its unanswerable questions share."""
    labels = {q.label for q in ctx.questions if not q.answerable}
    return labels.pop() if len(labels) == 1 else None


def tune(spec: RoutingSpec, source: Variant, small: str, refusal: str | None, out_dir: Path,
         ctx: TechniqueContext) -> tuple[float, dict]:
    """Both models answer the tuning questions; the cheapest threshold within the allowed drop, and the curve
    (written to ``out_dir``) with what the chosen point buys on the tuning split."""
    from ratchet.hardware.runtimes import Shape
    from ratchet.hardware.runtimes.embedder import sentence_embedder
    from ratchet.hardware.runtimes.generation import TorchGenerator
    from ratchet.hardware.serving.routing import refused

    questions = list(ctx.questions)[: spec.tuning_prompts]
    if len(questions) < 4:
        raise ValueError("tuning the routing threshold needs the workload's labelled questions (the dataset's "
                         "'questions'); give the step a threshold")
    shape = Shape(ctx.sequence_length, ctx.max_new_tokens)
    prompts = [q.prompt for q in questions]
    answers, seconds = {}, {}
    for role, variant, scored in (("small", Variant(name="small", path=Path(small), task=source.task), True),
                                  ("large", source, False)):
        generator = TorchGenerator(variant, shape, ctx.hardware.device, logprobs=scored)
        started = time.perf_counter()
        answers[role] = []
        for i, prompt in enumerate(prompts):
            answers[role] += generator.answer([prompt])
            ctx.progress(f"routing: {role} model answers", i + 1, len(prompts))
        seconds[role] = (time.perf_counter() - started) / len(prompts)
    embed = sentence_embedder()
    labels = embed([q.label for q in questions])
    quality = {role: (embed([a.text or " " for a in got]) * labels).sum(axis=1) for role, got in answers.items()}
    confidences = [confidence(a.logprobs, spec.quantile) if not refused(a.text, refusal) else float("-inf")
                   for a in answers["small"]]
    curve = routing_curve(confidences, quality["small"], quality["large"], seconds["small"], seconds["large"])
    large_quality = float(quality["large"].mean())
    chosen = pick_threshold(curve, large_quality, spec.max_quality_drop)
    (out_dir / CURVE_FILE).write_text(json.dumps({"large_quality": large_quality, "chosen": asdict(chosen),
                                                  "curve": [asdict(p) for p in curve]}, indent=1))
    plot_curve(curve, chosen, large_quality, out_dir / "routing-curve.png")
    # A finite threshold for the chosen point (everything escalated is the point past the largest confidence).
    threshold = chosen.threshold if chosen.threshold != float("inf") else 1.0
    return threshold, {"tuning_small_share": chosen.small_share, "tuning_quality": chosen.quality,
                       "tuning_large_quality": large_quality, "tuning_relative_cost": chosen.relative_cost,
                       "tuning_small_cost_ratio": seconds["small"] / seconds["large"]}


def plot_curve(curve: list, chosen, large_quality: float, path: Path) -> None:
    """Quality against relative model cost as the threshold moves, the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p.relative_cost for p in curve], [p.quality for p in curve], ".-", label="routed")
    ax.axhline(large_quality, color="grey", ls="--", lw=1, label="large model alone")
    ax.scatter([chosen.relative_cost], [chosen.quality], color="red", zorder=3,
               label=f"chosen: {chosen.small_share:.0%} answered by the small model")
    ax.set_xlabel("model time per request (large alone = 1)")
    ax.set_ylabel("similarity to reference (tuning)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
