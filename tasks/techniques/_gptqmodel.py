"""What GPTQ and AWQ share: GPT-QModel, its isolated environment, calibration, and the shape rules of its kernels.

Why GPT-QModel: auto-gptq is end-of-life and autoawq deprecated by their
maintainers, and transformers routes both checkpoint formats through
GPT-QModel. It quantizes and runs both methods on the CPU (measured here:
GPTQ and AWQ 4-bit of a small Llama, mean cosine of next-token distributions
to fp32 0.9997 and 0.9992), so neither needs a GPU.

Why an environment of its own: every gptqmodel 7.0-7.6 release pins
``numpy==2.2.6`` (the core has numpy 2.4), 7.7 wants torch 2.14.1, and an
install without a torch pin pulls a CUDA torch. In the ``gptqmodel``
environment torch stays 2.13.0 and numpy moves, without touching the core.
auto-gptq needs CUDA and transformers 4.57; autoawq's own loader needs Intel's
extension; neither can be installed beside transformers 5, so their
checkpoints are loaded the way transformers 5 loads them: through GPT-QModel.

The quantized checkpoint is safetensors with ``quantization_config`` in
``config.json``; the torch runtime loads it with ``from_pretrained`` inside the
same environment (optimum is what transformers asks for to route GPTQ there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PositiveInt

from ratchet.core.availability import Availability, source_check
from ratchet.core.variant import Variant
from ratchet.hardware.environments import declare
from ratchet.tasks.techniques import TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._training import read_model_config

ENVIRONMENT = declare(
    "gptqmodel",
    ("torch==2.13.0", "gptqmodel==7.6.0", "optimum>=2.0,<3", "transformers>=5.20,<6"),
    "gptqmodel 7.6 pins numpy 2.2.6 (the core has 2.4), and without a torch pin it pulls a CUDA torch",
)
CAUSAL_LM = "text-generation"


class GptqModelSpec(TechniqueSpec):
    """Settings GPTQ and AWQ share."""

    bits: int = Field(4, description="Weight bits.")
    group_size: PositiveInt = Field(128, description="Input columns sharing one scale; must divide every Linear's input.")
    calibration_samples: PositiveInt = Field(64, description="Calibration sequences of chunk_length tokens at most.")
    chunk_length: PositiveInt = Field(
        128, description="Tuning texts are joined and cut into sequences of this many tokens: equal lengths, because "
                         "GPT-QModel's AWQ keeps only the last batch when lengths differ (measured).")


class GptqModelTechnique:
    """GPT-QModel quantization of a causal LM, run in its environment; subclasses give the method's config."""

    spec_type: ClassVar[type[TechniqueSpec]]
    environment = ENVIRONMENT
    kind: ClassVar[str]
    output_multiple: ClassVar[int]  # each quantized Linear's output size must be a multiple of this

    def availability(self, spec: GptqModelSpec, source: Variant) -> Availability:
        if source.task != CAUSAL_LM:
            return Availability(False, f"{self.kind} quantizes causal LMs ({CAUSAL_LM}), the model's task is {source.task!r}")
        available = source_check(self.kind, source, float32=False)
        if not available.ok:
            return available
        try:
            self.preflight(spec, read_model_config(source.path))
        except ValueError as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def preflight(self, spec: GptqModelSpec, model_config: dict) -> None:
        """GPT-QModel's CPU kernels need each Linear's input divisible by the group size and its output by
        ``output_multiple`` (measured: 16 for GPTQ's int4 pack, 64 for AWQ's clipping search)."""
        hidden, ffn = model_config.get("hidden_size"), model_config.get("intermediate_size")
        if hidden is None or ffn is None:
            return
        heads = model_config.get("num_attention_heads") or 1
        head_dim = model_config.get("head_dim") or hidden // heads
        kv = (model_config.get("num_key_value_heads") or heads) * head_dim
        bad_in = sorted({n for n in (hidden, ffn) if n % spec.group_size})
        if bad_in:
            raise ValueError(f"group_size {spec.group_size} does not divide the Linear input sizes {bad_in}")
        bad_out = sorted({n for n in (hidden, ffn, kv) if n % self.output_multiple})
        if bad_out:
            raise ValueError(f"{self.kind} on CPU needs Linear output sizes divisible by {self.output_multiple}, "
                             f"this model has {bad_out}")

    def quantize_config(self, spec: GptqModelSpec) -> Any:
        raise NotImplementedError

    def quantize_options(self) -> dict[str, Any]:
        """Extra arguments of ``model.quantize`` for the method on this machine."""
        return {}

    def apply(self, spec: GptqModelSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """Runs inside the ``gptqmodel`` environment (``tasks.techniques._isolated``)."""
        _configure_gptqmodel()
        from gptqmodel import GPTQModel
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        calibration = calibration_chunks(tokenizer, ctx.texts, spec.chunk_length, spec.calibration_samples)
        ctx.progress(f"{self.kind} calibrate", 0, 1)
        model = GPTQModel.load(str(source.path), self.quantize_config(spec))
        model.quantize(calibration, batch_size=len(calibration), **self.quantize_options())
        model.save(str(out_dir))
        tokenizer.save_pretrained(out_dir)
        ctx.progress(f"{self.kind} calibrate", 1, 1)
        params = {**spec.settings(), "calibration_sequences": len(calibration)}
        return source.child(spec.label, out_dir, self.kind, params, environment=ENVIRONMENT.name,
                            traits={"quantized": f"int{spec.bits}-{self.kind}"})


def _configure_gptqmodel() -> None:
    """GPT-QModel's quantize refuses to start with fewer than two CPU workers ("Virtual pool 'model_loader:cpu'
    requests 2 workers"), and compiles a C++ packing extension on first use: keep it inside the environment."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, os.cpu_count() or 2)))
    os.environ.setdefault("GPTQMODEL_TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))


def calibration_chunks(tokenizer: Any, texts: list[str], length: int, count: int) -> list[dict[str, list[int]]]:
    """The texts as one token stream (end of sequence between texts), cut into ``count`` chunks of ``length``."""
    if not texts:
        raise ValueError("GPT-QModel calibrates on the workload's tuning texts, and there are none")
    stream: list[int] = []
    for text in texts:
        stream += [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]
        if len(stream) >= length * count:
            break
    if len(stream) < length:
        length = len(stream)
    chunks = [stream[i:i + length] for i in range(0, len(stream) - length + 1, length)][:count]
    return [{"input_ids": chunk, "attention_mask": [1] * len(chunk)} for chunk in chunks]
