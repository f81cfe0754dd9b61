"""What machine a measurement was taken on, and pinning a worker to the threads and cores the spec declares.

A measurement is evidence only on the machine that took it: the fingerprint
(CPU model, core count, the versions of the packages that run the models, the
thread setting) goes into every cache key, so a cached result from another
machine, or from the same machine after an upgrade, is never reused.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ratchet.core.profile import HardwareSpec

RUNTIME_PACKAGES = ("torch", "onnxruntime", "transformers", "openvino", "jax")


@cache
def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def fingerprint(hardware: HardwareSpec) -> dict[str, Any]:
    """The facts a measurement depends on besides the model and the workload."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": hardware.threads, "cpus": hardware.cpus,
            "packages": {p: v for p in RUNTIME_PACKAGES if (v := _version(p))}}


def pin(hardware: HardwareSpec) -> dict[str, Any]:
    """Pin this process to ``hardware.cpus`` (where the OS allows it) and say which cores it may use.

    Thread counts are set by each runtime from ``hardware.threads`` when it loads (``torch.set_num_threads``,
    ONNX Runtime's intra-op threads, OpenVINO's inference threads).
    """
    pinned = False
    if hardware.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, hardware.cpus)
        pinned = True
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpus": cores, "pinned": pinned, "threads_requested": hardware.threads}


def threads_used() -> int | None:
    """The intra-op threads of PyTorch in this process, when it is loaded (ONNX Runtime's are what was requested)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
