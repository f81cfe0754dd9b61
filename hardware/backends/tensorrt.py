"""TensorRT: engines built from the champion's ONNX graph, through ONNX Runtime's TensorRT execution provider.

Why this route rather than torch-tensorrt: the champion is usually an ONNX graph
already (fp32 or INT8 QDQ), the engine then runs under the same ``onnxruntime``
runtime as every other ONNX variant (tokenizer, task head in the graph,
benchmark), and ORT hands any node TensorRT cannot take to CUDA. The engines
are built at compile time for the workload's shape range (batch 1 to the
largest batch size, sequence 1 to ``sequence_length``) and cached inside the
artifact (``trt_cache/``), so the benchmark measures inference, not engine
builds.

Precision: ``fp16`` lets TensorRT choose half-precision kernels; ``int8`` needs
an explicitly quantized (QDQ) graph, i.e. an ``onnx_int8`` step in ``static``
mode, because implicit calibration is deprecated in TensorRT 10. FP8 engines
need FP8 Q/DQ nodes (NVIDIA ModelOpt), which no Ratchet step writes yet; FP8
in PyTorch is the ``fp8`` technique.

Needs an NVIDIA GPU, ``onnxruntime-gpu`` and TensorRT's libraries, which come
from NVIDIA's package index: the environment declares it. On a machine
without a GPU the precondition says so before anything is installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.backends import BACKENDS, CompileContext, CompileSpec
from ratchet.hardware.environments import declare
from ratchet.hardware.export import onnx_graph
from ratchet.hardware.runtimes.onnx_runtime import MODEL_FILE

ENVIRONMENT = declare(
    "tensorrt",
    ("onnxruntime-gpu>=1.22", "tensorrt-cu12>=10.0,<11", "transformers>=5.20,<6", "onnx>=1.17"),
    "TensorRT's libraries come from NVIDIA's index and need onnxruntime-gpu in place of onnxruntime",
    index_urls=("https://pypi.nvidia.com",),
)
CACHE_DIR = "trt_cache"


def nvidia_gpu() -> Availability:
    """Whether an NVIDIA GPU is visible, without importing anything heavy (the driver's device files)."""
    if not Path("/dev/nvidiactl").exists() and shutil.which("nvidia-smi") is None:
        return Availability(False, "needs an NVIDIA GPU with its driver (no /dev/nvidiactl, no nvidia-smi here)")
    return Availability(True)


class TensorRtSpec(CompileSpec):
    target: Literal["tensorrt"] = "tensorrt"
    precision: Literal["fp32", "fp16", "int8"] = Field("fp16", description="int8 needs a static (QDQ) onnx_int8 champion.")
    workspace_mb: int = Field(2048, ge=64, description="TensorRT builder workspace.")
    opset: int = Field(17, ge=14, le=20, description="ONNX opset when a PyTorch champion is exported first.")


@BACKENDS.register("tensorrt", aliases=("trt",))
class TensorRtBackend:
    spec_type: ClassVar[type[CompileSpec]] = TensorRtSpec
    environment = ENVIRONMENT
    packages: ClassVar[tuple[str, ...]] = ("tensorrt-cu12", "onnxruntime-gpu")

    def preconditions(self, spec: TensorRtSpec, hardware: HardwareSpec) -> Availability:
        gpu = nvidia_gpu()
        if not gpu.ok:
            return Availability(False, f"TensorRT {gpu.reason}")
        if hardware.device != "cuda":
            return Availability(False, "TensorRT runs on the GPU; set hardware.device: cuda")
        return Availability(True)

    def probe(self) -> Availability:
        try:
            import onnxruntime
            import tensorrt
        except ImportError as exc:
            return Availability(False, f"{exc.name} is not importable (environment {ENVIRONMENT.name!r})")
        if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
            return Availability(False, f"onnxruntime {onnxruntime.__version__} has no TensorrtExecutionProvider")
        return Availability(True, f"tensorrt {tensorrt.__version__}, onnxruntime {onnxruntime.__version__}")

    def accepts(self, spec: TensorRtSpec, source: Variant) -> Availability:
        if spec.precision == "int8":
            ok = source.runtime == "onnxruntime" and source.params.get("mode") == "static"
            return Availability(ok, "" if ok else "int8 engines need a static (QDQ) onnx_int8 variant")
        return onnx_graph("tensorrt", source, refuse_quantized=(
            "a dynamically quantized ONNX graph has no TensorRT kernels; needs a float or a QDQ (static) graph"))

    def compile(self, spec: TensorRtSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant:
        from transformers import AutoTokenizer

        from ratchet.hardware.runtimes import Shape, load_variant
        from ratchet.hardware.tracing import export_onnx

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        if source.runtime == "onnxruntime":
            shutil.copy(source.path / MODEL_FILE, out_dir / MODEL_FILE)
        else:
            export_onnx(source, tokenizer, out_dir / MODEL_FILE, spec.opset)
        tokenizer.save_pretrained(out_dir)
        names = list(tokenizer.model_input_names)
        longest = ctx.sequence_length

        def shapes(batch: int, length: int) -> str:
            return ",".join(f"{n}:{batch}x{length}" for n in names)

        options = {
            "trt_fp16_enable": spec.precision == "fp16", "trt_int8_enable": spec.precision == "int8",
            "trt_max_workspace_size": spec.workspace_mb << 20,
            "trt_engine_cache_enable": True, "trt_engine_cache_path": CACHE_DIR, "trt_timing_cache_enable": True,
            "trt_profile_min_shapes": shapes(1, 1), "trt_profile_opt_shapes": shapes(1, min(32, longest)),
            "trt_profile_max_shapes": shapes(64, longest),
        }
        runtime_options = {"provider": "tensorrt", "provider_options": options, "graph_optimization_level": "all"}
        variant = source.child(spec.label, out_dir, f"compile:{spec.target}", spec.settings(),
                               traits={"format": "onnx+tensorrt", "compiled_for": spec.target},
                               runtime="onnxruntime", runtime_options=runtime_options, environment=ENVIRONMENT.name)
        # One inference per shape profile builds the engines into the cache, at compile time.
        predictor = load_variant(variant, ctx.hardware, Shape(ctx.sequence_length))
        predictor.predict(ctx.texts[:1])
        predictor.predict(ctx.texts[:8])
        return variant
