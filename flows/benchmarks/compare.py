"""Side-by-side benchmark: PyTorch fp32, each technique alone, reference recipes and the ratchet's
champion, measured in one run on one workload.

    python -m ratchet.flows.benchmarks.compare [SPEC] [--quick] [--only NAME ...] [--champion-of SPEC] [--markdown]

Every row is built from the spec's baseline model and measured in its own
process with the spec's workload, one after another; the table prints ratios
to the fp32 baseline, fidelity (cosine to fp32) and held-out recall@5. Ratios
measured in one run are what a README may quote; absolute milliseconds on a
shared 2-core machine are not.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rich.markup import escape

from ratchet.flows.benchmarks import scratch
from ratchet.flows.benchmarks.tables import cell, show, times
from ratchet.flows.cli import DEFAULT_SPEC, quiet_libraries, stdout_console
from ratchet.flows.pipeline import Stages, run_pipeline
from ratchet.flows.ratchet import compare, evaluate_step, gate_step, run_baseline, try_step
from ratchet.flows.report import ratio
from ratchet.flows.spec import Prepared, load_spec, parse_spec, preflight
from ratchet.tasks.records import RatchetState, StepRecord

# Each recipe is a chain of steps applied from the fp32 baseline without intermediate gates;
# the last variant is gated against the baseline.
ONNX = {"kind": "onnx_export"}
RECIPES: dict[str, list[dict]] = {
    # The reference: optimum's ``AutoQuantizationConfig.avx2(is_static=False, per_channel=False)`` on optimum's
    # plain export. optimum-onnx 0.1.0 pins transformers 4.57 and cannot be installed beside transformers 5, so its
    # settings are reproduced with the ONNX Runtime call its ORTQuantizer makes: dynamic, uint8 activations,
    # symmetric uint8 weights per tensor, MatMul only (its default operators, MatMul and Add; dynamic mode has no
    # integer Add).
    "optimum ORT INT8 avx2 (reference)": [ONNX, {"kind": "onnx_int8", "weight_type": "uint8", "per_channel": False,
                                                 "symmetric_weights": True, "op_types": ["MatMul"]}],
    "bf16 cast": [{"kind": "cast", "dtype": "bf16"}],
    "fp16 cast": [{"kind": "cast", "dtype": "fp16"}],
    "bf16, LayerNorm and embeddings fp32": [{"kind": "cast", "dtype": "bf16", "keep_fp32": ["LayerNorm", "embeddings"]}],
    "torchao int8 dynamic, eager": [{"kind": "int8_dynamic", "compile": False}],
    "torchao int8 dynamic, compiled": [{"kind": "int8_dynamic", "compile": True}],
    "weight-only int8 (torchao)": [{"kind": "weight_only", "bits": 8}],
    "weight-only nf4 (bitsandbytes)": [{"kind": "weight_only", "bits": 4}],
    "torch.compile": [{"kind": "torch_compile"}],
    "magnitude pruning 30%": [{"kind": "prune_magnitude", "sparsity": 0.3}],
    "FFN pruning 25%": [{"kind": "prune_ffn", "ratio": 0.25}],
    "attention-head pruning 25% (ONNX)": [{"kind": "prune_heads", "ratio": 0.25}],
    "distilled to 3 layers": [{"kind": "distill", "layers": 3}],
    "ONNX fp32": [ONNX],
    "ONNX fp32, fused": [{"kind": "onnx_export", "fusion": True}],
    "ONNX INT8 dynamic per-channel": [ONNX, {"kind": "onnx_int8"}],
    "ONNX INT8 static (QDQ, minmax)": [ONNX, {"kind": "onnx_int8", "mode": "static"}],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ratchet.flows.benchmarks.compare")
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, help="workload, rubric and model")
    parser.add_argument("--quick", action="store_true", help="small measurement budgets")
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), metavar="RECIPE", help="a subset of the recipes")
    parser.add_argument("--champion-of", type=Path, help="also run this spec's ratchet and add its champion")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table too (for README)")
    args = parser.parse_args(argv)
    quiet_libraries()
    prepared, tracking_uri = scratch(load_spec(args.spec), args.quick, "compare")
    spec = prepared.spec
    console = stdout_console()
    recipes = {name: RECIPES[name] for name in (args.only or RECIPES)}
    console.print(f"measuring fp32 and {len(recipes)} recipes: {spec.workload.scenario}, batch {spec.workload.batch_sizes[0]}")
    total = len(recipes) + 1 + bool(args.champion_of)
    console.print(f"[1/{total}] PyTorch fp32")
    baseline = run_baseline(prepared)
    rows = [("PyTorch fp32", baseline)]
    for i, (name, steps) in enumerate(recipes.items(), start=2):
        console.print(f"[{i}/{total}] {escape(name)}")
        rows.append((name, run_recipe(prepared, baseline, steps)))
    if args.champion_of:
        console.print(f"[{total}/{total}] the ratchet of {args.champion_of}")
        champion, lineage = champion_of(args.champion_of, prepared, baseline, tracking_uri)
        rows.append((f"champion of {args.champion_of.name}: {lineage}", champion))
    show(console, f"{spec.name}: ratios vs PyTorch fp32, measured in one run", COLUMNS, comparison_rows(rows),
         args.markdown)


def run_recipe(prepared: Prepared, baseline: StepRecord, steps: list[dict]) -> StepRecord:
    """Apply ``steps`` in order from the baseline, then evaluate the result, compare it with the baseline in
    interleaved blocks and gate it against it."""
    specs = parse_spec({**prepared.spec.model_dump(mode="json"), "steps": steps}).steps
    state = RatchetState.start(baseline)
    variant, record = baseline.variant, baseline
    for step in specs:
        record = try_step(prepared, variant, step)
        if record.decision != "measured":
            return record
        variant = record.variant
    record = evaluate_step(prepared, baseline, record)
    return gate_step(prepared, state, replace(record, comparison=compare(prepared, baseline.variant, record.variant,
                                                                          "baseline")))


def champion_of(path: Path, measured_on: Prepared, baseline: StepRecord, tracking_uri: str) -> tuple[StepRecord, str]:
    """Run another spec's pipeline (its steps, this run's workload and budgets, this run's baseline measurement):
    its champion and lineage."""
    steps = load_spec(path).model_dump(mode="json")["steps"]
    prepared = preflight(parse_spec({**measured_on.spec.model_dump(mode="json"), "steps": steps}))
    run = run_pipeline(prepared, tracking_uri, replace(Stages(), baseline=lambda _: baseline))
    lineage = " → ".join(r.step for r in run.state.records if r.decision == "accepted") or "baseline"
    return run.state.champion, lineage


COLUMNS = ("variant", "p50 speed-up", "p95 speed-up", "throughput", "cosine to fp32", "held-out recall@5", "size MB", "gate vs fp32")


def comparison_rows(rows: list[tuple[str, StepRecord]]) -> list[list[str]]:
    """One row of ``COLUMNS`` per variant: ratios to the first row (PyTorch fp32), held-out quality, size, gate."""
    base = rows[0][1].measurement
    out = []
    for name, r in rows:
        m = r.measurement
        verdict = r.decision if r.decision in ("baseline", "accepted") else f"{r.decision}: {r.reason}"
        if m is None or not m.rubric:
            out.append([name, *["-"] * 6, verdict])
            continue
        held = m.rubric["heldout"].metrics()
        out.append([
            name,
            times(ratio(base.perf.get("p50_ms"), m.perf.get("p50_ms"))),
            times(ratio(base.perf.get("p95_ms"), m.perf.get("p95_ms"))),
            times(ratio(m.perf.get("throughput_rps"), base.perf.get("throughput_rps"))),
            cell(held.get("fidelity"), ".4f"),
            cell(held.get("recall_at_5"), ".3f"),
            cell(m.perf.get("size_mb"), ".1f"),
            verdict,
        ])
    return out


if __name__ == "__main__":
    main()
