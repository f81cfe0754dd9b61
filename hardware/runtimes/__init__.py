"""Runtimes: how a variant's folder becomes something that answers requests.

The benchmark, the compile stage and the MLflow model drive every variant
through the same ``Predictor`` (texts in, a numpy array out), whatever engine
runs it: PyTorch, ONNX Runtime, or a compile backend's own runtime. A runtime
is picked by the variant's ``runtime`` field through the ``RUNTIMES``
registry, and ``load_variant`` is the one way to load a variant: runtime,
serving options (length-bucketed batches) and the workload's shape together,
so a registered champion is served exactly as it was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ratchet.core.plugins import Registry
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant


@dataclass(frozen=True)
class Shape:
    """What the workload asks of each request: at most ``sequence_length`` tokens in (longer inputs are
    truncated) and, for text generation, ``max_new_tokens`` tokens out."""

    sequence_length: int
    max_new_tokens: int = 16


class Predictor(Protocol):
    """One loaded variant: a batch of texts in, one output row per text out."""

    def predict(self, texts: Sequence[str]) -> np.ndarray: ...


class Runtime(Protocol):
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> Predictor: ...


RUNTIMES: Registry[type[Runtime]] = Registry("runtime")


def load_variant(variant: Variant, hardware: HardwareSpec, shape: Shape) -> Predictor:
    """The variant's runtime, loaded for ``hardware`` and ``shape``, with the serving options the variant records."""
    predictor = RUNTIMES.get(variant.runtime)().load(variant, hardware, shape)
    buckets = variant.runtime_options.get("length_buckets")
    if buckets:
        from ratchet.hardware.runtimes.length_buckets import LengthBucketed

        predictor = LengthBucketed(predictor, buckets["max_padding"])
    serving = variant.runtime_options.get("serving", {})
    if serving.keys() & {"router", "compression", "cache"}:
        from ratchet.hardware.serving.stack import serving_stack

        predictor = serving_stack(predictor, variant, hardware, shape)
    return predictor
