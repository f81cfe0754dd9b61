"""Structured attention-head pruning: the least important heads removed, exported as an ONNX graph.

A removed head takes its rows of the query, key and value projections and its
columns of the attention output projection with it, so the matmuls shrink on
any kernel. Which heads go follows FLAP (An et al., 2024), as ``prune_ffn``
does for neurons: on the tuning texts, each head's contribution to the
attention block's output (its slice of the context times its columns of the
output projection) is recorded on every real token; a head's importance is
how much that contribution *varies* (summed standard deviation), and the
mean contribution of every removed head is folded into the output bias.
Heads are ranked across all blocks, and every block keeps at least one.

Why ONNX: transformers 5 removed ``prune_heads``, and BERT's config derives
the head size from ``hidden_size / num_attention_heads``, so a model with
fewer heads (or different counts per block) cannot be described by its
``config.json`` and would not reload with ``from_pretrained``. In memory the
attention modules work with any head count (they reshape with ``-1`` heads),
so the pruned model is traced straight into ``model.onnx`` (task head
included, like ``onnx_export``) and the candidate runs on ONNX Runtime, where
``onnx_int8`` can still follow. An optional recovery fine-tune
(``recovery_steps`` / ``recovery_time_s``) trains the pruned model towards the
unpruned one before the export.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.hardware.export import traceable
from ratchet.hardware.runtimes.onnx_runtime import MODEL_FILE
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
from ratchet.tasks.techniques.prune_ffn import linear_params

if TYPE_CHECKING:  # imported where it runs: technique modules load with every spec validation
    import torch


class PruneHeadsSpec(RecoverySpec):
    kind: Literal["prune_heads"] = "prune_heads"
    ratio: float = Field(0.25, gt=0, lt=1, description="Fraction of all attention heads removed (ranked across blocks).")
    opset: int = Field(17, ge=14, le=20, description="ONNX opset of the exported graph.")


@dataclass(frozen=True)
class HeadStats:
    """Per head of one block: mean contribution vector to the block's output, and its summed deviation."""

    mean: torch.Tensor  # (heads, hidden)
    importance: torch.Tensor  # (heads,)


def head_stats(model: torch.nn.Module, tokenizer: object, texts: list[str], sequence_length: int,
               progress: ProgressFn) -> list[HeadStats]:
    """Every head's contribution to its block's output, on every real token of (a sample of) the tuning texts."""
    import torch

    layers = encoder_layers(model)
    heads = layers[0].attention.self.num_attention_heads
    hidden = layers[0].attention.output.dense.out_features
    sums = [torch.zeros(2, heads, hidden, dtype=torch.float64) for _ in layers]

    def install(batch: dict[str, torch.Tensor]) -> list:
        def accumulate(i: int, dense: torch.nn.Linear, args: tuple) -> None:
            context = args[0][batch["mask"]].double()  # (real tokens, all_head_size)
            per_head = context.view(len(context), heads, -1)  # (tokens, heads, head_size)
            weight = dense.weight.double().view(hidden, heads, -1)  # (hidden, heads, head_size)
            contribution = torch.einsum("thd,ohd->tho", per_head, weight)  # (tokens, heads, hidden)
            sums[i] += torch.stack([contribution.sum(0), (contribution * contribution).sum(0)])

        return [layer.attention.output.dense.register_forward_pre_hook(partial(accumulate, i))
                for i, layer in enumerate(layers)]

    tokens = statistics_pass(model, tokenizer, texts, sequence_length, install, progress)
    stats = []
    for total, square in sums:
        mean = total / tokens
        std = (square / tokens - mean * mean).clamp(min=0).sqrt()
        stats.append(HeadStats(mean.float(), std.sum(dim=-1).float()))
    return stats


def heads_to_keep(stats: list[HeadStats], ratio: float) -> list[list[int]]:
    """Per block, the heads that stay: the globally least important ``ratio`` go, at least one stays per block."""
    ranked = sorted((float(s.importance[h]), layer, h) for layer, s in enumerate(stats) for h in range(len(s.importance)))
    total = len(ranked)
    keep = [set(range(len(s.importance))) for s in stats]
    removed = 0
    for _, layer, head in ranked:
        if removed >= round(total * ratio):
            break
        if len(keep[layer]) > 1:
            keep[layer].discard(head)
            removed += 1
    return [sorted(k) for k in keep]


def drop_heads(model: torch.nn.Module, stats: list[HeadStats], keep: list[list[int]]) -> None:
    """Shrink each block's attention to ``keep``; the removed heads' mean contribution goes into the output bias."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    for layer, block_stats, kept in zip(encoder_layers(model), stats, keep):
        attention = layer.attention.self
        size = attention.attention_head_size
        removed = [h for h in range(attention.num_attention_heads) if h not in kept]
        index = torch.tensor([h * size + d for h in kept for d in range(size)])
        for name in ("query", "key", "value"):
            setattr(attention, name, prune_linear_layer(getattr(attention, name), index, dim=0))
        output = layer.attention.output
        output.dense = prune_linear_layer(output.dense, index, dim=1)
        with torch.no_grad():
            output.dense.bias += block_stats.mean[removed].sum(dim=0)
        attention.num_attention_heads = len(kept)
        attention.all_head_size = len(kept) * size


@TECHNIQUES.register("prune_heads")
class PruneHeads:
    spec_type: ClassVar[type[TechniqueSpec]] = PruneHeadsSpec

    def availability(self, spec: PruneHeadsSpec, source: Variant) -> Availability:
        available = fp32_encoder_availability("prune_heads", source)
        return traceable("prune_heads", source) if available.ok else available

    def apply(self, spec: PruneHeadsSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from transformers import AutoTokenizer

        model = load_hf_model(source, attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(source.path)
        before = linear_params(model)
        stats = head_stats(model, tokenizer, ctx.texts, ctx.sequence_length, partial(ctx.progress, "prune_heads"))
        keep = heads_to_keep(stats, spec.ratio)
        drop_heads(model, stats, keep)
        recovery = recover(model, source, ctx, spec)
        from ratchet.hardware.tracing import export_module

        export_module(model.eval(), source.task, tokenizer, out_dir / MODEL_FILE, spec.opset)
        tokenizer.save_pretrained(out_dir)
        params = {**spec.settings(), "heads_before": sum(len(s.importance) for s in stats),
                  "heads_after": sum(len(k) for k in keep), "heads_kept_per_block": [len(k) for k in keep],
                  "linear_params_before": before, "linear_params_after": linear_params(model),
                  "linear_flops_per_token_after": 2 * linear_params(model), **recovery}
        return source.child(spec.label, out_dir, "prune_heads", params, traits={"format": "onnx", "fused": False},
                            runtime="onnxruntime", runtime_options={"graph_optimization_level": "all"})
