"""Padding-aware batching as a step: the champion's batches split into similar-length sub-batches.

No weights change: the candidate is the champion's own folder with a runtime
option (``ratchet.hardware.runtimes.length_buckets``), for any runtime. It only acts
on batches of two or more, so it can win only where the objective is measured
on batched traffic (a workload whose first batch size is above one, or the
offline scenario); at batch 1 the gate sees no speed-up and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.model_tasks import model_task
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec


class LengthBucketsSpec(TechniqueSpec):
    kind: Literal["length_buckets"] = "length_buckets"
    max_padding: float = Field(0.3, gt=0, lt=1, description="Largest share of padded positions a sub-batch may have.")


@TECHNIQUES.register("length_buckets", aliases=("padding_aware_batching",))
class LengthBuckets:
    spec_type: ClassVar[type[TechniqueSpec]] = LengthBucketsSpec

    def availability(self, spec: LengthBucketsSpec, source: Variant) -> Availability:
        if not model_task(source.task).traceable:
            return Availability(False, f"length_buckets splits batches of one row per text, and {source.task!r} "
                                       "generates text instead")
        if source.runtime_options.get("length_buckets"):
            return Availability(False, "the champion already splits its batches by length")
        return Availability(True)

    def apply(self, spec: LengthBucketsSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files; ``out_dir`` stays empty because no weights change."""
        options = {**source.runtime_options, "length_buckets": {"max_padding": spec.max_padding}}
        return source.child(spec.label, source.path, "length_buckets", spec.settings(), runtime_options=options)
