"""TFLite / LiteRT: the champion converted by litert-torch to one ``.tflite``, run by the LiteRT interpreter (XNNPACK).

litert-torch (formerly ai-edge-torch) cannot share the pipeline's environment:
its ``xdsl`` pin needs typing-extensions < 4.13, which moves pydantic to 2.11,
below what Prefect's dependencies want. So it lives in the ``litert``
environment (torch 2.13 satisfies its ``torch<2.15``; 2.3 GB with torch), where
both the conversion and the benchmark of the artifact run.

Shapes are static: litert-torch 0.10's dynamic shapes fail on BERT-style models
(its issues #685 and #716; reproduced here), and ``resize_tensor_input`` fails
at a RESHAPE. One file holds one signature per sequence bucket (weights are
shared: four lengths cost 1.2 MB more than one), batch 1; a request takes the
smallest bucket that holds it, and larger batches run row by row.

``quantize``: ai-edge-quantizer's recipes applied after conversion.
Measured on all-MiniLM-L6-v2: ``dynamic_int8`` (int8 weights and
dynamically quantized activations) 4.5x faster than the fp32 file at mean
cosine 0.998; ``weight_only_int8`` and ``fp16`` only shrink the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.metadata import version
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
from ratchet.hardware.runtimes.fixed_shape import (
    SequenceBuckets,
    bucket_lengths,
    fitting_length,
    in_fixed_batches,
    padded_inputs,
)

ENVIRONMENT = declare(
    "litert",
    ("torch==2.13.0", "litert-torch==0.10.0", "transformers>=5.20,<6"),
    "litert-torch pins xdsl, which needs typing-extensions<4.13 and so moves pydantic below what Prefect needs",
)
MODEL_FILE = "model.tflite"
INDEX_FILE = "signatures.json"
RECIPES = {"dynamic_int8": "full_dynamic_recipe", "weight_only_int8": "full_weight_only_recipe", "fp16": "full_fp16_recipe"}


class TfliteSpec(CompileSpec):
    target: Literal["tflite"] = "tflite"
    quantize: Literal["none", "dynamic_int8", "weight_only_int8", "fp16"] = Field(
        "none", description="ai-edge-quantizer recipe applied after conversion.")
    sequence_buckets: SequenceBuckets = [16, 32, 64, 128]
    threads: int | None = Field(None, ge=1, description="Interpreter threads; None: hardware.threads or 2.")


@BACKENDS.register("tflite", aliases=("litert",))
class TfliteBackend:
    spec_type: ClassVar[type[CompileSpec]] = TfliteSpec
    environment = ENVIRONMENT
    packages: ClassVar[tuple[str, ...]] = ("litert-torch", "ai-edge-litert")

    def preconditions(self, spec: TfliteSpec, hardware: HardwareSpec) -> Availability:
        if hardware.device != "cpu":
            return Availability(False, f"the LiteRT interpreter runs on the CPU here; hardware.device is {hardware.device!r}")
        return Availability(True)

    def probe(self) -> Availability:
        try:
            import ai_edge_litert  # noqa: F401
            import litert_torch  # noqa: F401
        except ImportError as exc:
            return Availability(False, f"{exc.name} is not importable (environment {ENVIRONMENT.name!r})")
        return Availability(True, f"litert-torch {version('litert-torch')}, ai-edge-litert {version('ai-edge-litert')}")

    def accepts(self, spec: TfliteSpec, source: Variant) -> Availability:
        return traceable("tflite", source)

    def compile(self, spec: TfliteSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant:
        import litert_torch
        import torch
        from litert_torch.generative.quantize import quant_recipes
        from transformers import AutoTokenizer

        from ratchet.hardware.tracing import with_head

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        names = list(tokenizer.model_input_names)
        model = with_head(source, names, attn_implementation="eager")
        lengths = bucket_lengths(spec.sequence_buckets, ctx.sequence_length)
        converter = litert_torch.Converter()
        for length in lengths:
            sample = padded_inputs(tokenizer, ctx.texts[:1], names, length)
            converter.signature(f"s{length}", model, tuple(torch.from_numpy(sample[n].astype(np.int32)) for n in names))
        options = {} if spec.quantize == "none" else {"quant_config": getattr(quant_recipes, RECIPES[spec.quantize])()}
        converter.convert(**options).export(str(out_dir / MODEL_FILE))
        (out_dir / INDEX_FILE).write_text(json.dumps({"input_names": names, "lengths": lengths}))
        tokenizer.save_pretrained(out_dir)
        traits = {"format": "tflite", "compiled_for": spec.target}
        if spec.quantize != "none":
            traits["quantized"] = spec.quantize
        return source.child(spec.label, out_dir, f"compile:{spec.target}", spec.settings(), traits=traits,
                            runtime="tflite", runtime_options={"threads": spec.threads}, environment=ENVIRONMENT.name)


class TflitePredictor:
    def __init__(self, variant: Variant, hardware: HardwareSpec, sequence_length: int) -> None:
        from ai_edge_litert.interpreter import Interpreter
        from transformers import AutoTokenizer

        index = json.loads((variant.path / INDEX_FILE).read_text())
        self.names, self.lengths = index["input_names"], index["lengths"]
        threads = variant.runtime_options.get("threads") or hardware.threads or 2
        interpreter = Interpreter(model_path=str(variant.path / MODEL_FILE), num_threads=threads)
        self.runners = {length: interpreter.get_signature_runner(f"s{length}") for length in self.lengths}
        self.tokenizer = AutoTokenizer.from_pretrained(variant.path)
        self.sequence_length = sequence_length

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        length = fitting_length(self.tokenizer, texts, self.lengths, self.sequence_length)
        runner = self.runners[length]
        inputs = padded_inputs(self.tokenizer, texts, self.names, length)

        def run(row: dict[str, np.ndarray]) -> np.ndarray:
            # the converted signature names its inputs args_0.. in the traced module's argument order
            return runner(**{f"args_{i}": row[n].astype(np.int32) for i, n in enumerate(self.names)})["output_0"]

        return in_fixed_batches(run, inputs, 1)


@RUNTIMES.register("tflite")
class TfliteRuntime:
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> TflitePredictor:
        return TflitePredictor(variant, hardware, shape.sequence_length)
