"""Side-by-side benchmark of the compile targets: a spec's champion compiled for every backend, in one run.

    python -m ratchet.flows.benchmarks.backends [SPEC] [--quick] [--markdown]

Runs the spec's ratchet (default ``examples/minilm-compile.yaml``: minilm-max's
steps), then its compile stage, and prints per backend the latency
percentiles, throughput, cost per 1,000 requests and parity, next to PyTorch
fp32 and the uncompiled champion. Every row is measured in its own process
(in its backend's environment) one after another on the same machine, so the
ratios are what a README may quote. Targets that cannot run here are listed
with their reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ratchet.core.layout import PROJECT_ROOT
from ratchet.flows.benchmarks import scratch
from ratchet.flows.benchmarks.tables import cell, show, times
from ratchet.flows.cli import quiet_libraries, stdout_console
from ratchet.flows.pipeline import run_pipeline
from ratchet.flows.report import ratio
from ratchet.flows.spec import load_spec
from ratchet.tasks.records import CompileRecord, StepRecord

DEFAULT_SPEC = PROJECT_ROOT / "examples" / "minilm-compile.yaml"
COLUMNS = ("variant", "status", "from", "p50 ms", "p95 ms", "p99 ms", "req/s", "$ / 1k req", "p95 vs fp32",
           "max |diff|", "cosine", "held-out rubric")


def _cells(perf: dict, base: dict, rubric: float | None) -> list[str]:
    cost = perf.get("cost_per_1k")
    return [*(cell(perf.get(k), ".2f") for k in ("p50_ms", "p95_ms", "p99_ms")), cell(perf.get("throughput_rps"), ".0f"),
            "-" if cost is None else f"${cost:.6f}", times(ratio(base.get("p95_ms"), perf.get("p95_ms"))),
            *(["-"] * 2), cell(rubric, ".3f")]


def rows(baseline: StepRecord, champion: StepRecord, compiled: list[CompileRecord]) -> list[list[str]]:
    base = baseline.measurement.perf
    out = [["PyTorch fp32", "baseline", "-", *_cells(base, base, baseline.measurement.rubric["heldout"].score)]]
    if champion is not baseline:
        out.append([f"champion {champion.step} ({champion.variant.runtime})", "accepted", champion.champion_before or "-",
                    *_cells(champion.measurement.perf, base, champion.measurement.rubric["heldout"].score)])
    for record in compiled:
        status = record.status if record.status == "compiled" else f"{record.status}: {record.reason}"
        if record.measurement is None or not record.measurement.rubric:
            out.append([record.target, status, record.source or "-", *["-"] * 9])
            continue
        cells = _cells(record.measurement.perf, base, record.measurement.rubric["heldout"].score)
        if record.parity is not None:
            cells[6:8] = [f"{record.parity.max_abs_diff:.2g}", f"{record.parity.mean_cosine:.5f}"]
        out.append([record.target, status, record.source or "-", *cells])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ratchet.flows.benchmarks.backends")
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, help="steps, compile targets, workload")
    parser.add_argument("--quick", action="store_true", help="small measurement budgets")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table too (for README)")
    args = parser.parse_args(argv)
    quiet_libraries()
    spec = load_spec(args.spec)
    prepared, tracking_uri = scratch(spec, args.quick, "backends")
    console = stdout_console()
    console.print(f"{spec.name}: baseline, {len(spec.steps)} steps, then {len(spec.compile)} compile targets")
    run = run_pipeline(prepared, tracking_uri)
    show(console, f"{spec.name}: compile targets vs PyTorch fp32 and the champion, measured in one run "
                  f"({spec.workload.scenario}, batch {spec.workload.batch_sizes[0]})",
         COLUMNS, rows(run.state.baseline, run.state.champion, run.compiled), args.markdown)


if __name__ == "__main__":
    main()
