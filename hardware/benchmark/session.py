"""A variant kept loaded and warm in a worker process of its own, measuring latency blocks on demand.

A paired comparison (``paired.py``) needs two variants alive at once, each in
its own process (their allocators, thread pools and compiled kernels must not
share one), answering "run a block of N queries now" in turn. The worker is
``ratchet.hardware.benchmark.worker`` in serve mode: it loads the variant,
warms it up, says it is ready, then runs one block per command read from its
standard input. While one side runs a block the other waits on its input, idle,
so the two never compete for the CPU.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ratchet.core.variant import Variant
from ratchet.hardware.environments import MESSAGE, WorkerError, spawn

WORKER = "ratchet.hardware.benchmark.worker"


class WorkerSession:
    """One variant served by one worker process; use as a context manager.

    The process starts loading at once; ``wait_ready`` waits for it (so two sessions load side by side, and
    only their blocks take turns).
    """

    def __init__(self, variant: Variant, job: dict[str, Any], log_dir: Path) -> None:
        self.variant = variant
        log_dir.mkdir(parents=True, exist_ok=True)
        self.job_path = log_dir / f"{variant.name}.serve.json"
        self.job_path.write_text(json.dumps({**job, "variant": variant.model_dump(mode="json"), "serve": True}))
        self.stderr_path = log_dir / f"{variant.name}.serve.stderr.txt"
        self._stderr = self.stderr_path.open("w")
        self.proc = spawn(variant.environment, WORKER, [str(self.job_path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=self._stderr)
        self.ready: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        """Until the variant is loaded and warm; what it reported (load time, the threads and cores it uses)."""
        if not self.ready:
            self.ready = self._reply()
        return self.ready

    def block(self, batch_size: int, queries: int) -> list[float]:
        """Run ``queries`` queries of ``batch_size`` now; their latencies in seconds."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "block", "batch_size": batch_size, "queries": queries}) + "\n")
        self.proc.stdin.flush()
        return self._reply()["latencies_s"]

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MESSAGE):
                message = json.loads(line.removeprefix(MESSAGE))
                if "phase" not in message:  # progress lines are not replies
                    return message
        self.proc.wait()
        self._stderr.flush()
        lines = [ln for ln in self.stderr_path.read_text().splitlines() if ln.strip()]
        raise WorkerError(f"the worker serving {self.variant.name!r} exited ({self.proc.returncode}): "
                          f"{lines[-1].strip() if lines else 'no error output'}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # end of input: the worker's loop ends and it exits
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> "WorkerSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
