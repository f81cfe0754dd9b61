"""Labelled texts: the eval data of a text classifier (each text's class, by the name the model's labels use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, Field

from ratchet.evals.workloads import WORKLOADS, Split, WorkloadError, check_splits


class LabelledText(BaseModel):
    id: str
    text: str
    label: str
    split: Split


class _File(BaseModel):
    labels: list[str] = Field(min_length=2, description="Class names, in the order of the model's outputs.")
    examples: list[LabelledText] = Field(min_length=1)
    texts: list[str] = Field(default_factory=list, description="Unlabeled text a technique may calibrate on.")


@WORKLOADS.register("classification")
@dataclass(frozen=True)
class ClassificationWorkload:
    name: str
    labels: list[str]
    examples: list[LabelledText]
    texts: list[str]

    hub_parts: ClassVar[tuple[str, ...]] = ("labels", "examples")

    @classmethod
    def from_data(cls, data: dict, name: str) -> "ClassificationWorkload":
        parsed = _File.model_validate(data)
        unknown = sorted({e.label for e in parsed.examples} - set(parsed.labels))
        if unknown:
            raise WorkloadError(f"workload.dataset: examples use labels {unknown[:3]} that are not in labels")
        check_splits([e.split for e in parsed.examples], "examples")
        return cls(name, parsed.labels, parsed.examples, parsed.texts)

    def label_index(self, i: int) -> int:
        """The class index of example ``i`` (its position in ``labels``)."""
        return self.labels.index(self.examples[i].label)

    def eval_inputs(self) -> dict[str, list[str]]:
        return {"texts": [e.text for e in self.examples]}

    def split_indices(self, split: str) -> list[int]:
        return [i for i, e in enumerate(self.examples) if e.split == split]

    def calibration_texts(self) -> list[str]:
        """The unlabeled texts and the tuning examples' texts (their labels are not given to techniques)."""
        return [*self.texts, *self.request_texts("tuning")]

    def request_texts(self, split: str = "tuning") -> list[str]:
        return [self.examples[i].text for i in self.split_indices(split)]
