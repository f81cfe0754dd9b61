"""ONNX Runtime: the champion as one pre-optimised ``model.onnx`` for a chosen execution provider.

An ONNX champion (fp32 or INT8) is taken as it is; a float PyTorch champion is
exported first (``onnx_export``'s exporter, task head in the graph). ONNX
Runtime then applies its graph optimisations *offline*
(``SessionOptions.optimized_model_filepath``) and the optimised graph is the
artifact, which the runtime opens with optimisations off: ORT's documented way
to pay the optimisation cost once, at build time, for the provider and
hardware the artifact is for. CPU here; the CUDA and TensorRT execution
providers need an NVIDIA GPU and ``onnxruntime-gpu``.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.backends import BACKENDS, CompileContext, CompileSpec
from ratchet.hardware.environments import Environment
from ratchet.hardware.export import graph_file, onnx_graph
from ratchet.hardware.runtimes.onnx_runtime import MODEL_FILE, OPTIMIZATION_LEVELS, ort_errors_as_runtime_errors


class OnnxRuntimeSpec(CompileSpec):
    target: Literal["onnxruntime"] = "onnxruntime"
    graph_optimization_level: Literal["basic", "extended", "all"] = Field(
        "all", description="ORT's optimisations applied at build time (all = with hardware-specific fusions).")
    provider: Literal["cpu", "cuda", "tensorrt"] | None = Field(
        None, description="Execution provider the artifact is built for; None: cuda on a GPU hardware profile, else cpu.")
    intra_op_threads: int | None = Field(None, ge=1, description="Threads per operator; None: hardware.threads or ORT's default.")
    opset: int = Field(17, ge=14, le=20, description="ONNX opset when a PyTorch champion is exported first.")

    def provider_for(self, hardware: HardwareSpec) -> str:
        return self.provider or ("cuda" if hardware.device == "cuda" else "cpu")


@BACKENDS.register("onnxruntime", aliases=("ort",))
class OnnxRuntimeBackend:
    spec_type: ClassVar[type[CompileSpec]] = OnnxRuntimeSpec
    environment: ClassVar[Environment | None] = None
    packages: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnxruntime-gpu")

    def preconditions(self, spec: OnnxRuntimeSpec, hardware: HardwareSpec) -> Availability:
        provider = spec.provider_for(hardware)
        if provider != "cpu" and hardware.device != "cuda":
            return Availability(False, f"provider {provider!r} needs an NVIDIA GPU; hardware.device is {hardware.device!r}")
        return Availability(True)

    def probe(self) -> Availability:
        if importlib.util.find_spec("onnxruntime") is None:
            return Availability(False, "onnxruntime is not installed (pip install onnxruntime)")
        import onnxruntime

        return Availability(True, f"onnxruntime {onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})")

    def accepts(self, spec: OnnxRuntimeSpec, source: Variant) -> Availability:
        return onnx_graph("onnxruntime", source)

    def compile(self, spec: OnnxRuntimeSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from ratchet.hardware.runtimes.onnx_runtime import providers

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        provider = spec.provider_for(ctx.hardware)
        with tempfile.TemporaryDirectory(prefix="ratchet-ort-") as tmp, ort_errors_as_runtime_errors():
            graph = graph_file(source, tokenizer, Path(tmp), spec.opset)
            options = ort.SessionOptions()
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                       OPTIMIZATION_LEVELS[spec.graph_optimization_level])
            options.optimized_model_filepath = str(out_dir / MODEL_FILE)
            options.log_severity_level = 3  # the warning that 'all' is hardware-specific: that is the point here
            ort.InferenceSession(str(graph), options, providers=providers(ctx.hardware.device, provider))
        tokenizer.save_pretrained(out_dir)
        runtime_options = {"graph_optimization_level": "disable", "provider": provider,
                           "intra_op_threads": spec.intra_op_threads}
        return source.child(spec.label, out_dir, f"compile:{spec.target}", spec.settings(),
                            traits={"format": "onnx", "compiled_for": spec.target},
                            runtime="onnxruntime", runtime_options=runtime_options)
