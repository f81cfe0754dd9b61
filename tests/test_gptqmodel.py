"""GPTQ and AWQ through GPT-QModel, in its own environment, on the project's tiny causal LM.

The tiny LM is trained in a few seconds on the shipped support text (random
weights would make greedy continuations noise). Each method quantizes it for
real inside the ``gptqmodel`` environment (built on first use, about a minute),
the 4-bit checkpoint is measured there too, and the step is gated like any
other. Marked ``slow`` for the environment build.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from safetensors import safe_open

from ratchet.core.variant import Variant, size_mb
from ratchet.flows.ratchet import evaluate_step, gate_step, run_baseline, try_step
from ratchet.tasks.records import RatchetState, StepRecord
from ratchet.flows.spec import Prepared, SpecError, parse_spec, preflight
from ratchet.tasks.techniques._gptqmodel import calibration_chunks
from ratchet.tasks.techniques.awq import Awq, AwqSpec
from ratchet.tasks.techniques.gptq import Gptq, GptqSpec
from ratchet.tasks.tiny_lm import build_tiny_lm, build_tokenizer, training_texts

ROOT = Path(__file__).resolve().parents[1]
BUDGET = {"warmup_s": 0.2, "min_duration_s": 0.5, "min_queries": 300, "max_duration_s": 30}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def spec_data(model: Path, steps: list[dict], workdir: str) -> dict:
    return {
        "name": "tiny-lm-4bit", "model": {"id": str(model), "task": "text-generation"},
        "workload": {"dataset": str(ROOT / "evals" / "data" / "support_prompts.json"), "batch_sizes": [1],
                     "sequence_length": 64, "max_new_tokens": 16, "measurement": BUDGET},
        "rubric": {"criteria": [{"name": "agreement", "scorer": "token_agreement", "threshold": 0.3}]},
        "targets": [{"metric": "agreement", "min": 0.3}],
        "steps": steps, "registry": {"model_name": "tiny-lm"}, "workdir": workdir,
    }


@pytest.fixture(scope="module")
def pipeline(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Prepared, RatchetState]:
    steps = [{"kind": "gptq", "group_size": 64}, {"kind": "awq", "group_size": 64}]
    prepared = preflight(parse_spec(spec_data(tiny_lm, steps, str(tmp_path_factory.mktemp("work")))))
    return prepared, RatchetState.start(run_baseline(prepared))


def quantize(pipeline, index: int) -> StepRecord:
    prepared, state = pipeline
    record = try_step(prepared, state.baseline.variant, prepared.spec.steps[index])
    assert record.decision == "measured", record.reason
    return gate_step(prepared, state, evaluate_step(prepared, state.baseline, record))


def linear_tensors(folder: Path) -> dict[str, str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {k: f.get_slice(k).get_dtype() for k in f.keys() if ".layers.0.mlp.up_proj." in k}


@pytest.mark.slow
@pytest.mark.parametrize(("index", "method"), [(0, "gptq"), (1, "awq")])
def test_4bit_quantization_packs_the_linears_stays_close_and_is_gated(pipeline, tiny_lm: Path, index: int, method: str) -> None:
    record = quantize(pipeline, index)
    variant = record.variant
    assert variant.environment == "gptqmodel" and variant.traits["quantized"] == f"int4-{method}"
    config = json.loads((variant.path / "config.json").read_text())["quantization_config"]
    assert config["bits"] == 4 and config["group_size"] == 64 and config["quant_method"] == method
    before, after = linear_tensors(tiny_lm), linear_tensors(variant.path)
    assert set(before) == {"model.layers.0.mlp.up_proj.weight"}
    assert {"model.layers.0.mlp.up_proj.qweight", "model.layers.0.mlp.up_proj.scales"} <= set(after)
    assert after["model.layers.0.mlp.up_proj.qweight"] == "I32"  # eight 4-bit weights per int32
    assert size_mb(variant.path) < size_mb(tiny_lm)

    heldout = record.measurement.rubric["heldout"]
    examples = heldout.examples
    first_token_kept = sum(e["first_divergence"] != 0 for e in examples) / len(examples)
    assert heldout.metrics()["agreement"] > 0.3 and first_token_kept >= 0.8, (heldout.metrics(), first_token_kept)
    gate = record.gate
    assert record.decision in ("accepted", "rejected") and gate is not None
    assert {c.metric for c in gate.criteria} >= {"agreement", "p95_ms"}
    assert record.decision == ("accepted" if gate.passed else "rejected") and record.reason == gate.reason


def test_causal_lm_techniques_refuse_other_tasks_and_shapes_their_kernels_cannot_take(tiny_lm: Path) -> None:
    lm = Variant(name="lm", path=tiny_lm, task="text-generation", traits={"dtype": "fp32"})
    assert Gptq().availability(GptqSpec(group_size=64), lm).ok and Awq().availability(AwqSpec(group_size=64), lm).ok
    embedder = lm.model_copy(update={"task": "feature-extraction"})
    assert "causal LMs" in Gptq().availability(GptqSpec(), embedder).reason
    odd = {"hidden_size": 96, "intermediate_size": 256, "num_attention_heads": 4}
    with pytest.raises(ValueError, match=r"group_size 64 does not divide the Linear input sizes \[96\]"):
        Gptq().preflight(GptqSpec(group_size=64), odd)
    with pytest.raises(ValueError, match="divisible by 64"):
        Awq().preflight(AwqSpec(group_size=32), odd)
    quantized = lm.model_copy(update={"traits": {"quantized": "int8"}})
    assert "already quantized" in Awq().availability(AwqSpec(), quantized).reason


@pytest.mark.parametrize(("step", "needle"), [
    ({"kind": "gptq", "bits": 5}, "steps.0.gptq.bits"),
    ({"kind": "awq", "bits": 8}, "steps.0.awq.bits"),
    ({"kind": "gptq", "group_size": 0}, "steps.0.gptq.group_size"),
    ({"kind": "gptq", "group_size": 48}, "group_size 48 does not divide"),
])
def test_bad_settings_fail_validation_in_one_line(tiny_lm: Path, step: dict, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        preflight(parse_spec(spec_data(tiny_lm, [step], tempfile.mkdtemp())))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_calibration_is_equal_length_chunks_of_the_tuning_text() -> None:
    texts = training_texts()
    tokenizer = build_tokenizer(texts, 512)
    chunks = calibration_chunks(tokenizer, texts, 32, 10)
    assert len(chunks) == 10 and {len(c["input_ids"]) for c in chunks} == {32}
    assert all(c["attention_mask"] == [1] * 32 for c in chunks)
    with pytest.raises(ValueError, match="no"):
        calibration_chunks(tokenizer, [], 32, 10)
