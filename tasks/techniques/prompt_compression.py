"""Prompt compression as a step: answer from fewer retrieved chunks (the ones most relevant to the question).

Shorter prompts cost less prefill (time to first token) and, when the dropped
chunks were distractors, can even help a small model; when retrieval ranked
well and the dropped chunk held the answer, quality falls. The gate decides,
on the rubric and the paired latency, like any step's. The candidate is the
champion's own files with ``serving.compression``
(``ratchet.hardware.serving.compression``: top-k chunks by MiniLM similarity
to the question, under a word budget).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.hardware.serving.compression import CompressionSettings
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import serving_availability, with_serving


class PromptCompressionSpec(TechniqueSpec):
    kind: Literal["prompt_compression"] = "prompt_compression"
    max_chunks: int = Field(1, ge=1, le=64, description="Retrieved chunks kept, the most relevant first.")
    max_words: int | None = Field(None, ge=1, description="Words of context kept, at most (the best chunk always).")


@TECHNIQUES.register("prompt_compression", aliases=("compress_prompt", "context_pruning"))
class PromptCompression:
    spec_type: ClassVar[type[TechniqueSpec]] = PromptCompressionSpec

    def availability(self, spec: PromptCompressionSpec, source: Variant) -> Availability:
        return serving_availability("prompt compression", source, "compression",
                                    "the champion's prompts are already compressed")

    def apply(self, spec: PromptCompressionSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files, its prompts compressed; ``out_dir`` stays empty."""
        settings = CompressionSettings(max_chunks=spec.max_chunks, max_words=spec.max_words)
        options = with_serving(source, "compression", settings.model_dump())
        return source.child(spec.label, source.path, "prompt_compression", spec.settings(), runtime_options=options)
