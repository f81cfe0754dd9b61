"""Tests for ratchet.evals.rubric and the retrieval scorers on a tiny workload with hand-placed embeddings.

Corpus embeddings are the unit axes e1..e4, so a query's score against doc i is its i-th
coordinate and every rank below is known by construction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from ratchet.evals.rubric import CriterionSpec, RubricSpec, score_rubric
from ratchet.evals.scorers import SCORERS, EvalContext
from ratchet.evals.workloads import WorkloadError
from ratchet.evals.workloads.retrieval import RetrievalWorkload

DATA = {
    "corpus": [
        {"id": "d1", "title": "Reset", "text": "reset your password"},
        {"id": "d2", "text": "change billing plan"},
        {"id": "d3", "text": "export data"},
        {"id": "d4", "text": "delete account"},
    ],
    "queries": [
        {"id": "q1", "text": "forgot password", "relevant": ["d1"], "split": "tuning"},  # rank 1
        {"id": "q2", "text": "upgrade plan", "relevant": ["d2"], "split": "tuning"},  # rank 2
        {"id": "q3", "text": "download csv", "relevant": ["d3", "d4"], "split": "tuning"},  # rank 3
        {"id": "q4", "text": "weather today", "relevant": [], "split": "tuning", "kind": "no_match"},
        {"id": "q5", "text": "close account", "relevant": ["d4"], "split": "heldout"},  # rank 1
        {"id": "q6", "text": "pwd reset", "relevant": ["d1"], "split": "heldout"},  # rank 2
    ],
}


def unit(*coords: float) -> np.ndarray:
    v = np.asarray(coords, dtype=float)
    return v / np.linalg.norm(v)


CORPUS = np.eye(4)
QUERIES = np.stack([
    unit(1.0, 0.1, 0.0, 0.0),  # q1: d1 first
    unit(0.8, 0.6, 0.0, 0.0),  # q2: d1, then d2
    unit(0.7, 0.6, 0.4, 0.3),  # q3: d1, d2, then d3 (first relevant; d4 is 4th)
    unit(0.0, 0.0, 0.0, 1.0),  # q4: no relevant doc at all
    unit(0.1, 0.0, 0.0, 0.9),  # q5: d4 first
    unit(0.5, 0.0, 0.0, 0.9),  # q6: d4, then d1
])


@pytest.fixture
def workload() -> RetrievalWorkload:
    return RetrievalWorkload.from_data(DATA, "tiny")


def ctx(workload: RetrievalWorkload, split: str = "tuning", queries: np.ndarray | None = None,
        reference: np.ndarray | None = None) -> EvalContext:
    """An evaluation context; the candidate and reference share the corpus embeddings."""
    q = QUERIES if queries is None else queries
    ref = QUERIES if reference is None else reference
    return EvalContext(workload, split, {"corpus": CORPUS, "queries": q}, {"corpus": CORPUS, "queries": ref})


def run(scorer: str, context: EvalContext, **params: object):
    cls = SCORERS.get(scorer)
    return cls().score(context, cls.params_type.model_validate(params))


def test_workload_fixture_shape(workload: RetrievalWorkload) -> None:
    assert workload.corpus_ids == ["d1", "d2", "d3", "d4"]
    assert workload.corpus_texts[0] == "Reset reset your password"
    assert workload.split_indices("tuning") == [0, 1, 2, 3]
    assert workload.split_indices("heldout") == [4, 5]
    assert workload.request_texts("heldout") == ["close account", "pwd reset"]


def test_loader_rejects_unknown_relevant_id() -> None:
    bad = {**DATA, "queries": [*DATA["queries"], {"id": "q7", "text": "x", "relevant": ["d9"], "split": "tuning"}]}
    with pytest.raises(WorkloadError, match="d9"):
        RetrievalWorkload.from_data(bad, "bad")


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 3), (2, 2 / 3), (3, 1.0), (5, 1.0)])
def test_recall_at_k_tuning(workload: RetrievalWorkload, k: int, expected: float) -> None:
    """Tuning ranks are 1, 2, 3 over three answerable queries."""
    result = run("recall_at_k", ctx(workload), k=k)
    assert result.value == pytest.approx(expected)
    assert set(result.per_example) == {"q1", "q2", "q3"}
    assert [result.per_example[q]["rank"] for q in ("q1", "q2", "q3")] == [1, 2, 3]
    assert result.per_example["q3"][f"recall@{k}"] == float(k >= 3)
    assert result.per_example["q2"]["top5"][:2] == ["d1", "d2"]


def test_recall_at_k_heldout(workload: RetrievalWorkload) -> None:
    assert run("recall_at_k", ctx(workload, "heldout"), k=1).value == pytest.approx(0.5)
    assert run("recall_at_k", ctx(workload, "heldout"), k=2).value == pytest.approx(1.0)


def test_mrr_values(workload: RetrievalWorkload) -> None:
    held = run("mrr", ctx(workload, "heldout"))
    assert held.value == pytest.approx(0.75)  # ranks 1 and 2
    assert held.per_example == {"q5": {"mrr": pytest.approx(1.0)}, "q6": {"mrr": pytest.approx(0.5)}}
    assert run("mrr", ctx(workload)).value == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def test_no_match_queries_excluded_from_recall_and_mrr(workload: RetrievalWorkload) -> None:
    """q4 has no relevant doc: it neither counts as a miss nor appears per example, whatever its embedding."""
    moved = QUERIES.copy()
    moved[3] = unit(1.0, 1.0, 1.0, 1.0)
    for queries in (QUERIES, moved):
        recall = run("recall_at_k", ctx(workload, queries=queries), k=3)
        mrr = run("mrr", ctx(workload, queries=queries))
        assert recall.value == pytest.approx(1.0)
        assert mrr.value == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
        assert "q4" not in recall.per_example and "q4" not in mrr.per_example


def test_multiple_relevant_docs_use_the_first_hit(workload: RetrievalWorkload) -> None:
    """q3 lists d3 and d4; its rank is that of whichever relevant doc ranks higher."""
    queries = QUERIES.copy()
    queries[2] = unit(0.7, 0.6, 0.3, 0.4)  # now d4 (relevant) is 3rd and d3 is 4th
    assert run("recall_at_k", ctx(workload, queries=queries), k=3).per_example["q3"]["rank"] == 3


def test_fidelity_identical_outputs_is_one(workload: RetrievalWorkload) -> None:
    result = run("fidelity_cosine", ctx(workload))
    assert result.value == pytest.approx(1.0)
    assert set(result.per_example) == {"q1", "q2", "q3", "q4"}  # every split query, no_match included
    assert all(row["cosine_to_baseline"] == pytest.approx(1.0) for row in result.per_example.values())


def test_fidelity_perturbed_is_below_one(workload: RetrievalWorkload) -> None:
    """Rotating q1 by 60 degrees gives cosine 0.5 for it and 1 for the other three tuning queries."""
    cand = QUERIES.copy()
    cand[0] = unit(1.0, 0.0, 0.0, 0.0)
    ref = QUERIES.copy()
    ref[0] = unit(math.cos(math.pi / 3), math.sin(math.pi / 3), 0.0, 0.0)
    result = run("fidelity_cosine", ctx(workload, queries=cand, reference=ref))
    assert result.value == pytest.approx((0.5 + 3) / 4)
    assert result.per_example["q1"]["cosine_to_baseline"] == pytest.approx(0.5)


def test_fidelity_ignores_scale_and_other_split(workload: RetrievalWorkload) -> None:
    """Cosine is scale-free, and perturbing a heldout query does not change the tuning score."""
    cand = QUERIES * 3.0
    cand[4] = unit(1.0, 0.0, 0.0, 0.0)
    assert run("fidelity_cosine", ctx(workload, queries=cand)).value == pytest.approx(1.0)
    assert run("fidelity_cosine", ctx(workload, "heldout", queries=cand)).value < 0.99


def test_fidelity_opposite_outputs_clip_to_zero(workload: RetrievalWorkload) -> None:
    assert run("fidelity_cosine", ctx(workload, queries=-QUERIES)).value == 0.0


def _rubric(weights: tuple[float, float, float], thresholds: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> RubricSpec:
    return RubricSpec.model_validate({"criteria": [
        {"name": "recall_at_1", "scorer": "recall", "params": {"k": 1}, "weight": weights[0], "threshold": thresholds[0]},
        {"name": "mrr", "scorer": "mrr", "weight": weights[1], "threshold": thresholds[1]},
        {"name": "fidelity", "scorer": "fidelity_cosine", "weight": weights[2], "threshold": thresholds[2]},
    ]})


def test_weighted_rubric_score(workload: RetrievalWorkload) -> None:
    """Heldout: recall@1 = 0.5, MRR = 0.75, fidelity = 1; score = (2*0.5 + 1*0.75 + 1*1) / 4."""
    result = score_rubric(_rubric((2.0, 1.0, 1.0)), ctx(workload, "heldout"))
    assert [(c.name, c.scorer) for c in result.criteria] == [
        ("recall_at_1", "recall_at_k"), ("mrr", "mrr"), ("fidelity", "fidelity_cosine")]
    assert [c.value for c in result.criteria] == pytest.approx([0.5, 0.75, 1.0])
    assert result.score == pytest.approx((2 * 0.5 + 0.75 + 1.0) / 4)
    assert result.split == "heldout"
    assert result.metrics() == pytest.approx({"rubric_score": 0.6875, "recall_at_1": 0.5, "mrr": 0.75, "fidelity": 1.0})


def test_zero_weight_criterion_does_not_count(workload: RetrievalWorkload) -> None:
    result = score_rubric(_rubric((0.0, 1.0, 1.0)), ctx(workload, "heldout"))
    assert result.score == pytest.approx((0.75 + 1.0) / 2)


def test_criterion_pass_fail_against_threshold(workload: RetrievalWorkload) -> None:
    """A value exactly at its threshold passes; the rubric passes only if every criterion does."""
    result = score_rubric(_rubric((1, 1, 1), thresholds=(0.5, 0.8, 0.9)), ctx(workload, "heldout"))
    assert [c.passed for c in result.criteria] == [True, False, True]
    assert not result.passed
    assert score_rubric(_rubric((1, 1, 1), thresholds=(0.5, 0.75, 1.0)), ctx(workload, "heldout")).passed


def test_per_example_rows_merged_by_query_id(workload: RetrievalWorkload) -> None:
    result = score_rubric(_rubric((1, 1, 1)), ctx(workload))
    rows = {row["id"]: row for row in result.examples}
    assert set(rows) == {"q1", "q2", "q3", "q4"}
    for qid, rank in (("q1", 1), ("q2", 2), ("q3", 3)):
        row = rows[qid]
        assert {"recall@1", "rank", "top5", "mrr", "cosine_to_baseline"} <= set(row)
        assert row["rank"] == rank
        assert row["mrr"] == pytest.approx(1 / rank)
        assert row["recall@1"] == float(rank == 1)
    assert set(rows["q4"]) == {"id", "cosine_to_baseline"}


@pytest.mark.parametrize(
    ("scorer", "params", "fragment"),
    [
        ("recall_at_k", {"k": 0}, "greater than or equal to 1"),
        ("recall_at_k", {"k": 5, "depth": 3}, "Extra inputs"),
        ("recall_at_k", {"k": "five"}, "integer"),
        ("mrr", {"k": 5}, "Extra inputs"),
        ("fidelity_cosine", {"normalise": True}, "Extra inputs"),
    ],
)
def test_invalid_scorer_params_rejected_at_validation(scorer: str, params: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        CriterionSpec.model_validate({"name": "c", "scorer": scorer, "params": params})


def test_criterion_spec_resolves_alias_and_rejects_unknown_scorer() -> None:
    assert CriterionSpec.model_validate({"name": "r", "scorer": "recall"}).scorer == "recall_at_k"
    with pytest.raises(ValidationError, match="did you mean 'mrr'"):
        CriterionSpec.model_validate({"name": "r", "scorer": "mrrr"})


@pytest.mark.parametrize(
    ("criteria", "fragment"),
    [
        ([], "at least 1"),
        ([{"name": "a", "scorer": "mrr", "weight": 0}], "sum to a positive number"),
        ([{"name": "a", "scorer": "mrr"}, {"name": "a", "scorer": "fidelity"}], "unique"),
        ([{"name": "a", "scorer": "mrr", "threshold": 1.5}], "less than or equal to 1"),
        ([{"name": "a", "scorer": "mrr", "weight": -1}], "greater than or equal to 0"),
    ],
)
def test_invalid_rubric_rejected(criteria: list[dict], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RubricSpec.model_validate({"criteria": criteria})
