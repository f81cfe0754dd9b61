"""Output-length control: a tighter ``max_new_tokens``, with a retry at a larger limit for answers it cut off.

Decode time is paid per output token, so a model that rambles past the
useful answer costs latency and money; a hard cap cuts that, and the retry
(counted in the request's latency and cost, reported as ``retry_share``)
keeps a legitimately long answer whole. Whether the trade pays is the gate's
call: the rubric's length and fact criteria see truncated answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import decoding_availability


class OutputLengthSpec(TechniqueSpec):
    kind: Literal["output_length"] = "output_length"
    max_new_tokens: int = Field(ge=1, le=4096, description="Tokens an answer may have on the first try.")
    retry_max_new_tokens: int | None = Field(None, ge=2, le=4096,
                                             description="Answer again at this limit when the first try was cut off.")

    @model_validator(mode="after")
    def _retry_is_larger(self) -> "OutputLengthSpec":
        if self.retry_max_new_tokens is not None and self.retry_max_new_tokens <= self.max_new_tokens:
            raise ValueError(f"retry_max_new_tokens ({self.retry_max_new_tokens}) must exceed max_new_tokens "
                             f"({self.max_new_tokens})")
        return self


@TECHNIQUES.register("output_length", aliases=("max_new_tokens",))
class OutputLength:
    spec_type: ClassVar[type[TechniqueSpec]] = OutputLengthSpec

    def availability(self, spec: OutputLengthSpec, source: Variant) -> Availability:
        available = decoding_availability("output_length", source)
        if available.ok and source.runtime_options.get("output_length"):
            return Availability(False, "the champion's output length is already controlled")
        return available

    def apply(self, spec: OutputLengthSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files with an output limit; ``out_dir`` stays empty."""
        options = {**source.runtime_options, "output_length": spec.settings()}
        return source.child(spec.label, source.path, "output_length", spec.settings(), runtime_options=options)
