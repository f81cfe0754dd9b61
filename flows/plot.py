"""Pictures of a run: latency and quality per step, and the latency/quality/cost trade-off (a Pareto plot),
coloured by the gate's decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: pipelines run headless
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"baseline": "#4c72b0", "accepted": "#55a868", "rejected": "#c44e52", "inconclusive": "#dd8452",
           "skipped": "#aaaaaa", "failed": "#8172b2"}


def plot_steps(summary: dict[str, Any], path: Path) -> Path:
    """p95 latency and rubric score of every measured step, side by side."""
    steps = [s for s in summary["steps"] if s["metrics"]["p95_ms"] is not None]
    names = [s["step"] for s in steps]
    colours = [COLOURS[s["decision"]] for s in steps]
    fig, (lat, qual) = plt.subplots(1, 2, figsize=(10, 3.8))
    lat.bar(names, [s["metrics"]["p95_ms"] for s in steps], color=colours)
    lat.set_ylabel("p95 latency (ms)")
    lat.set_title("latency (lower is better)")
    qual.bar(names, [s["metrics"]["rubric_score"] for s in steps], color=colours)
    qual.set_ylim(0, 1)
    qual.set_ylabel("rubric score")
    qual.set_title("quality, tuning split (higher is better)")
    for ax in (lat, qual):
        ax.tick_params(axis="x", rotation=20)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    fig.legend(handles, list(COLOURS), loc="lower center", ncol=len(COLOURS), frameon=False)
    fig.suptitle(f"Ratchet: {summary['spec']} (champion: {summary['champion']})")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pareto(summary: dict[str, Any], path: Path) -> Path:
    """p95 latency against rubric score for every measured step, point area proportional to cost per request; the
    champion's path (baseline, then each accepted step) is drawn through them."""
    steps = [s for s in summary["steps"] if s["metrics"]["p95_ms"] is not None and s["metrics"]["rubric_score"] is not None]
    costs = [s["metrics"]["cost_per_1k"] or 0.0 for s in steps]
    top = max(costs, default=0.0) or 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    if not steps:  # every p95 unreportable (too few queries): say so rather than draw empty axes
        ax.text(0.5, 0.5, "no step has a reportable p95 (too few queries)", ha="center", va="center",
                transform=ax.transAxes)
    for s, cost in zip(steps, costs):
        ax.scatter(s["metrics"]["p95_ms"], s["metrics"]["rubric_score"], s=40 + 900 * cost / top, alpha=0.6,
                   color=COLOURS[s["decision"]], edgecolors="black", linewidths=0.5)
        ax.annotate(s["step"], (s["metrics"]["p95_ms"], s["metrics"]["rubric_score"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    path_steps = [s for s in steps if s["decision"] in ("baseline", "accepted")]
    ax.plot([s["metrics"]["p95_ms"] for s in path_steps], [s["metrics"]["rubric_score"] for s in path_steps],
            color="#55a868", lw=1, ls="--", label="champion's path")
    if steps:
        ax.set_xscale("log")
    ax.set_xlabel("p95 latency (ms, log scale; lower is better)")
    ax.set_ylabel("rubric score, tuning split (higher is better)")
    ax.set_title(f"{summary['spec']}: latency, quality and cost (area = cost per request)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), fontsize=7, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
