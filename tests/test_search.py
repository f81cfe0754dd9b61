"""Per-technique search: how a step expands into candidates, and how the winner is picked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from evals.rubric import CriterionResult, RubricResult
from flows.ratchet import RatchetState, StepRecord, pick_winner
from tasks.measure import Measurement
from tasks.techniques.cast import CastSpec
from tasks.techniques.int8_dynamic import Int8DynamicSpec
from tasks.techniques.onnx_int8 import OnnxInt8Spec


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


def record(name: str, decision: str, p95: float, rubric: float = 0.8) -> StepRecord:
    rubric_result = RubricResult("tuning", rubric, [CriterionResult("r", "recall_at_k", rubric, 1.0, 0.0)])
    measurement = Measurement({"p95_ms": p95}, [p95 / 1000] * 10, {"queries": np.zeros((1, 2))}, Path("."),
                              {"tuning": rubric_result, "heldout": rubric_result})
    return StepRecord(name, "cast", decision, "all criteria passed", measurement=measurement)


def test_pick_winner_keeps_the_fastest_accepted_and_says_why_the_others_lost() -> None:
    records = [record("a", "accepted", 5.0), record("b", "accepted", 4.0), record("c", "rejected", 1.0)]
    picked = pick_winner(records, "p95_ms")
    assert [r.decision for r in picked] == ["rejected", "accepted", "rejected"]
    assert "b is better on p95_ms" in picked[0].reason
    assert picked[2].reason == "all criteria passed"  # a gate rejection keeps its own reason


def test_pick_winner_breaks_ties_on_quality() -> None:
    picked = pick_winner([record("a", "accepted", 4.0, 0.7), record("b", "accepted", 4.0, 0.9)], "p95_ms")
    assert [r.decision for r in picked] == ["rejected", "accepted"]


def test_advance_moves_the_champion_only_to_an_accepted_candidate() -> None:
    base = record("baseline", "baseline", 6.0)
    state = RatchetState.start(base)
    state = state.advance([record("x", "rejected", 9.0)])
    assert state.champion is base
    winner = record("y", "accepted", 3.0)
    state = state.advance([winner, record("z", "rejected", 2.0)])
    assert state.champion is winner and [r.step for r in state.records] == ["baseline", "x", "y", "z"]


def test_ratchet_steps_gives_every_candidate_the_same_champion_and_keeps_the_best() -> None:
    from flows.ratchet import ratchet_steps

    base = record("baseline", "baseline", 6.0)
    seen: list[tuple[str, str]] = []
    latencies = {"cast[dtype=fp16]": 7.0, "cast[dtype=bf16]": 4.0, "again": 5.0}

    def candidate(state: RatchetState, step) -> StepRecord:
        seen.append((step.label, state.champion.step))
        p95 = latencies[step.label]
        return record(step.label, "accepted" if p95 < state.champion.measurement.perf["p95_ms"] else "rejected", p95)

    steps = [CastSpec(kind="cast", search={"dtype": ["fp16", "bf16"]}), CastSpec(kind="cast", name="again")]
    logged: list[list[str]] = []
    state = ratchet_steps(steps, RatchetState.start(base), "p95_ms", candidate,
                          lambda records: logged.append([r.step for r in records]))
    assert seen == [("cast[dtype=fp16]", "baseline"), ("cast[dtype=bf16]", "baseline"), ("again", "cast[dtype=bf16]")]
    assert state.champion.step == "cast[dtype=bf16]"  # 'again' (5 ms) lost to the 4 ms champion
    assert logged == [["cast[dtype=fp16]", "cast[dtype=bf16]"], ["again"]]
