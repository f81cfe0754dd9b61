"""Optimisation techniques: one module per technique, each registering itself.

A technique is Olive's ``Pass`` shape: a variant in, a new variant out. It owns
a static pydantic spec whose ``kind`` tag names it in YAML, and it reports
whether it can run here as a returned ``Availability`` (never by raising), so
the pipeline can record *skipped: reason*.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict

from registry.plugins import Registry
from tasks.variant import Variant


class Availability(NamedTuple):
    """Whether a plugin can run on this machine, and why not when it cannot."""

    ok: bool
    reason: str = ""


class TechniqueSpec(BaseModel):
    """Fields every step shares; each technique subclasses it with a ``kind`` Literal."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str | None = None

    @property
    def label(self) -> str:
        """The step's name in tables and MLflow: ``name`` if given, else the kind."""
        return self.name or self.kind

    def settings(self) -> dict:
        """The technique's own settings (what MLflow logs as params)."""
        return self.model_dump(exclude={"kind", "name"})


class Technique(Protocol):
    """What the pipeline needs from a technique."""

    spec_type: ClassVar[type[TechniqueSpec]]

    def availability(self, spec: TechniqueSpec, source: Variant) -> Availability:
        """Can this technique run here on ``source``? Never raises."""

    def apply(self, spec: TechniqueSpec, source: Variant, out_dir: Path) -> Variant:
        """Make the candidate in ``out_dir`` from ``source``."""


TECHNIQUES: Registry[type[Technique]] = Registry("step kind")


def technique_for(kind: str) -> Technique:
    """An instance of the technique registered under ``kind``."""
    return TECHNIQUES.get(kind)()
