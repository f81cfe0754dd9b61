"""A worker module the environment tests run inside a built venv: which interpreter, which package version."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

from ratchet.hardware.environments import emit

if __name__ == "__main__":
    job_path = Path(sys.argv[1])
    job = json.loads(job_path.read_text())
    emit({"phase": "probe", "done": 1, "total": 1})
    result = {"executable": sys.executable, "version": version(job["package"])}
    job_path.with_name("job.result.json").write_text(json.dumps(result))
