"""Techniques whose packages live in an isolated environment: ``apply`` runs there, in a subprocess.

The parent writes the step's spec, the source variant and the context (tuning
texts, sequence length, hardware) as a job file; this module's ``__main__``
runs the technique inside the environment's interpreter and answers with the
new variant's description. Progress comes back as JSON lines, so the
pipeline's bars keep moving. The working directory is a scratch folder:
some quantization libraries write logs into it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.environments import emit, read_job, run_module, write_result
from ratchet.tasks.techniques import Technique, TechniqueContext, TechniqueSpec, technique_for

MODULE = "ratchet.tasks.techniques._isolated"


def apply(technique: Technique, spec: TechniqueSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
    """``technique.apply``, in the technique's environment when it declares one."""
    env = getattr(technique, "environment", None)
    if env is None:
        return technique.apply(spec, source, out_dir, ctx)
    job = {"kind": spec.kind, "spec": spec.model_dump(mode="json"), "source": source.model_dump(mode="json"),
           "out_dir": str(out_dir), "texts": ctx.texts, "sequence_length": ctx.sequence_length,
           "hardware": ctx.hardware.model_dump()}
    with tempfile.TemporaryDirectory(prefix="ratchet-technique-") as scratch:
        made = run_module(env.name, MODULE, job, out_dir.parent / f"{out_dir.name}.job.json",
                          on_message=lambda m: ctx.progress(m["phase"], m["done"], m["total"]), cwd=Path(scratch))
    return Variant.model_validate(made)


def _main(argv: list[str]) -> None:
    job_path, job = read_job(argv)
    technique = technique_for(job["kind"])
    spec = type(technique).spec_type.model_validate(job["spec"])

    def report(phase: str, done: int, total: int) -> None:
        emit({"phase": phase, "done": done, "total": total})

    ctx = TechniqueContext(job["texts"], job["sequence_length"], HardwareSpec(**job["hardware"]), report)
    variant = technique.apply(spec, Variant.model_validate(job["source"]), Path(job["out_dir"]), ctx)
    write_result(job_path, variant.model_dump(mode="json"))


if __name__ == "__main__":
    _main(sys.argv)
