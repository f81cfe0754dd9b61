"""Reduced-precision cast (fp16 / bf16) of floating-point weights, optionally mixed precision.

Whether this is faster depends entirely on the CPU: without native half-precision
kernels the runtime upcasts on every op and the step is slower, which the gate
must catch. Nothing here assumes the answer; the measurement decides.

``keep_fp32`` keeps numerically sensitive modules (LayerNorm, embeddings) in float32
while the rest is cast. Their inputs are cast up to float32 on the way in and their
outputs back to the cast dtype on the way out, so neighbours always see the dtype
they hold. The split is recorded in ``runtime_options["mixed_precision"]`` and the
torch runtime re-applies it after loading (``hardware.runtimes.precision``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ratchet.core.availability import Availability, source_check
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.precision import apply_mixed_precision, torch_dtype
from ratchet.hardware.runtimes.torch_runtime import load_hf_model
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec


class CastSpec(TechniqueSpec):
    kind: Literal["cast"] = "cast"
    dtype: Literal["fp16", "bf16"] = "bf16"
    keep_fp32: list[str] = Field(
        default_factory=list,
        description="Module-name patterns kept in float32 (regex over whole dotted name parts, e.g. LayerNorm, embeddings).",
    )

    @field_validator("keep_fp32")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"keep_fp32: {pattern!r} is not a valid regular expression ({exc})") from None
        return patterns


@TECHNIQUES.register("cast")
class Cast:
    spec_type: ClassVar[type[TechniqueSpec]] = CastSpec

    def availability(self, spec: CastSpec, source: Variant) -> Availability:
        return source_check("cast", source)

    def apply(self, spec: CastSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        model = load_hf_model(source)
        options = source.runtime_options
        if spec.keep_fp32:
            apply_mixed_precision(model, spec.dtype, spec.keep_fp32)
            options = {**options, "mixed_precision": {"dtype": spec.dtype, "keep_fp32": spec.keep_fp32}}
        else:
            model = model.to(torch_dtype(spec.dtype))
        model.save_pretrained(out_dir)
        _copy_tokenizer(source.path, out_dir)
        return source.child(spec.label, out_dir, "cast", spec.settings(), traits={"dtype": spec.dtype},
                            runtime_options=options)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
