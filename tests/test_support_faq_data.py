"""Schema and coverage checks for the shipped support-FAQ retrieval dataset (no model needed)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

DATA_PATH = Path(__file__).resolve().parents[1] / "evals" / "data" / "support_faq.json"
KINDS = {"paraphrase", "typo", "no_match"}
SPLITS = {"tuning", "heldout"}


@pytest.fixture(scope="module")
def data() -> dict:
    with DATA_PATH.open(encoding="utf-8") as f:
        return json.load(f)


def test_top_level_schema(data):
    assert set(data) == {"name", "description", "corpus", "queries"}
    assert data["name"] == "support-faq"
    assert isinstance(data["description"], str) and data["description"].strip()
    assert DATA_PATH.stat().st_size < 1_000_000


def test_corpus_entries(data):
    corpus = data["corpus"]
    assert len(corpus) >= 160
    for doc in corpus:
        assert set(doc) == {"id", "title", "text"}
        assert doc["id"].startswith("faq-")
        assert isinstance(doc["title"], str) and doc["title"].strip()
        assert isinstance(doc["text"], str) and doc["text"].strip()
    ids = [doc["id"] for doc in corpus]
    assert len(set(ids)) == len(ids), "duplicate corpus ids"
    titles = [doc["title"].lower() for doc in corpus]
    assert len(set(titles)) == len(titles), "duplicate corpus titles"
    texts = [doc["text"] for doc in corpus]
    assert len(set(texts)) == len(texts), "duplicate corpus texts"


def test_query_entries(data):
    queries = data["queries"]
    assert len(queries) >= 360
    for q in queries:
        assert set(q) == {"id", "text", "relevant", "kind", "split"}
        assert q["id"].startswith("q-")
        assert isinstance(q["text"], str) and q["text"].strip()
        assert isinstance(q["relevant"], list)
        assert q["kind"] in KINDS
        assert q["split"] in SPLITS
    ids = [q["id"] for q in queries]
    assert len(set(ids)) == len(ids), "duplicate query ids"
    texts = [q["text"].strip().lower() for q in queries]
    assert len(set(texts)) == len(texts), "duplicate query texts"


def test_relevance_labels(data):
    corpus_ids = {doc["id"] for doc in data["corpus"]}
    for q in data["queries"]:
        if q["kind"] == "no_match":
            assert q["relevant"] == [], q["id"]
        else:
            assert q["relevant"], q["id"]
            assert len(set(q["relevant"])) == len(q["relevant"]), q["id"]
            unknown = set(q["relevant"]) - corpus_ids
            assert not unknown, f"{q['id']} points at unknown ids {unknown}"


def test_every_faq_is_targeted(data):
    targeted = {doc_id for q in data["queries"] for doc_id in q["relevant"]}
    missing = {doc["id"] for doc in data["corpus"]} - targeted
    assert not missing, f"FAQs never targeted: {sorted(missing)}"


def test_kind_counts(data):
    kinds = Counter(q["kind"] for q in data["queries"])
    assert kinds["paraphrase"] >= 200
    assert kinds["typo"] >= 70
    assert kinds["no_match"] >= 50


def test_splits_balanced_and_cover_every_kind(data):
    queries = data["queries"]
    per_split = Counter(q["split"] for q in queries)
    for split in SPLITS:
        share = per_split[split] / len(queries)
        assert 0.45 <= share <= 0.55, f"{split} holds {share:.1%} of queries"
        kinds_here = {q["kind"] for q in queries if q["split"] == split}
        assert kinds_here == KINDS, f"{split} lacks kinds {KINDS - kinds_here}"
