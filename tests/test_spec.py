"""Tests for flows.spec: spec parsing, one-line validation errors, and the I/O preflight checks."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ratchet.flows.spec import PipelineSpec, Prepared, SpecError, load_spec, parse_spec, preflight
from ratchet.tasks.techniques.cast import CastSpec
from ratchet.tasks.techniques.int8_dynamic import Int8DynamicSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "examples" / "minilm-support.yaml"
DATASET = ROOT / "evals" / "data" / "support_faq.json"


@pytest.fixture(scope="module")
def _default_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_SPEC.read_text())


@pytest.fixture
def base(_default_data: dict[str, Any]) -> dict[str, Any]:
    """A fresh, mutable copy of the example spec, with the dataset made absolute."""
    data = copy.deepcopy(_default_data)
    data["workload"]["dataset"] = str(DATASET)
    return data


def spec_error(data: Any) -> str:
    """The SpecError message parse_spec raises for ``data`` (fails the test if it parses)."""
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return str(info.value)


def assert_one_line(msg: str, *fragments: str) -> None:
    """A user-facing error is a single line that contains every expected fragment."""
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


# --- the default spec -------------------------------------------------------------------------


def test_default_spec_parses_and_dataset_becomes_absolute() -> None:
    spec = load_spec(DEFAULT_SPEC)
    assert isinstance(spec, PipelineSpec)
    dataset = Path(spec.workload.dataset)
    assert dataset.is_absolute()
    assert dataset == DATASET.resolve()
    assert dataset.is_file()
    assert [type(s) for s in spec.steps] == [CastSpec, Int8DynamicSpec]
    assert [s.label for s in spec.steps] == ["fp16", "int8-dynamic"]
    assert spec.objective == "p95_ms"
    assert spec.gate_policy().thresholds == {"recall_at_5": 0.80, "mrr": 0.60, "fidelity": 0.98}
    assert [t.bound for t in spec.targets] == [
        ("max_drop", 0.01), ("min", 0.80), ("min_improvement", 0.25), ("max", 4000.0)
    ]
    # A Hub id is left alone (only local-looking ids are rebased).
    assert spec.model.id == "sentence-transformers/all-MiniLM-L6-v2"


def test_parse_spec_without_base_dir_keeps_relative_dataset(_default_data: dict[str, Any]) -> None:
    spec = parse_spec(copy.deepcopy(_default_data))
    assert spec.workload.dataset == "../evals/data/support_faq.json"


def test_local_model_id_is_rebased_on_the_spec_folder(tmp_path: Path, base: dict[str, Any]) -> None:
    """A './folder' model id and a relative dataset are relative to the spec file, not the shell."""
    sub = tmp_path / "specs"
    sub.mkdir()
    base["model"]["id"] = "./my-model"
    base["workload"]["dataset"] = "data/faq.json"
    path = sub / "spec.yaml"
    path.write_text(yaml.safe_dump(base))
    spec = load_spec(path)
    assert spec.model.id == str((sub / "my-model").resolve())
    assert spec.workload.dataset == str((sub / "data" / "faq.json").resolve())


def test_relative_workdir_stays_relative_to_where_ratchet_runs(tmp_path: Path, base: dict[str, Any]) -> None:
    """Inputs are relative to the spec file; outputs (the workdir) to the working directory."""
    base["workdir"] = "work"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(base))
    assert load_spec(path).workdir == "work"


# --- parse_spec: one-line errors naming the field and what was expected ------------------------


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation setting a dotted path (list indices allowed) to ``value``."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _append(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data[path].append(value)

    return mutate


def _zero_weights(data: dict[str, Any]) -> None:
    for crit in data["rubric"]["criteria"]:
        crit["weight"] = 0


BAD_SPECS: list[tuple[str, Mutation, tuple[str, ...]]] = [
    ("unknown step kind", _set("steps.1.kind", "int8_dynamc"),
     ("steps", "unknown step kind 'int8_dynamc'", "did you mean 'int8_dynamic'")),
    ("unknown scorer", _set("rubric.criteria.1.scorer", "mrrr"),
     ("rubric.criteria.1.scorer", "unknown scorer 'mrrr'", "did you mean 'mrr'")),
    ("weights sum to zero", _zero_weights, ("rubric", "weights", "positive")),
    ("target on unknown metric", _append("targets", {"metric": "p96_ms", "max": 5}),
     ("targets.4.metric", "unknown metric 'p96_ms'", "did you mean", "'p95_ms'")),
    ("target with two bounds", _append("targets", {"metric": "p95_ms", "max": 5, "min": 1}),
     ("targets.4", "exactly one of", "max", "min")),
    ("target with no bound", _append("targets", {"metric": "p95_ms"}),
     ("targets.4", "exactly one of", "none")),
    ("server without target_qps", _set("workload.scenario", "server"), ("workload", "target_qps")),
    ("negative price", _set("hardware.price_per_hour", -1), ("hardware.price_per_hour", "greater than or equal to 0", "-1")),
    ("sequence_length too small", _set("workload.sequence_length", 4), ("workload.sequence_length", "8", "got 4")),
    ("sequence_length too large", _set("workload.sequence_length", 10_000), ("workload.sequence_length", "8192", "10000")),
    ("unknown top-level field", _set("colour", "blue"), ("colour", "Extra inputs are not permitted")),
    ("bad step setting", _set("steps.0.dtype", "fp8"), ("steps.0", "dtype", "'fp16'", "'bf16'", "'fp8'")),
    ("duplicate step names", _append("steps", {"kind": "int8_dynamic", "name": "int8-dynamic"}),
     ("steps", "unique", "int8-dynamic")),
    ("repeated unnamed kinds", lambda d: d.update(steps=[{"kind": "int8_dynamic"}, {"kind": "int8_dynamic"}]),
     ("steps", "unique", "int8_dynamic")),
    ("unknown objective", _set("objective", "p96_ms"), ("objective", "unknown metric 'p96_ms'", "'p95_ms'")),
    ("objective not a speed metric", _set("objective", "rubric_score"), ("objective", "'rubric_score'")),
    ("min_improvement on a size metric", _append("targets", {"metric": "size_mb", "min_improvement": 0.1}),
     ("targets.4", "min_improvement", "size_mb")),
    ("recall k of zero", _set("rubric.criteria.0.params", {"k": 0}), ("rubric.criteria.0", "k", "greater than or equal to 1")),
    ("unknown scorer param", _set("rubric.criteria.1.params", {"k": 5}), ("rubric.criteria.1", "k", "Extra inputs")),
    ("unknown compile target", _set("compile", [{"target": "onnx"}]), ("compile.0", "unknown compile target 'onnx'", "did you mean 'onnxruntime'")),
    ("bad registry model name", _set("registry.model_name", "has space"), ("registry.model_name", "has space")),
    ("reference row on an unknown step", _set("reference", {"name": "seed", "rows": [
        {"step": "baseline", "p95_ms": 10, "cost_per_request": 1, "rubric_score": 0.9},
        {"step": "int8_dynamc", "p95_ms": 5, "cost_per_request": 1, "rubric_score": 0.9}]}),
     ("reference.rows.1.step", "unknown step 'int8_dynamc'", "did you mean")),
    ("reference without its baseline", _set("reference", {"name": "seed", "rows": [
        {"step": "int8_dynamic", "p95_ms": 10, "cost_per_request": 1, "rubric_score": 0.9},
        {"step": "int8_dynamic", "p95_ms": 5, "cost_per_request": 1, "rubric_score": 0.9}]}),
     ("reference", "first row is the baseline")),
    ("trace on a bad traffic setting", _set("workload.traffic", {"unique_share": 2}),
     ("workload.traffic.unique_share", "less than or equal to 1")),
]


@pytest.mark.parametrize(("mutate", "fragments"), [(m, f) for _, m, f in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS])
def test_parse_spec_error_is_one_line_naming_field(base: dict[str, Any], mutate: Mutation, fragments: tuple[str, ...]) -> None:
    mutate(base)
    assert_one_line(spec_error(base), *fragments)


def test_base_fixture_is_valid(base: dict[str, Any]) -> None:
    """Guard: every error above comes from its mutation, not from the fixture."""
    assert parse_spec(base).name == "minilm-support"


def test_error_names_the_source(base: dict[str, Any]) -> None:
    base["objective"] = "p96_ms"
    with pytest.raises(SpecError) as info:
        parse_spec(base, source="my.yaml")
    assert str(info.value).startswith("my.yaml: objective: ")


def test_non_mapping_spec_is_rejected() -> None:
    assert_one_line(spec_error(["name", "x"]), "expected a mapping", "list")


def test_multiple_errors_are_counted_on_one_line(base: dict[str, Any]) -> None:
    base["hardware"]["price_per_hour"] = -1
    base["workload"]["sequence_length"] = 4
    assert_one_line(spec_error(base), "[+1 more]")


def test_rubric_criterion_can_be_a_target_metric(base: dict[str, Any]) -> None:
    base["targets"].append({"metric": "mrr", "min": 0.5})
    assert parse_spec(base).targets[-1].metric == "mrr"


def test_model_level_error_has_no_doubled_prefix(base: dict[str, Any]) -> None:
    base["targets"].append({"metric": "p96_ms", "max": 5})
    assert spec_error(base).startswith("spec: targets.4.metric: ")


# --- load_spec: file problems ------------------------------------------------------------------


def test_malformed_yaml_reports_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: minilm\nmodel: [unclosed\n  id: x\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(str(info.value), str(path), "malformed YAML", "line 3")


def test_missing_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(str(info.value), "nope.yaml", "does not exist")


def test_empty_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(str(info.value), "expected a mapping")


def test_non_utf8_spec_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00name: x\n")
    with pytest.raises(SpecError):
        load_spec(path)


# --- preflight: model folder and dataset -------------------------------------------------------


def preflight_error(data: dict[str, Any]) -> str:
    spec = parse_spec(data)
    with pytest.raises(SpecError) as info:
        preflight(spec)
    msg = str(info.value)
    assert_one_line(msg, f"{spec.name}: ")
    return msg


def test_preflight_default_spec_finds_model_and_dataset() -> None:
    prepared = preflight(load_spec(DEFAULT_SPEC))
    assert isinstance(prepared, Prepared)
    assert (prepared.model_path / "config.json").is_file()
    assert any(prepared.model_path.rglob("*.safetensors"))
    assert len(prepared.workload.corpus_ids) > 0
    assert prepared.workload.split_indices("tuning") and prepared.workload.split_indices("heldout")


def test_preflight_missing_model_folder(tmp_path: Path, base: dict[str, Any]) -> None:
    base["model"]["id"] = str(tmp_path / "missing")
    assert_one_line(preflight_error(base), "model.id", "missing", "does not exist")


def test_preflight_folder_without_config(tmp_path: Path, base: dict[str, Any]) -> None:
    folder = tmp_path / "notamodel"
    folder.mkdir()
    (folder / "README.md").write_text("hello")
    base["model"]["id"] = str(folder)
    assert_one_line(preflight_error(base), "model.id", "config.json")


def test_preflight_folder_with_only_pickled_weights(tmp_path: Path, base: dict[str, Any]) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    base["model"]["id"] = str(folder)
    assert_one_line(preflight_error(base), "model.id", "safetensors")


def test_preflight_accepts_config_plus_safetensors(tmp_path: Path, base: dict[str, Any]) -> None:
    """The folder check only looks for files; a nested safetensors file counts."""
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "model.safetensors").write_bytes(b"")
    base["model"]["id"] = str(folder)
    assert preflight(parse_spec(base)).model_path == folder.resolve()


def test_preflight_missing_dataset(tmp_path: Path, base: dict[str, Any]) -> None:
    base["workload"]["dataset"] = str(tmp_path / "nope.json")
    assert_one_line(preflight_error(base), "workload.dataset", "nope.json", "does not exist")


def test_preflight_dataset_not_json(tmp_path: Path, base: dict[str, Any]) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{corpus: oops")
    base["workload"]["dataset"] = str(path)
    assert_one_line(preflight_error(base), "workload.dataset", "not valid JSON")


def _dataset(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "corpus": [{"id": "d1", "text": "one"}, {"id": "d2", "text": "two"}],
        "queries": [
            {"id": "q1", "text": "first", "relevant": ["d1"], "split": "tuning"},
            {"id": "q2", "text": "second", "relevant": ["d2"], "split": "heldout"},
        ],
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (_dataset(queries=[{"id": "q1", "text": "a", "relevant": ["d9"], "split": "tuning"},
                           {"id": "q2", "text": "b", "relevant": ["d1"], "split": "heldout"}]),
         ("workload.dataset", "unknown corpus ids", "d9")),
        (_dataset(queries=[{"id": "q1", "text": "a", "relevant": ["d1"], "split": "tuning"}]),
         ("workload.dataset", "both splits")),
        (_dataset(corpus=[]), ("workload.dataset", "corpus")),
        (_dataset(queries=[{"id": "q1", "text": "a", "relevant": ["d1"], "split": "test"}]),
         ("workload.dataset", "split")),
        ([1, 2, 3], ("workload.dataset",)),
    ],
    ids=["unknown-relevant-id", "one-split-only", "empty-corpus", "bad-split-name", "top-level-list"],
)
def test_preflight_dataset_wrong_shape(tmp_path: Path, base: dict[str, Any], content: Any, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(content))
    base["workload"]["dataset"] = str(path)
    assert_one_line(preflight_error(base), *fragments)


def test_preflight_accepts_minimal_dataset(tmp_path: Path, base: dict[str, Any]) -> None:
    """Guard for the shape tests: the unmodified minimal dataset passes."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps(_dataset()))
    base["workload"]["dataset"] = str(path)
    prepared = preflight(parse_spec(base))
    assert prepared.workload.corpus_ids == ["d1", "d2"]
