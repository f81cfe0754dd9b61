"""The whole pipeline on the real MiniLM model, through the CLI, into a temporary MLflow store.

One quick run of the default spec is shared by the tests below (about two
minutes on two cores); what they assert is what landed in MLflow and what the
summary says, not what the code intended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "examples" / "minilm-support.yaml"

pytestmark = pytest.mark.slow


def run_cli(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "ratchet.flows.cli", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{home / 'ml.db'}"
    proc = run_cli(["--quick", "--tracking-uri", uri, "--summary-json", str(home / "summary.json")], home, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"home": home, "uri": uri, "proc": proc, "summary": json.loads((home / "summary.json").read_text())}


def nested_runs(client: MlflowClient, parent_id: str) -> dict[str, mlflow.entities.Run]:
    parent = client.get_run(parent_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.tags["ratchet.step"]: r for r in runs}


def test_summary_lists_baseline_first_and_every_step(store: dict) -> None:
    steps = store["summary"]["steps"]
    assert [s["step"] for s in steps] == ["baseline", "fp16", "int8-dynamic"]
    for step in steps:
        assert set(step["metrics"]) >= {"p50_ms", "p95_ms", "throughput_rps", "cost_per_1k", "rubric_score", "size_mb"}
        assert step["metrics"]["p95_ms"] >= step["metrics"]["p50_ms"] > 0
    assert store["summary"]["mlflow_run_id"]


def test_fp16_is_rejected_with_its_measured_ratio(store: dict) -> None:
    """Slower on CPUs without native fp16 (AMD EPYC here: 1.4x); about even on Sapphire Rapids (avx512_fp16):
    rejected either way, because the ratchet only takes a speed-up beyond noise."""
    fp16 = store["summary"]["steps"][1]
    assert fp16["decision"] == "rejected"
    assert "the champion's latency (95% CI" in fp16["reason"]
    assert "slower" in fp16["reason"] or "no speed-up beyond noise" in fp16["reason"]
    assert fp16["metrics"]["size_mb"] < 0.6 * store["summary"]["steps"][0]["metrics"]["size_mb"]


def test_int8_champion_is_faster_keeps_quality_and_is_promoted(store: dict) -> None:
    summary = store["summary"]
    int8 = summary["steps"][2]
    assert int8["decision"] == "accepted", int8["reason"]
    assert summary["champion"] == "int8-dynamic" and summary["targets_met"] is True
    assert int8["metrics"]["p95_ms"] < summary["steps"][0]["metrics"]["p95_ms"]
    assert summary["champion_heldout"]["fidelity"] > 0.99
    assert summary["final_gate"]["stage"] == "final" and summary["final_gate"]["passed"]
    gains = summary["champion_vs_baseline"]
    assert gains["speedup_p95"] == pytest.approx(summary["steps"][0]["metrics"]["p95_ms"] / int8["metrics"]["p95_ms"])
    assert gains["heldout_fidelity"] == summary["champion_heldout"]["fidelity"]
    assert gains["baseline_heldout_recall_at_5"] == summary["baseline_heldout"]["recall_at_5"]


def test_mlflow_holds_a_run_per_variant_with_metrics_and_artifacts(store: dict) -> None:
    client = MlflowClient(store["uri"])
    runs = nested_runs(client, store["summary"]["mlflow_run_id"])
    assert set(runs) == {"baseline", "fp16", "int8-dynamic"}
    for name, run in runs.items():
        assert run.data.metrics["p95_ms"] > 0 and 0 <= run.data.metrics["tuning.rubric_score"] <= 1
        assert run.data.params["spec_hash"] == runs["baseline"].data.params["spec_hash"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"benchmark", "eval"} <= artifacts
    assert runs["fp16"].data.tags["ratchet.decision"] == "rejected"
    assert runs["fp16"].data.tags["ratchet.reason"] == store["summary"]["steps"][1]["reason"]
    assert runs["int8-dynamic"].data.params["parent_variant"] == "baseline"
    gate = json.loads(Path(client.download_artifacts(runs["fp16"].info.run_id, "gate.json")).read_text())
    assert not gate["passed"] and all({"measured", "threshold", "passed", "reason"} <= set(c) for c in gate["criteria"])
    examples = json.loads(Path(client.download_artifacts(runs["int8-dynamic"].info.run_id, "eval/heldout.json")).read_text())
    assert len(examples["examples"]) >= 150 and "cosine_to_baseline" in examples["examples"][0]


def test_champion_is_registered_and_aliased_and_loads(store: dict) -> None:
    client = MlflowClient(store["uri"])
    version = client.get_model_version_by_alias("minilm-support", "champion")
    assert int(version.version) == store["summary"]["registered_version"]
    assert version.tags["lineage"] == "baseline -> int8-dynamic" and version.tags["targets_met"] == "true"
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model("models:/minilm-support@champion")
    emb = np.asarray(model.predict(["How do I reset my password?", "Can I get a refund?"]))
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)


def test_rerun_reuses_cached_steps(store: dict) -> None:
    home = store["home"]
    proc = run_cli(["--quick", "--tracking-uri", store["uri"], "--summary-json", str(home / "again.json")], home, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((home / "again.json").read_text())
    assert again["mlflow_run_id"] != store["summary"]["mlflow_run_id"]
    # Cached measurements come back bit for bit; a re-measurement never would.
    assert [s["metrics"] for s in again["steps"]] == [s["metrics"] for s in store["summary"]["steps"]]
    # Same champion files: the alias stays on the same version, no new version is registered.
    assert again["registered_version"] == store["summary"]["registered_version"]
    assert len(MlflowClient(store["uri"]).search_model_versions("name = 'minilm-support'")) == 1


def test_unmet_targets_promote_nothing_and_exit_1(store: dict, tmp_path: Path) -> None:
    spec = yaml.safe_load(DEFAULT_SPEC.read_text())
    spec["workload"]["dataset"] = str(ROOT / "evals" / "data" / "support_faq.json")
    spec["steps"] = []
    spec["targets"] = [{"metric": "p95_ms", "max": 0.001}]
    spec["registry"]["model_name"] = "never-promoted"
    path = tmp_path / "impossible.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = run_cli(["--quick", str(path), "--tracking-uri", store["uri"], "--summary-json", str(tmp_path / "s.json")],
                   store["home"], store["home"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["targets_met"] is False and summary["registered_version"] is None
    assert "nothing promoted" in proc.stderr
    assert MlflowClient(store["uri"]).search_model_versions("name = 'never-promoted'") == []
