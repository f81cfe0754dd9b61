"""Ranking shared by the retrieval scorers: where each query's first relevant doc lands."""

from __future__ import annotations

import numpy as np

from ratchet.evals.scorers import EvalContext


def answerable(ctx: EvalContext) -> list[int]:
    """Indices of the split's queries that have at least one relevant document."""
    return [i for i in ctx.workload.split_indices(ctx.split) if ctx.workload.queries[i].relevant]


def first_relevant_ranks(ctx: EvalContext) -> dict[str, tuple[int, list[str]]]:
    """Per answerable query id: 1-based rank of its first relevant doc, and the top-5 doc ids.

    Embeddings are L2-normalised, so the dot product is the cosine similarity.
    """
    idx = answerable(ctx)
    wl = ctx.workload
    scores = ctx.outputs["queries"][idx] @ ctx.outputs["corpus"].T
    order = np.argsort(-scores, axis=1, kind="stable")
    corpus_ids = np.asarray(wl.corpus_ids)
    result: dict[str, tuple[int, list[str]]] = {}
    for row, qi in enumerate(idx):
        query = wl.queries[qi]
        ranked = corpus_ids[order[row]]
        hits = np.flatnonzero(np.isin(ranked, query.relevant))
        result[query.id] = (int(hits[0]) + 1, ranked[:5].tolist())
    return result
