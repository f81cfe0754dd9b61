"""GPTQ 4-bit (or 2/3/8-bit) weights for causal LMs, through GPT-QModel, calibrated on the workload's tuning texts.

GPTQ quantizes each Linear's columns in order and spreads the rounding error
over the columns not yet quantized, using second-order statistics of the
calibration activations. Shared machinery (environment, calibration, kernel
shape rules, why GPT-QModel): ``_gptqmodel``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ratchet.tasks.techniques import TECHNIQUES, TechniqueSpec
from ratchet.tasks.techniques._gptqmodel import GptqModelSpec, GptqModelTechnique


class GptqSpec(GptqModelSpec):
    kind: Literal["gptq"] = "gptq"
    bits: Literal[2, 3, 4, 8] = 4
    sym: bool = Field(True, description="Symmetric weights (no zero point).")
    desc_act: bool = Field(False, description="Quantize columns by decreasing activation size (slower kernels).")
    damp_percent: float = Field(0.05, gt=0, lt=1, description="Dampening added to the Hessian diagonal.")


@TECHNIQUES.register("gptq")
class Gptq(GptqModelTechnique):
    spec_type: ClassVar[type[TechniqueSpec]] = GptqSpec
    kind = "gptq"
    output_multiple = 16

    def quantize_config(self, spec: GptqSpec) -> Any:
        from gptqmodel import QuantizeConfig

        return QuantizeConfig(bits=spec.bits, group_size=spec.group_size, sym=spec.sym, desc_act=spec.desc_act,
                              damp_percent=spec.damp_percent, offload_to_disk=False)
