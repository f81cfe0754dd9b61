"""Structured FFN pruning: remove the least important feed-forward neurons, so the matmuls shrink.

Each block's FFN is ``output.dense(act(intermediate.dense(x)))``; neuron ``j``
is row ``j`` of ``intermediate.dense`` and column ``j`` of ``output.dense``.
Dropping it removes ``hidden`` multiply-adds per token from each of the two
matmuls, on any kernel. The same number is dropped in every block, so
``config.intermediate_size`` still describes the model and it reloads with
``from_pretrained``.

Which neurons go, and what replaces them, follows FLAP (An et al., 2024): on
the tuning texts, neuron ``j``'s activation is recorded on every real token;
its importance is the standard deviation of that activation times the norm of
its output column (how much of the block's output *varies* with it), and the
mean output of every removed neuron is folded into ``output.dense``'s bias, so
a neuron that is nearly constant costs almost nothing to remove. Measured on
all-MiniLM-L6-v2 without recovery, mean cosine to the unpruned embeddings on
held-out support-FAQ queries, at ratio 0.25 / 0.5:

* weight norms only (input row x output column, no data): 0.860 / 0.728
* mean |activation| x output column norm: 0.894 / 0.783
* the same, plus the bias compensation: 0.928 / 0.828
* activation std x output column norm, plus the bias compensation (used): 0.946 / 0.855

Ratio 0.25 cuts the blocks' Linear FLOPs by 1/6 and measured about 1.2x faster
(p95); ratio 0.5 cuts them by 1/3, about 1.4x. Quality needs the recovery
fine-tune: at 0.5 with ``recovery_time_s: 60`` cosine rose to 0.966 on the
tuning queries (which it trained on) but only 0.909 on held-out ones.

Attention heads are not pruned. transformers 5 removed ``prune_heads``, and
BERT derives the head size from ``hidden_size / num_attention_heads``, so a
model with fewer heads in some blocks (or a smaller all-head size) cannot be
described by its config and would not reload with ``from_pretrained``; doing
it needs a custom attention module and ``trust_remote_code``, which this
project keeps off by default. torch-pruning (DepGraph) can shrink heads in
memory by patching the attention modules' attributes, which leaves the same
problem at save and reload. The FFN holds two thirds of a BERT block's
Linear weights, so it is also where most of the removable work is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.torch_runtime import load_hf_model
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._training import (
    ProgressFn,
    RecoverySpec,
    encoder_layers,
    fp32_encoder_availability,
    recover,
    statistics_pass,
)

if TYPE_CHECKING:  # imported where it runs: technique modules load with every spec validation
    import torch



class PruneFfnSpec(RecoverySpec):
    kind: Literal["prune_ffn"] = "prune_ffn"
    ratio: float = Field(0.25, gt=0, lt=1, description="Fraction of each block's FFN neurons removed.")


def linear_params(model: torch.nn.Module) -> int:
    """Weights of the blocks' Linear layers: 2x this is the multiply-add FLOPs per token they cost."""
    import torch

    return sum(m.weight.numel() for layer in encoder_layers(model) for m in layer.modules()
               if isinstance(m, torch.nn.Linear))


@dataclass(frozen=True)
class NeuronStats:
    """Mean and standard deviation of one block's FFN activations over the real tokens of the tuning texts."""

    mean: torch.Tensor
    std: torch.Tensor


def activation_stats(model: torch.nn.Module, tokenizer: object, texts: list[str], sequence_length: int,
                     progress: ProgressFn) -> list[NeuronStats]:
    """Each FFN neuron's activation on every real token of (a sample of) the tuning texts."""
    import torch

    layers = encoder_layers(model)
    sums = [torch.zeros(2, layer.intermediate.dense.out_features, dtype=torch.float64) for layer in layers]

    def install(batch: dict[str, torch.Tensor]) -> list:
        def accumulate(i: int, _: torch.nn.Module, __: tuple, out: torch.Tensor) -> None:
            real = out[batch["mask"]].double()  # (real tokens, neurons)
            sums[i] += torch.stack([real.sum(dim=0), (real * real).sum(dim=0)])

        return [layer.intermediate.register_forward_hook(partial(accumulate, i)) for i, layer in enumerate(layers)]

    tokens = statistics_pass(model, tokenizer, texts, sequence_length, install, progress)
    return [_stats(total, square, tokens) for total, square in sums]


def _stats(total: torch.Tensor, square: torch.Tensor, tokens: int) -> NeuronStats:
    mean = total / tokens
    return NeuronStats(mean.float(), (square / tokens - mean * mean).clamp(min=0).sqrt().float())


def drop_neurons(model: torch.nn.Module, stats: list[NeuronStats], keep: int) -> None:
    """Keep the ``keep`` most important neurons of every block's FFN; fold the rest's mean output into the bias."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    for layer, neuron in zip(encoder_layers(model), stats):
        out_weight = layer.output.dense.weight.detach()
        index = (neuron.std * out_weight.norm(dim=0)).topk(keep).indices.sort().values
        removed = torch.ones_like(neuron.mean, dtype=torch.bool)
        removed[index] = False
        compensation = out_weight[:, removed] @ neuron.mean[removed]
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
        with torch.no_grad():
            layer.output.dense.bias += compensation
    model.config.intermediate_size = keep


@TECHNIQUES.register("prune_ffn")
class PruneFfn:
    spec_type: ClassVar[type[TechniqueSpec]] = PruneFfnSpec

    def availability(self, spec: PruneFfnSpec, source: Variant) -> Availability:
        return fp32_encoder_availability("prune_ffn", source)

    def apply(self, spec: PruneFfnSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from transformers import AutoTokenizer

        model = load_hf_model(source)
        tokenizer = AutoTokenizer.from_pretrained(source.path)
        before = {"intermediate_size": model.config.intermediate_size, "linear_params": linear_params(model)}
        keep = max(1, round(before["intermediate_size"] * (1 - spec.ratio)))
        stats = activation_stats(model, tokenizer, ctx.texts, ctx.sequence_length, partial(ctx.progress, "prune_ffn"))
        drop_neurons(model, stats, keep)
        recovery = recover(model, source, ctx, spec)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        after = {"intermediate_size": keep, "linear_params": linear_params(model)}
        params = {**spec.settings(), **_accounting("before", before), **_accounting("after", after), **recovery}
        return source.child(spec.label, out_dir, "prune_ffn", params)


def _accounting(when: str, counts: dict[str, int]) -> dict[str, int]:
    return {
        f"intermediate_size_{when}": counts["intermediate_size"],
        f"linear_params_{when}": counts["linear_params"],
        f"linear_flops_per_token_{when}": 2 * counts["linear_params"],
    }
