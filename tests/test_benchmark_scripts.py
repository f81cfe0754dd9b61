"""The benchmark scripts run end to end on the real model (quick budgets, one recipe or target) and print
their tables: what README quotes must keep working. The ratios themselves are not asserted: benchmarks,
not timed tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ratchet.flows.benchmarks import backends, compare, stability

ROOT = Path(__file__).resolve().parents[1]


def test_compare_prints_ratios_against_fp32_and_a_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    compare.main(["--quick", "--only", "optimum ORT INT8 avx2 (reference)", "--markdown"])
    out = capsys.readouterr().out
    assert "PyTorch fp32" in out and "optimum ORT INT8 avx2 (reference)" in out
    header = "| " + " | ".join(compare.COLUMNS) + " |"
    assert header in out
    reference = next(line for line in out.splitlines() if line.startswith("| optimum ORT INT8"))
    cells = [c.strip() for c in reference.strip("|").split("|")]
    assert cells[1].endswith("×") and float(cells[4]) < 1.0  # a speed ratio, and a cosine below fp32's


def test_backends_benchmark_compiles_and_lists_skipped_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((ROOT / "examples" / "minilm-support.yaml").read_text())
    data["workload"]["dataset"] = str(ROOT / "evals" / "data" / "support_faq.json")
    data.update(steps=[], compile=[{"target": "onnxruntime"}, {"target": "neuron"}])
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    backends.main([str(spec), "--quick", "--markdown"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "compiled" in rows["onnxruntime"] and "skipped: AWS Neuron needs" in rows["neuron"]
    assert "PyTorch fp32" in rows


@pytest.mark.slow
def test_stability_prints_each_runs_decisions_quiet_and_under_load(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((ROOT / "examples" / "minilm-support.yaml").read_text())
    data["workload"].update(dataset=str(ROOT / "evals" / "data" / "support_faq.json"), batch_sizes=[1])
    data["steps"] = [{"kind": "onnx_export", "name": "onnx"}]
    data["noise"] = {"retries": 0, "pairs": 4}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    stability.main([str(spec), "--runs", "1", "--quick", "--markdown"])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| 1 |")]
    assert [(r[1], r[2]) for r in rows] == [("quiet", "onnx"), ("loaded", "onnx")]
    for row in rows:
        assert row[3].split(":")[0] in ("accepted", "rejected", "inconclusive")
        assert row[4].endswith("x") and row[7] == "4"  # the ratio, from the spec's 4 interleaved pairs


def test_demo_pair_table_scores_both_models_on_held_out_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from ratchet.flows.benchmarks import demo_pair

    monkeypatch.setenv("RATCHET_HOME", str(tmp_path))
    demo_pair.main(["--test-size", "--markdown"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in out.splitlines() if line.startswith("| support-lm-")}
    assert set(rows) == {"support-lm-large", "support-lm-small"}
    assert rows["support-lm-large"][-1] == "1.00" and 0 <= float(rows["support-lm-small"][3]) <= 1


@pytest.mark.slow
def test_generation_benchmark_prints_decode_and_serving_tables(tmp_path: Path, demo_pair: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from ratchet.flows.benchmarks import generation

    data = yaml.safe_load((ROOT / "examples" / "support-llm.yaml").read_text())
    data["model"]["id"] = str(demo_pair / "large")
    data["workload"]["dataset"] = str(ROOT / "evals" / "data" / "support_qa.json")
    data["workload"]["measurement"] = {"warmup_s": 0.2, "min_duration_s": 0.5, "min_queries": 64, "max_duration_s": 10}
    data["noise"] = {"pairs": 2, "block_queries": 40, "retries": 0}
    data["steps"] = [{"kind": "speculative", "name": "prompt-lookup", "method": "prompt_lookup"}]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    generation.main([str(spec), "--quick", "--markdown", "--rates", "4", "--requests", "8"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"baseline", "prompt-lookup"} <= set(rows) and any(name.startswith("champion") for name in rows)
    assert "| " + " | ".join(generation.SERVING_COLUMNS) + " |" in out
    assert {"sequential", "static", "continuous"} <= set(rows)
    assert "capacity continuous vs sequential" in rows


@pytest.mark.slow
def test_support_agent_example_runs_end_to_end_and_its_benchmark_prints_the_tables(
        tmp_path: Path, demo_pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/support-agent.yaml on the test-size pair (short trace, small budgets): every step measured on the
    replayed traffic and gated with a reason, the serving recipe registered or the reason it was not, and the
    benchmark's three tables (ladder, the worked example next to ours, the goals) printed from the run."""
    import json

    import mlflow

    from ratchet.flows.benchmarks import support_agent
    from ratchet.flows.pipeline import run_pipeline
    from ratchet.flows.spec import load_spec, preflight

    data = yaml.safe_load((ROOT / "examples" / "support-agent.yaml").read_text())
    data["model"]["id"] = str(demo_pair / "large")
    data["workload"]["dataset"] = str(ROOT / "evals" / "data" / "support_qa.json")
    data["workload"].update(target_qps=8, max_new_tokens=24, traffic={"requests": 160},
                            measurement={"warmup_s": 0.2, "min_duration_s": 0.5, "min_queries": 64,
                                         "max_duration_s": 60})
    data["noise"] = {"pairs": 2, "block_queries": 40, "retries": 0, "max_reference_cv": 0.5}
    for criterion in data["rubric"]["criteria"]:  # the test-size pair answers too little for absolute thresholds
        criterion.pop("threshold", None)
    data["steps"][-1]["small"] = str(demo_pair / "small")
    data["steps"][-1]["tuning_prompts"] = 16
    data["registry"]["tracking_uri"] = f"sqlite:///{tmp_path / 'ml.db'}"
    data["workdir"] = str(tmp_path / "work")
    spec_path = tmp_path / "agent.yaml"
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
    run = run_pipeline(preflight(load_spec(spec_path)), f"sqlite:///{tmp_path / 'ml.db'}")  # whatever URI others set
    summary = run.summary
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["baseline", "int8-weights", "cache", "continuous-batching", "cheap-first"]
    assert all(s["reason"] for s in summary["steps"][1:])
    measured = [s for s in summary["steps"][1:] if s["decision"] != "skipped"]
    assert {s["step"] for s in measured} >= {"cache", "cheap-first"}
    assert steps["cache"]["serving"]["cache_hit_rate"] > 0
    assert "cache_false_hit_rate" in steps["cache"]["serving"]
    assert (tmp_path / "work").rglob("routing-curve.png")
    assert Path(summary["pareto_plot"]).is_file()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'ml.db'}")
    artifacts = {a.path for a in client.list_artifacts(summary["mlflow_run_id"])}
    assert {"report.html", "report.md", "summary.json", Path(summary["pareto_plot"]).name} <= artifacts
    if summary["targets_met"]:
        assert summary["registered_version"] is not None
    else:
        assert summary["registered_version"] is None and summary["final_gate"]["reason"]

    saved = tmp_path / "summary.json"
    saved.write_text(json.dumps(summary))
    capsys.readouterr()
    support_agent.main(["--spec", str(spec_path), "--summary", str(saved), "--markdown"])
    out = capsys.readouterr().out
    assert "| " + " | ".join(support_agent.LADDER_HEADERS) + " |" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| Baseline (large model) | baseline |") for line in rows)
    assert any(line.startswith("| + Cheap-first routing |") for line in rows)
    goals = [line for line in rows if line.startswith(("| p95 vs baseline", "| cost per request", "| held-out rubric"))]
    assert len(goals) == 3 and all(line.rstrip(" |").endswith(("met", "-")) for line in goals)
