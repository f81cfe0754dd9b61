"""The pipeline spec: the one way configuration enters Ratchet.

``PipelineSpec`` is a static pydantic model composed of each area's own spec
(workload, rubric, targets, hardware, steps, registry). Validation is pure (no
file or network access), so ``ratchet run`` fails on bad input before any
compute; ``preflight`` then does the checks that need I/O (model folder,
dataset), still before any run is started or anything is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from ratchet.core.model_tasks import MODEL_TASKS, model_task
from ratchet.core.plugins import unknown_name_message
from ratchet.core.profile import HardwareSpec
from ratchet.evals.rubric import RubricSpec
from ratchet.evals.workloads import QUICK_MEASUREMENT, Workload, WorkloadError, WorkloadSpec, load_workload
from ratchet.flows.report import ReferenceSpec
from ratchet.hardware.backends import BACKENDS
from ratchet.registry.spec import RegistrySpec
from ratchet.tasks.gate import METRICS, OBJECTIVES, GatePolicy, NoiseSpec, TargetSpec
from ratchet.tasks.model_source import ModelSourceError, resolve_model
from ratchet.tasks.techniques import TECHNIQUES, technique_for

QUICK_PAIRS = 4  # pairs of blocks per comparison under --quick: enough for a CI, not for a tight one


def _canonical_tag(tag: str, registry: Any) -> BeforeValidator:
    """Resolve an item's ``tag`` through ``registry`` (aliases) before the union sees it, so an unknown name
    is reported with a did-you-mean at the item's own position instead of as a bare tag mismatch."""
    def canonical(item: Any) -> Any:
        if isinstance(item, dict) and isinstance(item.get(tag), str):
            return {**item, tag: registry.canonical(item[tag])}
        return item

    return BeforeValidator(canonical)


StepSpec = Annotated[Union[tuple(t.spec_type for _, t in TECHNIQUES.items())], Field(discriminator="kind"),
                     _canonical_tag("kind", TECHNIQUES)]
TargetSpecs = Annotated[Union[tuple(b.spec_type for _, b in BACKENDS.items())], Field(discriminator="target"),
                        _canonical_tag("target", BACKENDS)]


class SpecError(ValueError):
    """Invalid user input: the message is one line naming the field, the value and what was expected."""


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Hugging Face id or local folder of safetensors weights.")
    revision: str | None = None
    task: str = Field("feature-extraction", description="The model task (ratchet.core.model_tasks).",
                      json_schema_extra={"enum": MODEL_TASKS.names()})
    trust_remote_code: bool = Field(False, description="Execute the model repo's own code. Off unless you trust it.")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return MODEL_TASKS.canonical(value)


class PipelineSpec(BaseModel):
    """A whole Ratchet run: the model, how it is measured and judged, and what to try."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    model: ModelSpec
    workload: WorkloadSpec
    rubric: RubricSpec
    targets: list[TargetSpec] = Field(default_factory=list)
    objective: str = Field("p95_ms", description="The metric each step must improve beyond noise.")
    noise: NoiseSpec = Field(default_factory=NoiseSpec)
    hardware: HardwareSpec = Field(default_factory=HardwareSpec)
    steps: list[StepSpec] = Field(default_factory=list)  # type: ignore[valid-type]
    compile: list[TargetSpecs] = Field(default_factory=list, description="Targets the champion is compiled for.")  # type: ignore[valid-type]
    registry: RegistrySpec
    workdir: str = Field(".ratchet", description="Where variants and measurements are written.")
    reference: ReferenceSpec | None = Field(None, description="Published figures the report holds the run against.")

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: str) -> str:
        return _choose(value, OBJECTIVES)

    @model_validator(mode="after")
    def _blocks_fit_objective(self) -> "PipelineSpec":
        self.noise.check_objective(self.objective)
        return self

    @model_validator(mode="after")
    def _scorers_fit_task(self) -> "PipelineSpec":
        fits = model_task(self.model.task).scorers
        for i, criterion in enumerate(self.rubric.criteria):
            if criterion.scorer not in fits:
                raise ValueError(f"rubric.criteria.{i}.scorer: {criterion.scorer!r} cannot score {self.model.task!r} "
                                 f"outputs (scorers for that task: {', '.join(fits)})")
        return self

    @model_validator(mode="after")
    def _targets_name_metrics(self) -> "PipelineSpec":
        known = [*METRICS, *(c.name for c in self.rubric.criteria)]
        for i, target in enumerate(self.targets):
            try:
                _choose(target.metric, known)
            except ValueError as exc:
                raise ValueError(f"targets.{i}.metric: {exc}") from None
        for field, items in (("steps", self.steps), ("compile", self.compile)):
            labels = [item.label for item in items]
            dupes = sorted({n for n in labels if labels.count(n) > 1})
            if dupes:
                raise ValueError(f"{field}: names must be unique (name repeated kinds or targets), repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _reference_names_steps(self) -> "PipelineSpec":
        if self.reference is None:
            return self
        known = ["baseline", *(s.label for s in self.steps), *(s.kind for s in self.steps)]
        for i, row in enumerate(self.reference.rows):
            if row.step not in known:
                raise ValueError(f"reference.rows.{i}.step: "
                                 f"{unknown_name_message('step', row.step, sorted(set(known)))}")
        return self

    def gate_policy(self) -> GatePolicy:
        """How this spec judges candidates, in one object the gates take."""
        return GatePolicy(tuple(self.targets), {c.name: c.threshold for c in self.rubric.criteria},
                          self.objective, self.noise)


def _choose(value: str, known: Any) -> str:
    if value not in known:
        raise ValueError(unknown_name_message("metric", value, known))
    return value


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: where, what was wrong, what was given (plus how many other errors)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    shown = "" if isinstance(given, (dict, list)) or given is None or repr(given) in msg else f" (got {given!r})"
    more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return f"{source}: {loc + ': ' if loc else ''}{msg}{shown}{more}"


def parse_spec(data: Any, source: str = "spec", base_dir: Path | None = None) -> PipelineSpec:
    """Validate a spec mapping; relative file paths are made absolute against ``base_dir``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of spec fields at the top level, got {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from None
    return _absolute_paths(spec, base_dir) if base_dir else spec


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate a YAML spec file."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"spec file {str(path)!r} does not exist")
    if not path.is_file():
        raise SpecError(f"spec {str(path)!r} is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, OSError) as exc:
        raise SpecError(f"{path}: cannot read the spec as UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_spec(data, str(path), path.resolve().parent)


def _absolute_paths(spec: PipelineSpec, base_dir: Path) -> PipelineSpec:
    """Inputs (dataset, local model folders starting with ./ or ~) are relative to the spec file.

    Outputs (``workdir``, a relative SQLite tracking URI) stay relative to where ``ratchet`` runs.
    """
    def rebase(value: str) -> str:
        return str((base_dir / Path(value).expanduser()).resolve())

    workload = spec.workload
    if not workload.dataset.startswith("hf:"):
        workload = workload.model_copy(update={"dataset": rebase(workload.dataset)})
    if workload.traffic is not None and workload.traffic.trace is not None:
        traffic = workload.traffic.model_copy(update={"trace": rebase(workload.traffic.trace)})
        workload = workload.model_copy(update={"traffic": traffic})
    model = spec.model
    if model.id.startswith((".", "~")):
        model = model.model_copy(update={"id": rebase(model.id)})
    return spec.model_copy(update={"workload": workload, "model": model})


def with_quick_measurement(spec: PipelineSpec) -> PipelineSpec:
    """Small measurement budgets for smoke tests (p95 stays reportable, p99 does not; comparisons of 4 pairs)."""
    return spec.model_copy(update={"workload": spec.workload.model_copy(update={"measurement": QUICK_MEASUREMENT}),
                                   "noise": spec.noise.model_copy(update={"pairs": min(spec.noise.pairs, QUICK_PAIRS)})})


@dataclass(frozen=True)
class Prepared:
    """A spec whose files have been found and read, and its gate policy: safe to start computing."""

    spec: PipelineSpec
    model_path: Path
    workload: Workload
    policy: GatePolicy


def preflight(spec: PipelineSpec) -> Prepared:
    """The checks that need I/O, done before any compute or tracking write."""
    try:
        model_path = resolve_model(spec.model.id, spec.model.revision)
        workload = load_workload(spec.workload, spec.model.task, Path.cwd())
        model_config = json.loads((model_path / "config.json").read_text())
    except (ModelSourceError, WorkloadError) as exc:
        raise SpecError(f"{spec.name}: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"{spec.name}: model.id: {str(model_path / 'config.json')!r} is not valid JSON ({exc})") from None
    check = model_task(spec.model.task).check_config
    problem = check(model_config) if check else None
    if problem:
        raise SpecError(f"{spec.name}: model.id: {spec.model.id!r}: {problem}")
    check_steps_against_model(spec, model_config, model_path)
    check_cpus(spec)
    return Prepared(spec, model_path, workload, spec.gate_policy())


def check_cpus(spec: PipelineSpec) -> None:
    """The cores the workers are to be pinned to must exist for this process."""
    if not spec.hardware.cpus or not hasattr(os, "sched_getaffinity"):
        return
    usable = sorted(os.sched_getaffinity(0))
    missing = sorted(set(spec.hardware.cpus) - set(usable))
    if missing:
        raise SpecError(f"{spec.name}: hardware.cpus: cores {missing} are not available here (usable: {usable})")


def check_steps_against_model(spec: PipelineSpec, model_config: dict, model_path: Path | None = None) -> None:
    """Settings that only make sense for this model (e.g. a student smaller than its teacher, a draft model with
    the model's tokenizer).

    A technique opts in with ``preflight(spec, model_config)`` and, when it must read files beside the config,
    ``preflight_files(spec, model_path)``, each raising ValueError.
    """
    for i, step in enumerate(spec.steps):
        technique = technique_for(step.kind)
        for candidate in step.candidates():
            try:
                if hasattr(technique, "preflight"):
                    technique.preflight(candidate, model_config)
                if model_path is not None and hasattr(technique, "preflight_files"):
                    technique.preflight_files(candidate, model_path)
            except (ValueError, ModelSourceError) as exc:
                raise SpecError(f"{spec.name}: steps.{i} ({candidate.label}): {exc}") from None
