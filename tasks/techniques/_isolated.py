"""Techniques whose packages live in an isolated environment: ``apply`` runs there, in a subprocess.

The parent writes the step's spec, the source variant and the context (tuning
texts, sequence length, hardware) as a job file; this module's ``__main__``
runs the technique inside the environment's interpreter and answers with the
new variant's description. Progress comes back as JSON lines, so the
pipeline's bars keep moving. The working directory is a scratch folder:
some quantization libraries write logs into it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from hardware.environments import emit, run_module
from hardware.profile import HardwareSpec
from registry.plugins import import_submodules
from tasks.techniques import Technique, TechniqueContext, TechniqueSpec, technique_for
from tasks.variant import Variant

MODULE = "tasks.techniques._isolated"


def apply(technique: Technique, spec: TechniqueSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
    """``technique.apply``, in the technique's environment when it declares one."""
    env = getattr(technique, "environment", None)
    if env is None:
        return technique.apply(spec, source, out_dir, ctx)
    job = {"kind": spec.kind, "spec": spec.model_dump(mode="json"), "source": source.model_dump(mode="json"),
           "out_dir": str(out_dir), "texts": ctx.texts, "sequence_length": ctx.sequence_length,
           "hardware": ctx.hardware.model_dump()}
    job_path = out_dir.parent / f"{out_dir.name}.job.json"
    with tempfile.TemporaryDirectory(prefix="ratchet-technique-") as scratch:
        run_module(env.name, MODULE, job, job_path, on_message=lambda m: ctx.progress(m["phase"], m["done"], m["total"]),
                   cwd=Path(scratch))
    return Variant.model_validate_json(job_path.with_name(job_path.name.removesuffix(".json") + ".result.json").read_text())


def _main(job_path: Path) -> None:
    import_submodules("tasks.techniques")
    job = json.loads(job_path.read_text())
    technique = technique_for(job["kind"])
    spec = type(technique).spec_type.model_validate(job["spec"])

    def report(phase: str, done: int, total: int) -> None:
        emit({"phase": phase, "done": done, "total": total})

    ctx = TechniqueContext(job["texts"], job["sequence_length"], HardwareSpec(**job["hardware"]), report)
    variant = technique.apply(spec, Variant.model_validate(job["source"]), Path(job["out_dir"]), ctx)
    job_path.with_name(job_path.name.removesuffix(".json") + ".result.json").write_text(variant.model_dump_json())


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
