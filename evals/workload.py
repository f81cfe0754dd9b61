"""Workloads: the declared traffic and eval data a model is measured on.

``WorkloadSpec`` is what the pipeline spec declares (pure data, no I/O when
validated); ``load_workload`` reads the dataset it names. Each model task has
its own workload shape; a new task adds a loader to ``LOADERS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

SPLITS = ("tuning", "heldout")


class MeasurementSpec(BaseModel):
    """How long to measure, after MLPerf LoadGen: until both the duration and the query count are reached."""

    model_config = ConfigDict(extra="forbid")

    warmup_s: float = Field(2.0, ge=0)
    min_duration_s: float = Field(10.0, ge=0)
    min_queries: PositiveInt = Field(662, description="662 queries make a p99 reportable, 300 a p95, 64 a p90.")
    max_duration_s: float | None = Field(120.0, gt=0, description="Hard cap per scenario run (marks it truncated).")


QUICK_MEASUREMENT = MeasurementSpec(warmup_s=0.5, min_duration_s=1.0, min_queries=300, max_duration_s=30.0)


class WorkloadSpec(BaseModel):
    """The traffic a variant is measured under, and the data its quality is judged on."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="A JSON file (relative to the spec file) or 'hf:<datasets name>'.")
    scenario: Literal["single-stream", "server", "offline"] = "single-stream"
    target_qps: float | None = Field(None, gt=0, description="Poisson arrival rate for the server scenario.")
    batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    sequence_length: int = Field(128, ge=8, le=8192, description="Tokens per text; longer inputs are truncated.")
    max_new_tokens: int = Field(16, ge=1, le=4096, description="text-generation: tokens generated per request (greedy).")
    measurement: MeasurementSpec = Field(default_factory=MeasurementSpec)

    @model_validator(mode="after")
    def _server_needs_rate(self) -> "WorkloadSpec":
        if self.scenario == "server" and self.target_qps is None:
            raise ValueError("scenario 'server' needs target_qps (requests per second of the Poisson arrivals)")
        return self


class WorkloadError(ValueError):
    """The dataset named by the spec cannot be read or does not have the expected shape."""


class _Doc(BaseModel):
    id: str
    text: str
    title: str = ""


class _Query(BaseModel):
    id: str
    text: str
    relevant: list[str]
    split: Literal["tuning", "heldout"]
    kind: str = "query"


class _RetrievalFile(BaseModel):
    corpus: list[_Doc] = Field(min_length=1)
    queries: list[_Query] = Field(min_length=1)


@dataclass(frozen=True)
class RetrievalWorkload:
    """A corpus and labelled queries: the eval data of a feature-extraction (embedding) model."""

    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    queries: list[_Query]

    def eval_inputs(self) -> dict[str, list[str]]:
        """Every text the model must encode for evaluation, by input set."""
        return {"corpus": self.corpus_texts, "queries": [q.text for q in self.queries]}

    def split_indices(self, split: str) -> list[int]:
        return [i for i, q in enumerate(self.queries) if q.split == split]

    def calibration_texts(self) -> list[str]:
        """Unlabeled texts a technique may learn from: the corpus and the tuning queries, never held-out."""
        return [*self.corpus_texts, *self.request_texts("tuning")]

    def request_texts(self, split: str = "tuning") -> list[str]:
        """Payloads for the latency benchmark: the split's queries, as users would send them."""
        return [self.queries[i].text for i in self.split_indices(split)]


def _load_retrieval(data: dict, name: str) -> RetrievalWorkload:
    parsed = _RetrievalFile.model_validate(data)
    ids = {d.id for d in parsed.corpus}
    missing = sorted({r for q in parsed.queries for r in q.relevant} - ids)
    if missing:
        raise WorkloadError(f"workload.dataset: queries refer to unknown corpus ids {missing[:3]}")
    splits = {q.split for q in parsed.queries}
    if splits != set(SPLITS):
        raise WorkloadError(f"workload.dataset: needs queries in both splits {SPLITS}, found {sorted(splits)}")
    return RetrievalWorkload(
        name=name,
        corpus_ids=[d.id for d in parsed.corpus],
        corpus_texts=[f"{d.title} {d.text}".strip() for d in parsed.corpus],
        queries=parsed.queries,
    )


class _Prompt(BaseModel):
    id: str
    text: str
    split: Literal["tuning", "heldout"]
    reference: str = ""


class _GenerationFile(BaseModel):
    prompts: list[_Prompt] = Field(min_length=1)
    texts: list[str] = Field(default_factory=list, description="Unlabeled text a technique may calibrate on.")


@dataclass(frozen=True)
class GenerationWorkload:
    """Prompts (and unlabeled text): the eval data of a text-generation model, judged against the baseline's
    own continuations."""

    name: str
    prompts: list[_Prompt]
    texts: list[str]

    def eval_inputs(self) -> dict[str, list[str]]:
        return {"prompts": [p.text for p in self.prompts]}

    def split_indices(self, split: str) -> list[int]:
        return [i for i, p in enumerate(self.prompts) if p.split == split]

    def calibration_texts(self) -> list[str]:
        """The unlabeled texts and the tuning prompts, never held-out ones."""
        return [*self.texts, *self.request_texts("tuning")]

    def request_texts(self, split: str = "tuning") -> list[str]:
        return [self.prompts[i].text for i in self.split_indices(split)]


def _load_generation(data: dict, name: str) -> GenerationWorkload:
    parsed = _GenerationFile.model_validate(data)
    splits = {p.split for p in parsed.prompts}
    if splits != set(SPLITS):
        raise WorkloadError(f"workload.dataset: needs prompts in both splits {SPLITS}, found {sorted(splits)}")
    return GenerationWorkload(name=name, prompts=parsed.prompts, texts=parsed.texts)


Workload = RetrievalWorkload | GenerationWorkload
LOADERS: dict[str, Callable[[dict, str], Workload]] = {
    "feature-extraction": _load_retrieval,
    "text-generation": _load_generation,
}
# The configs a ``datasets`` name must have for each task (each becomes the JSON file's key of that name).
HUB_PARTS: dict[str, tuple[str, ...]] = {"feature-extraction": ("corpus", "queries"), "text-generation": ("prompts",)}


def resolve_dataset(dataset: str, base_dir: Path) -> Path:
    path = Path(dataset).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def load_workload(spec: WorkloadSpec, task: str, base_dir: Path) -> Workload:
    """Read and check the dataset for ``task``; every problem is a one-line ``WorkloadError``."""
    if task not in LOADERS:
        raise WorkloadError(f"model.task: no workload loader for task {task!r} yet (have: {', '.join(LOADERS)})")
    if spec.dataset.startswith("hf:"):
        data = _from_datasets(spec.dataset[3:], HUB_PARTS[task])
        name = spec.dataset
    else:
        path = resolve_dataset(spec.dataset, base_dir)
        if not path.is_file():
            raise WorkloadError(f"workload.dataset: file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WorkloadError(f"workload.dataset: {str(path)!r} is not valid JSON ({exc})") from None
        name = path.stem
    try:
        return LOADERS[task](data, name)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WorkloadError(f"workload.dataset: {where}: {err['msg']}") from None


def _from_datasets(name: str, parts: tuple[str, ...]) -> dict:
    """A Hub dataset with one config per part (``corpus`` and ``queries``, or ``prompts``), through ``datasets``."""
    try:
        from datasets import load_dataset

        return {part: list(load_dataset(name, part, split="train")) for part in parts}
    except Exception as exc:  # offline, unknown name, wrong layout: all are input problems
        raise WorkloadError(f"workload.dataset: cannot load datasets name {name!r} ({str(exc).splitlines()[0]})") from None
