"""Generative benchmark: the demo large model (or any causal LM spec) at decode time, side by side in one run.

    python -m ratchet.flows.benchmarks.generation [SPEC] [--quick] [--markdown] [--skip-serving]

Two tables. The first: baseline, each of the spec's steps alone (applied to
the baseline and measured; its gate column is the decision the pipeline's own
run made for that step, in its place in the chain) and the pipeline's
champion, with p95 end-to-end, p95 TTFT, p95 TPOT, output tokens/s, goodput,
cost per 1k requests and the held-out rubric score, plus TPOT and p95 ratios
to the baseline. The second:
the server scenario, one request at a time vs static vs continuous batching,
each replaying the same seeded Poisson arrivals at a sweep of rates: the
highest rate whose p95 TTFT stays within the spec's TTFT objective is the
engine's capacity, and the ratio of capacities is what batching buys.
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import replace
from pathlib import Path

from ratchet.core.layout import PROJECT_ROOT
from ratchet.core.variant import Variant
from ratchet.flows.benchmarks import scratch
from ratchet.flows.benchmarks.tables import cell, show, times
from ratchet.flows.cli import quiet_libraries, stdout_console
from ratchet.flows.pipeline import Stages, run_pipeline
from ratchet.flows.ratchet import evaluate_step, run_baseline, try_step
from ratchet.flows.report import ratio
from ratchet.flows.spec import Prepared, load_spec
from ratchet.hardware.benchmark.generation_stats import summarize_generation
from ratchet.hardware.benchmark.stats import percentile_ms
from ratchet.tasks.records import StepRecord

DEFAULT_SPEC = PROJECT_ROOT / "examples" / "support-llm.yaml"
DECODE_COLUMNS = ("variant", "p95 e2e ms", "p95 TTFT ms", "p95 TPOT ms", "tokens/s", "goodput", "$ / 1k req",
                  "held-out rubric", "TPOT vs baseline", "p95 vs baseline", "decision in the pipeline's run")
SERVING_COLUMNS = ("engine", "rate req/s", "served req/s", "p95 TTFT ms", "p95 TPOT ms", "goodput", "within TTFT SLO")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ratchet.flows.benchmarks.generation")
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--quick", action="store_true", help="small measurement budgets")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables too (for README)")
    parser.add_argument("--skip-serving", action="store_true", help="only the decode-time table")
    parser.add_argument("--skip-decode", action="store_true", help="only the server-scenario table")
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 4, 8, 16, 32], help="arrival rates to sweep")
    parser.add_argument("--requests", type=int, default=300,
                        help="requests per rate and engine (300 make a p95 reportable)")
    args = parser.parse_args(argv)
    quiet_libraries()
    console = stdout_console()
    spec = load_spec(args.spec)
    prepared, tracking_uri = scratch(spec, args.quick, "generation")
    if not args.skip_decode:
        decode_table(prepared, tracking_uri, console, args.markdown)
    if not args.skip_serving:
        slo = prepared.spec.workload.slo.get("ttft_ms", 1000.0)
        table = serving_rows(prepared, args.rates, args.requests, slo, console)
        show(console, f"{spec.name}: server scenario, same Poisson arrivals per rate, TTFT SLO {slo:g} ms",
             SERVING_COLUMNS, table, args.markdown)


def decode_table(prepared: Prepared, tracking_uri: str, console, markdown: bool) -> None:
    """Baseline, each step alone, and the pipeline's champion, as one table."""
    spec = prepared.spec
    total = len(spec.steps) + 2
    console.print(f"[1/{total}] baseline {spec.model.id}")
    baseline = run_baseline(prepared)
    rows: list[tuple[str, StepRecord]] = [("baseline", baseline)]
    for i, step in enumerate(prepared.spec.steps, start=2):
        console.print(f"[{i}/{total}] {step.label} alone")
        rows.append((step.label, measure_alone(prepared, baseline, step)))
    console.print(f"[{total}/{total}] the pipeline's champion (the spec's whole run)")
    run = run_pipeline(prepared, tracking_uri, replace(Stages(), baseline=lambda _: baseline))
    decisions = {r.step: r for r in run.state.records}
    lineage = " → ".join(r.step for r in run.state.records if r.decision == "accepted") or "baseline"
    rows = [(name, replace(r, decision=decisions[name].decision, reason=decisions[name].reason)
             if name in decisions and r.measurement is not None else r) for name, r in rows]
    rows.append((f"champion: {lineage}", run.state.champion))
    show(console, f"{spec.name}: decode-time steps, measured in one run ({spec.workload.scenario})",
         DECODE_COLUMNS, decode_rows(rows), markdown)


def measure_alone(prepared: Prepared, baseline: StepRecord, step) -> StepRecord:
    """The step applied to the baseline, measured and evaluated (no comparison: the pipeline's run gates it)."""
    record = try_step(prepared, baseline.variant, step)
    return evaluate_step(prepared, baseline, record) if record.decision == "measured" else record


def decode_rows(rows: list[tuple[str, StepRecord]]) -> list[list[str]]:
    base = rows[0][1].measurement.perf
    out = []
    for name, r in rows:
        verdict = r.decision if r.decision in ("baseline", "accepted") else f"{r.decision}: {r.reason}"
        m = r.measurement
        if m is None or not m.rubric:
            out.append([name, *["-"] * 9, verdict])
            continue
        p = m.perf
        out.append([name, cell(p.get("p95_ms"), ".0f"), cell(p.get("ttft_p95_ms"), ".1f"),
                    cell(p.get("tpot_p95_ms"), ".2f"), cell(p.get("output_tokens_per_s"), ".0f"),
                    cell(p.get("goodput"), ".2f"), cell(p.get("cost_per_1k"), ".5f"),
                    cell(m.rubric["heldout"].score, ".3f"),
                    times(ratio(base.get("tpot_p95_ms"), p.get("tpot_p95_ms"))),
                    times(ratio(base.get("p95_ms"), p.get("p95_ms"))), verdict])
    return out


def serving_rows(prepared: Prepared, rates: list[float], n: int, slo_ms: float, console) -> list[list[str]]:
    """Each engine on the spec's model, at each arrival rate, in this process (one engine loaded at a time)."""
    from ratchet.hardware.runtimes import Shape, load_variant
    from ratchet.hardware.runtimes.serving import ENGINES, arrival_times, engine_for

    spec = prepared.spec
    requests = prepared.workload.request_texts("tuning")
    out, capacity = [], {}
    for engine_name in ENGINES:
        variant = Variant(name=engine_name, path=prepared.model_path, task=spec.model.task,
                          trust_remote_code=spec.model.trust_remote_code,
                          runtime_options={"serving": {"engine": engine_name}})
        shape = Shape(spec.workload.sequence_length, spec.workload.max_new_tokens)
        generator = load_variant(variant, spec.hardware, shape)
        engine = engine_for(generator, {"engine": engine_name})
        engine.serve(requests[:4], [0.0] * 4)
        for rate in rates:
            console.print(f"{engine_name} at {rate:g} req/s")
            prompts = [requests[i % len(requests)] for i in range(n)]
            arrivals = arrival_times(n, rate, seed=0)
            answers = engine.serve(prompts, arrivals)
            records = [a.record() for a in answers]
            duration = max(arrivals[i] + a.e2e_s for i, a in enumerate(answers))
            stats = summarize_generation(records, duration, spec.workload.slo)
            ttft95 = percentile_ms([r["ttft_s"] for r in records], 95)
            within = ttft95 is not None and ttft95 <= slo_ms
            if within:
                capacity[engine_name] = max(capacity.get(engine_name, 0.0), rate)
            out.append([engine_name, f"{rate:g}", f"{n / duration:.2f}", cell(ttft95, ".0f"),
                        cell(percentile_ms([r["tpot_s"] for r in records if r["tpot_s"]], 95), ".1f"),
                        cell(stats["goodput"], ".2f"), "yes" if within else "no"])
        engine.close()
        del engine, generator
        gc.collect()
    one = capacity.get("sequential")
    for name in ENGINES[1:]:
        if name not in capacity:
            ratio_text = "- (met the SLO at no swept rate)"
        elif one:
            ratio_text = f"{capacity[name] / one:.1f}×"
        else:  # one at a time missed the SLO already at the lowest rate: its capacity is below it
            ratio_text = f"> {capacity[name] / min(rates):.1f}× (sequential met the SLO at no swept rate)"
        out.append([f"capacity {name} vs sequential", "", ratio_text, "", "", "", ""])
    return out


if __name__ == "__main__":
    main()
