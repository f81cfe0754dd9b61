"""Tests for ratchet.core.model_tasks: every task declares what the rest of the pipeline needs, in one place,
and every name it declares exists where it is looked up."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pytest
import transformers

from ratchet.core.model_tasks import MODEL_TASKS, model_task
from ratchet.core.plugins import UnknownPluginError
from ratchet.evals.scorers import SCORERS, EvalContext
from ratchet.evals.workloads import WORKLOADS, WorkloadError, WorkloadSpec, load_workload
from ratchet.flows.spec import SpecError, parse_spec
from ratchet.tasks.techniques._training import Loss

LABELS = ["billing", "login", "other"]


@pytest.mark.parametrize("name", MODEL_TASKS.names())
def test_every_name_a_task_declares_is_registered_where_it_is_looked_up(name: str) -> None:
    task = model_task(name)
    assert task.name == name
    assert task.workload in WORKLOADS
    assert set(task.scorers) <= set(SCORERS.names())
    assert set(task.losses) <= set(typing.get_args(Loss))
    assert hasattr(transformers, task.auto_class)
    assert (task.head is None) == (task.output_name is None), "a head's output needs a name in exported graphs"


def test_the_shipped_tasks() -> None:
    assert MODEL_TASKS.names() == ["feature-extraction", "text-classification", "text-generation"]
    assert model_task("feature-extraction").traceable and not model_task("text-generation").traceable


def test_an_unknown_task_is_a_did_you_mean(default_spec_data: dict) -> None:
    with pytest.raises(UnknownPluginError, match="did you mean 'text-generation'"):
        model_task("text-generaton")
    default_spec_data["model"]["task"] = "feature-extractoin"
    with pytest.raises(SpecError, match="model.task: unknown model task 'feature-extractoin'; did you mean"):
        parse_spec(default_spec_data)


def test_a_scorer_that_does_not_fit_the_task_names_the_ones_that_do(default_spec_data: dict) -> None:
    default_spec_data["rubric"]["criteria"].append({"name": "acc", "scorer": "accuracy"})
    with pytest.raises(SpecError, match="'accuracy' cannot score 'feature-extraction' outputs .*recall_at_k, mrr"):
        parse_spec(default_spec_data)


# --- text classification: a task with a workload and scorers of its own ----------------------------------


def classification_data() -> dict:
    texts = [("I was charged twice", "billing"), ("refund my invoice", "billing"), ("cannot sign in", "login"),
             ("password reset link expired", "login"), ("what's the weather", "other"), ("hello there", "other")]
    return {"labels": LABELS, "texts": ["an unlabeled support message"],
            "examples": [{"id": f"e{i}", "text": t, "label": y, "split": "heldout" if i % 2 else "tuning"}
                         for i, (t, y) in enumerate(texts)]}


@pytest.fixture
def classification(tmp_path: Path):
    path = tmp_path / "intents.json"
    path.write_text(json.dumps(classification_data()))
    return load_workload(WorkloadSpec(dataset=str(path)), "text-classification", tmp_path)


def test_classification_workload_reads_labelled_texts(classification) -> None:
    assert classification.eval_inputs() == {"texts": [e["text"] for e in classification_data()["examples"]]}
    assert classification.split_indices("tuning") == [0, 2, 4]
    assert classification.calibration_texts() == ["an unlabeled support message", "I was charged twice",
                                                   "cannot sign in", "what's the weather"]
    assert [classification.label_index(i) for i in range(6)] == [0, 0, 1, 1, 2, 2]


def test_classification_workload_refuses_an_unknown_label(tmp_path: Path) -> None:
    data = classification_data()
    data["examples"][0]["label"] = "shipping"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(WorkloadError, match="shipping"):
        load_workload(WorkloadSpec(dataset=str(path)), "text-classification", tmp_path)


def test_accuracy_and_label_agreement(classification) -> None:
    # rows: predicted class = argmax. Tuning examples 0, 2, 4 have labels 0, 1, 2.
    outputs = np.eye(3)[[0, 0, 2, 1, 0, 2]]  # e0 right, e2 wrong (2 vs 1), e4 wrong (0 vs 2)
    baseline = np.eye(3)[[0, 0, 1, 1, 0, 2]]  # agrees with outputs on e0 and e4, not on e2
    ctx = EvalContext(classification, "tuning", {"texts": outputs}, {"texts": baseline})
    accuracy = SCORERS.get("accuracy")().score(ctx, SCORERS.get("accuracy").params_type())
    agreement = SCORERS.get("label_agreement")().score(ctx, SCORERS.get("label_agreement").params_type())
    assert accuracy.value == pytest.approx(1 / 3)
    assert accuracy.per_example["e2"] == {"predicted": "other", "correct": False}
    assert agreement.value == pytest.approx(2 / 3)
    assert agreement.per_example["e2"] == {"agrees_with_baseline": False}


def test_a_classifier_spec_runs_its_baseline_end_to_end(tmp_path: Path, minilm_path: Path) -> None:
    """A three-class BERT classifier built from a config (random weights): the spec validates, preflight reads the
    labelled texts, and the baseline is measured and scored with the classification rubric."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ratchet.flows.ratchet import run_baseline
    from ratchet.flows.spec import preflight

    torch.manual_seed(0)
    model = tmp_path / "classifier"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=len(LABELS))
    BertForSequenceClassification(config).save_pretrained(model)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(model)
    (tmp_path / "intents.json").write_text(json.dumps(classification_data()))
    spec = parse_spec({
        "name": "intents", "model": {"id": str(model), "task": "text-classification"},
        "workload": {"dataset": str(tmp_path / "intents.json"),
                     "measurement": {"warmup_s": 0.1, "min_duration_s": 0.2, "min_queries": 64, "max_duration_s": 10}},
        "rubric": {"criteria": [{"name": "accuracy", "scorer": "accuracy"},
                                {"name": "agreement", "scorer": "label_agreement"}]},
        "registry": {"model_name": "intents"}, "workdir": str(tmp_path / "work"),
    })
    baseline = run_baseline(preflight(spec))
    assert baseline.measurement.outputs["texts"].shape == (6, len(LABELS))
    assert np.allclose(baseline.measurement.outputs["texts"].sum(axis=1), 1.0, atol=1e-5)  # softmax head
    tuning = baseline.measurement.rubric["tuning"].metrics()
    assert tuning["agreement"] == 1.0 and 0.0 <= tuning["accuracy"] <= 1.0
    assert baseline.measurement.perf["p90_ms"] > 0
