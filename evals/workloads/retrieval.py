"""Retrieval: a corpus and labelled queries, the eval data of an embedding (feature-extraction) model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, Field

from ratchet.evals.workloads import WORKLOADS, Split, WorkloadError, check_splits


class Doc(BaseModel):
    id: str
    text: str
    title: str = ""


class Query(BaseModel):
    id: str
    text: str
    relevant: list[str]
    split: Split
    kind: str = "query"


class _File(BaseModel):
    corpus: list[Doc] = Field(min_length=1)
    queries: list[Query] = Field(min_length=1)


@WORKLOADS.register("retrieval")
@dataclass(frozen=True)
class RetrievalWorkload:
    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    queries: list[Query]

    hub_parts: ClassVar[tuple[str, ...]] = ("corpus", "queries")

    @classmethod
    def from_data(cls, data: dict, name: str) -> "RetrievalWorkload":
        parsed = _File.model_validate(data)
        ids = {d.id for d in parsed.corpus}
        missing = sorted({r for q in parsed.queries for r in q.relevant} - ids)
        if missing:
            raise WorkloadError(f"workload.dataset: queries refer to unknown corpus ids {missing[:3]}")
        check_splits([q.split for q in parsed.queries], "queries")
        return cls(name, [d.id for d in parsed.corpus], [f"{d.title} {d.text}".strip() for d in parsed.corpus],
                   parsed.queries)

    def eval_inputs(self) -> dict[str, list[str]]:
        return {"corpus": self.corpus_texts, "queries": [q.text for q in self.queries]}

    def split_indices(self, split: str) -> list[int]:
        return [i for i, q in enumerate(self.queries) if q.split == split]

    def calibration_texts(self) -> list[str]:
        """The corpus and the tuning queries."""
        return [*self.corpus_texts, *self.request_texts("tuning")]

    def request_texts(self, split: str = "tuning") -> list[str]:
        """The split's queries, as users would send them."""
        return [self.queries[i].text for i in self.split_indices(split)]
