"""What serving benchmarks report for a generative model, from per-request token timestamps.

The metrics are the ones vLLM's ``bench serve`` standardized on: time to first
token (TTFT, queueing included), time per output token after the first
(TPOT), inter-token latency (ITL, every gap between consecutive tokens),
end-to-end latency, output tokens per second, and **goodput**: the share of
requests that met every service-level objective the spec declares. Tail
percentiles follow the same minimum-sample rule as every other latency here
(``stats.percentile_ms``): too few requests, no p99.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ratchet.hardware.benchmark.stats import percentile_ms

SLO_METRICS = {"ttft_ms": "ttft_s", "tpot_ms": "tpot_s", "e2e_ms": "e2e_s"}  # SLO name -> per-request record key
PERCENTILES = (50, 90, 95, 99)
GENERATION_METRICS = (  # what a generator's run adds to the latency summary (and the pipeline's metrics)
    *(f"{key}_p{q}_ms" for key in ("ttft", "tpot") for q in PERCENTILES), "ttft_mean_ms", "tpot_mean_ms",
    "itl_p95_ms", "output_tokens_per_s", "output_tokens_mean", "prompt_tokens_mean", "cut_off_share", "retry_share",
    "goodput", "busy_s_per_request", "cache_hit_rate", "small_model_share",
)


def meets_slo(record: Mapping[str, Any], slo: Mapping[str, float]) -> bool:
    """Whether one request met every objective (a one-token answer has no TPOT and meets a TPOT objective)."""
    for name, limit_ms in slo.items():
        value = record[SLO_METRICS[name]]
        if value is not None and value * 1e3 > limit_ms:
            return False
    return True


def summarize_generation(records: Sequence[Mapping[str, Any]], duration_s: float,
                         slo: Mapping[str, float] | None = None) -> dict[str, float | None]:
    """TTFT, TPOT and ITL percentiles, token throughput, goodput and answer lengths of one run."""
    out: dict[str, float | None] = {}
    for key in ("ttft", "tpot"):
        values = [r[f"{key}_s"] for r in records if r[f"{key}_s"] is not None]
        for q in PERCENTILES:
            out[f"{key}_p{q}_ms"] = percentile_ms(values, q) if values else None
        out[f"{key}_mean_ms"] = float(np.mean(values)) * 1e3 if values else None
    gaps = [g for r in records for g in r.get("itl_s", [])]
    out["itl_p95_ms"] = percentile_ms(gaps, 95) if gaps else None
    output_tokens = sum(r["output_tokens"] for r in records)
    out["output_tokens_per_s"] = output_tokens / duration_s if duration_s > 0 else None
    out["output_tokens_mean"] = output_tokens / len(records) if records else None
    out["prompt_tokens_mean"] = float(np.mean([r["prompt_tokens"] for r in records])) if records else None
    out["cut_off_share"] = float(np.mean([bool(r["cut_off"]) for r in records])) if records else None
    out["retry_share"] = float(np.mean([bool(r.get("retried")) for r in records])) if records else None
    out["goodput"] = float(np.mean([meets_slo(r, slo or {}) for r in records])) if records else None
    if records and all("arrival_s" in r for r in records):
        out["busy_s_per_request"] = busy_time_s(records) / len(records)
    if records and any("cache" in r for r in records):
        out["cache_hit_rate"] = float(np.mean([r.get("cache", "miss") != "miss" for r in records]))
    if records and any("model" in r for r in records):  # a router: the share the small model answered alone
        out["small_model_share"] = float(np.mean([r.get("model") == "small" for r in records]))
    return out


def busy_time_s(records: Sequence[Mapping[str, Any]]) -> float:
    """How long at least one request was in the system (the union of arrival-to-last-token intervals): a
    work-conserving server is busy exactly then, so this is the machine time the requests cost, cache lookups,
    every model's work and batching included."""
    spans = sorted((r["arrival_s"], r["arrival_s"] + r["e2e_s"]) for r in records)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total
