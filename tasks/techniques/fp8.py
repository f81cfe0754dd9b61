"""FP8 (e4m3) weights and dynamically quantized FP8 activations through torchao, on NVIDIA GPUs.

FP8 matmuls (``torch._scaled_mm``) exist only on GPUs of compute capability 8.9 or
newer (Ada, Hopper, Blackwell); elsewhere there is no kernel to run, so
availability says which of torchao, CUDA or the capability is missing instead of
failing mid-step. The weights are loaded in bf16 first: row-wise scaled matmuls
produce bf16 only. Like torchao's int8, the dynamic activation quantization pays
off once inductor fuses it, hence ``compile`` on by default. The result is saved
to safetensors through transformers' ``TorchAoConfig`` (``Float8Tensor`` is one of
the tensor classes torchao serialises).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability, source_check
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec

MIN_CAPABILITY = (8, 9)


class Fp8Spec(TechniqueSpec):
    kind: Literal["fp8"] = "fp8"
    granularity: Literal["row", "tensor"] = Field(
        "row", description="One scale per weight row and activation token, or one per tensor."
    )
    compile: bool = Field(True, description="Run the result under torch.compile (fuses the activation quantization).")


def cuda_fp8_support() -> Availability:
    """Whether this machine has a GPU that runs FP8 matmuls; never raises."""
    if importlib.util.find_spec("torchao") is None:
        return Availability(False, "torchao is not installed (pip install 'torchao>=0.18,<0.19')")
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only torch build"
        return Availability(False, f"fp8 needs an NVIDIA GPU with CUDA (compute capability >= 8.9); "
                                   f"no CUDA device is visible ({build})")
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name()
        return Availability(False, f"fp8 needs CUDA compute capability >= 8.9; {name} has {capability[0]}.{capability[1]}")
    return Availability(True)


@TECHNIQUES.register("fp8")
class Fp8:
    spec_type: ClassVar[type[TechniqueSpec]] = Fp8Spec

    def availability(self, spec: Fp8Spec, source: Variant) -> Availability:
        available = source_check("fp8", source, float32=False)
        return cuda_fp8_support() if available.ok else available

    def apply(self, spec: Fp8Spec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        if ctx.hardware.device != "cuda":
            raise ValueError(
                f"fp8 runs on the GPU only; the spec's hardware.device is {ctx.hardware.device!r} (set it to cuda)"
            )
        import torch
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor
        from transformers import AutoTokenizer, TorchAoConfig

        from ratchet.hardware.runtimes.torch_runtime import load_hf_model

        granularity = PerRow() if spec.granularity == "row" else PerTensor()
        config = Float8DynamicActivationFloat8WeightConfig(granularity=granularity)
        model = load_hf_model(source, quantization_config=TorchAoConfig(config), dtype=torch.bfloat16, device_map="cuda")
        model.save_pretrained(out_dir)
        AutoTokenizer.from_pretrained(source.path).save_pretrained(out_dir)
        return source.child(
            spec.label, out_dir, "fp8", spec.settings(), traits={"quantized": "fp8", "dtype": "bf16"},
            runtime_options={**source.runtime_options, "compile": spec.compile},
        )
