"""Isolated environments: a real venv is built, fingerprinted, rebuilt when its declaration changes, and runs
Ratchet's own worker modules with its own interpreter."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratchet.core.plugins import Registry
from ratchet.hardware import environments
from ratchet.hardware.environments import Environment, EnvironmentBuildError, WorkerError, build, python_for, run_module

# A tiny package that the pipeline's own environment does not have: its presence proves isolation.
MARKER_PACKAGE = "pyjokes==0.8.3"


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry[Environment]]:
    """A registry of test environments under a temporary ``RATCHET_ENVS`` (one venv build per module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RATCHET_ENVS", str(tmp_path_factory.mktemp("envs")))
        registry: Registry[Environment] = Registry("environment")
        patch.setattr(environments, "ENVIRONMENTS", registry)
        yield registry


def declare(registry: Registry[Environment], name: str, *requirements: str) -> Environment:
    env = Environment(name, requirements, "test")
    registry.register(name)(env)
    return env


@pytest.fixture(scope="module")
def built(envs: Registry[Environment]) -> Environment:
    env = declare(envs, "jokes", MARKER_PACKAGE)
    assert not env.is_built() and "not built yet" in env.describe()
    lines: list[str] = []
    python = build(env, log=lines.append)
    assert python == env.python and env.is_built() and any("built" in line for line in lines)
    return env


def test_a_built_environment_has_its_packages_and_the_worker_requirements_only_there(built: Environment) -> None:
    marker = json.loads((built.path / environments.MARKER).read_text())
    assert marker["fingerprint"] == built.fingerprint
    packages = {line.split("==")[0].lower() for line in marker["packages"]}
    assert {"pyjokes", "numpy", "pydantic"} <= packages
    assert "torch" not in packages and "prefect" not in packages
    with pytest.raises(ImportError):
        __import__("pyjokes")  # isolation: not in the pipeline's own environment


def test_run_module_uses_the_environments_interpreter_and_reports_messages(built: Environment, tmp_path: Path) -> None:
    messages: list[dict] = []
    run_module("jokes", "tests.env_probe", {"package": "pyjokes"}, tmp_path / "job.json", messages.append)
    result = json.loads((tmp_path / "job.result.json").read_text())
    assert result["executable"].startswith(str(built.path)) and result["version"] == "0.8.3"
    assert messages == [{"phase": "probe", "done": 1, "total": 1}]


def test_a_failing_worker_raises_its_last_error_line_and_keeps_stderr(built: Environment, tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="in environment 'jokes'.*PackageNotFoundError"):
        run_module("jokes", "tests.env_probe", {"package": "not-installed-anywhere"}, tmp_path / "job.json")
    assert "Traceback" in (tmp_path / "job.stderr.txt").read_text()


def test_changing_the_declaration_makes_it_stale_and_a_use_rebuilds_it(envs: Registry[Environment]) -> None:
    old = declare(envs, "jokes2", MARKER_PACKAGE)
    build(old)
    newer = Environment("jokes2", (MARKER_PACKAGE, "six==1.16.0"), "test")
    assert newer.fingerprint != old.fingerprint and not newer.is_built()
    build(newer)
    assert newer.is_built() and not old.is_built()


def test_a_failed_build_names_pip_error_and_leaves_nothing_half_built(envs: Registry[Environment]) -> None:
    env = declare(envs, "broken", "this-package-does-not-exist-ratchet==0.0.1")
    with pytest.raises(EnvironmentBuildError, match="building environment 'broken' failed"):
        build(env)
    assert not env.is_built() and not env.path.exists()


def test_no_environment_means_this_interpreter() -> None:
    assert python_for(None) == sys.executable
