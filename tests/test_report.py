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


def test_the_ladder_shows_each_accepted_step_against_the_baseline_and_the_plots_and_html(tmp_path: Path) -> None:
    """The worked-example table: baseline, then every accepted step (the champion from there on) with p95, cost
    per request and rubric points against the baseline, cache hits and the small model's share where measured;
    rejected steps stay out of it (the step table gives their reasons)."""
    from ratchet.flows.plot import plot_pareto
    from ratchet.flows.report import html_report, ladder, ladder_rows

    base = StepRecord("baseline", None, "baseline", "",
                      measurement=measured({**TRUNCATED, "p95_ms": 1900.0, "cost_per_1k": 12.0}))
    int8 = StepRecord("int8", "weight_only", "rejected", "slower",
                      measurement=measured({**TRUNCATED, "p95_ms": 2000.0, "cost_per_1k": 12.5}))
    cache = StepRecord("cache", "response_cache", "accepted", "",
                       measurement=measured({**TRUNCATED, "p95_ms": 850.0, "cost_per_1k": 5.9, "cache_hit_rate": 0.35,
                                             "cache_false_hit_rate": 0.004}))
    route = StepRecord("cheap-first", "routing", "accepted", "",
                       measurement=measured({**TRUNCATED, "p95_ms": 540.0, "cost_per_1k": 3.6, "cache_hit_rate": 0.35,
                                             "small_model_share": 0.5}))
    state = RatchetState.start(base).advance([int8]).advance([cache]).advance([route])
    summary = build_summary(state, FinalDecision(route, decision(True)), None, 1, "agent")
    rows = ladder(summary)
    assert [r["step"] for r in rows] == ["baseline", "+ cache", "+ cheap-first"]
    assert rows[2]["p95_vs_baseline"] == pytest.approx(1900 / 540)
    assert rows[2]["cost_per_request"] == pytest.approx(0.0036) and rows[2]["cost_vs_baseline"] == pytest.approx(0.3)
    assert rows[2]["rubric_points"] == 0.0 and rows[2]["heldout_rubric_points"] == 0.0
    cells = ladder_rows(summary)
    assert cells[2][:5] == ["+ cheap-first", "540.0", "3.52x", "$0.0036000", "70% lower"]
    assert cells[1][7:] == ["35%", "-"] and cells[2][7:] == ["35%", "50%"]
    report = markdown_report(summary)
    assert "## The champion, step by step" in report and "| + cache | 850.0 | 2.24x |" in report
    pareto = plot_pareto(summary, tmp_path / "pareto.png")
    steps = plot_steps(summary, tmp_path / "steps.png")
    page = html_report(report, [steps, pareto])
    assert page.count("<table>") == 3 and page.count("data:image/png;base64,") == 2
    assert "<td>+ cheap-first</td>" in page


def test_a_reference_is_held_against_the_champion_after_each_step() -> None:
    """Each published row next to our champion right after the same step: a rejected step leaves the champion as
    it was, and says why."""
    from ratchet.flows.report import ReferenceSpec, reference_rows

    base = StepRecord("baseline", None, "baseline", "", measurement=measured({**TRUNCATED, "p95_ms": 800.0,
                                                                             "cost_per_1k": 10.0}))
    int8 = StepRecord("int8-weights", "weight_only", "rejected", "slower",
                      measurement=measured({**TRUNCATED, "p95_ms": 900.0, "cost_per_1k": 11.0}))
    cache = StepRecord("cache", "response_cache", "accepted", "",
                       measurement=measured({**TRUNCATED, "p95_ms": 200.0, "cost_per_1k": 4.0}))
    state = RatchetState.start(base).advance([int8]).advance([cache])
    reference = ReferenceSpec(name="the worked example", rows=[
        {"step": "baseline", "label": "Baseline", "p95_ms": 1900, "cost_per_request": 0.012, "rubric_score": 0.95},
        {"step": "weight_only", "label": "+ INT8", "p95_ms": 1250, "cost_per_request": 0.009, "rubric_score": 0.95},
        {"step": "cache", "p95_ms": 850, "cost_per_request": 0.0059, "rubric_score": 0.93}])
    summary = build_summary(state, FinalDecision(cache, decision(True)), None, 1, "agent", reference=reference)
    rows = reference_rows(summary)
    assert rows[0] == ["Baseline", "baseline", "800.0", "1.00x", "1.00x", "$0.0100000", "0% lower", "0% lower",
                       "+0.0", "+0.0"]
    assert rows[1][:7] == ["+ INT8", "rejected: slower", "800.0", "1.00x", "1.52x", "$0.0100000",
                           "0% lower"]  # the champion unchanged
    assert rows[2] == ["cache", "accepted", "200.0", "4.00x", "2.24x", "$0.0040000", "60% lower", "51% lower",
                       "+0.0", "-2.0"]
    assert "## Against the worked example" in markdown_report(summary)
    with pytest.raises(ValueError, match="first row is the baseline"):
        ReferenceSpec(name="x", rows=reference.rows[1:])


def test_pareto_plot_of_a_run_without_reportable_p95(tmp_path: Path) -> None:
    from ratchet.flows.plot import plot_pareto

    base = StepRecord("baseline", None, "baseline", "", measurement=measured(TRUNCATED))
    summary = build_summary(RatchetState.start(base), FinalDecision(base, decision(False)), None, None, "t")
    assert plot_pareto(summary, tmp_path / "pareto.png").stat().st_size > 0
