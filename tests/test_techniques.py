"""Tests for ratchet.tasks.techniques: a step's spec, and how its bounded search expands into named candidates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ratchet.tasks.techniques.cast import CastSpec
from ratchet.tasks.techniques.int8_dynamic import Int8DynamicSpec
from ratchet.tasks.techniques.onnx_int8 import OnnxInt8Spec


def test_search_expands_into_named_candidates() -> None:
    spec = Int8DynamicSpec(kind="int8_dynamic", name="q", search={"weight_only": [False, True], "compile": [True]})
    candidates = spec.candidates()
    assert [c.label for c in candidates] == ["q[weight_only=false,compile=true]", "q[weight_only=true,compile=true]"]
    assert [c.weight_only for c in candidates] == [False, True]
    assert all(c.search is None for c in candidates)
    assert "search" not in spec.settings()


def test_list_and_null_values_get_readable_candidate_names() -> None:
    spec = OnnxInt8Spec(name="int8", search={"op_types": [None, ["MatMul", "Attention"]]})
    candidates = spec.candidates()
    assert [c.label for c in candidates] == ["int8[op_types=default]", "int8[op_types=MatMul+Attention]"]
    assert [c.op_types for c in candidates] == [None, ["MatMul", "Attention"]]


def test_a_step_without_search_is_its_own_only_candidate() -> None:
    spec = CastSpec(kind="cast", dtype="fp16")
    assert spec.candidates() == [spec]


@pytest.mark.parametrize(
    ("search", "needle"),
    [
        ({"colour": ["red"]}, "not settings of 'cast'"),
        ({"dtype": []}, "at least one value"),
        ({"dtype": ["fp8"]}, "fp16"),
    ],
)
def test_bad_search_fails_validation(search: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        CastSpec(kind="cast", search=search)
    assert needle in str(info.value)


def test_search_is_bounded() -> None:
    with pytest.raises(ValidationError, match="at most 8"):
        Int8DynamicSpec(kind="int8_dynamic", search={"weight_only": [True, False, True], "compile": [True, False, True]})
