"""AWQ 4-bit weights for causal LMs, through GPT-QModel, calibrated on the workload's tuning texts.

AWQ scales the weight channels that matter most for the calibration
activations before rounding, so the salient ones lose least. On the CPU it
quantizes with GPT-QModel's torch AWQ path (its default wants CUDA) in bf16
(the AWQ torch kernels take fp16/bf16 only). Asymmetric weights (a zero point,
AWQ's own default) were the more faithful setting measured here (mean cosine
0.9992 vs 0.9984 symmetric, group 128). Shared machinery: ``_gptqmodel``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ratchet.tasks.techniques import TECHNIQUES, TechniqueSpec
from ratchet.tasks.techniques._gptqmodel import GptqModelSpec, GptqModelTechnique


class AwqSpec(GptqModelSpec):
    kind: Literal["awq"] = "awq"
    bits: Literal[4] = 4
    zero_point: bool = Field(True, description="Asymmetric weights with a zero point (AWQ's default).")


@TECHNIQUES.register("awq")
class Awq(GptqModelTechnique):
    spec_type: ClassVar[type[TechniqueSpec]] = AwqSpec
    kind = "awq"
    output_multiple = 64

    def quantize_config(self, spec: AwqSpec) -> Any:
        from gptqmodel import QuantizeConfig

        return QuantizeConfig(bits=spec.bits, group_size=spec.group_size, quant_method="awq", sym=not spec.zero_point,
                              offload_to_disk=False)

    def quantize_options(self) -> dict[str, Any]:
        import torch
        from gptqmodel import BACKEND

        return {} if torch.cuda.is_available() else {"backend": BACKEND.AWQ_TORCH}
