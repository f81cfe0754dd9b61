"""Benchmark scripts: whole-pipeline programs that measure variants side by side in one run and print ratios.

They run the pipeline's own functions (``run_pipeline``, or a technique chain's
steps) on a scratch copy of a spec: variants, measurements and an MLflow store
in a fresh temporary folder, so a benchmark never touches a user's runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ratchet.flows.spec import PipelineSpec, Prepared, preflight, with_quick_measurement


def scratch(spec: PipelineSpec, quick: bool, prefix: str) -> tuple[Prepared, str]:
    """The spec prepared to run in a fresh temporary folder, and the MLflow tracking URI inside it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ratchet-{prefix}-"))
    spec = spec.model_copy(update={"workdir": str(workdir)})
    return preflight(with_quick_measurement(spec) if quick else spec), f"sqlite:///{workdir / 'mlruns.db'}"
