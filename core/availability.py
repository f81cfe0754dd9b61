"""Whether a plugin can run here, as a returned value: ``Availability(ok, reason)``, never an exception.

The pipeline records a step or compile target that cannot run as *skipped:
reason*; these helpers make the reasons read the same everywhere.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

from ratchet.core.variant import Variant


class Availability(NamedTuple):
    """Whether a plugin can run on this machine, and why not when it cannot (never raised, always returned)."""

    ok: bool
    reason: str = ""


def requires(who: str, *modules: str, install: str | None = None) -> Availability:
    """Available when every module imports here; else which are missing and how to install them.

    ``install`` overrides the default hint (``pip install <missing>``), e.g. for an extra of this project.
    Looks modules up without importing them, so a check costs nothing.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return Availability(True)
    return Availability(False, f"{who} needs {' and '.join(missing)} ({install or 'pip install ' + ' '.join(missing)})")


RUNTIME_NAMES = {"torch": "a PyTorch variant", "onnxruntime": "an ONNX variant (run onnx_export first)"}


def source_check(kind: str, source: Variant, *, runtime: str = "torch", float32: bool = True) -> Availability:
    """What most techniques and tracing backends ask of their source: the right runtime, unquantized and
    (``float32``) fp32 weights. One place for these reasons, so every plugin words them the same way."""
    if source.runtime != runtime:
        return Availability(False, f"{kind} needs {RUNTIME_NAMES.get(runtime, f'a {runtime} variant')}, "
                                   f"the champion runs on {source.runtime!r}")
    if source.traits.get("quantized"):
        return Availability(False, f"{kind} needs float weights, the champion is already quantized "
                                   f"({source.traits['quantized']})")
    if float32 and source.traits.get("dtype", "fp32") != "fp32":
        return Availability(False, f"{kind} needs float32 weights, the champion is {source.traits['dtype']}")
    return Availability(True)
