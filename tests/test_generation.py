"""Generation on the demo pair (test size): token timestamps, TTFT/TPOT, lossless decoding methods, the engines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.benchmark.generation_stats import meets_slo, summarize_generation
from ratchet.hardware.runtimes import Shape, load_variant
from ratchet.hardware.runtimes.generation import Generated, TokenClock, TorchGenerator
from ratchet.hardware.runtimes.serving import BatchingEngine, ContinuousEngine, arrival_times
from ratchet.tasks.demo_models import TEST_SETTINGS, split_example
from ratchet.tasks.techniques import TechniqueContext, technique_for

SHAPE = Shape(sequence_length=256, max_new_tokens=24)


def _generator(folder: Path, **options) -> TorchGenerator:
    variant = Variant(name="v", path=folder, task="text-generation", runtime_options=options)
    return load_variant(variant, HardwareSpec(), SHAPE)


@pytest.fixture(scope="module")
def prompts(qa_workload) -> list[str]:
    return qa_workload.request_texts("tuning")[:6]


def test_demo_pair_is_two_causal_lms_with_one_tokenizer(demo_pair: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    large, small = (AutoModelForCausalLM.from_pretrained(demo_pair / r) for r in ("large", "small"))
    assert AutoTokenizer.from_pretrained(demo_pair / "large").get_vocab() == \
        AutoTokenizer.from_pretrained(demo_pair / "small").get_vocab()
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(large) > 2 * n(small)
    report = json.loads((demo_pair / "done.json").read_text())
    assert report["large"]["settings"]["hidden_size"] == TEST_SETTINGS.large.hidden_size


def test_training_examples_split_at_the_last_answer_mark() -> None:
    assert split_example("Context:\n- Answer: no\nQuestion: q\nAnswer: yes") == \
        ("Context:\n- Answer: no\nQuestion: q\nAnswer:", " yes")


def test_token_clock_keeps_each_rows_tokens_up_to_its_end_of_sequence() -> None:
    import torch

    clock = TokenClock(rows=2)
    clock.put(torch.tensor([[5, 6, 7], [5, 6, 7]]))  # the prompt: not an output token
    clock.put(torch.tensor([1, 2]))
    clock.put(torch.tensor([9, 3]))  # row 0 ends (eos 9)
    clock.put(torch.tensor([4, 9]))
    rows = clock.per_row(eos=9, limit=10)
    assert [r[0] for r in rows] == [[1, 9], [2, 3, 9]]
    assert [r[2] for r in rows] == [False, False]
    assert all(np.all(np.diff(times) >= 0) for _, times, _ in rows)
    assert clock.per_row(eos=9, limit=1)[1] == ([2], rows[1][1][:1], True)


def test_answers_carry_real_token_timestamps(demo_pair: Path, prompts: list[str]) -> None:
    generator = _generator(demo_pair / "large")
    answers = generator.answer(prompts[:2])
    for answer in answers:
        assert 0 < len(answer.tokens) == len(answer.token_times_s) <= SHAPE.max_new_tokens
        assert answer.ttft_s > 0 and np.all(np.diff(answer.token_times_s) >= 0)
        if len(answer.tokens) > 1:
            assert answer.tpot_s == pytest.approx((answer.token_times_s[-1] - answer.token_times_s[0])
                                                  / (len(answer.tokens) - 1))
        assert answer.cut_off == (generator.tokenizer.eos_token_id not in answer.tokens)
    matrix = generator.predict(prompts[:2])
    assert matrix.shape == (2, SHAPE.max_new_tokens)
    assert matrix[0, : len(answers[0].tokens)].tolist() == answers[0].tokens


def test_generation_summary_percentiles_goodput_and_lengths() -> None:
    records = [{"ttft_s": 0.01 * (i + 1), "tpot_s": 0.002, "e2e_s": 0.1, "output_tokens": 10, "prompt_tokens": 50,
                "cut_off": i == 0, "itl_s": [0.002] * 9} for i in range(100)]
    stats = summarize_generation(records, duration_s=10.0, slo={"ttft_ms": 500})
    assert stats["ttft_p50_ms"] == pytest.approx(505.0)
    assert stats["ttft_p99_ms"] is None  # 100 requests cannot report a p99 (MLPerf minimum 662)
    assert stats["goodput"] == pytest.approx(0.5)
    assert stats["output_tokens_per_s"] == pytest.approx(100.0)
    assert stats["cut_off_share"] == pytest.approx(0.01)
    assert meets_slo({"ttft_s": 0.1, "tpot_s": None, "e2e_s": 1.0}, {"ttft_ms": 200, "tpot_ms": 1})


@pytest.mark.parametrize("options", [
    {"prompt_lookup_num_tokens": 5},
    {"assistant": "small", "num_assistant_tokens": 4},
    {"cache_implementation": "static"},
], ids=["prompt-lookup", "draft-model", "static-cache"])
def test_lossless_decoding_methods_give_greedy_output_token_for_token(demo_pair: Path, prompts: list[str],
                                                                      options: dict) -> None:
    if "assistant" in options:
        options = {**options, "assistant": str(demo_pair / "small")}
    plain = _generator(demo_pair / "large").predict(prompts)
    fast = _generator(demo_pair / "large", decoding=options).predict(prompts)
    np.testing.assert_array_equal(fast, plain)


def test_speculative_step_makes_a_decoding_variant_and_the_gate_demands_identical_output(demo_pair: Path) -> None:
    from ratchet.tasks.gate import GatePolicy, NoiseSpec
    from ratchet.tasks.gate import Evidence

    technique = technique_for("speculative")
    spec = technique.spec_type.model_validate({"kind": "speculative", "method": "draft_model",
                                               "draft": str(demo_pair / "small")})
    source = Variant(name="baseline", path=demo_pair / "large", task="text-generation")
    assert technique.availability(spec, source).ok
    ctx = TechniqueContext([], 256, HardwareSpec())
    variant = technique.apply(spec, source, demo_pair / "unused", ctx)
    assert variant.path == source.path and variant.runtime_options["decoding"]["assistant"] == str(demo_pair / "small")
    assert not technique.availability(spec, variant).ok  # already speculative
    policy = GatePolicy((), {}, "p95_ms", NoiseSpec())
    evidence = Evidence({"p95_ms": 1.0}, "tuning")
    bad = policy.step(evidence, evidence, None, output_mismatch=(3, 40))
    assert not bad.passed and "differs from the champion's on 3 of 40 prompts" in bad.reason
    good = policy.step(evidence, evidence, None, output_mismatch=(0, 40))
    assert good.criteria[0].passed


def test_a_draft_with_another_tokenizer_is_refused_before_any_work(demo_pair: Path, tmp_path: Path) -> None:
    from ratchet.tasks.tiny_lm import TinyLmSettings, build_tiny_lm

    other = build_tiny_lm(tmp_path / "other", TinyLmSettings(vocab_size=300, hidden_size=32, intermediate_size=64,
                                                             layers=1, heads=2, steps=2))
    technique = technique_for("speculative")
    spec = technique.spec_type.model_validate({"kind": "speculative", "method": "draft_model", "draft": str(other)})
    with pytest.raises(ValueError, match="tokenizer"):
        technique.preflight_files(spec, demo_pair / "large")


def test_engines_answer_each_request_with_its_own_answer(demo_pair: Path, prompts: list[str]) -> None:
    generator = _generator(demo_pair / "large")
    alone = [a.tokens for a in generator.answer(prompts[:1]) + generator.answer(prompts[1:2]) +
             generator.answer(prompts[2:3]) + generator.answer(prompts[3:4])]
    arrivals = [0.0, 0.0, 0.01, 0.02]
    static = BatchingEngine(generator, max_batch=4).serve(prompts[:4], arrivals)
    continuous = ContinuousEngine(generator)
    try:
        batched = continuous.serve(prompts[:4], arrivals)
    finally:
        continuous.close()
    for engine_answers in (static, batched):
        assert [a.tokens for a in engine_answers] == alone
        assert all(a.ttft_s >= 0 and a.e2e_s >= a.ttft_s for a in engine_answers)
    assert max(a.meta["batch_size"] for a in static) > 1


def test_arrival_times_are_seeded_with_the_declared_rate() -> None:
    times = arrival_times(4000, rate=20.0, seed=3)
    assert times == arrival_times(4000, rate=20.0, seed=3)
    assert np.all(np.diff(times) > 0)
    assert 4000 / times[-1] == pytest.approx(20.0, rel=0.05)
    bursty = np.diff(arrival_times(4000, rate=20.0, seed=3, burstiness=0.3))
    assert np.std(bursty) > np.std(np.diff(times)) * 1.3


def test_generated_record_counts_queueing_in_ttft_and_e2e() -> None:
    g = Generated([1, 2, 3], "a b", 7, [0.1, 0.2, 0.4], cut_off=False, queued_s=1.0)
    record = g.record()
    assert record["ttft_s"] == pytest.approx(1.1) and record["e2e_s"] == pytest.approx(1.4)
    assert record["tpot_s"] == pytest.approx(0.15) and g.itl_s() == pytest.approx([0.1, 0.2])


def test_output_length_caps_answers_and_retries_the_ones_it_cut_off(demo_pair: Path, prompts: list[str]) -> None:
    full = _generator(demo_pair / "large").answer(prompts)
    capped = _generator(demo_pair / "large", output_length={"max_new_tokens": 3}).answer(prompts)
    assert all(len(a.tokens) <= 3 for a in capped) and any(a.cut_off for a in capped)
    limits = {"max_new_tokens": 3, "retry_max_new_tokens": SHAPE.max_new_tokens}
    retried = _generator(demo_pair / "large", output_length=limits).answer(prompts)
    assert [a.tokens for a in retried] == [a.tokens for a in full]
    for first, again in zip(capped, retried):
        assert again.meta.get("retried", False) == first.cut_off
        if first.cut_off:  # the retry's time starts after its first try's: both are in the request's latency
            assert again.token_times_s[0] >= again.meta["first_try_s"] > 0
    from ratchet.tasks.techniques.output_length import OutputLengthSpec

    with pytest.raises(ValueError, match="must exceed"):
        OutputLengthSpec(max_new_tokens=32, retry_max_new_tokens=16)


def test_busy_time_is_the_union_of_request_intervals_and_prices_a_request() -> None:
    from ratchet.hardware.benchmark.generation_stats import busy_time_s
    from ratchet.hardware.benchmark.stats import cost_per_1k_busy

    records = [{"arrival_s": 0.0, "e2e_s": 1.0}, {"arrival_s": 0.5, "e2e_s": 1.0},  # overlap: busy 0-1.5
               {"arrival_s": 3.0, "e2e_s": 0.5}, {"arrival_s": 3.1, "e2e_s": 0.1}]  # nested: busy 3-3.5
    assert busy_time_s(records) == pytest.approx(2.0)
    base = {"ttft_s": 0.1, "tpot_s": 0.01, "output_tokens": 5, "prompt_tokens": 9, "cut_off": False}
    stats = summarize_generation([{**base, **r, "cache": c, "model": m} for r, c, m in
                                  zip(records, ["miss", "exact", "miss", "semantic"], ["large", None, "small", None])],
                                 duration_s=4.0)
    assert stats["busy_s_per_request"] == pytest.approx(0.5)
    assert stats["cache_hit_rate"] == pytest.approx(0.5) and stats["small_model_share"] == pytest.approx(0.25)
    assert "cache_hit_rate" not in summarize_generation([{**base, **records[0]}], duration_s=1.0)
    assert cost_per_1k_busy(3.6, 0.5) == pytest.approx(0.5)  # $3.60/h, half a second per request


def test_a_trace_is_replayed_window_by_window_with_its_own_gaps(demo_pair: Path) -> None:
    from ratchet.hardware.benchmark.worker import OpenLoopServer

    generator = _generator(demo_pair / "large")
    requests = [f"Question: q{i}?\nAnswer:" for i in range(5)]
    arrivals = [0.0, 0.1, 0.3, 0.6, 1.0]
    server = OpenLoopServer(generator, {}, requests, target_qps=4.0, arrivals=arrivals)
    prompts, times = server.schedule(3, seed=0)
    assert prompts == requests[:3] and times == pytest.approx([0.0, 0.1, 0.3])
    prompts, times = server.schedule(3, seed=1)  # the next window, wrapping around the trace's end
    assert prompts == [requests[3], requests[4], requests[0]]
    assert times == pytest.approx([0.0, 0.4, 0.65])  # the last request is followed by the trace's mean gap
    poisson = OpenLoopServer(generator, {}, requests, target_qps=4.0)
    assert poisson.schedule(3, seed=2)[1] == pytest.approx(arrival_times(3, 4.0, 2))
    records, _ = server.run(3, seed=0)
    assert [r["arrival_s"] for r in records] == pytest.approx([0.0, 0.1, 0.3])


def test_dynamic_batching_waits_for_a_batch_to_fill(demo_pair: Path, prompts: list[str]) -> None:
    generator = _generator(demo_pair / "large")
    generator.answer(prompts[:2])  # warm
    arrivals = [0.0, 0.05, 0.1, 2.0]
    waiting = BatchingEngine(generator, max_batch=4, max_wait_s=0.3).serve(prompts[:4], arrivals)
    assert [a.meta["batch_size"] for a in waiting] == [3, 3, 3, 1]
    assert waiting[0].queued_s >= 0.09  # the first request waited for the third
    eager = BatchingEngine(generator, max_batch=4).serve(prompts[:4], arrivals)
    assert eager[0].meta["batch_size"] == 1 and eager[0].queued_s < 0.05


def test_kv_cache_memory_per_token_follows_the_config(demo_pair: Path) -> None:
    generator = _generator(demo_pair / "large")
    config = generator.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    expected = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4  # fp32 keys and values
    assert generator.kv_bytes_per_token() == expected
    import torch

    generator.model.to(torch.bfloat16)
    assert generator.kv_bytes_per_token() == expected // 2
