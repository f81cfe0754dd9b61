"""Reduced-precision cast (fp16 / bf16) of every floating-point weight.

Whether this is faster depends entirely on the CPU: without native half-precision
kernels the runtime upcasts on every op and the step is slower, which the gate
must catch. Nothing here assumes the answer; the measurement decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch

from hardware.runtimes.torch_runtime import load_hf_model
from tasks.techniques import TECHNIQUES, Availability, TechniqueContext, TechniqueSpec
from tasks.variant import Variant

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class CastSpec(TechniqueSpec):
    kind: Literal["cast"] = "cast"
    dtype: Literal["fp16", "bf16"] = "bf16"


@TECHNIQUES.register("cast")
class Cast:
    spec_type: ClassVar[type[TechniqueSpec]] = CastSpec

    def availability(self, spec: CastSpec, source: Variant) -> Availability:
        if source.runtime != "torch":
            return Availability(False, f"cast needs a PyTorch variant, the champion runs on {source.runtime!r}")
        if source.traits.get("quantized"):
            return Availability(False, "the champion is already quantized; casting its float parts is not supported")
        return Availability(True)

    def apply(self, spec: CastSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        model = load_hf_model(source).to(DTYPES[spec.dtype])
        model.save_pretrained(out_dir)
        _copy_tokenizer(source.path, out_dir)
        return source.child(spec.label, out_dir, "cast", spec.settings(), traits={"dtype": spec.dtype})


def _copy_tokenizer(src: Path, dst: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
