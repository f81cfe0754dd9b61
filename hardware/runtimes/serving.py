"""Serving a causal LM under open-loop arrivals: one request at a time, static batches, or continuous batching.

The server scenario is where batching pays: requests arrive on their own
schedule (Poisson, or burstier with a gamma shape below 1, as vLLM's
``bench serve`` draws them) and each one's latency counts its wait. Three
engines answer the same arrival schedule:

* ``sequential``: first come, first served, one request at a time;
* ``static``: when idle, take every request that has arrived (up to
  ``max_batch``) and run the batch to its longest answer;
* ``continuous``: ``transformers``' continuous batching manager (paged KV
  cache, requests join and leave the running batch between decode steps;
  it runs on CPU in transformers 5), fed at each request's arrival time.

Each returns one ``Generated`` per request, in request order, with the wait
in ``queued_s`` and token times measured from the start of service (for the
continuous engine, from the arrival: service starts inside the manager).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

from ratchet.hardware.runtimes.generation import Generated, TorchGenerator

EngineName = Literal["sequential", "static", "continuous"]
ENGINES: tuple[EngineName, ...] = ("sequential", "static", "continuous")


def arrival_times(n: int, rate: float, seed: int = 0, burstiness: float = 1.0) -> list[float]:
    """Seconds after the start at which ``n`` requests arrive: gamma-distributed gaps with mean ``1 / rate``
    (``burstiness`` 1 is a Poisson process; below 1, burstier)."""
    gaps = np.random.default_rng(seed).gamma(burstiness, 1.0 / (rate * burstiness), size=n)
    return np.cumsum(gaps).tolist()


class Engine(Protocol):
    def serve(self, prompts: Sequence[str], arrivals_s: Sequence[float]) -> list[Generated]:
        """Answer ``prompts[i]`` arriving ``arrivals_s[i]`` seconds after the call."""

    def close(self) -> None:
        """Stop what the engine started (a process with a running manager thread would never exit)."""


def _wait_until(deadline: float) -> None:
    while (left := deadline - time.perf_counter()) > 0:
        time.sleep(left)


class BatchingEngine:
    """``sequential`` (``max_batch`` 1) and ``static`` batching over the generator's own ``answer``."""

    def __init__(self, generator: TorchGenerator, max_batch: int = 1) -> None:
        self.generator = generator
        self.max_batch = max_batch

    def serve(self, prompts: Sequence[str], arrivals_s: Sequence[float]) -> list[Generated]:
        start = time.perf_counter()
        out: list[Generated | None] = [None] * len(prompts)
        nxt = 0
        while nxt < len(prompts):
            _wait_until(start + arrivals_s[nxt])
            now = time.perf_counter() - start
            batch = [nxt]
            while len(batch) < self.max_batch and batch[-1] + 1 < len(prompts) and arrivals_s[batch[-1] + 1] <= now:
                batch.append(batch[-1] + 1)
            served_at = time.perf_counter() - start
            for i, answer in zip(batch, self.generator.answer([prompts[i] for i in batch])):
                answer.queued_s = served_at - arrivals_s[i]
                answer.meta["batch_size"] = len(batch)
                out[i] = answer
            nxt = batch[-1] + 1
        return out  # type: ignore[return-value]

    def close(self) -> None:
        pass


class ContinuousEngine:
    """``transformers``' continuous batching manager, fed open-loop; kept running between calls (warm)."""

    def __init__(self, generator: TorchGenerator, max_batch_tokens: int = 512, max_memory_percent: float = 0.1) -> None:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        tokenizer = generator.tokenizer
        self.generator = generator
        config = GenerationConfig(max_new_tokens=generator.max_new_tokens, do_sample=False,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        self.manager = generator.model.init_continuous_batching(
            generation_config=config,
            # transformers sizes the paged cache at 60-90% of free memory (a device of its own); a shared CPU
            # machine gets a bounded share.
            continuous_batching_config=ContinuousBatchingConfig(max_batch_tokens=max_batch_tokens,
                                                                max_memory_percent=max_memory_percent))
        self.manager.start()

    def _ids(self, prompt: str) -> list[int]:
        return self.generator.tokenizer(prompt, truncation=True, max_length=self.generator.sequence_length)["input_ids"]

    def serve(self, prompts: Sequence[str], arrivals_s: Sequence[float]) -> list[Generated]:
        ids = [self._ids(p) for p in prompts]
        start = time.perf_counter()
        request_ids = {}
        for i, (prompt_ids, at) in enumerate(zip(ids, arrivals_s)):
            _wait_until(start + at)
            rid = self.manager.add_request(prompt_ids, max_new_tokens=self.generator.max_new_tokens,
                                           record_timestamps=True)
            request_ids[rid] = i
        done: dict[int, object] = {}
        while len(done) < len(prompts):
            result = self.manager.get_result(timeout=600)
            if result is None:
                raise RuntimeError("continuous batching stopped answering (its generation thread ended)")
            if result.is_finished() and result.request_id in request_ids:
                done[request_ids[result.request_id]] = result
        eos = self.generator.tokenizer.eos_token_id
        out = []
        for i in range(len(prompts)):
            result = done[i]
            tokens = list(result.generated_tokens)
            times = [t - (start + arrivals_s[i]) for t in result.timestamps[: len(tokens)]]
            out.append(Generated(tokens, self.generator.text_of(tokens), len(ids[i]), times, cut_off=eos not in tokens))
        return out

    def close(self) -> None:
        if self.manager.is_running():
            self.manager.stop(block=True)


def engine_for(generator: TorchGenerator, serving: dict) -> Engine:
    """The engine a variant's ``serving`` runtime option names (default: one request at a time)."""
    name = serving.get("engine", "sequential")
    if name == "continuous" and not isinstance(generator, TorchGenerator):
        raise ValueError("continuous batching feeds the model itself; it cannot serve behind a response cache")
    if name == "continuous":
        return ContinuousEngine(generator, serving.get("max_batch_tokens", 512), serving.get("max_memory_percent", 0.1))
    return BatchingEngine(generator, serving.get("max_batch", 8) if name == "static" else 1)
