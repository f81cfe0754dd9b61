"""Bad input to the ``ratchet`` CLI: exit code 2, one ``ratchet:`` line on stderr, nothing computed or written.

Every case runs in-process (with the pipeline entry point replaced by a tripwire) and as a
real subprocess, so an escaping exception would show up as a traceback.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ratchet.flows import cli
from ratchet.flows.cli import DEFAULT_SPEC
from ratchet.flows.exit_codes import INVALID as EXIT_INVALID

from cli_checks import assert_nothing_written, assert_one_error_line, exit_code

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "evals" / "data" / "support_faq.json"


@dataclass(frozen=True)
class Case:
    """A bad input: how to build it in a folder, the CLI arguments, and a fragment the error must contain."""

    name: str
    build: Callable[[Path], list[str]]
    fragment: str


def _spec_data(tmp: Path) -> dict[str, Any]:
    """The example spec made self-contained in ``tmp``: absolute dataset, tracking and workdir under ``tmp``."""
    data = copy.deepcopy(yaml.safe_load(DEFAULT_SPEC.read_text()))
    data["workload"]["dataset"] = str(DATASET)
    data["registry"]["tracking_uri"] = f"sqlite:///{tmp / 'ml.db'}"
    data["workdir"] = str(tmp / "work")
    return data


def _spec_file(tmp: Path, mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
    data = _spec_data(tmp)
    if mutate is not None:
        mutate(data)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run_with(mutate: Callable[[dict[str, Any]], None]) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", str(_spec_file(tmp, mutate))]


def _malformed_yaml(tmp: Path) -> list[str]:
    path = _spec_file(tmp)
    path.write_text(path.read_text() + "steps: [{kind: cast\n")
    return ["run", str(path)]


def _non_model_folder(tmp: Path) -> list[str]:
    folder = tmp / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("no config here")
    return _run_with(lambda d: d["model"].update(id=str(folder)))(tmp)


def _bad_dataset(tmp: Path) -> list[str]:
    path = tmp / "data.json"
    path.write_text('{"corpus": [')
    return _run_with(lambda d: d["workload"].update(dataset=str(path)))(tmp)


def _zero_weights(d: dict[str, Any]) -> None:
    for crit in d["rubric"]["criteria"]:
        crit["weight"] = 0


def _unknown_flag(tmp: Path) -> list[str]:
    return ["run", "--no-such-flag", str(_spec_file(tmp))]


CASES = [
    Case("malformed-yaml", _malformed_yaml, "malformed YAML at line"),
    Case("unknown-step-kind", _run_with(lambda d: d["steps"][1].update(kind="int8_dynamc")), "did you mean 'int8_dynamic'"),
    Case("unknown-scorer", _run_with(lambda d: d["rubric"]["criteria"][1].update(scorer="mrrr")), "did you mean 'mrr'"),
    Case("missing-model-folder", _run_with(lambda d: d["model"].update(id="./no-such-model")), "does not exist"),
    Case("non-model-folder", _non_model_folder, "config.json"),
    Case("dataset-not-json", _bad_dataset, "not valid JSON"),
    Case("rubric-weights-zero", _run_with(_zero_weights), "weights"),
    Case("target-unknown-metric", _run_with(lambda d: d["targets"].append({"metric": "p96_ms", "max": 5})), "'p95_ms'"),
    Case("unknown-cli-flag", _unknown_flag, "--no-such-flag"),
    Case("missing-spec-file", lambda tmp: ["validate", str(tmp / "nope.yaml")], "does not exist"),
    Case("no-command", lambda tmp: [], "command"),
]
# One case per layer that can reject input (YAML, spec model, model preflight, dataset preflight, argparse);
# a real interpreter costs ~2 s of CPU each, so the subprocess check is not repeated for every case.
SUBPROCESS_CASES = [c for c in CASES if c.name in
                    {"malformed-yaml", "unknown-step-kind", "non-model-folder", "dataset-not-json", "unknown-cli-flag"}]


@pytest.fixture
def no_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tripwire: if validation lets bad input through, fail instead of running the whole pipeline."""

    def tripwire(*args: object, **kwargs: object) -> int:
        pytest.fail("bad input reached the pipeline")

    monkeypatch.setattr(cli, "_run", tripwire)


@pytest.mark.usefixtures("no_pipeline")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_in_process(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = case.build(tmp_path)
    capsys.readouterr()
    assert exit_code(argv) == EXIT_INVALID
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, case.fragment)
    assert captured.out == ""
    assert_nothing_written(tmp_path)


@dataclass(frozen=True)
class SubprocessResult:
    folder: Path
    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SubprocessResult]:
    """The subprocess cases through a real interpreter, all started at once (each pays the import cost in parallel)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = {}
    for case in SUBPROCESS_CASES:
        folder = tmp_path_factory.mktemp(case.name)
        argv = case.build(folder)
        started[case.name] = (folder, subprocess.Popen([sys.executable, "-m", "ratchet.flows.cli", *argv], cwd=folder, env=env,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for name, (folder, proc) in started.items():
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        results[name] = SubprocessResult(folder, proc.returncode, err)
    return results


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.name for c in SUBPROCESS_CASES])
def test_bad_input_subprocess(case: Case, subprocess_results: dict[str, SubprocessResult]) -> None:
    """The same inputs through a real interpreter: no traceback escapes, exit code 2."""
    result = subprocess_results[case.name]
    assert result.returncode == EXIT_INVALID, result.stderr
    assert_one_error_line(result.stderr, case.fragment)
    assert_nothing_written(result.folder)


def test_non_utf8_spec_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00name: x\n")
    proc = subprocess.run([sys.executable, "-m", "ratchet.flows.cli", "validate", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_INVALID
    assert_one_error_line(proc.stderr, str(path))


@pytest.mark.usefixtures("no_pipeline")
def test_good_spec_in_tmp_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Guard: the spec the bad cases start from is valid, so each failure is the mutation's."""
    assert exit_code(["validate", str(_spec_file(tmp_path))]) == 0
    assert "valid" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


@pytest.mark.usefixtures("no_pipeline")
def test_validate_default_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["validate", str(DEFAULT_SPEC)]) == 0
    err = capsys.readouterr().err
    assert "valid" in err and "2 steps" in err and "4 targets" in err


def test_tracking_uri_flag_is_not_touched_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       no_pipeline: None) -> None:
    """--tracking-uri pointing at a fresh sqlite file: still nothing created when the spec is bad."""
    path = _spec_file(tmp_path, lambda d: d["rubric"]["criteria"][0].update(scorer="recal"))
    db = tmp_path / "flag.db"
    assert exit_code(["run", "--tracking-uri", f"sqlite:///{db}", str(path)]) == EXIT_INVALID
    assert_one_error_line(capsys.readouterr().err, "did you mean")
    assert not db.exists()
    assert_nothing_written(tmp_path)


HEAVY = ("torch", "transformers", "mlflow", "prefect", "onnxruntime", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], ["validate", "{bad}"], ["validate", "{good}"]],
                         ids=["help", "bad-spec", "good-spec"])
def test_fast_paths_import_no_heavy_package(argv: list[str], tmp_path: Path) -> None:
    """``--help``, ``validate`` and one-line input errors must answer in well under a second: they may not import
    torch, transformers, MLflow, Prefect, ONNX Runtime or matplotlib (seconds of imports between them)."""
    (tmp_path / "good").mkdir()
    bad = _spec_file(tmp_path, lambda d: d["steps"][0].update(kind="int8_dynamc"))
    args = [a.format(bad=bad, good=_spec_file(tmp_path / "good")) for a in argv]
    probe = ("import sys\nfrom ratchet.flows.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
