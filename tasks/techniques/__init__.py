"""Optimisation techniques: one module per technique, each registering itself.

A technique is Olive's ``Pass`` shape: a variant in, a new variant out. It owns
a static pydantic spec whose ``kind`` tag names it in YAML, and it reports
whether it can run here as a returned ``Availability`` (never by raising), so
the pipeline can record *skipped: reason*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratchet.core.availability import Availability
from ratchet.core.plugins import Registry
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.evals.workloads.prompts import Question

MAX_SEARCH_CANDIDATES = 8


class TechniqueSpec(BaseModel):
    """Fields every step shares; each technique subclasses it with a ``kind`` Literal.

    ``search`` makes a step a small, bounded search (Olive-style): each listed
    field takes each listed value, every combination is measured against the
    same champion, and the best one that passes its gate wins.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,=+\[\]\-]+$", description="Label in tables, MLflow and folder names.")
    search: dict[str, list[Any]] | None = Field(None, description="field -> values to try; at most 8 combinations")

    @model_validator(mode="after")
    def _search_is_valid(self) -> "TechniqueSpec":
        if not self.search:
            return self
        own = set(type(self).model_fields) - {"kind", "name", "search"}
        unknown = sorted(set(self.search) - own)
        if unknown:
            raise ValueError(f"search: {unknown} are not settings of {self.kind!r} (settings: {sorted(own)})")
        if any(not values for values in self.search.values()):
            raise ValueError("search: every searched setting needs at least one value")
        count = math.prod(len(v) for v in self.search.values())
        if count > MAX_SEARCH_CANDIDATES:
            raise ValueError(f"search: {count} combinations, at most {MAX_SEARCH_CANDIDATES} are measured")
        self.candidates()  # each combination must itself be a valid spec
        return self

    @property
    def label(self) -> str:
        """The step's name in tables and MLflow: ``name`` if given, else the kind."""
        return self.name or self.kind

    def settings(self) -> dict:
        """The technique's own settings (what MLflow logs as params)."""
        return self.model_dump(exclude={"kind", "name", "search"})

    def candidates(self) -> list["TechniqueSpec"]:
        """The specs this step measures: itself, or one per search combination (named after it)."""
        if not self.search:
            return [self]
        keys = list(self.search)
        out = []
        for values in itertools.product(*(self.search[k] for k in keys)):
            tag = ",".join(f"{k}={_short(v)}" for k, v in zip(keys, values))
            data = {**self.model_dump(exclude={"search"}), **dict(zip(keys, values)), "name": f"{self.label}[{tag}]"}
            out.append(type(self).model_validate(data))
        return out


def _short(value: Any) -> str:
    """A setting's value as it appears in a candidate's name: ``true``, ``default`` (None), ``MatMul+Attention``."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "+".join(_short(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class TechniqueContext:
    """What a technique may use besides the source variant.

    ``texts`` are the workload's unlabeled tuning texts (corpus and tuning
    queries): calibration, sensitivity ranking and distillation data. The
    held-out split is never in it, so the final gate stays honest.
    """

    texts: list[str]
    sequence_length: int
    hardware: HardwareSpec
    on_progress: Callable[[str, int, int], None] | None = None
    questions: tuple[Question, ...] = ()  # labelled tuning questions: what serving steps tune thresholds on
    max_new_tokens: int = 16  # text-generation: the workload's answer length

    def progress(self, phase: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(phase, done, total)


class Technique(Protocol):
    """What the pipeline needs from a technique.

    A technique may also declare ``enabling: ClassVar[bool] = True``: a representation change (an export) that
    later steps build on, gated on quality and on not being slower, without a required speed-up; and
    ``exact_outputs(spec) -> bool``: True when the candidate must produce the champion's outputs exactly (a
    decoding method that is lossless under greedy decoding), which the gate then checks; and
    ``limits(spec) -> list[TargetSpec]``: bounds of the step's own (a response cache's false-hit rate) that its
    gate holds like quality targets.
    """

    spec_type: ClassVar[type[TechniqueSpec]]

    def availability(self, spec: TechniqueSpec, source: Variant) -> Availability:
        """Can this technique run here on ``source``? Never raises."""

    def apply(self, spec: TechniqueSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """Make the candidate in ``out_dir`` from ``source``."""


TECHNIQUES: Registry[type[Technique]] = Registry("step kind")


def technique_for(kind: str) -> Technique:
    """An instance of the technique registered under ``kind``."""
    return TECHNIQUES.get(kind)()
