"""Export a PyTorch fp32 variant to ONNX, task head included, for the ``onnxruntime`` runtime.

Exporter: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), chosen
by measurement on all-MiniLM-L6-v2 (torch 2.13, onnxruntime 1.31):

* onnxruntime's transformer optimizer fuses its graph fully: with eager attention,
  6 ``Attention``, 1 ``EmbedLayerNormalization``, 12 ``SkipLayerNormalization`` and
  6 ``BiasGelu`` (686 nodes -> 58). On the ``dynamo=True`` graph the same optimizer
  finds no ``Attention`` and no ``SkipLayerNormalization`` and its symbolic shape
  inference fails, with either attention implementation.
* It exports in about 1 s against 5.6 s, and writes one self-contained file
  (the dynamo exporter splits weights into ``model.onnx.data``).

The model is loaded with ``attn_implementation="eager"``: SDPA exports as a pattern
the optimizer does not recognise (0 ``Attention`` fused); the outputs are the same
(max abs difference 2.5e-7 on MiniLM).

``fusion`` is off by default: the unfused export already passed the gate in the pipeline
here (3.2x PyTorch fp32 at p50, 2.9x at p95), dynamic INT8 was measured faster on the
unfused graph than on the fused one (5.9x vs 5.2x p50), and fusion needs a model_type
onnxruntime's optimizer knows.

The head is ``TASK_HEADS`` from the torch runtime, traced into the graph, so
the ONNX variant computes exactly what the PyTorch one does (mean pooling and L2
normalisation for embeddings, softmax for classification).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from tasks.techniques import TECHNIQUES, Availability, TechniqueContext, TechniqueSpec, source_check
from tasks.variant import Variant

MODEL_FILE = "model.onnx"
OUTPUT_NAMES = {"feature-extraction": "embeddings", "text-classification": "probabilities"}
# Two texts of different lengths: padding makes the attention mask a real input of the traced graph.
DUMMY_TEXTS = ["a short query", "a longer query, so that the batch needs padding to one length"]


class OnnxExportSpec(TechniqueSpec):
    kind: Literal["onnx_export"] = "onnx_export"
    opset: int = Field(17, ge=14, le=20, description="ONNX opset (the TorchScript exporter supports 14-20).")
    fusion: bool = Field(
        False, description="Fuse attention/LayerNorm/GELU with onnxruntime's transformer optimizer (needs a known model_type)."
    )
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime's graph optimizations at session start (a runtime option)."
    )


@TECHNIQUES.register("onnx_export")
class OnnxExport:
    spec_type: ClassVar[type[TechniqueSpec]] = OnnxExportSpec

    def availability(self, spec: OnnxExportSpec, source: Variant) -> Availability:
        missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"onnx_export needs {' and '.join(missing)} (pip install {' '.join(missing)})")
        available = source_check("onnx_export", source)
        if not available.ok:
            return available
        if source.task not in OUTPUT_NAMES:
            return Availability(False, f"onnx_export has no task head for {source.task!r} (has {sorted(OUTPUT_NAMES)})")
        if spec.fusion:
            try:
                fusion_settings(json.loads((source.path / "config.json").read_text()))
            except (OSError, ValueError) as exc:
                return Availability(False, f"fusion: {exc}")
        return Availability(True)

    def preflight(self, spec: OnnxExportSpec, model_config: dict) -> None:
        """Refuse ``fusion: true`` for a model the optimizer has no fusions for, before anything runs."""
        if spec.fusion:
            fusion_settings(model_config)

    def apply(self, spec: OnnxExportSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        model_path = out_dir / MODEL_FILE
        exported = out_dir / "exported.onnx" if spec.fusion else model_path
        export(source, tokenizer, exported, spec.opset)
        params: dict[str, Any] = spec.settings()
        if spec.fusion:
            config = json.loads((source.path / "config.json").read_text())
            params["fused_operators"] = fuse(exported, model_path, config, ctx.hardware.device == "cuda")
            exported.unlink()
        tokenizer.save_pretrained(out_dir)
        options = {"graph_optimization_level": spec.graph_optimization_level}
        return source.child(
            spec.label, out_dir, "onnx_export", params, traits={"format": "onnx", "fused": spec.fusion},
            runtime="onnxruntime", runtime_options=options,
        )


def export(source: Variant, tokenizer: Any, path: Path, opset: int) -> None:
    """Trace the source's model + task head into ``path`` with dynamic batch and sequence axes."""
    from hardware.runtimes.torch_runtime import load_hf_model

    export_module(load_hf_model(source, attn_implementation="eager"), source.task, tokenizer, path, opset)


def export_module(module: torch.nn.Module, task: str, tokenizer: Any, path: Path, opset: int) -> None:
    """Trace a loaded model (e.g. one pruned in memory) + its task head into ``path``."""
    from hardware.runtimes.torch_runtime import TASK_HEADS

    names = list(tokenizer.model_input_names)
    model = WithHead(module, TASK_HEADS[task], names)
    enc = tokenizer(DUMMY_TEXTS, padding=True, return_tensors="pt")
    output = OUTPUT_NAMES[task]
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {output: {0: "batch"}}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes, deprecation notices
        torch.onnx.export(
            model, tuple(enc[n] for n in names), str(path), input_names=names, output_names=[output],
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )


def with_head(source: Variant, input_names: list[str], **load_kwargs: Any) -> "WithHead":
    """The source's model with its task head, in eval mode, ready to trace (kwargs go to ``from_pretrained``):
    what every exporter and compile backend turns into its own format."""
    from hardware.runtimes.torch_runtime import TASK_HEADS, load_hf_model

    return WithHead(load_hf_model(source, **load_kwargs), TASK_HEADS[source.task], input_names).eval()


class WithHead(torch.nn.Module):
    """The model and its task head as one module, taking the tokenizer's tensors positionally (as the tracer feeds them)."""

    def __init__(self, model: torch.nn.Module, head: Any, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.head, self.input_names = model, head, input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        enc = dict(zip(self.input_names, tensors))
        return self.head(self.model(**enc), enc)


def fusion_settings(config: dict) -> dict[str, Any]:
    """``optimize_model`` arguments from a Hugging Face ``config.json``; ValueError if it has no fusions for it."""
    try:
        from onnxruntime.transformers.optimizer import MODEL_TYPES
    except ImportError:
        raise ValueError("fusion needs onnxruntime (pip install onnxruntime)") from None
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"onnxruntime's transformer optimizer has no fusions for model_type {model_type!r} "
                         f"(known: {', '.join(sorted(MODEL_TYPES))})")
    heads = config.get("num_attention_heads", config.get("n_heads"))
    hidden = config.get("hidden_size", config.get("dim"))
    if not heads or not hidden:
        raise ValueError("config.json names no num_attention_heads/hidden_size, which attention fusion needs")
    return {"model_type": model_type, "num_heads": heads, "hidden_size": hidden}


def fuse(src: Path, dst: Path, config: dict, use_gpu: bool) -> dict[str, int]:
    """Transformer fusions (Python pattern rewrites only, ``opt_level=0``: the graph stays portable and the
    runtime applies ORT's own optimizations at session start). Returns the fused operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(src), opt_level=0, use_gpu=use_gpu, **fusion_settings(config))
    optimized.save_model_to_file(str(dst))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
