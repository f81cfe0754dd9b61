"""A variant: one candidate model on disk, plus how to run it and where it came from.

A variant is a folder of model files plus this description: which runtime loads
it and with which options, and its lineage. The description travels as JSON (to
worker processes, into MLflow, as ``variant.json`` beside the files a technique
writes), never as a pickle. It is frozen: a technique makes a new variant with
``child``, it never edits the one it was given.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

VARIANT_FILE = "variant.json"
# Other model folders a variant runs with, by where its runtime options name them (speculative decoding's draft,
# a router's small model): wherever the variant goes (an MLflow model), they go with it.
COMPANIONS: dict[str, tuple[str, ...]] = {"draft": ("decoding", "assistant"), "small": ("serving", "router", "small")}


class Variant(BaseModel):
    """Where a candidate lives and how it was made."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    task: str
    runtime: str = "torch"
    runtime_options: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = Field(None, description="Isolated environment the runtime runs in (None: the pipeline's own).")
    technique: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict, description="Facts inherited down the lineage (dtype, quantized).")
    parent: str | None = None
    lineage: list[str] = Field(default_factory=list)
    trust_remote_code: bool = False

    def save(self, folder: Path) -> None:
        """Write ``variant.json`` into ``folder``, the one made for this candidate: never into ``path`` as such, which
        for a step that only changes how the model is served is the champion's own folder (maybe the baseline's
        source, or a shared model cache)."""
        (Path(folder) / VARIANT_FILE).write_text(self.model_dump_json(indent=1))

    @classmethod
    def load(cls, folder: Path) -> "Variant":
        return cls.model_validate_json((Path(folder) / VARIANT_FILE).read_text())

    def child(
        self, name: str, path: Path, technique: str, params: dict[str, Any], traits: dict[str, Any] | None = None, **changes: Any
    ) -> "Variant":
        """The variant a technique makes from this one, with lineage and traits carried over."""
        return self.model_copy(
            update={
                "name": name,
                "path": path,
                "technique": technique,
                "params": params,
                "traits": {**self.traits, **(traits or {})},
                "parent": self.name,
                "lineage": [*self.lineage, self.name],
                **changes,
            }
        )


def companions(variant: Variant) -> dict[str, str]:
    """The companion model folders ``variant`` names, by role."""
    found = {}
    for role, keys in COMPANIONS.items():
        node: Any = variant.runtime_options
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node:
            found[role] = str(node)
    return found


def with_companions(variant: Variant, folders: dict[str, str]) -> Variant:
    """``variant`` with its companions at ``folders`` (role -> folder), e.g. where an MLflow model's artifacts are."""
    options = json.loads(json.dumps(variant.runtime_options))  # a deep copy: the variant is frozen
    for role, folder in folders.items():
        *parents, last = COMPANIONS[role]
        node = options
        for key in parents:
            node = node[key]
        node[last] = folder
    return variant.model_copy(update={"runtime_options": options})


def model_files(folder: Path) -> list[Path]:
    """The files that define a model (weights, config, tokenizer), not our own metadata."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != VARIANT_FILE
                  and ".cache" not in p.relative_to(folder).parts)


def size_mb(folder: Path) -> float:
    """Size on disk of the model's files, in MB (10^6 bytes)."""
    return sum(p.stat().st_size for p in model_files(folder)) / 1e6


def content_hash(folder: Path) -> str:
    """SHA-256 over the model's file names and bytes: the cache identity of a variant."""
    digest = hashlib.sha256()
    for path in model_files(folder):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
