"""A PyTorch variant and its task head as one traceable module, and its export to ONNX.

Every exporter and tracing compile backend (``onnx_export``, ``prune_heads``,
TFLite, XLA, Neuron, TensorRT, OpenVINO and ONNX Runtime from a PyTorch
champion) turns the same module into its own format: the model plus the head
its task declares (``ratchet.core.model_tasks``), so an artifact computes
exactly what the PyTorch variant computes (mean pooling and L2 normalisation
for embeddings, softmax for classification).

Exporter: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``),
chosen by measurement on all-MiniLM-L6-v2 (torch 2.13, onnxruntime 1.31):
onnxruntime's transformer optimizer fuses its graph fully (6 ``Attention``, 1
``EmbedLayerNormalization``, 12 ``SkipLayerNormalization``, 6 ``BiasGelu``:
686 nodes -> 58), while on the ``dynamo=True`` graph it finds no ``Attention``
and its symbolic shape inference fails; it also exports in about 1 s against
5.6 s, into one self-contained file.

This module imports torch at the top: plugins import it inside the functions
that trace, never at module level.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ratchet.core.model_tasks import Head, model_task
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.torch_runtime import load_hf_model

# Two texts of different lengths: padding makes the attention mask a real input of the traced graph.
DUMMY_TEXTS = ["a short query", "a longer query, so that the batch needs padding to one length"]


class WithHead(torch.nn.Module):
    """The model and its task head as one module, taking the tokenizer's tensors positionally (as the tracer feeds them)."""

    def __init__(self, model: torch.nn.Module, head: Head, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.head, self.input_names = model, head, input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        enc = dict(zip(self.input_names, tensors))
        return self.head(self.model(**enc), enc)


def with_head(source: Variant, input_names: list[str], **load_kwargs: Any) -> WithHead:
    """The source's model with its task head, in eval mode, ready to trace (kwargs go to ``from_pretrained``)."""
    return WithHead(load_hf_model(source, **load_kwargs), model_task(source.task).head, input_names).eval()


def export_module(module: torch.nn.Module, task: str, tokenizer: Any, path: Path, opset: int) -> None:
    """Trace a loaded model (e.g. one pruned in memory) + its task head into ``path``, batch and sequence dynamic."""
    declared = model_task(task)
    names = list(tokenizer.model_input_names)
    model = WithHead(module, declared.head, names)
    enc = tokenizer(DUMMY_TEXTS, padding=True, return_tensors="pt")
    output = declared.output_name
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {output: {0: "batch"}}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes, deprecation notices
        torch.onnx.export(
            model, tuple(enc[n] for n in names), str(path), input_names=names, output_names=[output],
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )


def export_onnx(source: Variant, tokenizer: Any, path: Path, opset: int) -> None:
    """Export the source's model + task head to ``path``.

    Loaded with ``attn_implementation="eager"``: SDPA exports as a pattern onnxruntime's optimizer does not
    recognise (0 ``Attention`` fused); the outputs are the same (max abs difference 2.5e-7 on MiniLM).
    """
    export_module(load_hf_model(source, attn_implementation="eager"), source.task, tokenizer, path, opset)
