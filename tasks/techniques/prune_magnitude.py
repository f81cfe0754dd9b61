"""Unstructured L1 magnitude pruning of the transformer blocks' Linear weights.

The smallest-magnitude weights are set to zero (``torch.nn.utils.prune``), the
masks are made permanent, and the model is saved as an ordinary safetensors
checkpoint with the same shapes.

Be clear about what this buys: **nothing in speed on dense kernels**. The
tensors keep their shape and the matmuls multiply the zeros like any other
number, so latency does not move, and the gate will reject the step on its
objective. On all-MiniLM-L6-v2 (support-FAQ workload), 30% global sparsity
measured 0.99x the baseline's p95 (95% CI 0.94-1.04) at a mean cosine of 0.937
to the dense embeddings, and recall@5 fell from 0.841 to 0.815 (a 30 s
recovery fine-tune lifts the cosine to about 0.966). The zeros only pay off
with a runtime that skips them (a sparse CPU engine; GPU 2:4 kernels need the
2:4 pattern, which unstructured pruning does not produce) or when the file is
compressed. The technique exists to measure that sensitivity honestly and as
a building block for such runtimes; ``prune_ffn`` is the pruning that removes
work on any kernel.

``scope: global`` ranks all block weights together (blocks with smaller
weights lose more); ``layer`` prunes each Linear by the same fraction. An
optional recovery fine-tune (``recovery_steps`` / ``recovery_time_s``) trains
the pruned model towards the dense one and puts the zeros back after every
optimizer step, so the sparsity pattern survives training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.torch_runtime import load_hf_model
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._training import RecoverySpec, encoder_layers, fp32_encoder_availability, recover

if TYPE_CHECKING:  # imported where it runs: technique modules load with every spec validation
    import torch


class PruneMagnitudeSpec(RecoverySpec):
    kind: Literal["prune_magnitude"] = "prune_magnitude"
    sparsity: float = Field(0.3, gt=0, lt=1, description="Fraction of the blocks' Linear weights set to zero.")
    scope: Literal["global", "layer"] = Field("global", description="Rank weights across all blocks, or per Linear.")


def block_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """Every Linear inside the transformer blocks (embeddings, pooler and task head are left alone)."""
    import torch

    return [m for layer in encoder_layers(model) for m in layer.modules() if isinstance(m, torch.nn.Linear)]


def prune_l1(linears: list[torch.nn.Linear], sparsity: float, scope: str) -> None:
    """Zero the smallest weights, then drop the masks so the zeros are plain weights."""
    from torch.nn.utils import prune

    if scope == "global":
        prune.global_unstructured([(m, "weight") for m in linears], pruning_method=prune.L1Unstructured, amount=sparsity)
    else:
        for module in linears:
            prune.l1_unstructured(module, "weight", amount=sparsity)
    for module in linears:
        prune.remove(module, "weight")


def measured_sparsity(linears: list[torch.nn.Linear]) -> tuple[int, int]:
    """(zero weights, all weights) over ``linears``."""
    zeros = sum(int((m.weight == 0).sum()) for m in linears)
    return zeros, sum(m.weight.numel() for m in linears)


def keep_zeros(linears: list[torch.nn.Linear]):
    """A training hook that puts the pruned zeros back after each optimizer step."""
    import torch

    masks = [(m, m.weight != 0) for m in linears]

    def apply(_: torch.nn.Module) -> None:
        with torch.no_grad():
            for module, mask in masks:
                module.weight.mul_(mask)

    return apply


@TECHNIQUES.register("prune_magnitude")
class PruneMagnitude:
    spec_type: ClassVar[type[TechniqueSpec]] = PruneMagnitudeSpec

    def availability(self, spec: PruneMagnitudeSpec, source: Variant) -> Availability:
        return fp32_encoder_availability("prune_magnitude", source)

    def apply(self, spec: PruneMagnitudeSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from transformers import AutoTokenizer

        model = load_hf_model(source)
        linears = block_linears(model)
        prune_l1(linears, spec.sparsity, spec.scope)
        recovery = recover(model, source, ctx, spec, after_step=keep_zeros(linears))
        model.save_pretrained(out_dir)
        AutoTokenizer.from_pretrained(source.path).save_pretrained(out_dir)
        zeros, total = measured_sparsity(linears)
        params = {**spec.settings(), "sparsity_measured": round(zeros / total, 6), "zero_weights": zeros,
                  "prunable_weights": total, **recovery}
        return source.child(spec.label, out_dir, "prune_magnitude", params)
