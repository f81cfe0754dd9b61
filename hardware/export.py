"""What exporting a variant needs, asked without importing torch: can this variant be traced, and its graph file.

The ``onnx_export`` technique and every compile backend that starts from a
trace or an ONNX graph ask the same questions here, so their reasons read the
same; the tracing itself is ``ratchet.hardware.tracing``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ratchet.core.availability import Availability, requires, source_check
from ratchet.core.model_tasks import model_task
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.onnx_runtime import MODEL_FILE


def traceable(who: str, source: Variant) -> Availability:
    """A float, unquantized PyTorch model of a task whose head can be traced into the artifact."""
    if not model_task(source.task).traceable:
        return Availability(False, f"{who} traces a model with its task head, and {source.task!r} generates text instead")
    return source_check(who, source)


def exportable(who: str, source: Variant) -> Availability:
    """``traceable``, and the ONNX exporter's packages are installed."""
    available = requires(who, "onnx", "onnxruntime")
    return traceable(who, source) if available.ok else available


def onnx_graph(who: str, source: Variant, refuse_quantized: str | None = None) -> Availability:
    """An ONNX variant with its ``model.onnx`` (refused with ``refuse_quantized`` as the reason when it is
    quantized and the backend cannot run that), or a PyTorch variant that can be exported first."""
    if source.runtime != "onnxruntime":
        return exportable(who, source)
    if refuse_quantized and source.traits.get("quantized"):
        return Availability(False, refuse_quantized)
    ok = (source.path / MODEL_FILE).is_file()
    return Availability(ok, "" if ok else f"no {MODEL_FILE} in {source.path}")


def graph_file(source: Variant, tokenizer: Any, scratch: Path, opset: int) -> Path:
    """The source's ``model.onnx``, or (a PyTorch source) its export into ``scratch``."""
    if source.runtime == "onnxruntime":
        return source.path / MODEL_FILE
    from ratchet.hardware.tracing import export_onnx

    export_onnx(source, tokenizer, scratch / MODEL_FILE, opset)
    return scratch / MODEL_FILE
