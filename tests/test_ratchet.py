"""Tests for ratchet.flows.ratchet: the loop (every candidate of a step meets the same champion, the best passing
one replaces it) and ratchet.tasks.records' state (only an accepted candidate moves the champion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ratchet.evals.rubric import CriterionResult, RubricResult
from ratchet.flows.ratchet import pick_winner
from ratchet.hardware.benchmark.paired import PairedRatio
from ratchet.tasks.compare import Comparison
from ratchet.tasks.measure import Measurement
from ratchet.tasks.records import RatchetState, StepRecord
from ratchet.tasks.techniques.cast import CastSpec


CHAMPION_P95 = 5.0


def record(name: str, decision: str, p95: float, rubric: float = 0.8) -> StepRecord:
    """A record measured at ``p95`` ms, compared with a champion of ``CHAMPION_P95`` ms."""
    rubric_result = RubricResult("tuning", rubric, [CriterionResult("r", "recall_at_k", rubric, 1.0, 0.0)])
    measurement = Measurement({"p95_ms": p95}, {"queries": np.zeros((1, 2))}, Path("."),
                              {"tuning": rubric_result, "heldout": rubric_result})
    r = p95 / CHAMPION_P95
    versus = Comparison("champion", name, "champion", ratios={"p95": PairedRatio("p95", r, r * 0.95, r * 1.05, 0.95, 8, 0.02, 0.02)})
    return StepRecord(name, "cast", decision, "all criteria passed", measurement=measurement, comparison=versus)


def test_pick_winner_keeps_the_fastest_accepted_and_says_why_the_others_lost() -> None:
    records = [record("a", "accepted", 5.0), record("b", "accepted", 4.0), record("c", "rejected", 1.0)]
    picked = pick_winner(records, "p95_ms")
    assert [r.decision for r in picked] == ["rejected", "accepted", "rejected"]
    assert "b is better on p95_ms (0.80x vs 1.00x the champion's)" in picked[0].reason
    assert picked[2].reason == "all criteria passed"  # a gate rejection keeps its own reason


def test_pick_winner_ranks_a_candidate_without_a_comparison_last() -> None:
    """A search candidate whose comparison is missing never wins on speed it did not show."""
    measured = record("a", "accepted", 4.5)
    unmeasured = record("b", "accepted", 1.0)
    unmeasured.comparison = None
    picked = pick_winner([unmeasured, measured], "p95_ms")
    assert [r.decision for r in picked] == ["rejected", "accepted"]


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
    from ratchet.flows.ratchet import ratchet_steps

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
