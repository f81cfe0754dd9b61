"""Padding-aware batching: a batch split into sub-batches of similar length, so few padded tokens are computed.

A batch is padded to its longest text; with a 6-word query next to a 70-word
document most of the compute goes to padding. Sorting the batch by length and
cutting it wherever the padded share of a sub-batch would exceed
``max_padding`` trades padded tokens for extra calls, which pays off or not
depending on the engine's per-call overhead: the ``length_buckets`` step
measures it, the gate decides. Lengths are counted in characters, a proxy
for tokens that needs no second tokenization. Outputs come back in the
request's order; with an attention mask they equal the unsplit batch's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ratchet.hardware.runtimes import Predictor


def buckets(lengths: Sequence[int], max_padding: float) -> list[list[int]]:
    """Indices grouped by sorted length; in each group the padded share, 1 - sum / (count * longest), stays
    at most ``max_padding`` (a single item is always its own group)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group is not None:
            total = sum(lengths[j] for j in group) + lengths[i]
            if 1 - total / ((len(group) + 1) * max(lengths[i], 1)) <= max_padding:
                group.append(i)
                continue
        groups.append([i])
    return groups


class LengthBucketed:
    """Wraps any predictor; batches of one pass straight through."""

    def __init__(self, inner: Predictor, max_padding: float) -> None:
        self.inner, self.max_padding = inner, max_padding

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) < 2:
            return self.inner.predict(texts)
        groups = buckets([len(t) for t in texts], self.max_padding)
        parts = [self.inner.predict([texts[i] for i in group]) for group in groups]
        order = np.argsort([i for group in groups for i in group], kind="stable")
        return np.concatenate(parts)[order]
