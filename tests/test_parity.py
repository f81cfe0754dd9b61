"""Tests for hardware.parity: the one row cosine, and a compiled artifact's parity with its source."""

from __future__ import annotations

import numpy as np
import pytest

from ratchet.hardware.parity import mean_cosine, parity, row_cosines


def test_row_cosines_of_scaled_opposite_and_orthogonal_rows() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [-1.0, -1.0], [5.0, 0.0]])
    assert row_cosines(a, b) == pytest.approx([1.0, -1.0, 0.0])
    assert mean_cosine(a, b) == pytest.approx(0.0)


def test_a_zero_row_has_cosine_zero_instead_of_nan() -> None:
    assert row_cosines(np.zeros((1, 3)), np.ones((1, 3))).tolist() == [0.0]


def test_parity_is_the_worst_difference_and_the_mean_cosine_over_every_input_set() -> None:
    ref = {"q": np.ones((3, 4)), "c": np.ones((2, 4))}
    out = {"q": np.ones((3, 4)), "c": np.array([[1.0, 1, 1, 1.5], [1, 1, 1, 1]])}
    got = parity(out, ref)
    assert got.max_abs_diff == pytest.approx(0.5)
    assert got.mean_cosine == pytest.approx((4 + float(row_cosines(out["c"], ref["c"])[0])) / 5)


def test_parity_refuses_outputs_of_another_shape() -> None:
    ref = {"q": np.ones((3, 4))}
    assert parity({"q": np.ones((3, 4))}, ref).max_abs_diff == 0
    with pytest.raises(ValueError, match="shape"):
        parity({"q": np.ones((3, 5))}, ref)
    with pytest.raises(ValueError, match="nothing"):
        parity({}, ref)
