"""Isolated Python environments for plugins whose packages cannot share the pipeline's own.

Some backends and techniques need pins that would break the core: litert-torch
downgrades pydantic below what Prefect needs, GPT-QModel moves numpy. Such a
plugin declares an ``Environment`` (a name and its pip requirements) instead of
an optional extra. ``ratchet env build NAME``, or the first use, creates a venv
for it under ``$RATCHET_ENVS`` (default ``<repo>/.ratchet/envs``). The plugin's
work then runs as a subprocess with that venv's Python, with ``ratchet``
importable there (``source_path``), exchanging files and JSON: the same
boundary the benchmark already keeps between variants, and the one a Prefect
work pool per environment gives at scale.

A venv is built beside its final place and renamed into it when pip has
finished, under a file lock, so an interrupted or concurrent build never leaves
a half-installed environment behind. Its requirements are fingerprinted: an
environment whose declaration changed is rebuilt on next use.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.core.hashing import stable_hash
from ratchet.core.layout import FLOORS, PROJECT_ROOT
from ratchet.core.plugins import Registry

MARKER = "ratchet-env.json"
# What every environment needs to run Ratchet's own worker modules (job files, results, tokenizers).
WORKER_REQUIREMENTS = ("numpy>=2", "pydantic>=2.10,<3")
LogFn = Callable[[str], None]


class EnvironmentBuildError(RuntimeError):
    """An environment could not be built; the message carries pip's last error line."""


@dataclass(frozen=True)
class Environment:
    """A named set of pip requirements that lives in a venv of its own."""

    name: str
    requirements: tuple[str, ...]
    why: str  # one line: why these packages cannot live in the pipeline's environment
    index_urls: tuple[str, ...] = ()  # extra package indexes (NVIDIA's, AWS Neuron's) besides PyPI

    @property
    def all_requirements(self) -> list[str]:
        return [*WORKER_REQUIREMENTS, *self.requirements]

    @property
    def fingerprint(self) -> str:
        """Changes when the requirements or the interpreter change, so a stale venv is rebuilt."""
        return stable_hash([self.all_requirements, self.index_urls, sys.version_info[:2]])[:16]

    @property
    def path(self) -> Path:
        return envs_root() / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def is_built(self) -> bool:
        """Built with the current requirements (a marker written only after pip succeeded)."""
        try:
            marker = json.loads((self.path / MARKER).read_text())
        except (OSError, ValueError):
            return False
        return marker.get("fingerprint") == self.fingerprint and self.python.exists()

    def describe(self) -> str:
        return f"environment {self.name!r} ({self.path})" if self.is_built() else (
            f"environment {self.name!r} is not built yet (ratchet env build {self.name}; the first use builds it)")


ENVIRONMENTS: Registry[Environment] = Registry("environment")


def declare(name: str, requirements: tuple[str, ...], why: str, index_urls: tuple[str, ...] = ()) -> Environment:
    """Register an environment (called at import time by the plugin module that needs it)."""
    env = Environment(name, requirements, why, index_urls)
    ENVIRONMENTS.register(name)(env)
    return env


def envs_root() -> Path:
    return Path(os.environ.get("RATCHET_ENVS", PROJECT_ROOT / ".ratchet" / "envs")).expanduser().resolve()


@contextmanager
def _locked(env: Environment) -> Iterator[None]:
    envs_root().mkdir(parents=True, exist_ok=True)
    with open(envs_root() / f".{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(env: Environment, log: LogFn | None = None, force: bool = False) -> Path:
    """Create (or recreate) the venv of ``env``; returns its Python. Raises ``EnvironmentBuildError`` with pip's error."""
    say = log or (lambda _: None)
    with _locked(env):
        if env.is_built() and not force:
            return env.python
        staging = env.path.with_name(env.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        started = time.monotonic()
        say(f"creating venv for {env.name!r}")
        _run([sys.executable, "-m", "venv", str(staging)], env, say)
        python = str(staging / "bin" / "python")
        _run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env, say)
        say(f"pip install {' '.join(env.all_requirements)}")
        indexes = [arg for url in env.index_urls for arg in ("--extra-index-url", url)]
        _run([python, "-m", "pip", "install", "--quiet", *indexes, *env.all_requirements], env, say)
        frozen = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True).stdout.split()
        (staging / MARKER).write_text(json.dumps({
            "name": env.name, "fingerprint": env.fingerprint, "requirements": env.all_requirements,
            "built_s": round(time.monotonic() - started, 1), "packages": frozen,
        }, indent=1))
        shutil.rmtree(env.path, ignore_errors=True)
        staging.rename(env.path)
        say(f"built {env.name!r} in {time.monotonic() - started:.0f} s")
        return env.python


def _run(argv: list[str], env: Environment, say: LogFn) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines or ["no output"]
        raise EnvironmentBuildError(f"building environment {env.name!r} failed: {errors[-1].strip()}")


def python_for(name: str | None, log: LogFn | None = None) -> str:
    """The interpreter that runs work for environment ``name`` (None: this process's own), built on first use."""
    if name is None:
        return sys.executable
    env = ENVIRONMENTS.get(name)
    return str(env.python if env.is_built() else build(env, log))


MESSAGE = "@ratchet "  # prefix of a worker's messages on stdout; libraries print there too


def emit(message: dict) -> None:
    """Send ``message`` (progress) from a worker subprocess to its parent."""
    print(MESSAGE + json.dumps(message), flush=True)


class WorkerError(RuntimeError):
    """A worker subprocess failed; the message carries its last error line (its whole stderr is kept in a file)."""


# The job-file convention every worker module follows: ``<name>.json`` in, ``<name>.result.json`` out (written
# with ``write_result``), ``<name>.stderr.txt`` kept beside them when the worker fails.
def result_path(job_path: Path) -> Path:
    return job_path.with_name(job_path.name.removesuffix(".json") + ".result.json")


def read_job(argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """A worker's own side: the job file named on its command line, and the job."""
    job_path = Path(argv[1])
    return job_path, json.loads(job_path.read_text())


def write_result(job_path: Path, result: Any) -> None:
    result_path(job_path).write_text(json.dumps(result))


@functools.cache
def source_path() -> str:
    """A folder from which another interpreter imports this process's ``ratchet`` package.

    The floors install as ``ratchet.<folder>`` through a package-dir mapping that an isolated environment's
    interpreter knows nothing about; a folder holding ``ratchet/<floor>`` links to each floor's source makes
    ``python -m ratchet...`` work there, for an editable checkout and an installed wheel alike.
    """
    root = Path(tempfile.mkdtemp(prefix="ratchet-source-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / "ratchet").mkdir()
    for floor in FLOORS:
        (root / "ratchet" / floor).symlink_to(importlib.util.find_spec(f"ratchet.{floor}").submodule_search_locations[0])
    return str(root)


def spawn(env_name: str | None, module: str, args: list[str], log: LogFn | None = None, cwd: Path | None = None,
          **popen: Any) -> subprocess.Popen:
    """Start ``python -m module *args`` in environment ``env_name`` (text mode), with ``ratchet`` importable there.

    ``cwd`` (default: the checkout's root) is where libraries that write into the working directory put their files.
    """
    env = dict(os.environ)
    if env_name is not None:  # another interpreter: show it where ``ratchet`` is
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_path(), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen([python_for(env_name, log), "-m", module, *args], text=True, env=env,
                            cwd=cwd or PROJECT_ROOT, **popen)


def run_module(env_name: str | None, module: str, job: dict, job_path: Path,
               on_message: Callable[[dict], None] | None = None, log: LogFn | None = None,
               cwd: Path | None = None) -> Any:
    """Run ``python -m module job_path`` in environment ``env_name``, with ``job`` written to ``job_path``;
    return what the worker wrote with ``write_result`` (None if nothing).

    The worker reports progress with ``emit`` (handed to ``on_message``). On failure, its stderr is kept as
    ``<job>.stderr.txt`` and the last line raised.
    """
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(job))
    result_path(job_path).unlink(missing_ok=True)
    proc = spawn(env_name, module, [str(job_path)], log=log, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if on_message and line.startswith(MESSAGE):
            on_message(json.loads(line.removeprefix(MESSAGE)))
    stderr = proc.stderr.read()
    code = proc.wait()
    if code != 0:
        job_path.with_suffix(".stderr.txt").write_text(stderr)
        where = f" (in environment {env_name!r})" if env_name else ""
        if code < 0:  # killed (the kernel's OOM killer sends SIGKILL): no traceback, its last line says nothing
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            raise WorkerError(f"{module}{where} was killed by {name}" + (" (out of memory?)" if -code == 9 else ""))
        last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), "no error output")
        raise WorkerError(f"{module}{where} failed: {last.strip()}")
    done = result_path(job_path)
    return json.loads(done.read_text()) if done.exists() else None
