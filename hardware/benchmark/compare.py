"""Side-by-side benchmark: every technique alone against PyTorch fp32, in one run.

    python -m hardware.benchmark.compare [SPEC] [--quick]

Each variant is built from the spec's baseline model and measured in its own
process with the spec's workload, one after another, then the table prints
ratios to the fp32 baseline (speed-up of p50/p95, throughput ratio), fidelity
(cosine to fp32) and held-out recall@5. Ratios measured in one run are what a
README may quote; absolute milliseconds on a shared 2-core machine are not.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.table import Table

from flows.cli import DEFAULT_SPEC, quiet_libraries, stdout_console
from flows.ratchet import RatchetState, run_baseline, run_step
from flows.spec import load_spec, parse_spec, preflight, with_quick_measurement

# The techniques compared by default, each applied alone to the fp32 baseline.
DEFAULT_STEPS = [
    {"kind": "cast", "name": "bf16", "dtype": "bf16"},
    {"kind": "cast", "name": "fp16", "dtype": "fp16"},
    {"kind": "int8_dynamic", "name": "int8-eager", "compile": False},
    {"kind": "int8_dynamic", "name": "int8-compiled", "compile": True},
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hardware.benchmark.compare")
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    data = spec.model_dump(mode="json") | {"steps": DEFAULT_STEPS, "workdir": tempfile.mkdtemp(prefix="ratchet-compare-")}
    spec = parse_spec(data, str(args.spec))
    if args.quick:
        spec = with_quick_measurement(spec)
    prepared = preflight(spec)
    quiet_libraries()
    console = stdout_console()
    console.print(f"measuring baseline and {len(spec.steps)} techniques on {spec.workload.scenario}, batch {spec.workload.batch_sizes[0]}")
    state = RatchetState.start(run_baseline(prepared))
    # Each technique starts from the baseline (never from another technique): advance() is not called.
    records = [state.baseline, *(r for step in spec.steps for r in run_step(prepared, state, step))]
    console.print(comparison_table(records, spec.name))


def comparison_table(records, title: str) -> Table:
    base = records[0].measurement
    table = Table(title=f"{title}: ratios vs PyTorch fp32, measured in one run")
    for col in ("variant", "p50 speed-up", "p95 speed-up", "throughput ×", "cosine to fp32", "held-out recall@5",
                "size MB", "gate vs fp32"):
        table.add_column(col)
    for r in records:
        m = r.measurement
        if m is None:
            table.add_row(r.step, *["-"] * 6, f"{r.decision}: {r.reason}")
            continue
        held = m.rubric["heldout"].metrics()
        table.add_row(
            r.step,
            f"{base.perf['p50_ms'] / m.perf['p50_ms']:.2f}×",
            f"{base.perf['p95_ms'] / m.perf['p95_ms']:.2f}×",
            f"{m.perf['throughput_rps'] / base.perf['throughput_rps']:.2f}×",
            f"{held.get('fidelity', float('nan')):.4f}",
            f"{held.get('recall_at_5', float('nan')):.3f}",
            f"{m.perf['size_mb']:.1f}",
            r.decision if r.decision in ("baseline", "accepted") else f"{r.decision}: {r.reason}",
        )
    return table


if __name__ == "__main__":
    main()
