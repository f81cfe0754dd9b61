"""Measure one variant in a process of its own: ``python -m ratchet.hardware.benchmark.worker JOB.json``.

Running each variant in a fresh process keeps variants from disturbing each
other (allocator state, compiled kernels, thread pools, peak RSS). The process
pins itself to the cores the hardware profile declares and records the
threads and cores it used.

Two modes:

* a measurement job: the job (with the variant's description) and the results
  cross the boundary as files: ``job.json`` in; ``outputs.npz`` (the model's
  outputs on the eval inputs), ``latencies.json`` and ``job.result.json`` out;
* ``"serve": true``: load and warm up, say so, then run one block of queries
  per command read from standard input and answer with its latencies, until
  the input ends. ``hardware.benchmark.session`` drives it for paired comparisons.

Progress and answers go to stdout as JSON lines so the parent can draw a bar.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.benchmark.loadgen import Budget, LoadResult, Scenario, run_scenario
from ratchet.hardware.benchmark.machine import pin, threads_used
from ratchet.hardware.environments import emit, read_job, write_result
from ratchet.hardware.runtimes import Predictor, Shape, load_variant

EVAL_BATCH = 32
PROGRESS_EVERY = 25


class Job(BaseModel):
    """Everything a measurement needs, written by the parent as ``job.json``."""

    variant: Variant
    out_dir: Path
    hardware: HardwareSpec
    scenario: Scenario
    target_qps: float | None
    batch_sizes: list[int]
    sequence_length: int
    max_new_tokens: int
    budget: dict
    eval_inputs: dict[str, list[str]]
    requests: list[str]


class ServeJob(BaseModel):
    """What a serving worker needs: the variant, how it runs, and the requests its blocks cycle through."""

    variant: Variant
    hardware: HardwareSpec
    scenario: Scenario
    target_qps: float | None
    sequence_length: int
    max_new_tokens: int
    warmup_s: float
    batch_size: int
    requests: list[str]


def progress(phase: str, done: int, total: int, note: str | None = None) -> None:
    emit({"phase": phase, "done": done, "total": total, **({"note": note} if note else {})})


def encode_all(predictor: Predictor, texts: list[str], phase: str) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), EVAL_BATCH):
        rows.append(predictor.predict(texts[start : start + EVAL_BATCH]))
        progress(phase, min(start + EVAL_BATCH, len(texts)), len(texts))
    return np.concatenate(rows)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def latency_run(predictor: Predictor, job: Job, budget: Budget, batch_size: int) -> LoadResult:
    """One scenario run; its bar ends full, saying so when the run was cut short by ``max_duration_s``."""
    phase = f"latency bs={batch_size}"
    result = run_scenario(
        predictor.predict, job.requests, job.scenario, budget, batch_size=batch_size, target_qps=job.target_qps,
        on_progress=lambda done, total: progress(phase, done, total) if done % PROGRESS_EVERY == 0 else None,
    )
    done = len(result.latencies_s)
    progress(phase, done, done, f"capped at {budget.max_duration_s:g} s" if result.truncated else None)
    return result


def run(job: Job) -> dict:
    placement = pin(job.hardware)
    t0 = time.perf_counter()
    predictor = load_variant(job.variant, job.hardware, Shape(job.sequence_length, job.max_new_tokens))
    load_s = time.perf_counter() - t0
    outputs = {name: encode_all(predictor, texts, f"eval {name}") for name, texts in job.eval_inputs.items()}
    np.savez(job.out_dir / "outputs.npz", **outputs)
    budget = Budget(**job.budget)
    runs = {str(bs): latency_run(predictor, job, budget, bs) for bs in job.batch_sizes}
    (job.out_dir / "latencies.json").write_text(json.dumps({bs: r.latencies_s for bs, r in runs.items()}))
    return {
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_device_mb": _peak_device_mb(job.hardware),
        "placement": {**placement, "threads": threads_used()},
        "runs": {bs: {"summary": r.summary().to_dict(), "truncated": r.truncated} for bs, r in runs.items()},
    }


def serve(job: ServeJob) -> None:
    """Load, warm up, announce readiness; then one block per command on stdin, until stdin closes.

    The warm-up sends every request once, in the blocks' batch size, before the timed warm-up: a compiled
    runtime (``torch.compile``, XLA buckets) compiles for each input shape it meets, and a compilation inside a
    block would be measured as the variant's latency (measured: torch.compile'd int8 looked 4x slower than fp32).
    """
    placement = pin(job.hardware)
    t0 = time.perf_counter()
    predictor = load_variant(job.variant, job.hardware, Shape(job.sequence_length, job.max_new_tokens))
    load_s = time.perf_counter() - t0
    for start in range(0, len(job.requests), job.batch_size):
        predictor.predict(job.requests[start:start + job.batch_size])
    warm = Budget(warmup_s=job.warmup_s, min_duration_s=0, min_queries=1)
    run_scenario(predictor.predict, job.requests, job.scenario, warm, batch_size=job.batch_size,
                 target_qps=job.target_qps)
    emit({"ready": True, "load_s": load_s, **placement, "threads": threads_used()})
    for line in sys.stdin:
        command = json.loads(line)
        # No warm-up beyond the single unrecorded call run_scenario makes: the process is warm, and that call
        # re-touches caches the other side's block may have evicted.
        block = Budget(warmup_s=0, min_duration_s=0, min_queries=command["queries"])
        result = run_scenario(predictor.predict, job.requests, job.scenario, block,
                              batch_size=command["batch_size"], target_qps=job.target_qps)
        emit({"latencies_s": result.latencies_s})


def _peak_device_mb(hardware: HardwareSpec) -> float | None:
    """PyTorch's own peak when the variant ran on torch; otherwise (ONNX Runtime, TensorRT) the GPU memory
    this process holds at the end of the run, as the driver reports it. None when neither can be read."""
    if hardware.device != "cuda":
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        return torch.cuda.max_memory_allocated() / 1e6
    try:
        query = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = [float(mib) for pid, mib in (line.split(",") for line in query.splitlines() if "," in line)
            if int(pid) == os.getpid()]
    return used[0] * 1.048576 if used else None  # MiB -> MB


if __name__ == "__main__":
    job_path, job = read_job(sys.argv)
    if job.pop("serve", False):
        serve(ServeJob.model_validate(job))
    else:
        write_result(job_path, run(Job.model_validate(job)))
