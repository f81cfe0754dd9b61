"""Runtimes: how a variant's folder becomes something that answers requests.

The benchmark and the rubric drive every variant through the same
``Predictor`` (texts in, a numpy array out), whatever engine runs it: PyTorch
here, compiled backends later. A runtime is picked by the variant's
``runtime`` field, through the ``RUNTIMES`` registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hardware.profile import HardwareSpec
from registry.plugins import Registry
from tasks.variant import Variant


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
