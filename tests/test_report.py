"""Tests for ratchet.flows.report and the benchmark tables: a metric that is not reportable (too few queries for a
percentile, a run cut short by max_duration_s, a step that failed) never crashes a summary, a table or a plot; it
shows as missing. And the table says when a step's result was reused from the cache, and when a verdict could
not be reached."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ratchet.evals.rubric import CriterionResult, RubricResult
from ratchet.flows.benchmarks import backends, compare
from ratchet.flows.cli import exit_code
from ratchet.flows.plot import plot_steps
from ratchet.flows.report import build_summary, compile_row, gains, markdown_report, ratio, table_rows, verdict
from ratchet.hardware.parity import Parity
from ratchet.tasks.gate import GateCriterion, GateDecision
from ratchet.tasks.measure import Measurement
from ratchet.tasks.records import CompileRecord, FinalDecision, RatchetState, StepRecord

TRUNCATED = {"p50_ms": 4.0, "p90_ms": None, "p95_ms": None, "p99_ms": None, "throughput_rps": 200.0,
             "cost_per_1k": 0.0001, "size_mb": 90.0}


def measured(perf: dict, measured_at: str = "2026-12-02T01:00:00+00:00") -> Measurement:
    result = RubricResult("tuning", 0.8, [CriterionResult("recall_at_5", "recall_at_k", 0.8, 1.0, 0.0)])
    return Measurement(perf, {"queries": np.zeros((1, 2))}, Path("."), {"tuning": result, "heldout": result},
                       measured_at=measured_at)


def decision(passed: bool, inconclusive: bool = False) -> GateDecision:
    return GateDecision("final", [GateCriterion("x", "p95_ms", None, 1.0, passed, True, "why", inconclusive)])


def test_ratio_answers_none_instead_of_dividing_by_a_missing_value() -> None:
    assert ratio(4.0, 2.0) == 2.0
    assert ratio(None, 2.0) is None and ratio(4.0, None) is None and ratio(4.0, 0.0) is None


def test_a_summary_with_missing_percentiles_builds_prints_and_plots(tmp_path: Path) -> None:
    base = StepRecord("baseline", None, "baseline", "", measurement=measured(TRUNCATED))
    step = StepRecord("int8", "int8_dynamic", "accepted", "", measurement=measured({**TRUNCATED, "p95_ms": 2.0}))
    state = RatchetState.start(base).advance([step])
    target = CompileRecord("onnxruntime", "onnxruntime", "compiled", "", measurement=measured(TRUNCATED),
                           parity=Parity(0.0, 1.0))
    summary = build_summary(state, FinalDecision(step, decision(True)), None, 1, "t", [target])
    assert summary["steps"][1]["speedup_p95"] is None  # the baseline's p95 is missing
    assert summary["champion_vs_baseline"]["speedup_p95"] is None and summary["champion_vs_baseline"]["speedup_p50"] == 1.0
    assert summary["compile"][0]["speedup_p95_vs_baseline"] is None
    assert table_rows(summary)[0][3] == "-"  # p95 cell
    assert "| baseline | baseline | 4.00 | - |" in markdown_report(summary)
    assert plot_steps(summary, tmp_path / "plot.png").is_file()


def test_compile_row_with_a_missing_champion_percentile() -> None:
    record = CompileRecord("xla", "xla", "compiled", "", measurement=measured({**TRUNCATED, "p95_ms": 3.0}))
    row = compile_row(record, {"p95_ms": 6.0}, {"p95_ms": None})
    assert row["speedup_p95_vs_baseline"] == 2.0 and row["speedup_p95_vs_champion"] is None


def test_gains_with_missing_figures() -> None:
    out = gains({"p50_ms": None, "p95_ms": 6.0}, {"p50_ms": 3.0, "p95_ms": None}, {}, {})
    assert out == {"speedup_p50": None, "speedup_p95": None, "throughput_ratio": None, "cost_ratio": None}


def test_benchmark_tables_show_missing_figures_as_dashes() -> None:
    cells = backends._cells(TRUNCATED, {"p95_ms": None}, None)
    assert cells[1:3] == ["-", "-"] and cells[5] == "-" and cells[-1] == "-"
    base = StepRecord("baseline", None, "baseline", "", measurement=measured(TRUNCATED))
    rows = compare.comparison_rows([("fp32", base), ("x", replace(base, step="x", decision="accepted"))])
    assert rows[1][1] == "1.00×" and rows[1][2] == "-"


def test_a_step_reused_from_the_cache_says_when_it_was_measured() -> None:
    base = StepRecord("baseline", None, "baseline", "", measurement=measured(TRUNCATED, "2026-12-01T09:30:00+00:00"))
    summary = build_summary(RatchetState.start(base), FinalDecision(base, decision(True)), None, None, "t",
                            started_at="2026-12-02T08:00:00+00:00")
    assert summary["steps"][0]["cached"] is True
    assert table_rows(summary)[0][1] == "baseline [cached (measured 2026-12-01 09:30:00 UTC)]"
    fresh = build_summary(RatchetState.start(base), FinalDecision(base, decision(True)), None, None, "t",
                          started_at="2026-12-01T09:00:00+00:00")
    assert fresh["steps"][0]["cached"] is False and table_rows(fresh)[0][1] == "baseline"


@pytest.mark.parametrize(("step_decision", "final_inconclusive", "expected_verdict", "code"), [
    ("accepted", False, "met", 0),
    ("inconclusive", False, "inconclusive", 3),
    ("accepted", True, "inconclusive", 3),
])
def test_an_inconclusive_verdict_is_said_and_exits_3(step_decision: str, final_inconclusive: bool,
                                                     expected_verdict: str, code: int) -> None:
    base = StepRecord("baseline", None, "baseline", "", measurement=measured(TRUNCATED))
    step = StepRecord("int8", "int8_dynamic", step_decision, "inconclusive: machine too noisy",
                      measurement=measured(TRUNCATED))
    state = RatchetState.start(base).advance([step])
    final = FinalDecision(state.champion, decision(not final_inconclusive, final_inconclusive))
    summary = build_summary(state, final, None, None if final_inconclusive else 1, "t")
    assert summary["verdict"] == expected_verdict and exit_code(summary) == code
    if final_inconclusive:
        assert verdict(summary).startswith("no verdict on champion") and "nothing promoted" in verdict(summary)
    elif step_decision == "inconclusive":
        assert "no verdict on int8 (machine too noisy)" in verdict(summary)
