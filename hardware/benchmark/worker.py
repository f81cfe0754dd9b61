"""Measure one variant in a process of its own: ``python -m ratchet.hardware.benchmark.worker JOB.json``.

Running each variant in a fresh process keeps variants from disturbing each
other (allocator state, compiled kernels, thread pools, peak RSS). The job (with the
variant's description) and the results cross the boundary as files: ``job.json`` in; ``outputs.npz`` (the
model's outputs on the eval inputs), ``latencies.json`` and ``job.result.json`` out.
Progress goes to stdout as JSON lines so the parent can draw a bar.
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
from ratchet.hardware.benchmark.loadgen import Budget, Scenario, run_scenario
from ratchet.hardware.environments import emit, read_job, write_result
from ratchet.hardware.runtimes import Shape, load_variant

EVAL_BATCH = 32


class Job(BaseModel):
    """Everything the worker needs, written by the parent as ``job.json``."""

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


def progress(phase: str, done: int, total: int) -> None:
    emit({"phase": phase, "done": done, "total": total})


def encode_all(predictor, texts: list[str], phase: str) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), EVAL_BATCH):
        rows.append(predictor.predict(texts[start : start + EVAL_BATCH]))
        progress(phase, min(start + EVAL_BATCH, len(texts)), len(texts))
    return np.concatenate(rows)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def run(job: Job) -> dict:
    variant = job.variant
    t0 = time.perf_counter()
    predictor = load_variant(variant, job.hardware, Shape(job.sequence_length, job.max_new_tokens))
    load_s = time.perf_counter() - t0
    outputs = {name: encode_all(predictor, texts, f"eval {name}") for name, texts in job.eval_inputs.items()}
    np.savez(job.out_dir / "outputs.npz", **outputs)
    budget = Budget(**job.budget)
    runs = {}
    for bs in job.batch_sizes:
        phase = f"latency bs={bs}"
        result = run_scenario(
            predictor.predict, job.requests, job.scenario, budget, batch_size=bs, target_qps=job.target_qps,
            on_progress=lambda done, total, phase=phase: progress(phase, done, total) if done % 25 == 0 else None,
        )
        runs[str(bs)] = {"summary": result.summary().to_dict(), "latencies_s": result.latencies_s, "truncated": result.truncated}
    (job.out_dir / "latencies.json").write_text(json.dumps({bs: r["latencies_s"] for bs, r in runs.items()}))
    result = {
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_device_mb": _peak_device_mb(job.hardware),
        "runs": {bs: {"summary": r["summary"], "truncated": r["truncated"]} for bs, r in runs.items()},
    }
    return result


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
    write_result(job_path, run(Job.model_validate(job)))
