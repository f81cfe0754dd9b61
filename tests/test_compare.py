"""Tests for ratchet.tasks.compare on real variants: MiniLM in PyTorch against its ONNX export (about twice as fast
on these machines), each loaded in its own warm worker, measured in interleaved blocks. On the machine as it is and
while busy-looping processes load it, the gate's verdict is "faster" or "inconclusive", never "slower"."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest

from ratchet.core.layout import PROJECT_ROOT
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.evals.workloads import MeasurementSpec, WorkloadSpec, load_workload
from ratchet.flows.benchmarks.stability import background_load
from ratchet.tasks.compare import compare_variants
from ratchet.tasks.gate import Evidence, GatePolicy, NoiseSpec
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.onnx_export import OnnxExport, OnnxExportSpec

pytestmark = pytest.mark.slow
NOISE = NoiseSpec(pairs=4, block_queries=60)
SPEC = WorkloadSpec(dataset=str(PROJECT_ROOT / "evals" / "data" / "support_faq.json"),
                    measurement=MeasurementSpec(warmup_s=0.5))


@pytest.fixture(scope="module")
def onnx(minilm: Variant, tmp_path_factory: pytest.TempPathFactory) -> Variant:
    out = tmp_path_factory.mktemp("onnx")
    ctx = TechniqueContext([], 128, HardwareSpec())
    return OnnxExport().apply(OnnxExportSpec(), minilm, out, ctx)


@pytest.fixture(scope="module")
def workload():
    return load_workload(SPEC, "feature-extraction", PROJECT_ROOT)


@pytest.mark.parametrize("loaded", [False, True], ids=["as-is", "under-load"])
def test_the_verdict_is_faster_or_inconclusive_never_slower(minilm: Variant, onnx: Variant, workload, loaded: bool,
                                                             tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    with background_load(2) if loaded else nullcontext():
        comparison = compare_variants(minilm, onnx, "champion", HardwareSpec(), SPEC, workload, NOISE, tmp_path,
                                      lambda phase, done, total, note=None: seen.append((phase, done, total)))
    assert comparison.error is None
    assert len(comparison.blocks["reference"]) == len(comparison.blocks["candidate"]) == 4
    assert all(len(block) == 60 for side in comparison.blocks.values() for block in side)
    assert set(comparison.ratios) == {"p50", "p90", "p95", "mean"}  # a block p99 needs 200 queries
    assert seen[-1] == ("paired vs champion", 8, 8)  # the bar ends full
    ready = comparison.machine["reference"]
    assert ready["threads"] >= 1 and ready["cpus"] and comparison.machine["fingerprint"]["cpu"]
    decision = GatePolicy((), {}, "p95_ms", NOISE).step(Evidence({}), Evidence({}), comparison)
    assert decision.passed or decision.inconclusive, decision.reason
    if decision.passed:
        assert comparison.ratios["p95"].high < 1.0


def test_a_worker_that_cannot_load_makes_a_failed_comparison_with_the_reason(minilm: Variant, workload,
                                                                              tmp_path: Path) -> None:
    broken = minilm.child("broken", tmp_path / "missing", "x", {})
    comparison = compare_variants(minilm, broken, "champion", HardwareSpec(), SPEC, workload, NOISE, tmp_path)
    assert comparison.ratios == {} and "paired comparison failed" in comparison.error
