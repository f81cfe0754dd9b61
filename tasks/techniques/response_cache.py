"""A response cache as a step: answer repeated questions (the same words, or close enough) from earlier answers.

The candidate is the champion's own files served behind a cache
(``ratchet.hardware.serving.cache``): exact matches on the normalized question,
then, with ``semantic``, the nearest earlier question by MiniLM similarity
above a threshold. The threshold is tuned here on the workload's labelled
tuning questions for ``max_false_hit_rate`` (with room to spare), and the
gate holds the bound on held-out questions arriving at a cache of tuning
answers (``cache_false_hit_rate``), next to the speed-up and the hit rate it
buys on the replayed traffic. The scope includes the champion's content hash:
a new model version starts with an empty cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability, requires
from ratchet.core.variant import Variant, content_hash
from ratchet.hardware.serving.cache import CacheSettings, tune_threshold
from ratchet.tasks.gate import TargetSpec
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import serving_availability, with_serving


class ResponseCacheSpec(TechniqueSpec):
    kind: Literal["response_cache"] = "response_cache"
    semantic: bool = Field(True, description="Also serve the answer of the most similar earlier question.")
    threshold: float | None = Field(None, gt=0, le=1, description="Similarity for a semantic hit; None: tuned on the "
                                                                   "labelled tuning questions.")
    max_false_hit_rate: float = Field(0.01, ge=0, le=1, description="Wrong answers served per held-out lookup, at "
                                                                    "most (the gate's bound).")
    ttl_s: float | None = Field(None, gt=0, description="Seconds an answer is served; None: until the model changes.")
    template: str = Field("v1", description="Prompt template version (answers never cross templates).")
    store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"


@TECHNIQUES.register("response_cache", aliases=("cache", "semantic_cache"))
class ResponseCache:
    spec_type: ClassVar[type[TechniqueSpec]] = ResponseCacheSpec

    def availability(self, spec: ResponseCacheSpec, source: Variant) -> Availability:
        available = serving_availability("a response cache", source, "cache",
                                         "the champion is already served behind a response cache")
        if available.ok and spec.store == "redis":
            return requires("a Redis-backed response cache", "redis")
        return available

    def limits(self, spec: ResponseCacheSpec) -> list[TargetSpec]:
        return [TargetSpec(metric="cache_false_hit_rate", max=spec.max_false_hit_rate)]

    def apply(self, spec: ResponseCacheSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files behind the cache; ``out_dir`` stays empty."""
        threshold, tuned = spec.threshold, {}
        if spec.semantic and threshold is None:
            if len(ctx.questions) < 4:
                raise ValueError("tuning the semantic threshold needs the workload's labelled questions (the dataset's "
                                 "'questions'); give the step a threshold, or semantic: false")
            from ratchet.hardware.runtimes.embedder import sentence_embedder

            ctx.progress("tuning the cache threshold", 0, 1)
            threshold, tuned = tune_threshold([(q.text, q.label) for q in ctx.questions], sentence_embedder(),
                                              spec.max_false_hit_rate)
            ctx.progress("tuning the cache threshold", 1, 1)
        settings = CacheSettings(semantic=spec.semantic, threshold=threshold or 1.0, ttl_s=spec.ttl_s,
                                 template=spec.template, model_version=content_hash(source.path)[:12],
                                 store=spec.store, redis_url=spec.redis_url)
        options = with_serving(source, "cache", settings.model_dump())
        params = {**spec.settings(), "threshold": settings.threshold,
                  **{f"tuning_{k}": v for k, v in tuned.items() if k != "lookups"}}
        return source.child(spec.label, source.path, "response_cache", params, runtime_options=options)
