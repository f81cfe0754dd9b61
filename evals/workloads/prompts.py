"""Prompts (and unlabeled text): the eval data of a text-generation model.

A prompt may carry what an answer rubric needs: the reference answer, the
facts a right answer contains, and whether the question is answerable at all
(if not, the right answer is a refusal). Without them a generator is judged
against the baseline's own continuations (``token_agreement``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, Field

from ratchet.evals.workloads import WORKLOADS, Split, check_splits


class Prompt(BaseModel):
    id: str
    text: str
    split: Split
    reference: str = ""
    facts: list[str] = Field(default_factory=list, description="Spans a right answer contains.")
    answerable: bool = Field(True, description="False: the data does not cover the question; the answer is a refusal.")


class Question(BaseModel):
    """A user's question as traffic carries it: the question alone, the prompt the agent builds for it, and the label
    of its right answer (two questions with one label have the same right answer: what a response cache may serve)."""

    id: str
    text: str
    prompt: str
    label: str
    answerable: bool = True
    split: Split


class _File(BaseModel):
    prompts: list[Prompt] = Field(min_length=1)
    texts: list[str] = Field(default_factory=list, description="Unlabeled text a technique may calibrate on.")
    refusal: str = Field("", description="The workload's canonical refusal, if it has one.")
    questions: list[Question] = Field(default_factory=list, description="Labelled user questions: traffic and caching.")


@WORKLOADS.register("prompts")
@dataclass(frozen=True)
class PromptsWorkload:
    name: str
    prompts: list[Prompt]
    texts: list[str]
    refusal: str = ""
    questions: tuple[Question, ...] = ()
    trace: tuple = ()  # the traffic the benchmark replays (``evals.traffic.TraceRequest``), when the spec has one

    hub_parts: ClassVar[tuple[str, ...]] = ("prompts",)

    @classmethod
    def from_data(cls, data: dict, name: str) -> "PromptsWorkload":
        parsed = _File.model_validate(data)
        check_splits([p.split for p in parsed.prompts], "prompts")
        return cls(name, parsed.prompts, parsed.texts, parsed.refusal, tuple(parsed.questions))

    def eval_inputs(self) -> dict[str, list[str]]:
        return {"prompts": [p.text for p in self.prompts]}

    def split_indices(self, split: str) -> list[int]:
        return [i for i, p in enumerate(self.prompts) if p.split == split]

    def calibration_texts(self) -> list[str]:
        """The unlabeled texts and the tuning prompts."""
        return [*self.texts, *self.request_texts("tuning")]

    def request_texts(self, split: str = "tuning") -> list[str]:
        return [self.prompts[i].text for i in self.split_indices(split)]

    def labelled_questions(self, split: str) -> list[Question]:
        """The split's labelled questions (empty when the data has none)."""
        return [q for q in self.questions if q.split == split]
