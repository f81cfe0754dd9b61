"""AWS Neuron (Inferentia2 / Trainium): the champion traced with ``torch_neuronx.trace`` for a NeuronCore.

Neuron compiles one static shape, so the artifact takes ``batch`` rows of
``sequence_length`` tokens (``ratchet.hardware.runtimes.fixed_shape`` pads to it). The
Neuron SDK is distributed from AWS's own package index; the PyPI names
(``torch-neuronx`` 1.0) are placeholders, so the environment names that
index. It runs only on an instance with a Neuron device (``/dev/neuron0``);
anywhere else the precondition says so before anything is installed, and the
step is recorded as skipped. This backend has not run on Neuron hardware
from this project's machines (none has been available), which README states.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.backends import BACKENDS, CompileContext, CompileSpec
from ratchet.hardware.environments import declare
from ratchet.hardware.export import traceable
from ratchet.hardware.runtimes import RUNTIMES, Shape
from ratchet.hardware.runtimes.fixed_shape import in_fixed_batches, padded_inputs

ENVIRONMENT = declare(
    "neuron",
    ("torch-neuronx", "neuronx-cc", "transformers>=4.40"),
    "the Neuron SDK pins its own torch build and comes from AWS's package index",
    index_urls=("https://pip.repos.neuron.amazonaws.com",),
)
MODEL_FILE = "model.neuron.pt"


class NeuronSpec(CompileSpec):
    target: Literal["neuron"] = "neuron"
    batch_size: int = Field(1, ge=1, le=64, description="The one batch size the NeuronCore graph is traced for.")
    auto_cast: Literal["none", "matmult", "all"] = Field(
        "none", description="neuronx-cc --auto-cast: which ops may run in bf16 (none keeps fp32 parity).")


@BACKENDS.register("neuron", aliases=("inferentia", "aws-neuron"))
class NeuronBackend:
    spec_type: ClassVar[type[CompileSpec]] = NeuronSpec
    environment = ENVIRONMENT
    packages: ClassVar[tuple[str, ...]] = ("torch-neuronx", "neuronx-cc")

    def preconditions(self, spec: NeuronSpec, hardware: HardwareSpec) -> Availability:
        if not Path("/dev/neuron0").exists():
            return Availability(False, "AWS Neuron needs an Inferentia2/Trainium instance (no /dev/neuron0 on this machine)")
        return Availability(True)

    def probe(self) -> Availability:
        try:
            import torch_neuronx
        except ImportError:
            return Availability(False, "torch-neuronx is not installed: it comes from AWS's index "
                                       "(pip install torch-neuronx --extra-index-url https://pip.repos.neuron.amazonaws.com)")
        return Availability(True, f"torch-neuronx {getattr(torch_neuronx, '__version__', 'unknown version')}")

    def accepts(self, spec: NeuronSpec, source: Variant) -> Availability:
        return traceable("neuron", source)

    def compile(self, spec: NeuronSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant:
        import torch
        import torch_neuronx
        from transformers import AutoTokenizer

        from ratchet.hardware.tracing import with_head

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        names = list(tokenizer.model_input_names)
        model = with_head(source, names, attn_implementation="eager")
        example = padded_inputs(tokenizer, ctx.texts[: spec.batch_size] * spec.batch_size, names, ctx.sequence_length)
        tensors = tuple(torch.from_numpy(example[n][: spec.batch_size]) for n in names)
        traced = torch_neuronx.trace(model, tensors, compiler_args=["--auto-cast", spec.auto_cast])
        torch.jit.save(traced, str(out_dir / MODEL_FILE))
        tokenizer.save_pretrained(out_dir)
        options = {"batch_size": spec.batch_size, "sequence_length": ctx.sequence_length, "input_names": names}
        return source.child(spec.label, out_dir, f"compile:{spec.target}", spec.settings(),
                            traits={"format": "neuron", "compiled_for": spec.target},
                            runtime="neuron", runtime_options=options, environment=ENVIRONMENT.name)


class NeuronPredictor:
    def __init__(self, variant: Variant) -> None:
        import torch
        import torch_neuronx  # noqa: F401  (registers the Neuron ops the saved graph calls)
        from transformers import AutoTokenizer

        self.torch = torch
        self.model = torch.jit.load(str(variant.path / MODEL_FILE))
        self.tokenizer = AutoTokenizer.from_pretrained(variant.path)
        self.options = variant.runtime_options

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        o = self.options
        inputs = padded_inputs(self.tokenizer, texts, o["input_names"], o["sequence_length"])

        def run(chunk: dict[str, np.ndarray]) -> np.ndarray:
            return self.model(*(self.torch.from_numpy(chunk[n]) for n in o["input_names"])).numpy()

        return in_fixed_batches(run, inputs, o["batch_size"])


@RUNTIMES.register("neuron")
class NeuronRuntime:
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> NeuronPredictor:
        return NeuronPredictor(variant)
