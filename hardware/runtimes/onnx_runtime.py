"""ONNX Runtime for variants exported to ``model.onnx`` (the fastest CPU path measured here).

The task head (mean pooling + L2 normalisation, or softmax) is part of the
exported graph, so a prediction is tokenize -> ``session.run`` -> first output,
with no PyTorch in the loop. ``onnxruntime`` is imported lazily: the benchmark
worker imports every runtime module, and a machine without ONNX Runtime must
still be able to measure PyTorch variants.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardware.profile import HardwareSpec
from hardware.runtimes import RUNTIMES
from tasks.variant import Variant

MODEL_FILE = "model.onnx"

# ``runtime_options["graph_optimization_level"]`` -> ORT's enum member name.
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
# ORT's own warnings (e.g. unused initializers after fusion) are noise in a benchmark log.
ERRORS_ONLY = 3


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeError("ONNX variants need onnxruntime (pip install onnxruntime, or onnxruntime-gpu for CUDA)") from exc
    return onnxruntime


@contextlib.contextmanager
def ort_errors_as_runtime_errors() -> Iterator[None]:
    """ORT's C++ errors (``Fail``, ``InvalidGraph``, ...) subclass bare ``Exception``; as ``RuntimeError`` a
    technique that calls ORT in-process is recorded as *failed: reason* instead of ending the run."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime.capi"):
            raise
        raise RuntimeError(f"onnxruntime {type(exc).__name__}: {exc}") from exc


def session_options(runtime_options: dict[str, Any], hardware: HardwareSpec) -> Any:
    """ORT session options from the variant's runtime options and the hardware's thread count."""
    ort = import_onnxruntime()
    level = runtime_options.get("graph_optimization_level", "all")
    if level not in OPTIMIZATION_LEVELS:
        raise ValueError(f"graph_optimization_level {level!r} is not one of {sorted(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level])
    options.log_severity_level = ERRORS_ONLY
    if hardware.threads:
        options.intra_op_num_threads = hardware.threads
    return options


def providers(device: str) -> list[str]:
    """CPU, or CUDA first (CPU takes the nodes CUDA has no kernel for) when the hardware is a GPU.

    Asking for CUDA where ORT has no CUDA provider fails instead of silently measuring the CPU
    under a GPU hardware label.
    """
    if device != "cuda":
        return ["CPUExecutionProvider"]
    available = import_onnxruntime().get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise RuntimeError(
            f"hardware.device is 'cuda' but this onnxruntime has no CUDAExecutionProvider (has {available}); "
            "pip install onnxruntime-gpu in place of onnxruntime"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_session(path: Path, runtime_options: dict[str, Any], hardware: HardwareSpec) -> Any:
    """An ``InferenceSession`` on an ONNX file, configured like the benchmark configures it."""
    ort = import_onnxruntime()
    return ort.InferenceSession(str(path), session_options(runtime_options, hardware), providers=providers(hardware.device))


class OnnxPredictor:
    """Tokenise to numpy, feed the inputs the graph declares, return its first output."""

    def __init__(self, model: Path, tokenizer: Any, runtime_options: dict[str, Any], hardware: HardwareSpec,
                 sequence_length: int) -> None:
        self.tokenizer = tokenizer
        self.session = open_session(model, runtime_options, hardware)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.sequence_length = sequence_length

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.sequence_length, return_tensors="np"
        )
        feed = {name: enc[name].astype(np.int64) for name in self.input_names}
        return self.session.run(None, feed)[0]


@RUNTIMES.register("onnxruntime")
class OnnxRuntime:
    def load(self, variant: Variant, hardware: HardwareSpec, sequence_length: int) -> OnnxPredictor:
        from transformers import AutoTokenizer

        model = variant.path / MODEL_FILE
        if not model.is_file():
            raise FileNotFoundError(f"{variant.name}: no {MODEL_FILE} in {variant.path} (the onnx_export step makes one)")
        tokenizer = AutoTokenizer.from_pretrained(variant.path)
        return OnnxPredictor(model, tokenizer, variant.runtime_options, hardware, sequence_length)
