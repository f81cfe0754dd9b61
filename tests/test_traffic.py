"""Traffic traces: generated with the declared shape (seeded), written and read back as JSONL, bad files named
by line, replayed at the spec's rate."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ratchet.core.layout import PROJECT_ROOT
from ratchet.evals.traffic import (TraceRequest, TrafficSpec, asked, generate_trace, read_trace, replay_schedule,
                                   trace_summary, typo, write_trace)
from ratchet.evals.workloads import WorkloadError, WorkloadSpec, load_workload

QA = PROJECT_ROOT / "evals" / "data" / "support_qa.json"


@pytest.fixture(scope="module")
def questions(qa_workload):
    return qa_workload.questions


def test_same_seed_same_trace_other_seed_other_trace(questions) -> None:
    spec = TrafficSpec(requests=200)
    first, again = generate_trace(questions, spec, 2.0), generate_trace(questions, spec, 2.0)
    assert first == again
    other = generate_trace(questions, spec.model_copy(update={"seed": 1}), 2.0)
    assert [r.prompt for r in other] != [r.prompt for r in first]


def test_trace_has_the_declared_shape(questions) -> None:
    spec = TrafficSpec(requests=600, unique_share=0.1, typo_share=0.2, paraphrase_share=0.5, zipf_s=1.2)
    trace = generate_trace(questions, spec, rate=4.0)
    kinds = Counter(r.kind for r in trace)
    assert len(trace) == 600
    assert kinds["unique"] / 600 == pytest.approx(0.1, abs=0.04)
    assert kinds["typo"] / (600 - kinds["unique"]) == pytest.approx(0.2, abs=0.05)
    assert kinds["paraphrase"] > 0 and kinds["repeat"] > 0
    times = [r.t_s for r in trace]
    assert times == sorted(times)
    assert trace_summary(trace)["rate_rps"] == pytest.approx(4.0, rel=0.15)
    # Zipf-like: the most asked answer is far above the average answer's share.
    head = Counter(r.label for r in trace if r.kind != "unique")
    assert head.most_common(1)[0][1] > 5 * np.mean(list(head.values()))
    # Unique questions are asked once; only tuning questions are drawn.
    uniques = [r.question for r in trace if r.kind == "unique"]
    assert len(uniques) == len(set(uniques))
    tuning = {q.text for q in questions if q.split == "tuning"}
    assert all(r.question in tuning for r in trace if r.kind in ("repeat", "paraphrase", "unique"))


def test_each_prompt_asks_its_question_in_its_context(questions) -> None:
    for request in generate_trace(questions, TrafficSpec(requests=100, typo_share=0.5), 2.0):
        assert request.prompt.startswith("Context:\n")
        assert request.prompt.endswith(f"Question: {request.question}\nAnswer:")


def test_typo_changes_one_word_by_one_slip() -> None:
    rng = random.Random(0)
    text = "how do I export my invoices"
    for _ in range(50):
        changed = typo(text, rng)
        diff = [(a, b) for a, b in zip(text.split(), changed.split()) if a != b]
        assert len(changed.split()) == len(text.split()) and len(diff) == 1
        before, after = diff[0]
        assert abs(len(before) - len(after)) <= 1
    assert typo("hi to me", rng) == "hi to me"


def test_asked_replaces_the_last_occurrence(questions) -> None:
    q = questions[0]
    assert asked(q, "NEW").endswith("Question: NEW\nAnswer:")
    assert asked(q, "NEW").startswith(q.prompt.split("Question:")[0])


def test_round_trip_and_bad_lines(tmp_path: Path, questions) -> None:
    trace = generate_trace(questions, TrafficSpec(requests=20), 1.0)
    path = tmp_path / "trace.jsonl"
    write_trace(path, trace)
    assert read_trace(path) == trace
    minimal = tmp_path / "user.jsonl"
    minimal.write_text('{"t_s": 0, "prompt": "hello"}\n\n{"t_s": 1.5, "prompt": "again", "tenant": "b"}\n')
    assert [(r.prompt, r.tenant) for r in read_trace(minimal)] == [("hello", "default"), ("again", "b")]
    cases = {
        '{"t_s": 0, "prompt": "a"}\nnot json\n': "line 2 is not JSON",
        '{"t_s": 0}\n': "line 1: prompt: Field required",
        '{"t_s": 2, "prompt": "a"}\n{"t_s": 1, "prompt": "b"}\n': "line 2: t_s 1.0 is earlier",
        '{"t_s": -1, "prompt": "a"}\n': "line 1: t_s",
        "": "holds no requests",
    }
    for text, fragment in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(WorkloadError, match="workload.traffic.trace") as err:
            read_trace(bad)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(WorkloadError, match="does not exist"):
        read_trace(tmp_path / "missing.jsonl")


def test_replay_keeps_the_shape_at_the_spec_rate() -> None:
    requests = [TraceRequest(t_s=t, prompt="p") for t in (10.0, 10.5, 12.0, 14.0)]
    schedule = replay_schedule(requests, rate=3.0)
    assert schedule[0] == 0.0
    assert (len(schedule) - 1) / schedule[-1] == pytest.approx(3.0)
    gaps = np.diff(schedule)
    assert gaps[0] / gaps[1] == pytest.approx(0.5 / 1.5)
    assert replay_schedule([TraceRequest(t_s=0, prompt="p")] * 3, 2.0) == [0.0, 0.5, 1.0]


def test_workload_loads_its_traffic(tmp_path: Path) -> None:
    spec = WorkloadSpec(dataset=str(QA), scenario="server", target_qps=2, traffic={"requests": 30})
    workload = load_workload(spec, "text-generation", PROJECT_ROOT)
    assert len(workload.trace) == 30
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"t_s": 0, "prompt": "hi"}) + "\n")
    spec = WorkloadSpec(dataset=str(QA), scenario="server", target_qps=2, traffic={"trace": str(path)})
    assert [r.prompt for r in load_workload(spec, "text-generation", PROJECT_ROOT).trace] == ["hi"]
    retrieval = WorkloadSpec(dataset=str(PROJECT_ROOT / "evals" / "data" / "support_faq.json"), traffic={})
    with pytest.raises(WorkloadError, match="needs a prompts workload"):
        load_workload(retrieval, "feature-extraction", PROJECT_ROOT)


def test_spec_trace_path_is_relative_to_the_spec(tmp_path: Path) -> None:
    from ratchet.flows.spec import parse_spec

    data = {"name": "t", "model": {"id": "ratchet/support-lm-large", "task": "text-generation"},
            "workload": {"dataset": "qa.json", "scenario": "server", "target_qps": 1, "traffic": {"trace": "t.jsonl"}},
            "rubric": {"criteria": [{"name": "f", "scorer": "required_facts"}]},
            "registry": {"model_name": "m"}}
    spec = parse_spec(data, "spec.yaml", tmp_path)
    assert spec.workload.traffic.trace == str(tmp_path / "t.jsonl")


def test_ratchet_trace_writes_the_specs_traffic(tmp_path: Path, demo_pair: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from cli_checks import assert_one_error_line, exit_code

    data = yaml.safe_load((PROJECT_ROOT / "examples" / "support-agent.yaml").read_text())
    data["model"]["id"] = "sentence-transformers/all-MiniLM-L6-v2"  # a model folder that exists offline
    data["model"]["task"] = "feature-extraction"
    data["rubric"] = {"criteria": [{"name": "recall", "scorer": "recall_at_k"}]}
    data["steps"], data["reference"], data["targets"] = [], None, []
    data["workload"]["traffic"] = {"requests": 40}
    data["workload"]["dataset"] = str(PROJECT_ROOT / "evals" / "data" / "support_faq.json")
    spec = tmp_path / "agent.yaml"
    spec.write_text(yaml.safe_dump(data))
    # A retrieval model cannot replay traffic: one line, exit 2.
    assert exit_code(["trace", str(spec), "--out", str(tmp_path / "t.jsonl")]) == 2
    assert_one_error_line(capsys.readouterr().err, "needs a prompts workload")
    data["model"], data["rubric"] = ({"id": str(demo_pair / "large"), "task": "text-generation"},
                                     {"criteria": [{"name": "facts", "scorer": "required_facts"}]})
    data["workload"]["dataset"] = str(QA)
    spec.write_text(yaml.safe_dump(data))
    assert exit_code(["trace", str(spec), "--out", str(tmp_path / "t.jsonl")]) == 0
    assert len(read_trace(tmp_path / "t.jsonl")) == 40
    assert "40 requests" in capsys.readouterr().err
    data["workload"].pop("traffic")
    spec.write_text(yaml.safe_dump(data))
    assert exit_code(["trace", str(spec)]) == 2
    assert_one_error_line(capsys.readouterr().err, "declares no traffic")
