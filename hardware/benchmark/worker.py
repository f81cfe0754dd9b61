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
from ratchet.hardware.benchmark.generation_stats import summarize_generation
from ratchet.hardware.benchmark.loadgen import Budget, LoadResult, Scenario, run_scenario
from ratchet.hardware.benchmark.machine import pin, threads_used
from ratchet.hardware.environments import emit, read_job, write_result
from ratchet.hardware.runtimes import Predictor, Shape, load_variant
from ratchet.hardware.runtimes.generation import TorchGenerator, token_matrix
from ratchet.hardware.runtimes.serving import arrival_times, engine_for

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
    slo: dict[str, float] = {}
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


def encode_all(predictor: Predictor, texts: list[str], phase: str) -> dict[str, np.ndarray]:
    """The predictor's outputs on ``texts`` under the input set's name ``phase``; a generator's answers also as
    text (``NAME.text``), which answer rubrics read."""
    name = phase.removeprefix("eval ")
    if isinstance(predictor, TorchGenerator):
        answers = []
        for start in range(0, len(texts), EVAL_BATCH):
            answers += predictor.answer(texts[start : start + EVAL_BATCH])
            progress(phase, min(start + EVAL_BATCH, len(texts)), len(texts))
        return {name: token_matrix([a.tokens for a in answers], predictor.max_new_tokens),
                f"{name}.text": np.array([a.text for a in answers], dtype=str)}
    rows = []
    for start in range(0, len(texts), EVAL_BATCH):
        rows.append(predictor.predict(texts[start : start + EVAL_BATCH]))
        progress(phase, min(start + EVAL_BATCH, len(texts)), len(texts))
    return {name: np.concatenate(rows)}


class RecordingSut:
    """A generator as the load generator's system under test, keeping each call's answers and service time, so a
    request's queueing (scheduled arrival to start of service) can be added to its TTFT."""

    def __init__(self, generator: TorchGenerator) -> None:
        self.generator = generator
        self.calls: list[tuple[float, list]] = []

    def __call__(self, batch: list[str]) -> None:
        started = time.perf_counter()
        answers = self.generator.answer(batch)
        self.calls.append((time.perf_counter() - started, answers))

    def records(self, latencies_s: list[float]) -> list[dict]:
        """Per-request records of the measured calls (the last ``len(latencies_s)``; earlier ones warmed up)."""
        out = []
        for latency, (service, answers) in zip(latencies_s, self.calls[-len(latencies_s):]):
            for answer in answers:
                answer.queued_s = max(0.0, latency - service)
                out.append({**answer.record(), "itl_s": answer.itl_s()})
        return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


class OpenLoopServer:
    """A generator in the server scenario: requests arrive on a seeded Poisson schedule at ``target_qps`` and are
    answered by the variant's serving engine (one at a time, static or continuous batching), queueing counted."""

    def __init__(self, generator: TorchGenerator, serving: dict, requests: list[str], target_qps: float) -> None:
        self.engine = engine_for(generator, serving)
        self.requests = requests
        self.target_qps = target_qps
        self.engine.serve(requests[:4], [0.0] * min(4, len(requests)))  # warm: first batches, compiled kernels

    def run(self, n: int, seed: int = 0) -> tuple[list[dict], float]:
        """Per-request records of ``n`` requests (cycling through the payloads), and the run's duration."""
        prompts = [self.requests[i % len(self.requests)] for i in range(n)]
        arrivals = arrival_times(n, self.target_qps, seed)
        started = time.perf_counter()
        answers = self.engine.serve(prompts, arrivals)
        duration = time.perf_counter() - started
        return [{**a.record(), "itl_s": a.itl_s()} for a in answers], duration


def server_run(server: OpenLoopServer, job: Job, budget: Budget, phase: str) -> tuple[LoadResult, dict]:
    try:
        records, duration = server.run(budget.min_queries)
    finally:
        server.engine.close()
    progress(phase, len(records), len(records))
    result = LoadResult(Scenario.SERVER, [r["e2e_s"] for r in records], duration, 1, False)
    summary = {**result.summary().to_dict(), **summarize_generation(records, duration, job.slo)}
    (job.out_dir / "requests-server.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "itl_s"}
                                                                  for r in records]))
    return result, summary


def latency_run(predictor: Predictor, job: Job, budget: Budget, batch_size: int) -> tuple[LoadResult, dict]:
    """One scenario run and its summary (a generator's with TTFT, TPOT and goodput); its bar ends full, saying so
    when the run was cut short by ``max_duration_s``."""
    phase = f"latency bs={batch_size}"
    if isinstance(predictor, TorchGenerator) and job.scenario == Scenario.SERVER:
        server = OpenLoopServer(predictor, job.variant.runtime_options.get("serving", {}), job.requests, job.target_qps)
        return server_run(server, job, budget, f"server at {job.target_qps:g} req/s")
    sut = RecordingSut(predictor) if isinstance(predictor, TorchGenerator) else predictor.predict
    result = run_scenario(
        sut, job.requests, job.scenario, budget, batch_size=batch_size, target_qps=job.target_qps,
        on_progress=lambda done, total: progress(phase, done, total) if done % PROGRESS_EVERY == 0 else None,
    )
    done = len(result.latencies_s)
    progress(phase, done, done, f"capped at {budget.max_duration_s:g} s" if result.truncated else None)
    summary = result.summary().to_dict()
    if isinstance(sut, RecordingSut):
        records = sut.records(result.latencies_s)
        summary.update(summarize_generation(records, result.duration_s, job.slo))
        (job.out_dir / f"requests-bs{batch_size}.json").write_text(
            json.dumps([{k: v for k, v in r.items() if k != "itl_s"} for r in records]))
    return result, summary


def run(job: Job) -> dict:
    placement = pin(job.hardware)
    t0 = time.perf_counter()
    predictor = load_variant(job.variant, job.hardware, Shape(job.sequence_length, job.max_new_tokens))
    load_s = time.perf_counter() - t0
    outputs = {k: v for name, texts in job.eval_inputs.items() for k, v in encode_all(predictor, texts, f"eval {name}").items()}
    np.savez(job.out_dir / "outputs.npz", **outputs)
    budget = Budget(**job.budget)
    runs = {str(bs): latency_run(predictor, job, budget, bs) for bs in job.batch_sizes}
    (job.out_dir / "latencies.json").write_text(json.dumps({bs: r.latencies_s for bs, (r, _) in runs.items()}))
    return {
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_device_mb": _peak_device_mb(job.hardware),
        "placement": {**placement, "threads": threads_used()},
        "runs": {bs: {"summary": summary, "truncated": r.truncated} for bs, (r, summary) in runs.items()},
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
    if isinstance(predictor, TorchGenerator) and job.scenario == Scenario.SERVER:
        return serve_open_loop(OpenLoopServer(predictor, job.variant.runtime_options.get("serving", {}), job.requests,
                                              job.target_qps), load_s, placement)
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


def serve_open_loop(server: OpenLoopServer, load_s: float, placement: dict) -> None:
    """Paired blocks of a generator in the server scenario: each block replays the same seeded arrival schedule
    (each side's ``k``-th block uses seed ``k``), so the two variants of a pair face identical traffic."""
    emit({"ready": True, "load_s": load_s, **placement, "threads": threads_used()})
    try:
        for block, line in enumerate(sys.stdin):
            records, _ = server.run(json.loads(line)["queries"], seed=block)
            emit({"latencies_s": [r["e2e_s"] for r in records]})
    finally:
        server.engine.close()


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
