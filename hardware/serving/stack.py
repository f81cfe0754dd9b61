"""The serving stack a variant's ``serving`` options describe, around its loaded model.

Order matters and is fixed: the response cache answers first (a hit never
reaches a model), then the prompt is compressed, then the router picks the
model, then the engine (``hardware.runtimes.serving``) schedules what
reaches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import Shape


def serving_stack(generator: Any, variant: Variant, hardware: HardwareSpec, shape: Shape) -> Any:
    """``generator`` behind the router and the response cache the variant declares (each optional)."""
    serving = variant.runtime_options.get("serving", {})
    served = generator
    if "router" in serving:
        from ratchet.hardware.runtimes.generation import TorchGenerator
        from ratchet.hardware.serving.routing import RoutedGenerator, RouterSettings

        settings = RouterSettings(**serving["router"])
        small = Variant(name="small", path=Path(settings.small), task=variant.task)
        served = RoutedGenerator(served, TorchGenerator(small, shape, hardware.device, logprobs=True), settings)
    if "compression" in serving:
        from ratchet.hardware.serving.compression import CompressedGenerator, CompressionSettings, Compressor

        served = CompressedGenerator(served, Compressor(CompressionSettings(**serving["compression"])))
    if "cache" in serving:
        from ratchet.hardware.serving.cache import CachedGenerator, CacheSettings, ResponseCache

        served = CachedGenerator(served, ResponseCache(CacheSettings(**serving["cache"])))
    return served


def layers(stack: Any) -> dict[str, Any]:
    """The parts of a serving stack, for an engine that runs them per request itself (continuous batching):
    ``cache``, ``compressor``, ``router`` (settings), ``small`` and ``large`` generators; absent parts are None."""
    from ratchet.hardware.serving.cache import CachedGenerator
    from ratchet.hardware.serving.compression import CompressedGenerator
    from ratchet.hardware.serving.routing import RoutedGenerator

    parts: dict[str, Any] = dict.fromkeys(("cache", "compressor", "router", "small"))
    if isinstance(stack, CachedGenerator):
        parts["cache"], stack = stack.cache, stack.generator
    if isinstance(stack, CompressedGenerator):
        parts["compressor"], stack = stack.compressor, stack.generator
    if isinstance(stack, RoutedGenerator):
        parts["router"], parts["small"], stack = stack.settings, stack.small, stack.large
    parts["large"] = stack
    return parts
