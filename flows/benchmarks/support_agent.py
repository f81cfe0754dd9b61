"""The support-agent worked example, reproduced from one pipeline run: the champion step by step, our ratios
next to the worked example's, and the goals.

    python -m ratchet.flows.benchmarks.support_agent [--markdown]          # runs examples/support-agent.yaml
    python -m ratchet.flows.benchmarks.support_agent --summary run.json    # the tables of a finished run

Every row is measured on the same replayed traffic (``workload.traffic``), in
the server scenario, and gated against the champion before it in paired
blocks; the ratios are each row's p95 and cost per request against the
baseline's, from the same run. Goals (issue 11): p95 at least 3.5x better,
cost per request at least 70% lower, at most 2 rubric points lost on the
held-out split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ratchet.core.layout import PROJECT_ROOT
from ratchet.flows.benchmarks.tables import show
from ratchet.flows.cli import quiet_libraries, stdout_console
from ratchet.flows.report import (LADDER_HEADERS, REFERENCE_HEADERS, cost_change, ladder, ladder_rows,
                                  reference_rows)
from ratchet.flows.spec import load_spec, preflight, with_quick_measurement

SPEC = PROJECT_ROOT / "examples" / "support-agent.yaml"
GOALS = {"p95": 3.5, "cost_cut": 0.70, "points_lost": 2.0}


def goal_rows(summary: dict) -> list[list[str]]:
    """Each goal, what the final champion measured, and whether it holds."""
    last = ladder(summary)[-1]
    p95, cost, lost = last["p95_vs_baseline"], last["cost_vs_baseline"], last.get("heldout_rubric_points")

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else "met" if ok else "not met"

    return [
        ["p95 vs baseline", f">= {GOALS['p95']:.1f}x better", "-" if p95 is None else f"{p95:.2f}x",
         verdict(None if p95 is None else p95 >= GOALS["p95"])],
        ["cost per request", f">= {GOALS['cost_cut']:.0%} lower", cost_change(cost),
         verdict(None if cost is None else 1 - cost >= GOALS["cost_cut"])],
        ["held-out rubric", f"<= {GOALS['points_lost']:.0f} points lost",
         "-" if lost is None else f"{-lost:+.1f} points lost" if lost < 0 else f"{lost:+.1f} points",
         verdict(None if lost is None else -lost <= GOALS["points_lost"])],
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ratchet.flows.benchmarks.support_agent")
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--summary", type=Path, help="a finished run's --summary-json (else the spec is run)")
    parser.add_argument("--quick", action="store_true", help="small measurement budgets, for smoke tests")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    quiet_libraries()
    spec = load_spec(args.spec)
    if args.summary is not None:
        summary = json.loads(args.summary.read_text())
    else:
        from ratchet.flows.pipeline import run_pipeline

        summary = run_pipeline(preflight(with_quick_measurement(spec) if args.quick else spec)).summary
    if summary.get("reference") is None and spec.reference is not None:
        summary["reference"] = spec.reference.model_dump()
    console = stdout_console()
    show(console, f"{summary['spec']}: the champion step by step (ratios against the baseline, one run)",
         LADDER_HEADERS, ladder_rows(summary), args.markdown)
    if summary.get("reference"):
        show(console, f"against {summary['reference']['name']}: each one's ratios to its own baseline",
             REFERENCE_HEADERS, reference_rows(summary), args.markdown)
    show(console, "goals (final champion; rubric on the held-out split)", ("goal", "needs", "measured", ""),
         goal_rows(summary), args.markdown)


if __name__ == "__main__":
    main()
