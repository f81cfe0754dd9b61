"""Weight-only quantization of Linear layers: 8- or 4-bit weights, float activations.

The library is chosen per bit width by measurement (all-MiniLM-L6-v2, 2 shared CPU
cores, torch 2.13, transformers 5.23, 64 support-FAQ queries, each method timed back
to back with fp32; speed-up = fp32 time / method time at batch 1 and 8):

* 8-bit: torchao ``Int8WeightOnlyConfig``. No 8-bit library is faster than fp32 here
  (int8 weights are dequantized on every call): torchao 0.56x at batch 1 eager (~1.2x
  compiled, which is what compiling fp32 alone gives), bitsandbytes LLM.int8 0.55x /
  0.91x, optimum-quanto 0.69x / 0.85x under ``no_grad`` and several times slower under
  ``inference_mode``. torchao is the most faithful (cosine 0.9996 vs 0.9993) and is
  already a dependency. The 8-bit win is size: 91.6 -> 58.7 MB (the 47 MB word
  embeddings stay fp32).
* 4-bit: bitsandbytes NF4, the only library faster than fp32 here: 1.9-2.0x at batch 1
  and 8 (3.1 vs 5.9 ms, 10.3 vs 21.0 ms), 53.9 MB, cosine 0.976. torchao's CPU 4-bit
  (``IntxWeightOnlyConfig``; ``Int4WeightOnlyConfig`` has no CPU kernel) is 0.5-0.7x,
  stores int4 unpacked in int8 (60.3 MB) and is less faithful (0.968 at group 32);
  optimum-quanto int4 fails under ``inference_mode``, which the runtime uses;
  transformers 5.23 cannot load HQQ at all ("not available yet"). Both chosen
  libraries save to safetensors through ``save_pretrained`` and reload with
  ``from_pretrained``.

``library`` overrides the choice. 4-bit costs a small encoder fidelity (MiniLM: cosine
0.976, under the default rubric's 0.98); ``skip_modules`` keeps the most sensitive
Linear layers in float (keeping ``intermediate.dense`` lifts NF4 to 0.984).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ratchet.core.availability import Availability, source_check
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.precision import modules_matching, name_regex
from ratchet.hardware.runtimes.torch_runtime import load_hf_model
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec

Library = Literal["torchao", "bitsandbytes"]
# Measured best per bit width (module docstring).
DEFAULT_LIBRARY: dict[int, Library] = {8: "torchao", 4: "bitsandbytes"}
DEFAULT_GROUP_SIZE = 32  # torchao 4-bit: group 32 is more faithful than 128 (cosine 0.969 vs 0.954) for ~1 MB more
BNB_BLOCK_SIZE = 64  # bitsandbytes' 4-bit block, fixed by transformers' BitsAndBytesConfig
INSTALL = {"torchao": "pip install 'torchao>=0.18,<0.19'", "bitsandbytes": "pip install 'bitsandbytes>=0.50,<0.51'"}


class WeightOnlySpec(TechniqueSpec):
    kind: Literal["weight_only"] = "weight_only"
    bits: Literal[8, 4] = 8
    group_size: int | None = Field(
        None, gt=0,
        description=f"4-bit only: weights sharing one scale; must divide every Linear's input size (torchao). "
        f"None: torchao {DEFAULT_GROUP_SIZE}, bitsandbytes {BNB_BLOCK_SIZE} (its only value).",
    )
    library: Library | None = Field(
        None, description="None: the measured best for the bit width (torchao for 8, bitsandbytes for 4)."
    )
    skip_modules: list[str] = Field(
        default_factory=list,
        description="Linear layers kept in float: module-name patterns as in cast's keep_fp32 "
        "(regex over whole dotted name parts).",
    )
    compile: bool = Field(False, description="Run the result under torch.compile.")

    @model_validator(mode="after")
    def _settings_fit(self) -> "WeightOnlySpec":
        if self.compile and self.bits == 4 and self.backend == "bitsandbytes":
            raise ValueError("bitsandbytes 4-bit layers fail under torch.compile (torch 2.13: an inductor stride "
                             "assertion, measured); set compile: false or library: torchao")
        if self.group_size is None:
            return self
        if self.bits == 8:
            raise ValueError("group_size applies to 4-bit weights only (8-bit scales are per output row)")
        if self.backend == "bitsandbytes" and self.group_size != BNB_BLOCK_SIZE:
            raise ValueError(
                f"bitsandbytes quantizes 4-bit weights in blocks of {BNB_BLOCK_SIZE}; got group_size {self.group_size}"
            )
        return self

    @property
    def backend(self) -> Library:
        """The library that runs: ``library``, or the measured default for ``bits``."""
        return self.library or DEFAULT_LIBRARY[self.bits]


@TECHNIQUES.register("weight_only")
class WeightOnly:
    spec_type: ClassVar[type[TechniqueSpec]] = WeightOnlySpec

    def availability(self, spec: WeightOnlySpec, source: Variant) -> Availability:
        if importlib.util.find_spec(spec.backend) is None:
            other = "torchao" if spec.backend == "bitsandbytes" else "bitsandbytes"
            return Availability(False, f"{spec.backend} is not installed ({INSTALL[spec.backend]}), or set library: {other}")
        return source_check("weight_only", source)

    def preflight(self, spec: WeightOnlySpec, model_config: dict) -> None:
        """torchao groups split each Linear's input; a group that does not divide it cannot be formed."""
        if spec.bits != 4 or spec.backend != "torchao":
            return
        group = spec.group_size or DEFAULT_GROUP_SIZE
        sizes = {model_config.get(k) for k in ("hidden_size", "intermediate_size")} - {None}
        bad = sorted(s for s in sizes if s % group)
        if bad:
            raise ValueError(f"group_size {group} does not divide the model's Linear input sizes {bad}")

    def apply(self, spec: WeightOnlySpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from transformers import AutoTokenizer

        placement = {"device_map": ctx.hardware.device} if spec.backend == "bitsandbytes" else {}
        model = load_hf_model(source, quantization_config=quantization_config(spec), **placement)
        modules_matching(model, spec.skip_modules, "skip_modules")  # a typo would silently quantize the layer
        model.save_pretrained(out_dir)
        AutoTokenizer.from_pretrained(source.path).save_pretrained(out_dir)
        return source.child(
            spec.label, out_dir, "weight_only", spec.settings(),
            traits={"quantized": f"int{spec.bits}-wo", "library": spec.backend},
            runtime_options={**source.runtime_options, "compile": spec.compile},
        )


def quantization_config(spec: WeightOnlySpec) -> Any:
    """The transformers quantization config for the spec (transformers then saves it with the weights)."""
    import torch

    # transformers matches these from a name's start or as a suffix of a *parameter* name (torchao), so a bare
    # "intermediate.dense" would never match "...intermediate.dense.weight"; anchor them as cast's keep_fp32 is.
    skip = [name_regex(p) for p in spec.skip_modules] or None  # None keeps each library's defaults (an output head)
    if spec.backend == "bitsandbytes":
        from transformers import BitsAndBytesConfig

        if spec.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
        # NF4 is the more faithful 4-bit code (measured cosine 0.976 vs fp4's 0.951); compute stays fp32.
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                                  llm_int8_skip_modules=skip)
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup
    from transformers import TorchAoConfig

    if spec.bits == 8:
        config = Int8WeightOnlyConfig()
    else:
        config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(spec.group_size or DEFAULT_GROUP_SIZE))
    return TorchAoConfig(config, modules_to_not_convert=skip)
