"""What the decode-time steps share: they change how a causal LM generates, never its weights.

The candidate is the champion's own folder with a ``decoding`` runtime option
(``ratchet.hardware.runtimes.generation``), so these steps apply to any causal
LM the torch runtime loads, after any weight step.
"""

from __future__ import annotations

from ratchet.core.availability import Availability
from ratchet.core.model_tasks import model_task
from ratchet.core.variant import Variant


def decoding_availability(kind: str, source: Variant, clashes: tuple[str, ...] = ()) -> Availability:
    """A generating PyTorch variant whose decoding does not already use an option this step sets."""
    if model_task(source.task).traceable:
        return Availability(False, f"{kind} changes how a causal LM decodes, and {source.task!r} does not generate")
    if source.runtime != "torch":
        return Availability(False, f"{kind} needs the PyTorch runtime, the champion runs on {source.runtime!r}")
    decoding = source.runtime_options.get("decoding", {})
    taken = [k for k in clashes if k in decoding]
    if taken:
        return Availability(False, f"the champion already decodes with {', '.join(taken)}")
    return Availability(True)


def with_decoding(source: Variant, **options: object) -> dict:
    """The champion's runtime options with ``options`` added to its decoding."""
    return {**source.runtime_options, "decoding": {**source.runtime_options.get("decoding", {}), **options}}


def serving_availability(kind: str, source: Variant, layer: str, already: str) -> Availability:
    """A generating PyTorch variant not yet served with this serving ``layer`` (``serving.<layer>``: a cache, a
    router, prompt compression); ``already`` says why not when it is."""
    available = decoding_availability(kind, source)
    if available.ok and layer in source.runtime_options.get("serving", {}):
        return Availability(False, already)
    return available


def with_serving(source: Variant, layer: str, settings: dict) -> dict:
    """The champion's runtime options with ``settings`` as its ``serving.<layer>``."""
    return {**source.runtime_options, "serving": {**source.runtime_options.get("serving", {}), layer: settings}}
