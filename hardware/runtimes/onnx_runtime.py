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

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import RUNTIMES, Shape

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
    """ORT session options from the variant's runtime options (level, threads) and the hardware's thread count."""
    ort = import_onnxruntime()
    level = runtime_options.get("graph_optimization_level", "all")
    if level not in OPTIMIZATION_LEVELS:
        raise ValueError(f"graph_optimization_level {level!r} is not one of {sorted(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level])
    options.log_severity_level = ERRORS_ONLY
    threads = runtime_options.get("intra_op_threads") or hardware.threads
    if threads:
        options.intra_op_num_threads = threads
    return options


# Execution providers by name, fastest first; ORT hands a node no earlier provider has a kernel for to the next.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def providers(device: str, provider: str | None = None) -> list[str]:
    """The providers for ``provider`` (default: CPU, or CUDA when the hardware is a GPU).

    Asking for a GPU provider this onnxruntime does not have fails instead of silently measuring the CPU
    under a GPU hardware label.
    """
    chosen = PROVIDERS[provider or ("cuda" if device == "cuda" else "cpu")]
    available = import_onnxruntime().get_available_providers()
    if chosen[0] not in available:
        raise RuntimeError(
            f"{chosen[0]} is not in this onnxruntime (has {available}); "
            "pip install onnxruntime-gpu in place of onnxruntime, on a machine with an NVIDIA GPU"
        )
    return chosen


def open_session(path: Path, runtime_options: dict[str, Any], hardware: HardwareSpec) -> Any:
    """An ``InferenceSession`` on an ONNX file, configured like the benchmark configures it.

    ``provider_options`` go to the first provider; a relative ``*_path`` among them (an engine cache kept
    inside the artifact) is resolved against the model's folder, so the artifact can move.
    """
    ort = import_onnxruntime()
    chosen: list[Any] = providers(hardware.device, runtime_options.get("provider"))
    options = runtime_options.get("provider_options")
    if options:
        resolved = {k: str(path.parent / v) if k.endswith("_path") and not Path(str(v)).is_absolute() else v
                    for k, v in options.items()}
        chosen = [(chosen[0], resolved), *chosen[1:]]
    return ort.InferenceSession(str(path), session_options(runtime_options, hardware), providers=chosen)


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
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> OnnxPredictor:
        from transformers import AutoTokenizer

        model = variant.path / MODEL_FILE
        if not model.is_file():
            raise FileNotFoundError(f"{variant.name}: no {MODEL_FILE} in {variant.path} (the onnx_export step makes one)")
        tokenizer = AutoTokenizer.from_pretrained(variant.path)
        return OnnxPredictor(model, tokenizer, variant.runtime_options, hardware, shape.sequence_length)
