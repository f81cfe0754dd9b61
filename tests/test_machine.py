"""Tests for ratchet.hardware.benchmark.machine: what a measurement records about the machine, and pinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ratchet.core.profile import HardwareSpec
from ratchet.flows.spec import SpecError, parse_spec, preflight
from ratchet.hardware.benchmark.machine import cpu_model, fingerprint


def test_the_fingerprint_names_the_cpu_cores_threads_and_runtime_versions() -> None:
    print_ = fingerprint(HardwareSpec(threads=2, cpus=[0]))
    assert print_["cpu"] == cpu_model() and print_["cores"] == os.cpu_count()
    assert print_["threads"] == 2 and print_["cpus"] == [0]
    assert {"torch", "onnxruntime", "transformers"} <= set(print_["packages"])
    assert fingerprint(HardwareSpec(threads=1)) != fingerprint(HardwareSpec(threads=2))  # part of every cache key


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux facility")
def test_a_worker_pins_itself_to_the_declared_cores() -> None:
    """Run in a process of its own: affinity is inherited, and this test must not pin the test runner."""
    probe = ("import json; from ratchet.core.profile import HardwareSpec; "
             "from ratchet.hardware.benchmark.machine import pin; print(json.dumps(pin(HardwareSpec(cpus=[0]))))")
    out = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert out == {"cpus": [0], "pinned": True, "threads_requested": None}


def test_cores_that_do_not_exist_are_a_one_line_error_before_any_work(default_spec_data: dict) -> None:
    default_spec_data["hardware"]["cpus"] = [0, 4096]
    with pytest.raises(SpecError, match=r"hardware.cpus: cores \[4096\] are not available here"):
        preflight(parse_spec(default_spec_data))
