"""Feeding engines that were compiled for one input shape (LiteRT, Neuron, XLA buckets).

Such an engine takes exactly ``batch`` rows of exactly ``length`` tokens. Every
text is padded to ``length`` and the batch is filled up with copies of its
last row, whose outputs are dropped. The attention mask makes padded positions
inert, so a fixed-shape engine computes what the dynamic graph computes; the
compile stage's parity check verifies it on the workload's inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

Inputs = dict[str, np.ndarray]


def _increasing(buckets: list[int]) -> list[int]:
    if buckets != sorted(set(buckets)) or buckets[0] < 1:
        raise ValueError(f"sequence_buckets must be increasing positive lengths, got {buckets}")
    return buckets


SequenceBuckets = Annotated[
    list[int], Field(min_length=1, description="Sequence lengths compiled; capped at the workload's "
                                               "sequence_length, which is always one."),
    AfterValidator(_increasing),
]


def bucket_lengths(buckets: Sequence[int], sequence_length: int) -> list[int]:
    """The lengths to compile: the buckets below ``sequence_length``, and ``sequence_length`` itself."""
    return sorted({*(b for b in buckets if b < sequence_length), sequence_length})


def fitting_length(tokenizer: Any, texts: Sequence[str], lengths: Sequence[int], sequence_length: int) -> int:
    """The smallest compiled length that holds the longest of ``texts`` (the largest when none does)."""
    longest = max(len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=sequence_length)["input_ids"])
    return min((n for n in lengths if n >= longest), default=max(lengths))


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
