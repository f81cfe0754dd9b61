"""Dynamic INT8 quantization of linear layers through torchao (the maintained PyTorch path).

Weights are quantized to int8 ahead of time; activations are quantized per
token at run time. ``torch.ao.quantization`` is deprecated in torch 2.13, so this
uses torchao's ``Int8DynamicActivationInt8WeightConfig`` via transformers'
``TorchAoConfig``, which also serialises the result to safetensors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability, source_check
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec


class Int8DynamicSpec(TechniqueSpec):
    kind: Literal["int8_dynamic"] = "int8_dynamic"
    weight_only: bool = Field(False, description="Quantize weights only (activations stay float).")
    compile: bool = Field(
        True,
        description="Run the result under torch.compile; torchao's int8 path is slower than fp32 in eager mode on CPU.",
    )


@TECHNIQUES.register("int8_dynamic")
class Int8Dynamic:
    spec_type: ClassVar[type[TechniqueSpec]] = Int8DynamicSpec

    def availability(self, spec: Int8DynamicSpec, source: Variant) -> Availability:
        if importlib.util.find_spec("torchao") is None:
            return Availability(False, "torchao is not installed (pip install torchao)")
        return source_check("int8_dynamic", source)

    def apply(self, spec: Int8DynamicSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
        from transformers import AutoTokenizer, TorchAoConfig

        from ratchet.hardware.runtimes.torch_runtime import load_hf_model

        config = Int8WeightOnlyConfig() if spec.weight_only else Int8DynamicActivationInt8WeightConfig()
        model = load_hf_model(source, quantization_config=TorchAoConfig(config))
        model.save_pretrained(out_dir)
        AutoTokenizer.from_pretrained(source.path).save_pretrained(out_dir)
        options = {**source.runtime_options, "compile": spec.compile}
        return source.child(
            spec.label, out_dir, "int8_dynamic", spec.settings(), traits={"quantized": "int8"}, runtime_options=options
        )
