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
from typing import Any, Literal, Protocol

import numpy as np

from ratchet.hardware.runtimes.generation import Generated, TorchGenerator
from ratchet.hardware.serving.cache import Lookup, ResponseCache, cached_answer
from ratchet.hardware.serving.compression import Compressor
from ratchet.hardware.serving.routing import RouterSettings, escalates
from ratchet.hardware.serving.stack import layers

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
    """``sequential`` (``max_batch`` 1) and ``static`` batching over the generator's (or stack's) own ``answer``.

    Dynamic batching is static batching with ``max_wait_s``: an idle engine that receives a request waits up to
    that long for more to fill the batch (Triton's ``max_queue_delay``), trading the first one's latency for
    fewer, fuller batches.
    """

    def __init__(self, generator: Any, max_batch: int = 1, max_wait_s: float = 0.0) -> None:
        self.generator = generator
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s

    def serve(self, prompts: Sequence[str], arrivals_s: Sequence[float]) -> list[Generated]:
        start = time.perf_counter()
        out: list[Generated | None] = [None] * len(prompts)
        nxt = 0
        while nxt < len(prompts):
            _wait_until(start + arrivals_s[nxt])
            if self.max_batch > 1 and self.max_wait_s > 0:
                last = min(nxt + self.max_batch, len(prompts)) - 1  # the last request the batch could take
                _wait_until(start + min(arrivals_s[last], max(arrivals_s[nxt] + self.max_wait_s,
                                                              time.perf_counter() - start)))
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
    """``transformers``' continuous batching manager, fed open-loop; kept running between calls (warm).

    The serving stack in front of it works per request, as requests arrive: a response cache answers hits at
    once (and keeps each fresh answer as it finishes, so a repeat later in the same run hits); a router sends
    each miss to the small model's manager first and escalates an unsure answer to the large model's, both
    batching continuously. One loop admits arrivals and collects finished answers, so neither waits for the
    other.
    """

    def __init__(self, generator: TorchGenerator, max_batch_tokens: int = 512, max_memory_percent: float = 0.1,
                 cache: ResponseCache | None = None, small: TorchGenerator | None = None,
                 router: RouterSettings | None = None, compressor: Compressor | None = None,
                 prefix_sharing: bool = True) -> None:
        self.generator = generator
        self.cache = cache
        self.router = router
        self.compressor = compressor
        paged = {"max_batch_tokens": max_batch_tokens, "max_memory_percent": max_memory_percent,
                 "allow_block_sharing": prefix_sharing}
        self.managers = {"large": self._manager(generator, paged, logprobs=False)}
        if small is not None and router is not None:
            self.managers["small"] = self._manager(small, paged, logprobs=True)

    @staticmethod
    def _manager(generator: TorchGenerator, paged: dict, logprobs: bool):
        """A started manager. ``paged``: the paged cache's ``max_batch_tokens``, ``max_memory_percent`` (transformers
        sizes the cache at 60-90% of free memory, a device of its own; a shared CPU machine gets a bounded share)
        and ``allow_block_sharing``: prefix caching, the KV blocks of a prompt prefix another request already
        computed (the same retrieved context) shared instead of computed again."""
        from transformers import ContinuousBatchingConfig, GenerationConfig

        tokenizer = generator.tokenizer
        config = GenerationConfig(max_new_tokens=generator.max_new_tokens, do_sample=False,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        manager = generator.model.init_continuous_batching(
            generation_config=config,
            continuous_batching_config=ContinuousBatchingConfig(**paged, return_logprobs=logprobs))
        manager.start()
        return manager

    def _ids(self, prompt: str) -> list[int]:
        return self.generator.tokenizer(prompt, truncation=True, max_length=self.generator.sequence_length)["input_ids"]

    def serve(self, prompts: Sequence[str], arrivals_s: Sequence[float]) -> list[Generated]:
        ids: dict[int, list[int]] = {}
        first = "small" if "small" in self.managers else "large"
        out: list[Generated | None] = [None] * len(prompts)
        lookups: dict[int, Lookup] = {}
        inflight: dict[tuple[str, str], int] = {}  # (manager, request id) -> request
        start = time.perf_counter()
        admitted = 0
        while admitted < len(prompts) or inflight:
            now = time.perf_counter() - start
            while admitted < len(prompts) and arrivals_s[admitted] <= now:
                i, admitted = admitted, admitted + 1
                if self.cache is not None:
                    look = self.cache.lookup(prompts[i])
                    if look.answer is not None:
                        out[i] = cached_answer(look, time.perf_counter() - start - arrivals_s[i])
                        continue
                    lookups[i] = look
                ids[i] = self._ids(self.compressor.compress(prompts[i]) if self.compressor else prompts[i])
                inflight[(first, self._add(first, ids[i]))] = i
            wait = arrivals_s[admitted] - (time.perf_counter() - start) if admitted < len(prompts) else 0.05
            for name, manager in self.managers.items():
                result = manager.get_result(timeout=max(0.0, min(wait, 0.002)))
                if result is None:
                    if not manager.is_running():
                        raise RuntimeError("continuous batching stopped answering (its generation thread ended)")
                    continue
                if not result.is_finished() or (name, result.request_id) not in inflight:
                    continue  # a partial result, or one left over from an earlier call
                i = inflight.pop((name, result.request_id))
                answer = self._generated(result, len(ids[i]), start + arrivals_s[i], name)
                if name == "small" and escalates(self.router, answer.logprobs, answer.text):
                    inflight[("large", self._add("large", ids[i]))] = i
                    continue
                if self.cache is not None:
                    answer.meta["cache"] = "miss"
                    self.cache.put(lookups.pop(i), {"tokens": answer.tokens, "text": answer.text,
                                                    "cut_off": answer.cut_off})
                out[i] = answer
        return out  # type: ignore[return-value]

    def _add(self, name: str, prompt_ids: list[int]) -> str:
        return self.managers[name].add_request(prompt_ids, max_new_tokens=self.generator.max_new_tokens,
                                               record_timestamps=True)

    def _generated(self, result, prompt_tokens: int, arrived: float, model: str) -> Generated:
        tokens = list(result.generated_tokens)
        times = [t - arrived for t in result.timestamps[: len(tokens)]]
        eos = self.generator.tokenizer.eos_token_id
        answer = Generated(tokens, self.generator.text_of(tokens), prompt_tokens, times, cut_off=eos not in tokens,
                           logprobs=list(result.logprobs[: len(tokens)]) or None)
        if self.router is not None:
            answer.meta["model"] = model
        return answer

    def close(self) -> None:
        for manager in self.managers.values():
            if manager.is_running():
                manager.stop(block=True)


def engine_for(generator: Any, serving: dict) -> Engine:
    """The engine a variant's ``serving`` runtime option names (default: one request at a time). One-at-a-time and
    static batches call the stack's own ``answer``; continuous batching takes the stack apart (its cache, its
    router's two models) and runs it per request."""
    name = serving.get("engine", "sequential")
    if name != "continuous":
        return BatchingEngine(generator, serving.get("max_batch", 8) if name == "static" else 1,
                              serving.get("max_wait_ms", 0.0) / 1e3)
    parts = layers(generator)
    return ContinuousEngine(parts["large"], serving.get("max_batch_tokens", 512), serving.get("max_memory_percent", 0.1),
                            parts["cache"], parts["small"], parts["router"], parts["compressor"],
                            serving.get("prefix_sharing", True))
