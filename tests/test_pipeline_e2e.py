"""The whole pipeline on the real MiniLM model, through the CLI (Prefect, from an empty PREFECT_HOME), into a
temporary MLflow store.

One quick run of the default spec's steps is shared by the tests below (a few minutes on two cores); what they
assert is what landed in MLflow and what the summary says, not what the code intended. Its targets are the
default spec's quality and memory ones, so a champion is registered whatever the speed verdicts, which depend
on the CPU and on how busy the machine is.
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

from ratchet.flows.cli import exit_code

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
    data = yaml.safe_load(DEFAULT_SPEC.read_text())
    # One batch size: fp16 at batch 8 alone took minutes on the AVX2 EPYC of CI, and no assertion here reads it.
    data["workload"].update(dataset=str(ROOT / "evals" / "data" / "support_faq.json"), batch_sizes=[1])
    data["targets"] = [t for t in data["targets"] if t["metric"] != "p95_ms"]
    data["noise"] = {"retry_backoff_s": 2}
    spec = home / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    uri = f"sqlite:///{home / 'ml.db'}"
    proc = run_cli(["--quick", str(spec), "--tracking-uri", uri, "--summary-json", str(home / "summary.json")], home, home)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    summary = json.loads((home / "summary.json").read_text())
    assert proc.returncode == exit_code(summary)
    return {"home": home, "uri": uri, "proc": proc, "spec": spec, "summary": summary}


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


@pytest.mark.parametrize("index", [1, 2], ids=["fp16", "int8-dynamic"])
def test_each_speed_verdict_is_the_one_its_paired_comparison_shows(store: dict, index: int) -> None:
    """Whether fp16 or torchao int8 is faster depends on the CPU (int8 is 2x faster than fp32 on Sapphire Rapids
    with VNNI, 3-4x slower on the AVX2-only EPYC of this project's CI): the test does not assume, it checks that
    each verdict is the one the interleaved measurement supports, and "inconclusive" exactly when the reference
    wobbled more than the spec's tolerance."""
    summary = store["summary"]
    step = summary["steps"][index]
    speed = step["gate"]["criteria"][-1]
    assert speed["name"] == "p95_ms improves on champion"
    ratio = step["versus_champion"]["ratios"]["p95"]
    assert ratio["pairs"] == 4 and "interleaved pairs" in speed["reason"]  # --quick
    if step["versus_champion"]["reference_cv"] > 0.10:
        assert speed["inconclusive"] and "inconclusive: machine too noisy" in speed["reason"]
    elif ratio["high"] < 1.0:
        assert speed["passed"] and "faster beyond noise" in speed["reason"]
    elif ratio["low"] > 1.0:
        assert not speed["passed"] and "slower" in speed["reason"]
    else:
        assert not speed["passed"] and "no speed-up beyond noise" in speed["reason"]
    expected = ("accepted" if all(c["passed"] for c in step["gate"]["criteria"] if c["blocking"]) else
                "inconclusive" if step["gate"]["inconclusive"] else "rejected")
    assert step["decision"] == expected
    assert (step["decision"] == "inconclusive") == (step["step"] in summary["inconclusive"])
    if step["decision"] == "inconclusive":
        assert step["attempts"] == 3  # measured again twice before giving up
    else:
        assert step["attempts"] >= 1


def test_the_champion_is_the_last_accepted_step_and_keeps_quality(store: dict) -> None:
    summary = store["summary"]
    accepted = [s["step"] for s in summary["steps"] if s["decision"] == "accepted"]
    assert summary["champion"] == (accepted[-1] if accepted else "baseline")
    assert summary["targets_met"] is True and summary["final_gate"]["passed"]  # quality and memory targets only
    assert summary["champion_heldout"]["fidelity"] > 0.99
    gains = summary["champion_vs_baseline"]
    assert gains["heldout_fidelity"] == summary["champion_heldout"]["fidelity"]
    assert gains["baseline_heldout_recall_at_5"] == summary["baseline_heldout"]["recall_at_5"]
    assert summary["steps"][1]["metrics"]["size_mb"] < 0.6 * summary["steps"][0]["metrics"]["size_mb"]  # fp16


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
    fp16_won = store["summary"]["steps"][1]["decision"] == "accepted"
    assert runs["int8-dynamic"].data.params["parent_variant"] == ("fp16" if fp16_won else "baseline")
    int8 = runs["int8-dynamic"]
    assert "versus_champion.p95.ratio" in int8.data.metrics and "versus_champion.p95.reference_cv" in int8.data.metrics
    blocks = json.loads(Path(client.download_artifacts(int8.info.run_id, "comparison/versus_champion.blocks.json")).read_text())
    assert len(blocks["reference"]) == len(blocks["candidate"]) == 4
    gate = json.loads(Path(client.download_artifacts(runs["fp16"].info.run_id, "gate.json")).read_text())
    assert not gate["passed"] and all({"measured", "threshold", "passed", "reason"} <= set(c) for c in gate["criteria"])
    examples = json.loads(Path(client.download_artifacts(runs["int8-dynamic"].info.run_id, "eval/heldout.json")).read_text())
    assert len(examples["examples"]) >= 150 and "cosine_to_baseline" in examples["examples"][0]


def test_champion_is_registered_and_aliased_and_loads(store: dict) -> None:
    client = MlflowClient(store["uri"])
    version = client.get_model_version_by_alias("minilm-support", "champion")
    assert int(version.version) == store["summary"]["registered_version"]
    champion = store["summary"]["champion"]
    assert version.tags["lineage"] == ("baseline" if champion == "baseline" else f"baseline -> {champion}")
    assert version.tags["targets_met"] == "true"
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model("models:/minilm-support@champion")
    emb = np.asarray(model.predict(["How do I reset my password?", "Can I get a refund?"]))
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)


def test_rerun_reuses_cached_steps(store: dict) -> None:
    home = store["home"]
    proc = run_cli(["--quick", str(store["spec"]), "--tracking-uri", store["uri"], "--summary-json",
                    str(home / "again.json")], home, home)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    again = json.loads((home / "again.json").read_text())
    assert again["mlflow_run_id"] != store["summary"]["mlflow_run_id"]
    # Cached measurements come back bit for bit; a re-measurement never would. The table says they were cached.
    assert [s["metrics"] for s in again["steps"]] == [s["metrics"] for s in store["summary"]["steps"]]
    assert all(s["cached"] and s["measured_at"] for s in again["steps"])
    versions = MlflowClient(store["uri"]).search_model_versions("name = 'minilm-support'")
    if again["champion"] == store["summary"]["champion"]:
        # Same champion files: the alias stays on the same version, no new version is registered.
        assert again["registered_version"] == store["summary"]["registered_version"] and len(versions) == 1
    else:  # a fresh comparison (the first was too noisy to reuse) decided otherwise: another champion, another version
        assert again["registered_version"] == 2 and len(versions) == 2


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
