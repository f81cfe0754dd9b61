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
