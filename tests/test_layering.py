"""The floor plan holds: no module imports from a floor above its own, and nothing imports the old top-level names.

Floors, lowest first, are ``ratchet.core.layout.FLOORS`` (README's layout table):
a module of ``hardware/`` may import ``ratchet.core`` and ``ratchet.hardware``,
never ``ratchet.evals``, ``ratchet.tasks``, ``ratchet.registry`` or
``ratchet.flows``. Every import statement counts, including the ones inside
functions (they run too) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ratchet.core.layout import FLOORS, PROJECT_ROOT


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, relative imports resolved against ``module``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def floor_of(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.index(parts[1]) if parts[0] == "ratchet" and len(parts) > 1 and parts[1] in FLOORS else None


def violations(source: str, module: str) -> list[str]:
    """Every import in ``source`` (the module ``module``) that reaches a higher floor or an old top-level name."""
    own = floor_of(module)
    out = []
    for line, name in imported_modules(source, module):
        top = name.split(".")[0]
        if top in FLOORS:
            out.append(f"{module}:{line} imports {name!r}: the installed name is 'ratchet.{name}'")
        target = floor_of(name)
        if own is not None and target is not None and target > own:
            out.append(f"{module}:{line} imports {name!r}, floor {FLOORS[target]!r} is above {FLOORS[own]!r}")
    return out


def project_modules() -> list[tuple[Path, str]]:
    """Every module of every floor, with its installed name."""
    modules = []
    for floor in FLOORS:
        for path in sorted((PROJECT_ROOT / floor).rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            modules.append((path, ".".join(["ratchet", *parts[:-1]] if parts[-1] == "__init__" else ["ratchet", *parts])))
    return modules


def test_every_floor_has_modules() -> None:
    found = {name.split(".")[1] for _, name in project_modules()}
    assert found == set(FLOORS)


@pytest.mark.parametrize("floor", FLOORS)
def test_no_module_imports_from_a_higher_floor(floor: str) -> None:
    problems = [v for path, name in project_modules() if name.split(".")[1] == floor
                for v in violations(path.read_text(), name)]
    assert not problems, "\n".join(problems)


def test_tests_use_the_installed_names() -> None:
    problems = [v for path in sorted((PROJECT_ROOT / "tests").glob("*.py"))
                for v in violations(path.read_text(), f"tests.{path.stem}")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from ratchet.flows.spec import PipelineSpec", "ratchet.hardware.compile", "floor 'flows' is above 'hardware'"),
    ("def f():\n    import ratchet.tasks.gate", "ratchet.evals.rubric", "floor 'tasks' is above 'evals'"),
    ("from ..tasks import gate", "ratchet.hardware.backends", "floor 'tasks' is above 'hardware'"),
    ("from tasks.variant import Variant", "ratchet.flows.cli", "the installed name is 'ratchet.tasks.variant'"),
])
def test_the_check_catches_upward_and_old_style_imports(source: str, module: str, expected: str) -> None:
    found = violations(source, module)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(("source", "module"), [
    ("from ratchet.core.variant import Variant", "ratchet.flows.cli"),
    ("from ratchet.hardware.parity import row_cosines", "ratchet.evals.scorers.fidelity"),
    ("from . import stats", "ratchet.hardware.benchmark.worker"),
    ("import numpy as np", "ratchet.core.variant"),
])
def test_the_check_allows_imports_from_the_same_or_lower_floors(source: str, module: str) -> None:
    assert violations(source, module) == []
