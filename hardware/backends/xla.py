"""XLA: the champion traced to JAX with torchax, compiled by XLA, and saved as serialized StableHLO.

Why torchax/JAX and not ``torch_xla``: torch-xla publishes builds for torch
2.9 only, and next to torch 2.13 its import fails with an undefined symbol
(measured). ``jax`` and ``torchax`` install beside the core without changing a
package. torchax turns the PyTorch module (model + task head) into a pure JAX
function of its weights; ``jax.export`` serializes one XLA computation per
(batch, sequence) bucket. The artifact is those ``.jaxexport`` files plus the
weights as ``.npz``: the runtime needs JAX and a tokenizer, not PyTorch (run in
a fresh process without torch, it matched to 1.6e-7).

Static shapes: exporting with symbolic dimensions fails inside torchax
(``torch.Size`` cannot hold a symbolic dimension), so each bucket is its own
computation; a request is padded to the smallest sequence bucket that holds it
and to the smallest batch bucket (the workload's batch sizes).

torchax 0.0.13 names aten overloads that torch 2.13 removed (the named-tensor
``Dimname`` ones), so its import fails with AttributeError; ``_import_torchax``
lets those names resolve to inert placeholders while torchax builds its op
tables, then restores torch's own lookup.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ratchet.core.availability import Availability
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.backends import BACKENDS, CompileContext, CompileSpec
from ratchet.hardware.environments import Environment
from ratchet.hardware.export import traceable
from ratchet.hardware.runtimes import RUNTIMES, Shape
from ratchet.hardware.runtimes.fixed_shape import (
    SequenceBuckets,
    bucket_lengths,
    fitting_length,
    in_fixed_batches,
    padded_inputs,
)

WEIGHTS_FILE = "weights.npz"
INDEX_FILE = "buckets.json"
INSTALL = "pip install -e '.[xla]' (jax, torchax, flatbuffers)"


class XlaSpec(CompileSpec):
    target: Literal["xla"] = "xla"
    sequence_buckets: SequenceBuckets = [16, 32, 64, 128]


def _import_torchax() -> Any:
    """torchax, imported with the named-tensor overloads torch 2.13 removed answered by placeholders (see above)."""
    import torch._ops

    original = torch._ops.OpOverloadPacket.__getattr__

    def lenient(packet: Any, name: str) -> Any:
        try:
            return original(packet, name)
        except AttributeError:
            if name.startswith("__"):
                raise
            return f"<removed overload {packet._qualified_op_name}.{name}>"

    torch._ops.OpOverloadPacket.__getattr__ = lenient
    try:
        import torchax

        torchax.default_env()  # builds the op tables while the placeholders are in place
    finally:
        torch._ops.OpOverloadPacket.__getattr__ = original
    return torchax


@BACKENDS.register("xla", aliases=("jax",))
class XlaBackend:
    spec_type: ClassVar[type[CompileSpec]] = XlaSpec
    environment: ClassVar[Environment | None] = None
    packages: ClassVar[tuple[str, ...]] = ("jax", "jaxlib", "torchax")

    def preconditions(self, spec: XlaSpec, hardware: HardwareSpec) -> Availability:
        return Availability(True)

    def probe(self) -> Availability:
        missing = [name for name in ("jax", "torchax", "flatbuffers") if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed ({INSTALL})")
        import jax

        return Availability(True, f"jax {version('jax')} ({jax.default_backend()}), torchax {version('torchax')}")

    def accepts(self, spec: XlaSpec, source: Variant) -> Availability:
        return traceable("xla", source)

    def compile(self, spec: XlaSpec, source: Variant, out_dir: Path, ctx: CompileContext) -> Variant:
        import jax
        import jax.numpy as jnp
        from transformers import AutoTokenizer

        from ratchet.hardware.tracing import with_head

        torchax = _import_torchax()
        tokenizer = AutoTokenizer.from_pretrained(source.path)
        names = list(tokenizer.model_input_names)
        weights, function = torchax.extract_jax(with_head(source, names))
        jitted = jax.jit(lambda w, *tensors: function(w, tensors))
        weight_shapes = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), weights)
        lengths = bucket_lengths(spec.sequence_buckets, ctx.sequence_length)
        buckets = []
        for batch in sorted(set(ctx.batch_sizes)):
            for length in lengths:
                shape = jax.ShapeDtypeStruct((batch, length), jnp.int32)
                exported = jax.export.export(jitted)(weight_shapes, *[shape] * len(names))
                (out_dir / f"b{batch}_s{length}.jaxexport").write_bytes(exported.serialize())
                buckets.append([batch, length])
        np.savez(out_dir / WEIGHTS_FILE, **{k: np.asarray(v) for k, v in weights.items()})
        (out_dir / INDEX_FILE).write_text(json.dumps({"input_names": names, "buckets": buckets}))
        tokenizer.save_pretrained(out_dir)
        return source.child(spec.label, out_dir, f"compile:{spec.target}", spec.settings(),
                            traits={"format": "stablehlo", "compiled_for": spec.target}, runtime="xla",
                            runtime_options={})


class XlaPredictor:
    """The smallest compiled bucket that holds the request; larger batches run in chunks of the largest bucket."""

    def __init__(self, variant: Variant, sequence_length: int) -> None:
        import jax
        from transformers import AutoTokenizer

        index = json.loads((variant.path / INDEX_FILE).read_text())
        self.names = index["input_names"]
        with np.load(variant.path / WEIGHTS_FILE) as stored:
            self.weights = {k: jax.numpy.asarray(stored[k]) for k in stored.files}
        self.calls = {(b, s): jax.export.deserialize(bytearray((variant.path / f"b{b}_s{s}.jaxexport").read_bytes()))
                      for b, s in index["buckets"]}
        self.tokenizer = AutoTokenizer.from_pretrained(variant.path)
        self.sequence_length = sequence_length

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        length = fitting_length(self.tokenizer, texts, sorted({s for _, s in self.calls}), self.sequence_length)
        batches = sorted({b for b, s in self.calls if s == length})
        batch = next((b for b in batches if b >= len(texts)), batches[-1])
        call = self.calls[(batch, length)]
        inputs = {k: v.astype(np.int32) for k, v in padded_inputs(self.tokenizer, texts, self.names, length).items()}
        return in_fixed_batches(lambda chunk: np.asarray(call.call(self.weights, *(chunk[n] for n in self.names))),
                                inputs, batch)


@RUNTIMES.register("xla")
class XlaRuntime:
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> XlaPredictor:
        return XlaPredictor(variant, shape.sequence_length)
