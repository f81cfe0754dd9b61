"""What ``pip install`` puts into site-packages: one import name, ``ratchet``, holding every floor and its data.

PyPI has distributions that install top-level ``evals``, ``hardware``,
``registry``, ``tasks`` and ``flows``; Ratchet's folders are installed as
``ratchet.<folder>`` so that none of them can shadow, or be shadowed by, another
distribution.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ratchet.core.layout import FLOORS, PROJECT_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel, built from a copy of the checkout (setuptools writes its build folder into the source tree)."""
    source, out = tmp_path_factory.mktemp("source") / "ratchet", tmp_path_factory.mktemp("wheel")
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".ratchet", "build", "mlruns", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    str(source), "-w", str(out)], check=True, capture_output=True, timeout=300)
    return zipfile.ZipFile(next(out.glob("ratchet-*.whl")))


def test_the_wheel_installs_only_the_ratchet_name(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ratchet"}
    top_level = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["ratchet"]


def test_every_module_and_data_file_of_every_floor_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    """The package list in pyproject.toml is explicit (a package-dir mapping needs it): nothing may be left out."""
    shipped = set(wheel.namelist())
    expected = {f"ratchet/{path.relative_to(PROJECT_ROOT).as_posix()}"
                for floor in FLOORS for path in (PROJECT_ROOT / floor).rglob("*")
                if path.suffix in (".py", ".json") and "__pycache__" not in path.parts}
    assert expected - shipped == set()


def test_the_console_script_points_into_the_namespace(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "ratchet = ratchet.flows.cli:main" in wheel.read(entry_points).decode()


def test_no_module_of_the_checkout_is_importable_under_an_old_top_level_name() -> None:
    """From outside the checkout, the folders are not importable as top-level packages (they used to be)."""
    probe = "import importlib.util; print([n for n in %r if importlib.util.find_spec(n)])" % (FLOORS,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path("/"), timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
