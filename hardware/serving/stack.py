"""The serving stack a variant's ``serving`` options describe, around its loaded model.

Order matters and is fixed: the response cache answers first (a hit never
reaches a model), then the router picks the model, then the engine
(``hardware.runtimes.serving``) schedules what reaches it.
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
    if "cache" in serving:
        from ratchet.hardware.serving.cache import CachedGenerator, CacheSettings, ResponseCache

        served = CachedGenerator(served, ResponseCache(CacheSettings(**serving["cache"])))
    return served
