"""The step table, the summary JSON and the markdown report, all built from the same rows.

Every metric may be missing (too few queries for a percentile, a run cut
short, a step that failed): every ratio here goes through ``ratio``, which
answers None instead of dividing by it, and every cell shows ``-``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratchet.tasks.compare import Comparison
from ratchet.tasks.records import CompileRecord, FinalDecision, RatchetState, StepRecord

TABLE_METRICS = ("p50_ms", "p95_ms", "throughput_rps", "cost_per_1k", "rubric_score", "size_mb",
                 "ttft_p95_ms", "tpot_p95_ms", "goodput")
GENERATION_METRICS = TABLE_METRICS[-3:]  # shown only for a model that generates
# What a serving stack adds (a response cache's hits and wrong hits, a router's share), kept per step.
SERVING_METRICS = ("cache_hit_rate", "cache_false_hit_rate", "small_model_share")


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``, or None when either is missing or the denominator is zero."""
    return num / den if num is not None and den else None


def step_metrics(record: StepRecord | CompileRecord, split: str = "tuning") -> dict[str, float | None]:
    if record.measurement is None:
        return dict.fromkeys(TABLE_METRICS)
    metrics = record.measurement.summary_metrics(split) if record.measurement.rubric else record.measurement.perf
    return {k: metrics.get(k) for k in TABLE_METRICS}


def versus(comparison: Comparison | None) -> dict[str, Any] | None:
    """A paired comparison as the summary keeps it: every statistic's ratio, interval and the reference's CV."""
    return None if comparison is None else comparison.to_dict()


def step_row(record: StepRecord, base: dict[str, float | None], started_at: str | None) -> dict[str, Any]:
    measured_at = record.measurement.measured_at if record.measurement else None
    row = {"step": record.step, "kind": record.kind, "decision": record.decision, "reason": record.reason,
           "settings": record.settings, "metrics": step_metrics(record), "measured_at": measured_at,
           "cached": bool(started_at and measured_at and measured_at < started_at), "attempts": record.attempts,
           "versus_champion": versus(record.comparison)}
    if record.measurement is not None:
        row["speedup_p95"] = ratio(base.get("p95_ms"), record.measurement.perf.get("p95_ms"))
        row["serving"] = {k: record.measurement.perf[k] for k in SERVING_METRICS if k in record.measurement.perf}
    if record.gate is not None:
        row["gate"] = record.gate.to_dict()
    return row


def ladder(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The champion step by step: the baseline, then each accepted step in order (each one the champion from there
    on), with p95, cost per request and rubric score, each against the baseline. The last row adds the held-out
    rubric of the final champion, the split the final gate judges on."""
    steps = [s for s in summary["steps"] if s["decision"] in ("baseline", "accepted")]
    base = steps[0]["metrics"]
    rows = []
    for s in steps:
        m = s["metrics"]
        cost = m.get("cost_per_1k")
        rows.append({
            "step": s["step"] if s["decision"] == "baseline" else f"+ {s['step']}",
            "p95_ms": m.get("p95_ms"), "p95_vs_baseline": ratio(base.get("p95_ms"), m.get("p95_ms")),
            "cost_per_request": cost / 1000 if cost is not None else None,
            "cost_vs_baseline": ratio(cost, base.get("cost_per_1k")),
            "rubric_score": m.get("rubric_score"),
            "rubric_points": None if m.get("rubric_score") is None or base.get("rubric_score") is None
            else 100 * (m["rubric_score"] - base["rubric_score"]),
            **s.get("serving", {}),
        })
    held, base_held = summary["champion_heldout"].get("rubric_score"), summary["baseline_heldout"].get("rubric_score")
    rows[-1]["heldout_rubric_points"] = None if held is None or base_held is None else 100 * (held - base_held)
    return rows


LADDER_HEADERS = ("step", "p95 ms", "p95 speed-up", "$ / request", "cost vs baseline", "rubric (tuning)",
                  "rubric points", "cache hits", "small model")


def cost_change(ratio: float | None) -> str:
    """A cost ratio to the baseline as people say it: ``56% lower``, ``5% higher``."""
    if ratio is None:
        return "-"
    return f"{1 - ratio:.0%} lower" if ratio <= 1 else f"{ratio - 1:.0%} higher"


def speedup_text(value: float | None) -> str:
    """Baseline p95 over this one's: above 1 is faster."""
    return "-" if value is None else f"{value:.2f}x"


def ladder_rows(summary: dict[str, Any]) -> list[list[str]]:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    out = []
    for r in ladder(summary):
        points = "-" if r["rubric_points"] is None else f"{r['rubric_points']:+.1f}"
        if r.get("heldout_rubric_points") is not None:
            points += f" (held-out {r['heldout_rubric_points']:+.1f})"
        out.append([r["step"], _fmt("p95_ms", r["p95_ms"]), speedup_text(r["p95_vs_baseline"]),
                    "-" if r["cost_per_request"] is None else f"${r['cost_per_request']:.7f}",
                    cost_change(r["cost_vs_baseline"]),
                    _fmt("rubric_score", r["rubric_score"]), points, pct(r.get("cache_hit_rate")),
                    pct(r.get("small_model_share"))])
    return out


class ReferenceRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str = Field(description="'baseline', or the label (or kind) of the spec's step this row follows.")
    label: str | None = Field(None, description="How the reference names the row (default: the step).")
    p95_ms: float = Field(gt=0)
    cost_per_request: float = Field(gt=0)
    rubric_score: float = Field(ge=0, le=1)


class ReferenceSpec(BaseModel):
    """Published figures to hold a run against (a vendor's claims, a worked example): the report shows each row's
    ratios to its baseline next to the run's own. Absolute figures differ by hardware; ratios are what compare."""

    model_config = ConfigDict(extra="forbid")

    name: str
    rows: list[ReferenceRow] = Field(min_length=2)

    @model_validator(mode="after")
    def _starts_at_baseline(self) -> "ReferenceSpec":
        if self.rows[0].step != "baseline":
            raise ValueError(f"rows.0.step: the first row is the baseline's (got {self.rows[0].step!r})")
        return self


REFERENCE_HEADERS = ("reference step", "our decision", "p95 ms", "p95 speed-up", "reference", "$ / request",
                     "cost vs baseline", "reference", "rubric points", "reference")


def reference_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Each reference row next to the run's champion right after the same step (a rejected or skipped step leaves
    the champion as it was: the ratchet only moves forward)."""
    ref = ReferenceSpec.model_validate(summary["reference"])
    base_ref = ref.rows[0]
    steps = summary["steps"]
    ours = ladder(summary)
    out = []
    for row in ref.rows:
        index = 0 if row.step == "baseline" else next(
            (i for i, s in enumerate(steps) if row.step in (s["step"], s["kind"])), None)
        if index is None:
            continue
        accepted_so_far = sum(s["decision"] == "accepted" for s in steps[1: index + 1])
        mine = ours[accepted_so_far]
        decision = steps[index]["decision"] if row.step != "baseline" else "baseline"
        if decision not in ("baseline", "accepted"):
            decision += f": {steps[index]['reason']}"
        out.append([
            row.label or row.step, decision, _fmt("p95_ms", mine["p95_ms"]), speedup_text(mine["p95_vs_baseline"]),
            speedup_text(base_ref.p95_ms / row.p95_ms),
            "-" if mine["cost_per_request"] is None else f"${mine['cost_per_request']:.7f}",
            cost_change(mine["cost_vs_baseline"]), cost_change(row.cost_per_request / base_ref.cost_per_request),
            "-" if mine["rubric_points"] is None else f"{mine['rubric_points']:+.1f}",
            f"{100 * (row.rubric_score - base_ref.rubric_score):+.1f}",
        ])
    return out


def build_summary(state: RatchetState, final: FinalDecision, mlflow_run_id: str | None,
                  registered_version: int | None, spec_name: str, compiled: list[CompileRecord] | None = None,
                  started_at: str | None = None, reference: ReferenceSpec | None = None) -> dict[str, Any]:
    """The run as data: what ``--summary-json`` writes and the tables are drawn from.

    ``started_at`` (UTC, ISO 8601) tells a step measured in this run from one reused from the cache.
    """
    base = state.baseline.measurement.perf
    steps = [step_row(record, base, started_at) for record in state.records]
    champion = final.champion
    champion_heldout = {**step_metrics(champion, "heldout"), **champion.measurement.rubric["heldout"].metrics()}
    baseline_heldout = state.baseline.measurement.rubric["heldout"].metrics()
    inconclusive = [s["step"] for s in steps if s["decision"] == "inconclusive"] + (["final gate"] if final.inconclusive else [])
    return {
        "spec": spec_name,
        "verdict": "inconclusive" if inconclusive else "met" if final.targets_met else "not met",
        "inconclusive": inconclusive,
        "steps": steps,
        "champion": champion.step,
        "champion_heldout": champion_heldout,
        "baseline_heldout": baseline_heldout,
        "champion_vs_baseline": gains(base, champion.measurement.perf, champion_heldout, baseline_heldout),
        "final_gate": final.gate.to_dict(),
        "final_versus_baseline": versus(final.comparison),
        "compile": [compile_row(r, base, champion.measurement.perf) for r in compiled or []],
        "targets_met": final.targets_met,
        "machine": state.baseline.measurement.machine,
        "mlflow_run_id": mlflow_run_id,
        "registered_version": registered_version,
        "reference": reference.model_dump() if reference is not None else None,
    }


def compile_row(record: CompileRecord, base: dict, champion: dict) -> dict[str, Any]:
    """One compile target as data: status and why, what it was compiled from, parity, held-out metrics."""
    row: dict[str, Any] = {
        "target": record.target, "backend": record.backend, "status": record.status, "reason": record.reason,
        "source": record.source, "backend_version": record.backend_version, "settings": record.settings,
        "parity": record.parity.to_dict() if record.parity else None,
        "metrics": step_metrics(record, "heldout") if record.measurement and record.measurement.rubric
        else dict.fromkeys(TABLE_METRICS),
        "versus_champion": versus(record.comparison),
    }
    if record.measurement is not None:
        perf = record.measurement.perf
        row["speedup_p95_vs_baseline"] = ratio(base.get("p95_ms"), perf.get("p95_ms"))
        row["speedup_p95_vs_champion"] = ratio(champion.get("p95_ms"), perf.get("p95_ms"))
    if record.gate is not None:
        row["gate"] = record.gate.to_dict()
    return row


COMPILE_HEADERS = ("target", "status", "from", "max |diff|", "cosine", "p50 ms", "p95 ms", "req/s", "$ / 1k req",
                   "rubric", "size MB")


def compile_table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in summary.get("compile", []):
        status = c["status"] if c["status"] == "compiled" else f"{c['status']}: {c['reason']}"
        par = c["parity"] or {}
        diff = f"{par['max_abs_diff']:.2g}" if par else "-"
        cos = f"{par['mean_cosine']:.5f}" if par else "-"
        rows.append([c["target"], status, c["source"] or "-", diff, cos, *(_fmt(k, c["metrics"].get(k)) for k in TABLE_METRICS if k not in GENERATION_METRICS)])
    return rows


def gains(base: dict, perf: dict, heldout: dict, baseline_heldout: dict) -> dict[str, float | None]:
    """The champion against the baseline in one place: speed-ups (baseline / champion latency) and held-out
    quality, each quality figure next to the baseline's."""
    out: dict[str, float | None] = {
        "speedup_p50": ratio(base.get("p50_ms"), perf.get("p50_ms")),
        "speedup_p95": ratio(base.get("p95_ms"), perf.get("p95_ms")),
        "throughput_ratio": ratio(perf.get("throughput_rps"), base.get("throughput_rps")),
        "cost_ratio": ratio(perf.get("cost_per_1k"), base.get("cost_per_1k")),
    }
    for name, value in baseline_heldout.items():
        out[f"heldout_{name}"] = heldout.get(name)
        out[f"baseline_heldout_{name}"] = value
    return out


def gains_line(summary: dict[str, Any]) -> str:
    """One line for the terminal: how much faster, at what held-out quality."""
    g = summary["champion_vs_baseline"]
    speed = ", ".join(f"{g[k]:.2f}x {k.removeprefix('speedup_')}" for k in ("speedup_p50", "speedup_p95") if g.get(k))
    quality = ", ".join(
        f"{k.removeprefix('heldout_')} {v:.3f} (baseline {g['baseline_' + k]:.3f})"
        for k, v in g.items() if k.startswith("heldout_") and v is not None and g.get("baseline_" + k) is not None
    )
    return f"champion vs baseline: {speed or 'no speed figures'}; held-out {quality}"


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "cost_per_1k":
        return f"${value:.6f}"
    return f"{value:.3f}" if key in ("rubric_score", "goodput") else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


HEADERS = {"p50_ms": "p50 ms", "p95_ms": "p95 ms", "throughput_rps": "req/s", "cost_per_1k": "$ / 1k req",
           "rubric_score": "rubric", "size_mb": "size MB", "ttft_p95_ms": "TTFT p95 ms", "tpot_p95_ms": "TPOT p95 ms",
           "goodput": "goodput"}


def _columns(summary: dict[str, Any]) -> list[str]:
    """The table's metrics: TTFT, TPOT and goodput only where a step measured them (a generator)."""
    measured = {k for s in summary["steps"] for k, v in s["metrics"].items() if v is not None}
    return [k for k in TABLE_METRICS if k not in GENERATION_METRICS or k in measured]


def headers(summary: dict[str, Any]) -> list[str]:
    return ["step", "decision", *(HEADERS[k] for k in _columns(summary))]


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    columns = _columns(summary)
    return [[s["step"], _decision(s), *(_fmt(k, s["metrics"].get(k)) for k in columns)] for s in summary["steps"]]


def _decision(step: dict[str, Any]) -> str:
    """``accepted``, ``rejected: reason``, ``skipped: reason``: never a bare success for a skip; a result reused from
    the cache says when it was measured."""
    text = step["decision"] if step["decision"] in ("baseline", "accepted") else f"{step['decision']}: {step['reason']}"
    if step.get("cached"):
        text += f" [cached (measured {step['measured_at'].replace('T', ' ').removesuffix('+00:00')} UTC)]"
    return text


def verdict(summary: dict[str, Any]) -> str:
    if summary["targets_met"]:
        text = f"champion {summary['champion']!r} meets every target; registered as version {summary['registered_version']}"
    elif summary["verdict"] == "inconclusive" and "final gate" in summary["inconclusive"]:
        return (f"no verdict on champion {summary['champion']!r}: {summary['final_gate']['reason']}; nothing promoted "
                "(measure again on a quieter machine)")
    else:
        text = f"champion {summary['champion']!r} does not meet every target ({summary['final_gate']['reason']}); nothing promoted"
    steps = [s for s in summary["inconclusive"] if s != "final gate"]
    return text + (f"; no verdict on {', '.join(steps)} (machine too noisy)" if steps else "")


def _markdown_table(head: Sequence[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows)]


def markdown_report(summary: dict[str, Any]) -> str:
    lines = [f"# Ratchet run: {summary['spec']}", "", f"**{verdict(summary)}**", "",
             *_markdown_table(headers(summary), table_rows(summary)),
             "", "## The champion, step by step", "",
             "Each accepted step made the champion the next one builds on; ratios are against the baseline, on the "
             "same workload. Rejected and skipped steps, with their reasons, are in the table above.", "",
             *_markdown_table(LADDER_HEADERS, ladder_rows(summary))]
    if summary.get("reference"):
        lines += ["", f"## Against {summary['reference']['name']}", "",
                  "The reference's own ratios to its baseline next to ours (absolute figures differ by hardware).", "",
                  *_markdown_table(REFERENCE_HEADERS, reference_rows(summary))]
    if summary.get("compile"):
        lines += ["", "## Compile targets", "", *_markdown_table(COMPILE_HEADERS, compile_table_rows(summary))]
    lines += ["", "## Final gate (held-out split)", "", "| criterion | measured | pass | why |", "|---|---|---|---|"]
    for c in summary["final_gate"]["criteria"]:
        measured = "-" if c["measured"] is None else f"{c['measured']:.4g}"
        lines.append(f"| {c['name']} | {measured} | {'yes' if c['passed'] else 'no'} | {c['reason']} |")
    return "\n".join(lines) + "\n"


def html_report(markdown_text: str, images: Sequence[Path]) -> str:
    """The markdown report as one self-contained HTML page, its plots embedded (what MLflow shows in its browser)."""
    import base64

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    figures = "".join(f'<p><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></p>'
                      for p in images)
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{body}{figures}</body></html>"
