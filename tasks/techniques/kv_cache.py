"""The KV cache as a step: a static (preallocated) cache, optionally with ``torch.compile``, or a quantized one.

``transformers`` grows a dynamic cache by concatenation at every token; a
static cache is allocated once at the full length, which gives ``torch.compile``
fixed shapes to specialise on (its documented fast path for decoding). A
quantized cache stores keys and values in 2 or 4 bits to fit longer contexts
or more requests in memory, through ``optimum-quanto`` or HQQ: where neither is
installed the step is skipped and says what to install. Greedy output is
unchanged by a static cache (``exact_outputs``); a quantized cache may change
it, so it is judged by the rubric like a weight change.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import decoding_availability, with_decoding

QUANTIZED_BACKENDS = {"quanto": ("optimum.quanto", "optimum-quanto"), "hqq": ("hqq", "hqq")}


class KvCacheSpec(TechniqueSpec):
    kind: Literal["kv_cache"] = "kv_cache"
    cache: Literal["static", "quantized"] = "static"
    compile: bool = Field(False, description="static: run the forward pass under torch.compile (fixed shapes).")
    backend: Literal["quanto", "hqq"] = Field("quanto", description="quantized: the quantization library.")
    nbits: Literal[2, 4] = Field(4, description="quantized: bits per cached key/value.")


@TECHNIQUES.register("kv_cache", aliases=("static_cache", "quantized_cache"))
class KvCache:
    spec_type: ClassVar[type[TechniqueSpec]] = KvCacheSpec

    def exact_outputs(self, spec: KvCacheSpec) -> bool:
        """A static cache computes what the dynamic one does; a quantized one approximates it."""
        return spec.cache == "static"

    def availability(self, spec: KvCacheSpec, source: Variant) -> Availability:
        available = decoding_availability("kv_cache", source, ("cache_implementation",))
        if not available.ok or spec.cache == "static":
            return available
        module, package = QUANTIZED_BACKENDS[spec.backend]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return Availability(False, f"a quantized KV cache with backend {spec.backend!r} needs {package}: "
                                       f"pip install {package}")
        return Availability(True)

    def apply(self, spec: KvCacheSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files with another cache; ``out_dir`` stays empty because no weights change."""
        if spec.cache == "static":
            compiled = {"compile": True} if spec.compile else {}
            options = with_decoding(source, cache_implementation="static", **compiled)
        else:
            options = with_decoding(source, cache_implementation="quantized",
                                    cache_config={"backend": spec.backend, "nbits": spec.nbits})
        return source.child(spec.label, source.path, "kv_cache", spec.settings(), runtime_options=options)
