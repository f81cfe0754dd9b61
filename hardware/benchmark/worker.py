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

import atexit
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
from ratchet.hardware.serving.cache import CachedGenerator, cache_quality

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
    arrivals: list[float] | None = None  # a replayed trace's schedule (server scenario); None: Poisson at target_qps
    questions: dict[str, list[tuple[str, str]]] = {}  # labelled questions per split: a response cache's check


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
    arrivals: list[float] | None = None
    questions: dict[str, list[tuple[str, str]]] = {}


def is_generator(predictor: object) -> bool:
    """A causal LM, alone or behind a serving stack (``hardware.serving``): it answers prompts."""
    return callable(getattr(predictor, "answer", None))


def load_served(variant: Variant, hardware: HardwareSpec, shape: Shape) -> Predictor:
    """The variant as it is served (``load_variant``: its model behind the router and the cache it declares), with
    a response cache of this measurement's own: it starts empty, and lives in a namespace of this process's (dropped
    at exit), so two variants compared side by side never share hits through Redis."""
    cache = variant.runtime_options.get("serving", {}).get("cache")
    if cache is not None:
        own = {**cache, "namespace": f"{cache.get('namespace', 'ratchet-cache')}-measure-{os.getpid()}"}
        serving = {**variant.runtime_options["serving"], "cache": own}
        variant = variant.model_copy(update={"runtime_options": {**variant.runtime_options, "serving": serving}})
    predictor = load_variant(variant, hardware, shape)
    if isinstance(predictor, CachedGenerator):
        atexit.register(predictor.cache.invalidate)
    return predictor


def cache_metrics(predictor: Predictor, questions: dict[str, list[tuple[str, str]]]) -> dict[str, float]:
    """A response cache's hit and false-hit rates on held-out questions arriving at a cache of tuning answers."""
    if not isinstance(predictor, CachedGenerator) or not questions.get("heldout") or not questions.get("tuning"):
        return {}
    found = cache_quality(predictor.cache.settings, questions["tuning"], questions["heldout"], predictor.cache.embed)
    return {"cache_heldout_hit_rate": found["hit_rate"], "cache_false_hit_rate": found["false_hit_rate"],
            "cache_wrong_share_of_hits": found["wrong_share_of_hits"]}


def progress(phase: str, done: int, total: int, note: str | None = None) -> None:
    emit({"phase": phase, "done": done, "total": total, **({"note": note} if note else {})})


def encode_all(predictor: Predictor, texts: list[str], phase: str) -> dict[str, np.ndarray]:
    """The predictor's outputs on ``texts`` under the input set's name ``phase``; a generator's answers also as
    text (``NAME.text``), which answer rubrics read."""
    name = phase.removeprefix("eval ")
    if is_generator(predictor):
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
    """A generator in the server scenario: requests arrive on a seeded Poisson schedule at ``target_qps``, or as a
    replayed trace (``arrivals``), and are answered by the variant's serving engine (one at a time, static or
    continuous batching, behind its stack), queueing counted."""

    def __init__(self, generator: TorchGenerator | CachedGenerator, serving: dict, requests: list[str],
                 target_qps: float, arrivals: list[float] | None = None) -> None:
        self.engine = engine_for(generator, serving)
        self.requests = requests
        self.target_qps = target_qps
        # A trace's own gaps, replayed cyclically (its last request is followed by its mean gap).
        self.gaps = None if arrivals is None else [*np.diff(arrivals), arrivals[-1] / max(1, len(arrivals) - 1)]
        self.engine.serve(requests[:4], [0.0] * min(4, len(requests)))  # warm: first batches, compiled kernels

    def schedule(self, n: int, seed: int) -> tuple[list[str], list[float]]:
        """``n`` prompts and arrivals: the trace's ``seed``-th window of ``n`` requests (wrapping around), or the
        payloads cycled with seeded Poisson arrivals."""
        if self.gaps is None:
            return [self.requests[i % len(self.requests)] for i in range(n)], arrival_times(n, self.target_qps, seed)
        start = seed * n
        index = [(start + i) % len(self.requests) for i in range(n)]
        arrivals = np.concatenate([[0.0], np.cumsum([self.gaps[i] for i in index[:-1]])]).tolist()
        return [self.requests[i] for i in index], arrivals

    def run(self, n: int, seed: int = 0) -> tuple[list[dict], float]:
        """Per-request records of ``n`` requests (with their arrivals, for the busy time), and the run's duration."""
        prompts, arrivals = self.schedule(n, seed)
        started = time.perf_counter()
        answers = self.engine.serve(prompts, arrivals)
        duration = time.perf_counter() - started
        return [{**a.record(), "itl_s": a.itl_s(), "arrival_s": at} for a, at in zip(answers, arrivals)], duration


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
    if is_generator(predictor) and job.scenario == Scenario.SERVER:
        server = OpenLoopServer(predictor, job.variant.runtime_options.get("serving", {}), job.requests, job.target_qps,
                                job.arrivals)
        return server_run(server, job, budget, f"server at {job.target_qps:g} req/s")
    sut = RecordingSut(predictor) if is_generator(predictor) else predictor.predict
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
    predictor = load_served(job.variant, job.hardware, Shape(job.sequence_length, job.max_new_tokens))
    load_s = time.perf_counter() - t0
    outputs = {k: v for name, texts in job.eval_inputs.items() for k, v in encode_all(predictor, texts, f"eval {name}").items()}
    np.savez(job.out_dir / "outputs.npz", **outputs)
    if isinstance(predictor, CachedGenerator):
        # The eval's answers stay out of the latency runs: those start from an empty cache, as the paired blocks
        # do, so the hit rate measured is the traffic's own.
        predictor.cache.invalidate()
    budget = Budget(**job.budget)
    runs = {str(bs): latency_run(predictor, job, budget, bs) for bs in job.batch_sizes}
    (job.out_dir / "latencies.json").write_text(json.dumps({bs: r.latencies_s for bs, (r, _) in runs.items()}))
    return {
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_device_mb": _peak_device_mb(job.hardware),
        "placement": {**placement, "threads": threads_used()},
        "runs": {bs: {"summary": summary, "truncated": r.truncated} for bs, (r, summary) in runs.items()},
        "cache": cache_metrics(predictor, job.questions),
        "kv_bytes_per_token": predictor.kv_bytes_per_token() if is_generator(predictor) else None,
    }


def serve(job: ServeJob) -> None:
    """Load, warm up, announce readiness; then one block per command on stdin, until stdin closes.

    The warm-up sends every request once, in the blocks' batch size, before the timed warm-up: a compiled
    runtime (``torch.compile``, XLA buckets) compiles for each input shape it meets, and a compilation inside a
    block would be measured as the variant's latency (measured: torch.compile'd int8 looked 4x slower than fp32).
    """
    placement = pin(job.hardware)
    t0 = time.perf_counter()
    predictor = load_served(job.variant, job.hardware, Shape(job.sequence_length, job.max_new_tokens))
    load_s = time.perf_counter() - t0
    if is_generator(predictor) and job.scenario == Scenario.SERVER:
        # The server warms itself on a few requests: answering every request first would fill a response cache
        # with the very traffic the blocks replay.
        return serve_open_loop(OpenLoopServer(predictor, job.variant.runtime_options.get("serving", {}), job.requests,
                                              job.target_qps, job.arrivals), load_s, placement)
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
