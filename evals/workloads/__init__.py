"""Workloads: the declared traffic and eval data a model is measured on, one module per data shape.

``WorkloadSpec`` is what the pipeline spec declares (pure data, no I/O when
validated); ``load_workload`` reads the dataset it names with the loader its
model task declares (``ratchet.core.model_tasks``). A loader is a frozen
dataclass registered in ``WORKLOADS`` with a ``from_data(data, name)``
constructor and the ``hub_parts`` a ``datasets`` name must provide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator, model_validator

from ratchet.core.model_tasks import model_task
from ratchet.core.plugins import Registry, unknown_name_message
from ratchet.hardware.benchmark.generation_stats import SLO_METRICS

SPLITS = ("tuning", "heldout")
Split = Literal["tuning", "heldout"]


class MeasurementSpec(BaseModel):
    """How long to measure, after MLPerf LoadGen: until both the duration and the query count are reached."""

    model_config = ConfigDict(extra="forbid")

    warmup_s: float = Field(2.0, ge=0)
    min_duration_s: float = Field(10.0, ge=0)
    min_queries: PositiveInt = Field(662, description="662 queries make a p99 reportable, 300 a p95, 64 a p90.")
    max_duration_s: float | None = Field(120.0, gt=0, description="Hard cap per scenario run (marks it truncated).")


QUICK_MEASUREMENT = MeasurementSpec(warmup_s=0.5, min_duration_s=1.0, min_queries=300, max_duration_s=30.0)


class TrafficSpec(BaseModel):
    """The requests the server scenario replays: a trace file, or one generated from the workload's labelled
    questions (``ratchet.evals.traffic`` says what each setting shapes)."""

    model_config = ConfigDict(extra="forbid")

    trace: str | None = Field(None, description="A JSONL trace (relative to the spec file); else one is generated.")
    requests: int = Field(600, ge=10, le=1_000_000)
    zipf_s: float = Field(1.0, gt=0, le=4)
    paraphrase_share: float = Field(0.5, ge=0, le=1)
    typo_share: float = Field(0.3, ge=0, le=1)
    unique_share: float = Field(0.15, ge=0, le=1)
    burstiness: float = Field(1.0, gt=0, le=10)
    tenants: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    split: Split = "tuning"
    seed: int = 0


class WorkloadSpec(BaseModel):
    """The traffic a variant is measured under, and the data its quality is judged on."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="A JSON file (relative to the spec file) or 'hf:<datasets name>'.")
    scenario: Literal["single-stream", "server", "offline"] = "single-stream"
    target_qps: float | None = Field(None, gt=0, description="Poisson arrival rate for the server scenario.")
    batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    sequence_length: int = Field(128, ge=8, le=8192, description="Tokens per text; longer inputs are truncated.")
    max_new_tokens: int = Field(16, ge=1, le=4096, description="text-generation: tokens generated per request (greedy).")
    slo: dict[str, PositiveFloat] = Field(default_factory=dict, description=(
        "text-generation: service-level objectives per request (ttft_ms, tpot_ms, e2e_ms); goodput is the share "
        "of requests meeting all of them."))
    measurement: MeasurementSpec = Field(default_factory=MeasurementSpec)
    traffic: TrafficSpec | None = Field(None, description=(
        "text-generation: the requests the benchmark replays (a JSONL trace, or one generated from the dataset's "
        "labelled questions), open-loop at target_qps in the server scenario."))

    @field_validator("slo")
    @classmethod
    def _known_slo_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name not in SLO_METRICS:
                raise ValueError(unknown_name_message("SLO metric", name, list(SLO_METRICS)))
        return value

    @model_validator(mode="after")
    def _server_needs_rate(self) -> "WorkloadSpec":
        if self.scenario == "server" and self.target_qps is None:
            raise ValueError("scenario 'server' needs target_qps (requests per second of the Poisson arrivals)")
        return self


class WorkloadError(ValueError):
    """The dataset named by the spec cannot be read or does not have the expected shape."""


class Workload(Protocol):
    """What the pipeline asks of any workload's data."""

    name: str
    hub_parts: ClassVar[tuple[str, ...]]  # the configs a ``datasets`` name must have (one JSON key each)

    @classmethod
    def from_data(cls, data: dict[str, Any], name: str) -> "Workload": ...

    def eval_inputs(self) -> dict[str, list[str]]:
        """Every text the model must process for evaluation, by input set."""

    def split_indices(self, split: str) -> list[int]:
        """Positions of the split's examples in its input set."""

    def calibration_texts(self) -> list[str]:
        """Unlabeled texts a technique may learn from: never held-out ones, so the final gate stays honest."""

    def request_texts(self, split: str = "tuning") -> list[str]:
        """Payloads for the latency benchmark, as users would send them."""


WORKLOADS: Registry[type[Workload]] = Registry("workload")


def check_splits(found: Sequence[str], what: str) -> None:
    """Both splits must be present: techniques learn from tuning, the final gate judges on held-out."""
    if set(found) != set(SPLITS):
        raise WorkloadError(f"workload.dataset: needs {what} in both splits {SPLITS}, found {sorted(set(found))}")


def resolve_dataset(dataset: str, base_dir: Path) -> Path:
    path = Path(dataset).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def load_workload(spec: WorkloadSpec, task: str, base_dir: Path) -> Workload:
    """Read and check the dataset for ``task``; every problem is a one-line ``WorkloadError``."""
    loader = WORKLOADS.get(model_task(task).workload)
    if spec.dataset.startswith("hf:"):
        data = _from_datasets(spec.dataset[3:], loader.hub_parts)
        name = spec.dataset
    else:
        path = resolve_dataset(spec.dataset, base_dir)
        if not path.is_file():
            raise WorkloadError(f"workload.dataset: file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WorkloadError(f"workload.dataset: {str(path)!r} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise WorkloadError(f"workload.dataset: {str(path)!r} holds a {type(data).__name__}, expected an object")
        name = path.stem
    try:
        workload = loader.from_data(data, name)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WorkloadError(f"workload.dataset: {where}: {err['msg']}") from None
    if spec.traffic is None:
        return workload
    from ratchet.evals.traffic import load_traffic

    if not hasattr(workload, "questions"):
        raise WorkloadError(f"workload.traffic: replaying traffic needs a prompts workload (text-generation), not a "
                            f"{model_task(task).workload!r} one")
    return replace(workload, trace=tuple(load_traffic(spec.traffic, workload.questions, spec.target_qps or 1.0,
                                                      base_dir)))


def _from_datasets(name: str, parts: tuple[str, ...]) -> dict:
    """A Hub dataset with one config per part (e.g. ``corpus`` and ``queries``), through ``datasets``."""
    try:
        from datasets import load_dataset

        return {part: list(load_dataset(name, part, split="train")) for part in parts}
    except Exception as exc:  # offline, unknown name, wrong layout: all are input problems
        raise WorkloadError(f"workload.dataset: cannot load datasets name {name!r} ({str(exc).splitlines()[0]})") from None

