"""The support QA data and the answer rubric: each scorer on answers whose right score is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ratchet.evals.rubric import RubricSpec, score_rubric
from ratchet.evals.scorers import SCORERS, EvalContext
from ratchet.evals.support_qa import OUT, REFUSAL, answer_of, build, facts_of
from ratchet.evals.workloads.prompts import PromptsWorkload


def test_shipped_qa_data_is_what_the_builder_derives_from_the_faq() -> None:
    assert json.loads(OUT.read_text()) == build()


def test_qa_data_has_both_splits_refusals_and_facts() -> None:
    data = build()
    prompts = data["prompts"]
    assert {p["split"] for p in prompts} == {"tuning", "heldout"}
    refusals = [p for p in prompts if not p["answerable"]]
    assert refusals and all(p["reference"] == REFUSAL and not p["facts"] for p in refusals)
    assert all(p["facts"] for p in prompts if p["answerable"])
    heldout_questions = {p["text"].split("Question: ")[1] for p in prompts if p["split"] == "heldout"}
    assert not any(q in t for t in data["texts"] for q in heldout_questions), "a held-out question is in training text"
    # the answer is copied from the context the prompt carries
    assert all(p["reference"] in p["text"] for p in prompts if p["answerable"])


def test_answer_and_facts_of_an_faq_entry() -> None:
    entry = ('How do I reset my password? Click "Forgot password" and we send a link valid for 60 minutes. '
             "Then sign in.")
    assert answer_of(entry) == 'Click "Forgot password" and we send a link valid for 60 minutes.'
    assert facts_of(answer_of(entry)) == ["60 minutes", "Forgot password"]
    assert facts_of("Go to Profile > Account and choose Change email.") == ["Profile > Account"]


def _workload() -> PromptsWorkload:
    prompts = [
        {"id": "a", "text": "q a", "split": "heldout", "reference": "Reset links stay valid for 60 minutes.",
         "facts": ["60 minutes"]},
        {"id": "b", "text": "q b", "split": "heldout", "reference": "Go to Profile > Account and choose Change email.",
         "facts": ["Profile > Account", "Change email"]},
        {"id": "c", "text": "q c", "split": "heldout", "reference": REFUSAL, "answerable": False},
        {"id": "d", "text": "q d", "split": "tuning", "reference": "x", "facts": ["x"]},
    ]
    return PromptsWorkload.from_data({"prompts": prompts, "refusal": REFUSAL}, "t")


def _score(scorer: str, answers: list[str], **params) -> tuple[float, dict]:
    ctx = EvalContext(_workload(), "heldout", {"prompts.text": np.array(answers)}, {})
    impl = SCORERS.get(scorer)()
    result = impl.score(ctx, impl.params_type.model_validate(params))
    return result.value, result.per_example


def test_required_facts_counts_each_fact_on_answerable_prompts_only() -> None:
    value, rows = _score("required_facts", ["The link lasts 60 minutes.", "Open your settings page.", "Sorry"])
    assert rows["a"]["facts_found"] == 1.0
    assert rows["b"]["facts_found"] == 0.0  # neither "Profile > Account" nor "Change email" is said
    assert "c" not in rows
    assert value == pytest.approx(0.5)


def test_exact_match_normalizes_case_punctuation_and_articles() -> None:
    value, rows = _score("exact_match", ["reset links stay valid for 60 minutes", "Go to Profile.", REFUSAL.upper()])
    assert [rows[k]["exact_match"] for k in "abc"] == [1.0, 0.0, 1.0]
    only, _ = _score("exact_match", ["no", "no", REFUSAL], only="unanswerable")
    assert only == 1.0


def test_rouge_l_is_one_for_the_reference_and_lower_for_a_partial_answer() -> None:
    _, rows = _score("rouge_l", ["Reset links stay valid for 60 minutes.", "Go to Profile.", "bananas"])
    assert rows["a"]["rouge_l"] == pytest.approx(1.0)
    assert 0.0 < rows["b"]["rouge_l"] < 1.0
    assert rows["c"]["rouge_l"] == 0.0


def test_semantic_similarity_ranks_a_paraphrase_above_an_unrelated_answer() -> None:
    answers = ["Your reset link works for one hour.", "Bananas are yellow fruit.", REFUSAL]
    _, rows = _score("semantic_similarity", answers)
    assert rows["a"]["similarity"] > rows["b"]["similarity"] + 0.2
    assert rows["c"]["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_length_bound() -> None:
    value, rows = _score("length_bound", ["one two three", "", "a " * 100], min_words=1, max_words=10)
    assert [rows[k]["within_length"] for k in "abc"] == [1.0, 0.0, 0.0]
    assert value == pytest.approx(1 / 3)


def test_refusal_is_balanced_over_answerable_and_unanswerable_prompts() -> None:
    right, rows = _score("refusal", ["Links last 60 minutes.", "Profile > Account.", "Sorry, I cannot help with that."])
    assert right == 1.0 and rows["c"]["refused"] and not rows["a"]["refused"]
    refuse_all, _ = _score("refusal", [REFUSAL] * 3)
    assert refuse_all == pytest.approx(0.5)  # every unanswerable one refused, every answerable one too
    answer_all, _ = _score("refusal", ["Links last 60 minutes."] * 3)
    assert answer_all == pytest.approx(0.5)


def test_answer_scorers_say_when_the_outputs_have_no_text() -> None:
    ctx = EvalContext(_workload(), "heldout", {"prompts": np.zeros((4, 3), dtype=np.int64)}, {})
    with pytest.raises(ValueError, match="generated text"):
        SCORERS.get("rouge_l")().score(ctx, SCORERS.get("rouge_l").params_type())


METRIC_SCRIPT = '''
import datasets
import evaluate


class WordOverlap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="share of reference words said", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        shares = [len(set(p.lower().split()) & set(r.lower().split())) / len(set(r.lower().split()))
                  for p, r in zip(predictions, references)]
        return {"overlap": sum(shares) / len(shares)}
'''


def test_hf_evaluate_runs_a_local_metric_script(tmp_path: Path) -> None:
    pytest.importorskip("evaluate")
    script = tmp_path / "word_overlap.py"
    script.write_text(METRIC_SCRIPT)
    reference_answers = ["Reset links stay valid for 60 minutes.", "Go to Profile > Account and choose Change email.",
                         REFUSAL]
    value, _ = _score("hf_evaluate", reference_answers, metric=str(script), key="overlap")
    assert value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not 'f1'"):
        _score("hf_evaluate", reference_answers, metric=str(script), key="f1")


def test_rubric_of_answer_criteria_weighs_them() -> None:
    rubric = RubricSpec.model_validate({"criteria": [
        {"name": "facts", "scorer": "required_facts", "weight": 3},
        {"name": "refusal", "scorer": "refusal", "weight": 1},
    ]})
    answers = np.array(["Links last 60 minutes.", "Open Profile > Account, then Change email.", REFUSAL, "x"])
    result = score_rubric(rubric, EvalContext(_workload(), "heldout", {"prompts.text": answers}, {}))
    assert result.metrics() == {"rubric_score": pytest.approx(1.0), "facts": 1.0, "refusal": 1.0}
