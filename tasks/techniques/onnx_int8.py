"""INT8 quantization of an ONNX variant with ONNX Runtime, with an accuracy-aware fallback.

``dynamic`` quantizes weights ahead of time and activations per batch at run time
(``MatMulInteger``/``DynamicQuantizeLinear``); it needs no data and was the fastest
variant measured on MiniLM here (AVX-512 VNNI, 2 cores: 5.9x PyTorch fp32 at p50,
cosine 0.993 per-channel; per-tensor weights drop the cosine to 0.966, hence
``per_channel: true`` by default). ``static`` also fixes activation ranges from
calibration texts (QDQ format); its activations default to uint8 because the int8
(S8S8) QDQ kernels measured 15x slower than U8S8 on this CPU.

``fallback`` is accuracy control after NNCF's: when the fully quantized model's
mean cosine to its source on a sample of tuning texts is below ``min_cosine``, each
quantized node is ranked by how much cosine keeping it alone in float recovers,
and the most sensitive are kept float one by one (ORT's ``nodes_to_exclude``) until
the target is met or ``max_float_nodes`` are float.

The fused-graph case needs ``DefaultTensorType=FLOAT``: the quantizer cannot infer
the element type of contrib-op outputs (``Attention``, ``SkipLayerNormalization``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ratchet.core.availability import Availability, source_check
from ratchet.core.variant import Variant
from ratchet.hardware.parity import mean_cosine
from ratchet.hardware.runtimes.onnx_runtime import MODEL_FILE, OnnxPredictor, ort_errors_as_runtime_errors
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec

# Op types each mode can quantize on a transformer graph (unfused or fused by onnx_export's fusion).
DYNAMIC_OPS = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
STATIC_OPS = ("MatMul", "Gemm", "Gather")
OpType = Literal["MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization"]
STATIC_ONLY = ("activation_type", "calibration", "calibration_samples")
EVAL_BATCH = 32
DEFAULT_SAMPLES = 128


class FallbackSpec(BaseModel):
    """Keep the most sensitive nodes in float until the quantized model is this close to its source."""

    model_config = ConfigDict(extra="forbid")

    min_cosine: float = Field(gt=0, le=1, description="Mean cosine to the source's outputs the result must reach.")
    max_float_nodes: int = Field(8, ge=1, description="At most this many quantizable nodes stay float.")
    samples: int = Field(DEFAULT_SAMPLES, ge=8, description="Tuning texts the cosine is measured on (evenly spaced, deterministic).")


class OnnxInt8Spec(TechniqueSpec):
    kind: Literal["onnx_int8"] = "onnx_int8"
    mode: Literal["dynamic", "static"] = "dynamic"
    per_channel: bool = Field(True, description="One weight scale per output channel (per-tensor lost 3 points of cosine on MiniLM).")
    reduce_range: bool = Field(False, description="7-bit weights: avoids U8S8 saturation on CPUs without VNNI.")
    weight_type: Literal["int8", "uint8"] = "int8"
    symmetric_weights: bool | None = Field(
        None, description="Zero-point-free weights; None keeps ONNX Runtime's default (symmetric for int8, not for uint8).")
    activation_type: Literal["int8", "uint8"] | None = Field(None, description="static only; default uint8 (fast U8S8 kernels).")
    calibration: Literal["minmax", "entropy", "percentile"] | None = Field(None, description="static only; default minmax.")
    calibration_samples: int | None = Field(None, ge=1, description="static only: tuning texts to calibrate on; default 128.")
    op_types: list[OpType] | None = Field(None, min_length=1, description=f"default: dynamic {DYNAMIC_OPS}, static {STATIC_OPS}")
    fallback: FallbackSpec | None = None

    @model_validator(mode="after")
    def _settings_fit_mode(self) -> "OnnxInt8Spec":
        if self.mode == "dynamic":
            given = [name for name in STATIC_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: used only with mode: static, and this step's mode is dynamic")
        unsupported = sorted(set(self.op_types or ()) - set(self.default_op_types()))
        if unsupported:
            raise ValueError(f"op_types {unsupported} cannot be quantized in {self.mode} mode (can: {list(self.default_op_types())})")
        return self

    def default_op_types(self) -> tuple[str, ...]:
        return DYNAMIC_OPS if self.mode == "dynamic" else STATIC_OPS


@TECHNIQUES.register("onnx_int8")
class OnnxInt8:
    spec_type: ClassVar[type[TechniqueSpec]] = OnnxInt8Spec

    def availability(self, spec: OnnxInt8Spec, source: Variant) -> Availability:
        if importlib.util.find_spec("onnxruntime") is None:
            return Availability(False, "onnx_int8 needs onnxruntime (pip install onnxruntime)")
        available = source_check("onnx_int8", source, runtime="onnxruntime", float32=False)
        if not available.ok:
            return available
        if not (source.path / MODEL_FILE).is_file():
            return Availability(False, f"no {MODEL_FILE} in {source.path}")
        return Availability(True)

    def apply(self, spec: OnnxInt8Spec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source.path)
        quantize = quantizer(spec, source, tokenizer, ctx)
        with ort_errors_as_runtime_errors(), tempfile.TemporaryDirectory(prefix="ratchet-onnx-int8-") as tmp:
            fidelity = Fidelity(source, tokenizer, ctx, spec.fallback.samples if spec.fallback else DEFAULT_SAMPLES)
            search = FallbackSearch(quantize, fidelity, Path(tmp) / MODEL_FILE)
            float_nodes = search.run(spec.fallback, source.path / MODEL_FILE, ctx)
            search.write(float_nodes, out_dir / MODEL_FILE)
        tokenizer.save_pretrained(out_dir)
        params = {**spec.settings(), "float_nodes": float_nodes, "calibration_cosine": search.cosines[tuple(float_nodes)],
                  "cosine_all_quantized": search.cosines[()], "cosine_samples": len(fidelity.texts)}
        return source.child(spec.label, out_dir, "onnx_int8", params, traits={"quantized": "int8"})


Quantize = Callable[[list[str], Path], None]


def quantizer(spec: OnnxInt8Spec, source: Variant, tokenizer: Any, ctx: TechniqueContext) -> Quantize:
    """``quantize(nodes_to_keep_float, dst)`` for this spec: the one call the fallback repeats."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    common = {
        "per_channel": spec.per_channel, "reduce_range": spec.reduce_range, "weight_type": types[spec.weight_type],
        "op_types_to_quantize": list(spec.op_types or spec.default_op_types()),
        "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}
        | ({} if spec.symmetric_weights is None else {"WeightSymmetric": spec.symmetric_weights}),
    }
    src = str(source.path / MODEL_FILE)
    if spec.mode == "dynamic":
        return lambda float_nodes, dst: _quietly(lambda: quantize_dynamic(src, str(dst), nodes_to_exclude=float_nodes, **common))
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    batches = calibration_batches(tokenizer, ctx, spec.calibration_samples or DEFAULT_SAMPLES)

    def quantize(float_nodes: list[str], dst: Path) -> None:
        _quietly(lambda: quantize_static(
            src, str(dst), CalibrationReader(batches), quant_format=QuantFormat.QDQ,
            activation_type=types[spec.activation_type or "uint8"], calibrate_method=methods[spec.calibration or "minmax"],
            nodes_to_exclude=float_nodes, **common,
        ))

    return quantize


def _quietly(call: Callable[[], Any]) -> None:
    """Run an ORT quantizer call without its prints (calibration progress) and its root-logger advice
    (pre-processing), which would otherwise interleave with the pipeline's progress bars."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            call()
    finally:
        root.setLevel(previous)


def sample_texts(texts: list[str], n: int) -> list[str]:
    """``n`` evenly spaced texts (all of them if fewer): deterministic, and spread over corpus and queries."""
    if len(texts) <= n:
        return list(texts)
    return [texts[i * len(texts) // n] for i in range(n)]


def calibration_batches(tokenizer: Any, ctx: TechniqueContext, n: int) -> list[dict[str, np.ndarray]]:
    """One tokenized text per batch, all padded to the sample's longest: the histogram calibrators
    (entropy, percentile) stack every batch's tensors and fail on ragged shapes."""
    if not ctx.texts:
        raise ValueError("static quantization needs calibration texts, and the workload gave none")
    enc = tokenizer(sample_texts(ctx.texts, n), padding=True, truncation=True, max_length=ctx.sequence_length, return_tensors="np")
    return [{k: v[i : i + 1].astype(np.int64) for k, v in enc.items()} for i in range(len(enc["input_ids"]))]


class CalibrationReader:
    """ORT's ``CalibrationDataReader`` protocol over prepared batches (feeds only the graph's own inputs)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


class Fidelity:
    """Mean cosine of a candidate ONNX file's outputs to the source's, on a fixed sample of tuning texts."""

    def __init__(self, source: Variant, tokenizer: Any, ctx: TechniqueContext, samples: int) -> None:
        self.texts = sample_texts(ctx.texts, samples)
        if not self.texts:
            raise ValueError("measuring int8 fidelity needs tuning texts, and the workload gave none")
        self.predictor = partial(OnnxPredictor, tokenizer=tokenizer, runtime_options=source.runtime_options,
                                 hardware=ctx.hardware, sequence_length=ctx.sequence_length)
        self.reference = self._outputs(source.path / MODEL_FILE)

    def cosine(self, model: Path) -> float:
        return mean_cosine(self._outputs(model), self.reference)

    def _outputs(self, model: Path) -> np.ndarray:
        predictor = self.predictor(model)
        return np.concatenate([predictor.predict(self.texts[i : i + EVAL_BATCH]) for i in range(0, len(self.texts), EVAL_BATCH)])


class FallbackSearch:
    """Quantize with some nodes kept float, measure, remember: ``cosines`` maps each tried float set to its cosine."""

    def __init__(self, quantize: Quantize, fidelity: Fidelity, trial: Path) -> None:
        self.quantize, self.fidelity, self.trial = quantize, fidelity, trial
        self.cosines: dict[tuple[str, ...], float] = {}
        self._last: tuple[str, ...] | None = None

    def cosine_with(self, float_nodes: list[str]) -> float:
        key = tuple(float_nodes)
        if key not in self.cosines:
            self.quantize(float_nodes, self.trial)
            self.cosines[key], self._last = self.fidelity.cosine(self.trial), key
        return self.cosines[key]

    def run(self, fallback: FallbackSpec | None, source_model: Path, ctx: TechniqueContext) -> list[str]:
        """The nodes to keep float: none when everything quantized is close enough (or no fallback is asked for),
        else the shortest greedy prefix of the sensitivity ranking meeting ``min_cosine``; failing that, the
        best prefix tried."""
        start = self.cosine_with([])
        if fallback is None or start >= fallback.min_cosine:
            return []
        ranked = self.rank(quantized_nodes(source_model, self.trial), start, ctx)
        limit = min(fallback.max_float_nodes, len(ranked))
        for count in range(1, limit + 1):
            ctx.progress("int8 fallback", count, limit)
            if self.cosine_with(ranked[:count]) >= fallback.min_cosine:
                return ranked[:count]
        prefixes = [ranked[:count] for count in range(limit + 1)]
        return max(prefixes, key=lambda nodes: self.cosines[tuple(nodes)])

    def rank(self, nodes: list[str], start: float, ctx: TechniqueContext) -> list[str]:
        """Nodes whose staying float alone raises the cosine, most helpful first."""
        gains = {}
        for i, node in enumerate(nodes):
            gains[node] = self.cosine_with([node]) - start
            ctx.progress("int8 sensitivity", i + 1, len(nodes))
        return sorted((n for n in nodes if gains[n] > 0), key=lambda n: -gains[n])

    def write(self, float_nodes: list[str], dst: Path) -> None:
        """The chosen model into ``dst``: the last trial if it is the one, else quantized again."""
        if self._last == tuple(float_nodes):
            shutil.move(self.trial, dst)
        else:
            self.quantize(float_nodes, dst)


def quantized_nodes(source_model: Path, quantized_model: Path) -> list[str]:
    """Names of the source's nodes the quantizer changed: gone from the quantized graph (replaced by an
    integer op, dynamic) or now fed by a ``DequantizeLinear`` (QDQ, static)."""
    import onnx

    source = onnx.load(str(source_model), load_external_data=False).graph
    quantized = onnx.load(str(quantized_model), load_external_data=False).graph
    dequantized = {out for n in quantized.node if n.op_type == "DequantizeLinear" for out in n.output}
    after = {n.name: n for n in quantized.node}
    return [
        n.name for n in source.node
        if n.name and (n.name not in after or any(i in dequantized for i in after[n.name].input))
    ]
