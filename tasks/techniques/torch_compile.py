"""Run the champion under ``torch.compile`` (inductor): same weights, fused kernels.

No weight changes, so nothing is copied: the candidate points at the champion's
folder and differs only in how the runtime runs it (``runtime_options``). Whether
compiling pays off depends on the model and the machine (for small fp32 models on a
few CPU cores, eager is often as fast), so the gate decides, as for any step.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ratchet.core.availability import Availability
from ratchet.core.model_tasks import model_task
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec


class TorchCompileSpec(TechniqueSpec):
    kind: Literal["torch_compile"] = "torch_compile"
    mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = Field(
        "default",
        description="torch.compile mode; max-autotune-no-cudagraphs benchmarks GEMM kernels while compiling "
        "(slow to start).",
    )
    dynamic: bool | None = Field(
        True,
        description="Symbolic shapes. True: one graph for every batch and sequence length; False: one graph per "
        "shape (torch falls back to eager past its recompile limit); None: static until a shape changes.",
    )


@TECHNIQUES.register("torch_compile")
class TorchCompile:
    spec_type: ClassVar[type[TechniqueSpec]] = TorchCompileSpec

    def availability(self, spec: TorchCompileSpec, source: Variant) -> Availability:
        if source.runtime != "torch":
            return Availability(False, f"torch_compile needs a PyTorch variant, the champion runs on {source.runtime!r}")
        if not model_task(source.task).traceable:
            return Availability(False, "for a causal LM, compile its decoding with kind kv_cache (cache: static, "
                                       "compile: true): generate needs fixed cache shapes")
        if source.runtime_options.get("compile"):
            return Availability(False, "the champion already runs under torch.compile")
        return Availability(True)

    def apply(self, spec: TorchCompileSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files, run compiled; ``out_dir`` stays empty because no weights change."""
        options = {**source.runtime_options, "compile": True, "compile_mode": spec.mode, "compile_dynamic": spec.dynamic}
        return source.child(spec.label, source.path, "torch_compile", spec.settings(), runtime_options=options)
