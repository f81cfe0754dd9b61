"""Feeding engines that were compiled for one input shape (LiteRT, Neuron, XLA buckets).

Such an engine takes exactly ``batch`` rows of exactly ``length`` tokens. Every
text is padded to ``length`` and the batch is filled up with copies of its
last row, whose outputs are dropped. The attention mask makes padded positions
inert, so a fixed-shape engine computes what the dynamic graph computes; the
compile stage's parity check verifies it on the workload's inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]


def padded_inputs(tokenizer: Any, texts: Sequence[str], names: Sequence[str], length: int) -> Inputs:
    """The tokenizer's tensors for ``texts``, every row padded (or truncated) to ``length`` tokens, as int64."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=length, return_tensors="np")
    return {name: enc[name].astype(np.int64) for name in names}


def in_fixed_batches(run: Callable[[Inputs], np.ndarray], inputs: Inputs, batch: int) -> np.ndarray:
    """``run`` over ``inputs`` in chunks of exactly ``batch`` rows (the last one filled with copies), real rows kept."""
    rows = len(next(iter(inputs.values())))
    outputs = []
    for start in range(0, rows, batch):
        chunk = {name: value[start:start + batch] for name, value in inputs.items()}
        real = len(next(iter(chunk.values())))
        if real < batch:
            chunk = {name: np.concatenate([value, np.repeat(value[-1:], batch - real, axis=0)])
                     for name, value in chunk.items()}
        outputs.append(np.asarray(run(chunk))[:real])
    return np.concatenate(outputs)
