"""The generative workload through the pipeline: bad generation specs are one-line errors, and a run of the
demo pair (test size) gates its decode-time steps with reasons, TTFT/TPOT and answers recorded."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ratchet.core.layout import PROJECT_ROOT
from cli_checks import assert_nothing_written, assert_one_error_line, exit_code

EXAMPLE = PROJECT_ROOT / "examples" / "support-llm.yaml"
QA = PROJECT_ROOT / "evals" / "data" / "support_qa.json"


def _llm_spec(tmp: Path, demo_pair: Path, mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The support-LLM example on the test-size pair, self-contained in ``tmp``."""
    data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    data["model"]["id"] = str(demo_pair / "large")
    data["workload"]["dataset"] = str(QA)
    for step in data["steps"]:
        if step.get("draft"):
            step["draft"] = str(demo_pair / "small")
    data["registry"]["tracking_uri"] = f"sqlite:///{tmp / 'ml.db'}"
    data["workdir"] = str(tmp / "work")
    if mutate is not None:
        mutate(data)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _other_tokenizer_draft(tmp: Path) -> str:
    from ratchet.tasks.tiny_lm import TinyLmSettings, build_tiny_lm

    return str(build_tiny_lm(tmp / "other-lm", TinyLmSettings(vocab_size=300, hidden_size=32, intermediate_size=64,
                                                                layers=1, heads=2, steps=2)))


CASES: dict[str, tuple[Callable[[dict, Path, Path], None], str]] = {
    "encoder-only-model": (lambda d, tmp, pair: d["model"].update(id="sentence-transformers/all-MiniLM-L6-v2"),
                           "no language-model head"),
    "draft-with-another-tokenizer": (lambda d, tmp, pair: d["steps"][2].update(draft=_other_tokenizer_draft(tmp)),
                                     "assisted generation needs one tokenizer"),
    "max-new-tokens-zero": (lambda d, tmp, pair: d["workload"].update(max_new_tokens=0),
                            "workload.max_new_tokens: Input should be greater than or equal to 1"),
    "slo-unknown-metric": (lambda d, tmp, pair: d["workload"]["slo"].update(ttf_ms=100), "did you mean 'ttft_ms'"),
    "draft-without-draft-model": (lambda d, tmp, pair: d["steps"][2].pop("draft"), "needs draft"),
    "answer-scorer-on-an-encoder-task": (lambda d, tmp, pair: d["model"].update(task="feature-extraction"),
                                         "cannot score 'feature-extraction' outputs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_generation_spec_is_one_line_exit_2_nothing_written(case: str, tmp_path: Path, demo_pair: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.flows import cli
    from ratchet.flows.exit_codes import INVALID

    monkeypatch.setattr(cli, "_run", lambda *a, **k: pytest.fail("bad input reached the pipeline"))
    mutate, fragment = CASES[case]
    spec = _llm_spec(tmp_path, demo_pair, lambda d: mutate(d, tmp_path, demo_pair))
    capsys.readouterr()  # building a draft model for the case prints its own bars
    assert exit_code(["run", str(spec)]) == INVALID
    assert_one_error_line(capsys.readouterr().err, fragment)
    assert_nothing_written(tmp_path)


def test_the_example_spec_validates_on_the_test_pair(tmp_path: Path, demo_pair: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["validate", str(_llm_spec(tmp_path, demo_pair))]) == 0


@pytest.mark.slow
def test_a_generation_run_gates_decode_steps_with_reasons(tmp_path: Path, demo_pair: Path) -> None:
    """Baseline, prompt lookup (lossless: its answers must equal the champion's), a quantized KV cache that cannot
    run here (skipped with what to install), then the final gate; TTFT, TPOT and goodput are measured and every
    example's answer is kept."""
    from ratchet.flows.pipeline import run_pipeline
    from ratchet.flows.spec import load_spec, preflight, with_quick_measurement

    def small(d: dict) -> None:
        d["steps"] = [s for s in d["steps"] if s["name"] in ("prompt-lookup", "quantized-kv")]
        d["workload"]["measurement"] = {"warmup_s": 0.5, "min_duration_s": 1, "min_queries": 64, "max_duration_s": 20}
        d["noise"] = {"pairs": 2, "block_queries": 40, "retries": 0}

    spec = with_quick_measurement(load_spec(_llm_spec(tmp_path, demo_pair, small)))
    run = run_pipeline(preflight(spec), f"sqlite:///{tmp_path / 'ml.db'}")
    baseline, lookup, kv = run.state.records
    perf = baseline.measurement.perf
    for key in ("ttft_p50_ms", "tpot_p50_ms", "output_tokens_per_s", "goodput", "cost_per_1k"):
        assert perf[key] is not None and perf[key] >= 0, key
    assert perf["ttft_p50_ms"] < perf["p50_ms"]
    assert lookup.decision in ("accepted", "rejected", "inconclusive") and lookup.reason
    exact = lookup.gate.criteria[0]
    assert exact.metric == "output_mismatches" and exact.passed, exact.reason  # greedy output unchanged
    assert kv.decision == "skipped" and "pip install optimum-quanto" in kv.reason
    heldout = baseline.measurement.rubric["heldout"]
    assert {"facts", "rouge_l", "similarity", "refusal", "length"} <= set(heldout.metrics())
    assert all(isinstance(row["answer"], str) for row in heldout.examples)
    assert run.summary["final_gate"]["criteria"]


@pytest.mark.slow
def test_continuous_batching_is_measured_and_gated_under_open_loop_arrivals(tmp_path: Path, demo_pair: Path) -> None:
    """The server scenario: Poisson arrivals at target_qps, queueing in TTFT; the batching step's candidate is
    served by transformers' continuous batching, measured and compared in paired blocks of identical traffic."""
    from ratchet.flows.pipeline import run_pipeline
    from ratchet.flows.spec import load_spec, preflight

    def server(d: dict) -> None:
        d["steps"] = [{"kind": "batching", "name": "continuous", "engine": "continuous"}]
        d["workload"].update(scenario="server", target_qps=20, max_new_tokens=24,
                             measurement={"warmup_s": 0.2, "min_duration_s": 0.5, "min_queries": 64,
                                          "max_duration_s": 60})
        d["noise"] = {"pairs": 2, "block_queries": 40, "retries": 0}

    run = run_pipeline(preflight(load_spec(_llm_spec(tmp_path, demo_pair, server))), f"sqlite:///{tmp_path / 'ml.db'}")
    baseline, batched = run.state.records
    for record in (baseline, batched):
        perf = record.measurement.perf
        assert perf["ttft_p50_ms"] is not None and perf["goodput"] is not None
    assert (tmp_path / "work").rglob("requests-server.json")
    assert batched.variant.runtime_options["serving"]["engine"] == "continuous"
    assert batched.comparison is not None and batched.comparison.error is None, batched.comparison
    assert len(batched.comparison.blocks["candidate"]) == 2
    assert batched.decision in ("accepted", "rejected", "inconclusive") and batched.reason


@pytest.mark.slow
def test_response_cache_is_gated_on_replayed_traffic(tmp_path: Path, demo_pair: Path) -> None:
    """The server scenario replays a generated trace; the cache step's threshold is tuned on tuning questions,
    its false-hit rate checked on held-out ones and held under the step's bound by the gate, its hit rate and
    busy-time cost measured on the same trace as the champion's."""
    from ratchet.flows.pipeline import run_pipeline
    from ratchet.flows.spec import load_spec, preflight

    def cached(d: dict) -> None:
        d["steps"] = [{"kind": "response_cache", "max_false_hit_rate": 0.05}]
        d["workload"].update(scenario="server", target_qps=8, max_new_tokens=24, traffic={"requests": 200},
                             measurement={"warmup_s": 0.2, "min_duration_s": 0.5, "min_queries": 100,
                                          "max_duration_s": 60})
        d["noise"] = {"pairs": 2, "block_queries": 40, "retries": 0}

    run = run_pipeline(preflight(load_spec(_llm_spec(tmp_path, demo_pair, cached))), f"sqlite:///{tmp_path / 'ml.db'}")
    baseline, cache = run.state.records
    settings = cache.variant.runtime_options["serving"]["cache"]
    assert 0.5 <= settings["threshold"] <= 1 and settings["model_version"]
    assert cache.variant.params["tuning_false_hit_rate"] <= 0.025
    perf, base = cache.measurement.perf, baseline.measurement.perf
    assert perf["cache_hit_rate"] > 0.3 and "cache_hit_rate" not in base
    assert 0 <= perf["cache_false_hit_rate"] <= 1 and perf["cache_heldout_hit_rate"] is not None
    assert perf["cost_per_1k"] < base["cost_per_1k"]  # busy time: hits cost a lookup, not a generation
    limit = next(c for c in cache.gate.criteria if c.metric == "cache_false_hit_rate")
    assert limit.blocking and limit.threshold == 0.05 and limit.passed == (perf["cache_false_hit_rate"] <= 0.05)
    assert cache.comparison is not None and cache.comparison.error is None, cache.comparison
    assert cache.decision in ("accepted", "rejected", "inconclusive") and cache.reason
