"""Compile backends (ONNX Runtime, OpenVINO, TFLite, XLA, TensorRT, Neuron): one module per backend.

After the ratchet has found its champion, each ``compile`` target of the spec
turns it into that backend's own artifact (files on disk, in the backend's
format), which the shared benchmark and rubric then drive through a runtime
registered in ``ratchet.hardware.runtimes.RUNTIMES``. A backend is a small class:

* ``preconditions(spec, hardware)``: what this machine must have that can be
  seen without importing the backend's package (an NVIDIA GPU, a Neuron
  device). Cheap, never raises.
* ``probe()``: runs *inside the backend's environment*; imports its package
  and returns ``(ok, "package version")`` or ``(False, what to install)``.
  Never raises.
* ``accepts(spec, source)``: whether it can compile this variant (an ONNX
  graph, a float PyTorch model, ...), and why not.
* ``compile(spec, source, out_dir, ctx)``: makes the artifact; runs inside the
  backend's environment.

A backend whose packages cannot share the pipeline's environment names an
``Environment`` (``ratchet.hardware.environments``); everything it runs (probe,
compile, benchmark) then happens in a subprocess in that venv. Modules import
their heavy packages inside functions, so every backend module imports
anywhere, and a missing package is an availability reason, not an ImportError.
What a traced or graph-based backend asks of its source is shared with the
``onnx_export`` technique in ``ratchet.hardware.export``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ratchet.core.availability import Availability
from ratchet.core.plugins import Registry
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.environments import Environment


class ParitySpec(BaseModel):
    """How close a compiled artifact's outputs must stay to its source's on the workload's inputs."""

    model_config = ConfigDict(extra="forbid")

    max_abs_diff: float = Field(1e-3, gt=0, description="Largest absolute difference of any output value.")
    min_cosine: float = Field(0.999, gt=0, le=1, description="Mean cosine between output rows, at least.")


class CompileSpec(BaseModel):
    """Fields every compile target shares; each backend subclasses it with a ``target`` Literal."""

    model_config = ConfigDict(extra="forbid")

    target: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,=+\-]+$", description="Label in tables and MLflow.")
    parity: ParitySpec = Field(default_factory=ParitySpec)

    @property
    def label(self) -> str:
        return self.name or self.target

    def settings(self) -> dict:
        return self.model_dump(exclude={"target", "name"})


@dataclass(frozen=True)
class CompileContext:
    """What a compile step may use besides its source: sample texts (shapes, calibration), the workload's
    shapes (engines compiled for fixed shapes build one per batch size) and the hardware."""

    texts: list[str]
    sequence_length: int
    batch_sizes: list[int]
    hardware: HardwareSpec


class Backend(Protocol):
    spec_type: ClassVar[type[CompileSpec]]
    environment: ClassVar[Environment | None]  # None: runs in the pipeline's own environment
    packages: ClassVar[tuple[str, ...]]  # distributions whose versions are recorded with each artifact

    def preconditions(self, spec: CompileSpec, hardware: HardwareSpec) -> Availability: ...

    def probe(self) -> Availability: ...

    def accepts(self, spec: CompileSpec, source: Variant) -> Availability: ...

    def compile(self, spec: CompileSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant: ...


BACKENDS: Registry[type[Backend]] = Registry("compile target")


def backend_for(target: str) -> Backend:
    return BACKENDS.get(target)()
