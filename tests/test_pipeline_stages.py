"""Tests for how ratchet.flows.pipeline strings the stages together: an inconclusive comparison is measured again,
with a growing pause, a bounded number of times; a verdict ends the retries; the final gate compares the champion
with the baseline only when a target asks for a speed-up. Stages are fakes: no model runs here."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ratchet.flows import pipeline
from ratchet.flows.pipeline import Stages, candidate, final
from ratchet.flows.spec import Prepared, parse_spec
from ratchet.tasks.compare import Comparison
from ratchet.tasks.records import FinalDecision, RatchetState, StepRecord


@pytest.fixture
def prepared(default_spec_data: dict, minilm) -> Prepared:
    default_spec_data["noise"] = {"retries": 2, "retry_backoff_s": 10}
    spec = parse_spec(default_spec_data)
    return Prepared(spec, minilm.path, None, spec.gate_policy())


def fake_stages(verdicts: list[str], compared: list[tuple[str, bool]]) -> Stages:
    """Gate decisions in the order given; every comparison made is recorded as (role, refresh)."""
    verdicts = iter(verdicts)

    def compare(prepared, reference, candidate, role, refresh):
        compared.append((role, refresh))
        return Comparison(reference.name, candidate.name, role)

    def gate(prepared, state, record):
        return replace(record, decision=next(verdicts), reason="because")

    def final_gate(prepared, state, versus):
        from ratchet.tasks.gate import GateCriterion, GateDecision

        inconclusive = next(verdicts) == "inconclusive"
        return FinalDecision(state.champion, GateDecision("final", [GateCriterion("x", "p95_ms", None, 1, False, True,
                                                                                  "r", inconclusive)]), versus)

    return Stages(make=lambda p, champion, step: StepRecord(step.label, step.kind, "measured", "", variant=champion),
                  evaluate=lambda p, base, record: record, compare=compare, gate=gate, final=final_gate)


@pytest.mark.parametrize(("verdicts", "decision", "attempts", "pauses"), [
    (["accepted"], "accepted", 1, []),
    (["inconclusive", "rejected"], "rejected", 2, [10]),
    (["inconclusive", "inconclusive", "accepted"], "accepted", 3, [10, 20]),
    (["inconclusive", "inconclusive", "inconclusive"], "inconclusive", 3, [10, 20]),
])
def test_an_inconclusive_comparison_is_measured_again_with_backoff(
        prepared: Prepared, minilm, monkeypatch: pytest.MonkeyPatch,
        verdicts: list[str], decision: str, attempts: int, pauses: list[float]) -> None:
    slept: list[float] = []
    monkeypatch.setattr(pipeline.time, "sleep", slept.append)
    compared: list[tuple[str, bool]] = []
    base = StepRecord("baseline", None, "baseline", "", variant=minilm)
    record = candidate(prepared, RatchetState.start(base), prepared.spec.steps[1], fake_stages(verdicts, compared))
    assert record.decision == decision and record.attempts == attempts
    assert slept == pauses
    assert compared == [("champion", n > 0) for n in range(attempts)]  # a retry never takes a cached comparison


def test_the_final_gate_compares_the_champion_with_the_baseline_and_retries(
        prepared: Prepared, minilm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.time, "sleep", lambda s: None)
    compared: list[tuple[str, bool]] = []
    base = StepRecord("baseline", None, "baseline", "", variant=minilm)
    champion = StepRecord("int8", "int8_dynamic", "accepted", "", variant=minilm.child("int8", minilm.path, "x", {}))
    state = RatchetState.start(base).advance([champion])
    decision = final(prepared, state, fake_stages(["inconclusive", "rejected"], compared))
    assert compared == [("baseline", False), ("baseline", True)] and decision.attempts == 2


def test_no_final_comparison_when_the_champion_is_the_baseline(prepared: Prepared, minilm) -> None:
    compared: list[tuple[str, bool]] = []
    state = RatchetState.start(StepRecord("baseline", None, "baseline", "", variant=minilm))
    decision = final(prepared, state, fake_stages(["rejected"], compared))
    assert compared == [] and "the champion is the baseline" in decision.comparison.error
