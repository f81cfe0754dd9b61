"""Batching as a step: serve the champion with static batches or with continuous batching.

Batching changes throughput and queueing, not the model, so it can only win
where requests wait for each other: the server scenario (open-loop arrivals at
the workload's ``target_qps``, ``ratchet.hardware.runtimes.serving``). Under
single-stream traffic the gate sees no speed-up and says so. Continuous
batching runs the model in a batch that requests join and leave between
decode steps, with paged attention; its answers are judged by the rubric like
any step's (batched kernels may round differently).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import decoding_availability


class BatchingSpec(TechniqueSpec):
    kind: Literal["batching"] = "batching"
    engine: Literal["continuous", "static"] = "continuous"
    max_batch: int = Field(8, ge=2, le=256, description="static: most requests in one batch.")
    max_wait_ms: float = Field(0.0, ge=0, le=60_000, description="static: how long an idle engine waits for a batch "
                                                                  "to fill (dynamic batching); 0: take what has "
                                                                  "arrived.")
    max_batch_tokens: int = Field(512, ge=16, le=65536, description="continuous: tokens per forward pass.")
    max_memory_percent: float = Field(0.1, gt=0, le=0.9, description="continuous: share of free memory the paged KV "
                                                                     "cache may take.")
    prefix_sharing: bool = Field(True, description="continuous: prefix caching (requests with the same prompt "
                                                   "prefix, e.g. the same retrieved context, share its KV blocks).")


@TECHNIQUES.register("batching", aliases=("continuous_batching", "static_batching"))
class Batching:
    spec_type: ClassVar[type[TechniqueSpec]] = BatchingSpec

    def availability(self, spec: BatchingSpec, source: Variant) -> Availability:
        available = decoding_availability(f"{spec.engine} batching", source)
        if not available.ok:
            return available
        if source.runtime_options.get("serving", {}).get("engine") == spec.engine:
            return Availability(False, f"the champion is already served with {spec.engine} batching")
        decoding = source.runtime_options.get("decoding", {})
        if spec.engine == "continuous" and decoding:
            return Availability(False, f"continuous batching runs plain greedy decoding; the champion decodes with "
                                       f"{', '.join(sorted(decoding))}")
        return Availability(True)

    def apply(self, spec: BatchingSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files, served by another engine; ``out_dir`` stays empty."""
        serving = ({"engine": "continuous", "max_batch_tokens": spec.max_batch_tokens,
                    "max_memory_percent": spec.max_memory_percent, "prefix_sharing": spec.prefix_sharing}
                   if spec.engine == "continuous"
                   else {"engine": "static", "max_batch": spec.max_batch, "max_wait_ms": spec.max_wait_ms})
        options = {**source.runtime_options, "serving": {**source.runtime_options.get("serving", {}), **serving}}
        return source.child(spec.label, source.path, "batching", spec.settings(), runtime_options=options)
