"""Are the gate's decisions stable when the machine is not? The default spec's decisions, quiet and under load.

    python -m ratchet.flows.benchmarks.stability [SPEC] [--runs 3] [--quick] [--markdown]

Runs the spec's pipeline (fresh measurements, a scratch folder and MLflow
store each time) ``--runs`` times on the machine as it is, then ``--runs``
times while a load generator this script starts itself keeps the CPU busy: a
process per core that busy-loops for random on/off periods (0.2-2 s each),
bounded by the run and stopped by the script. It prints, per run and step, the
decision and the paired ratio of the objective with its interval and the
reference's block-to-block CV. What it must show: the same decisions in every
run, or ``inconclusive`` under load; never a verdict that reverses the quiet
one.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ratchet.core.layout import PROJECT_ROOT
from ratchet.flows.benchmarks import scratch
from ratchet.flows.benchmarks.tables import show
from ratchet.flows.cli import quiet_libraries, stdout_console
from ratchet.flows.pipeline import run_pipeline
from ratchet.flows.spec import load_spec
from ratchet.tasks.gate import SPEED_STAT
from ratchet.tasks.records import StepRecord

DEFAULT_SPEC = PROJECT_ROOT / "examples" / "minilm-support.yaml"
COLUMNS = ("run", "machine", "step", "decision", "ratio vs champion", "95% CI", "reference CV", "pairs")  # CV of medians


def _busy(stop_at: float, seed: int) -> None:
    """Burn one core in random on/off periods until ``stop_at``."""
    rng = random.Random(seed)
    while time.time() < stop_at:
        until = time.time() + rng.uniform(0.2, 2.0)
        while time.time() < until:
            pass
        time.sleep(rng.uniform(0.2, 2.0))


@contextmanager
def background_load(cores: int, limit_s: float = 3600) -> Iterator[None]:
    """``cores`` busy-looping processes for the duration of the block (and never longer than ``limit_s``)."""
    stop_at = time.time() + limit_s
    workers = [multiprocessing.Process(target=_busy, args=(stop_at, i), daemon=True) for i in range(cores)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()


def rows(run: str, machine: str, records: list[StepRecord], objective: str) -> list[list[str]]:
    out = []
    stat = SPEED_STAT[objective]
    for record in records:
        if record.step == "baseline":
            continue
        ratio = record.comparison.ratios.get(stat) if record.comparison else None
        decision = record.decision if record.decision == "accepted" else f"{record.decision}: {record.reason}"
        if ratio is None:
            out.append([run, machine, record.step, decision, "-", "-", "-", "-"])
            continue
        out.append([run, machine, record.step, decision, f"{ratio.ratio:.2f}x", f"{ratio.low:.2f}-{ratio.high:.2f}",
                    f"{record.comparison.reference_cv:.1%}", str(ratio.pairs)])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ratchet.flows.benchmarks.stability")
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, help="the spec whose decisions are repeated")
    parser.add_argument("--runs", type=int, default=3, help="runs on the quiet machine, and as many under load")
    parser.add_argument("--load-cores", type=int, default=os.cpu_count() or 2, help="busy-looping load processes")
    parser.add_argument("--quick", action="store_true", help="small budgets for each variant's own measurement, at "
                        "the first batch size only; the paired comparisons the decisions rest on (which use only "
                        "that batch size) keep the spec's noise settings")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table too (for README)")
    args = parser.parse_args(argv)
    quiet_libraries()
    spec = load_spec(args.spec)
    console = stdout_console()
    table = []
    for machine in ("quiet", "loaded"):
        for i in range(1, args.runs + 1):
            console.print(f"{machine} run {i}/{args.runs}")
            prepared, tracking_uri = scratch(spec, args.quick, "stability")
            update: dict = {"noise": spec.noise}
            if args.quick:
                update["workload"] = prepared.spec.workload.model_copy(
                    update={"batch_sizes": prepared.spec.workload.batch_sizes[:1]})
            measured = prepared.spec.model_copy(update=update)
            prepared = replace(prepared, spec=measured, policy=measured.gate_policy())
            with background_load(args.load_cores) if machine == "loaded" else nullcontext():
                run = run_pipeline(prepared, tracking_uri)
            done = rows(str(i), machine, run.state.records, spec.objective)
            for row in done:  # as each run ends, so a long benchmark that is stopped still leaves its results
                console.print("  " + " | ".join(row[2:]))
            table += done
    show(console, f"{spec.name}: decisions of {args.runs} runs on a quiet machine and {args.runs} under load "
                  f"({args.load_cores} busy-looping processes)", COLUMNS, table, args.markdown)


if __name__ == "__main__":
    main()
