"""How close two variants' outputs are: row cosines, and a compiled artifact's parity with its source.

One definition of "row cosine" for every place that compares outputs: the
fidelity scorer, the compile stage's parity gate and ``onnx_int8``'s
accuracy-aware fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between matching rows of ``a`` and ``b`` (in float64; a zero row counts as cosine 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(axis=-1) / np.clip(norms, 1e-12, None)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(row_cosines(a, b).mean())


@dataclass(frozen=True)
class Parity:
    """How far a compiled artifact's outputs are from its source's, over every eval input."""

    max_abs_diff: float
    mean_cosine: float

    def to_dict(self) -> dict[str, float]:
        return {"max_abs_diff": self.max_abs_diff, "mean_cosine": self.mean_cosine}


def parity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> Parity:
    """Max absolute difference and mean row cosine over every input set the reference has.

    Shapes must match: an artifact that answers with another shape computes another function.
    """
    diffs, cosines = [], []
    for name, ref in reference.items():
        out = outputs.get(name)
        if out is None or out.shape != ref.shape:
            got = "nothing" if out is None else f"shape {out.shape}"
            raise ValueError(f"parity: the artifact gave {got} for {name!r}, its source {ref.shape}")
        diffs.append(float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max()))
        cosines.append(row_cosines(out, ref))
    return Parity(max(diffs), float(np.concatenate(cosines).mean()))
