"""OpenVINO: the champion's float ONNX graph converted to OpenVINO IR (``model.xml`` + ``model.bin``), optionally
INT8 through NNCF, run by OpenVINO's CPU plugin.

Plain ``openvino`` from the ONNX graph, not optimum-intel: optimum-intel moves
transformers to 5.5 and brings a torchvision that breaks beside the CPU torch
(measured), while ``openvino`` and ``nncf`` install beside the core without
changing a package. What was measured on all-MiniLM-L6-v2 (Sapphire Rapids,
2 cores) and shaped the options:

* The CPU plugin's default inference precision on AMX CPUs is **bf16**:
  max abs diff 1e-3 to fp32. ``precision: f32`` (default) keeps fp32 parity
  (1.7e-7); ``bf16`` is the fast setting where AMX/AVX-512-BF16 exist.
* A dynamically quantized ONNX graph (``MatMulInteger``) is converted to float
  ops: all its FullyConnected layers ran in f32, slower than the fp32 IR. So an
  INT8 ONNX champion is not taken as it is: the backend compiles its float
  ancestor and, with ``int8: true``, quantizes with NNCF instead (u8/i8
  kernels, mean cosine 0.9976 vs ONNX Runtime dynamic INT8's 0.9943).
* IR is saved with ``compress_to_fp16=False``: OpenVINO's default stores fp16
  weights.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.backends import BACKENDS, CompileContext, CompileSpec
from ratchet.hardware.environments import Environment
from ratchet.hardware.export import graph_file, onnx_graph
from ratchet.hardware.runtimes import RUNTIMES, Shape

IR_FILE = "model.xml"
INSTALL = "pip install -e '.[openvino]' (openvino, nncf)"


class OpenVinoSpec(CompileSpec):
    target: Literal["openvino"] = "openvino"
    precision: Literal["f32", "bf16"] = Field(
        "f32", description="CPU inference precision; bf16 is faster on AMX/AVX-512-BF16 CPUs (parity ~1e-3).")
    int8: bool = Field(False, description="Post-training INT8 with NNCF, calibrated on the workload's tuning texts.")
    threads: int | None = Field(None, ge=1, description="INFERENCE_NUM_THREADS; None: hardware.threads or OpenVINO's default.")
    opset: int = Field(17, ge=14, le=20, description="ONNX opset when a PyTorch champion is exported first.")


@BACKENDS.register("openvino", aliases=("ov",))
class OpenVinoBackend:
    spec_type: ClassVar[type[CompileSpec]] = OpenVinoSpec
    environment: ClassVar[Environment | None] = None
    packages: ClassVar[tuple[str, ...]] = ("openvino", "nncf")

    def preconditions(self, spec: OpenVinoSpec, hardware: HardwareSpec) -> Availability:
        if hardware.device != "cpu":
            return Availability(False, f"OpenVINO targets Intel CPUs here; hardware.device is {hardware.device!r}")
        return Availability(True)

    def probe(self) -> Availability:
        missing = [name for name in self.packages if importlib.util.find_spec(name) is None]
        if "openvino" in missing:
            return Availability(False, f"openvino is not installed ({INSTALL})")
        nncf = "no nncf: int8 unavailable" if missing else f"nncf {version('nncf')}"
        return Availability(True, f"openvino {version('openvino')} ({nncf})")

    def accepts(self, spec: OpenVinoSpec, source: Variant) -> Availability:
        if spec.int8 and importlib.util.find_spec("nncf") is None:
            return Availability(False, f"int8 needs nncf ({INSTALL})")
        return onnx_graph("openvino", source, refuse_quantized=(
            "OpenVINO runs a dynamically quantized ONNX graph's integer ops in float (measured slower than its fp32 "
            "IR); it compiles a float variant (int8: true quantizes with NNCF)"))

    def compile(self, spec: OpenVinoSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant:
        import openvino as ov
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        with tempfile.TemporaryDirectory(prefix="ratchet-ov-") as tmp:
            model = ov.convert_model(str(graph_file(source, tokenizer, Path(tmp), spec.opset)))
        if spec.int8:
            model = quantize_int8(model, tokenizer, ctx)
        ov.save_model(model, str(out_dir / IR_FILE), compress_to_fp16=False)
        tokenizer.save_pretrained(out_dir)
        return source.child(spec.label, out_dir, f"compile:{spec.target}", spec.settings(),
                            traits={"format": "openvino-ir", "compiled_for": spec.target,
                                    **({"quantized": "int8-nncf"} if spec.int8 else {})},
                            runtime="openvino", runtime_options={"precision": spec.precision, "threads": spec.threads})


def quantize_int8(model: Any, tokenizer: Any, ctx: CompileContext) -> Any:
    """NNCF post-training INT8 (transformer preset: mixed symmetric weights, asymmetric activations), one
    calibration sample per tuning text at its own length, as served."""
    import nncf

    nncf.set_log_level(logging.ERROR)  # its progress bars would interleave with the pipeline's
    if not ctx.texts:
        raise ValueError("openvino int8 calibrates on the workload's tuning texts, and there are none")
    names = [i.get_any_name() for i in model.inputs]
    samples = [{n: enc[n].astype(np.int64) for n in names}
               for enc in (tokenizer([t], truncation=True, max_length=ctx.sequence_length, return_tensors="np")
                           for t in ctx.texts)]
    return nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                         preset=nncf.QuantizationPreset.MIXED, subset_size=len(samples))


class OpenVinoPredictor:
    def __init__(self, variant: Variant, hardware: HardwareSpec, sequence_length: int) -> None:
        import openvino as ov
        from transformers import AutoTokenizer

        options = variant.runtime_options
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": options.get("precision", "f32")}
        threads = options.get("threads") or hardware.threads
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(variant.path / IR_FILE), "CPU", config)
        self.request = compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self.tokenizer = AutoTokenizer.from_pretrained(variant.path)
        self.sequence_length = sequence_length

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.sequence_length,
                             return_tensors="np")
        result = self.request.infer({n: enc[n].astype(np.int64) for n in self.input_names})
        return np.array(result[0])  # a copy: the request reuses its output buffer


@RUNTIMES.register("openvino")
class OpenVinoRuntime:
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> OpenVinoPredictor:
        return OpenVinoPredictor(variant, hardware, shape.sequence_length)
