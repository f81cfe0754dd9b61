"""Assertions shared by the CLI bad-input tests: exit code, one ``ratchet:`` line, nothing written.

A plain module beside the tests (not a ``tests.`` import) because pytest puts ``tests/`` itself on
``sys.path`` when it runs from a fresh clone; ``tests`` is not a package.
"""

from __future__ import annotations

from pathlib import Path

from ratchet.flows.cli import main


def exit_code(argv: list[str]) -> int | str | None:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors leave through SystemExit
        return exc.code


def assert_nothing_written(tmp: Path) -> None:
    assert not (tmp / "ml.db").exists(), "an MLflow store was created"
    assert not (tmp / "work").exists(), "the workdir was created"
    assert not (tmp / "mlruns").exists() and not (tmp / ".ratchet").exists()


def assert_one_error_line(err: str, fragment: str) -> None:
    assert err.startswith("ratchet:"), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert fragment in err, err
