"""Cheap-first routing: confidence from token log-probabilities, escalation, the quality/cost curve and the
threshold it picks, and the routed stack on the demo pair (test size)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import Shape
from ratchet.hardware.runtimes.generation import TorchGenerator
from ratchet.hardware.serving.routing import (RoutedGenerator, RouterSettings, confidence, pick_threshold, refused,
                                              routing_curve)


def test_confidence_is_a_low_quantile_not_the_mean() -> None:
    one_guess = [-0.01] * 19 + [-5.0]  # a fluent answer with one guessed token
    assert confidence(one_guess, 0.0) == -5.0
    assert confidence(one_guess, 0.5) == pytest.approx(-0.01)
    assert np.mean(one_guess) > -0.3  # the mean hides it
    assert confidence([], 0.1) == -math.inf and confidence(None, 0.1) == -math.inf


def test_refusal_detection_is_normalized() -> None:
    refusal = "Sorry, I can't help with that."
    assert refused("  sorry, I CAN'T help   with that. ", refusal)
    assert not refused("Go to Settings > Billing.", refusal) and not refused("anything", None)


def test_curve_and_the_cheapest_threshold_within_the_drop() -> None:
    conf = [-0.1, -0.5, -2.0, -3.0]
    q_small, q_large = [0.9, 0.8, 0.2, 0.1], [0.9, 0.9, 0.9, 0.9]
    curve = routing_curve(conf, q_small, q_large, cost_small=1.0, cost_large=5.0)
    by_threshold = {p.threshold: p for p in curve}
    assert by_threshold[-0.5].small_share == 0.5 and by_threshold[-0.5].quality == pytest.approx((0.9 + 0.8 + 1.8) / 4)
    assert by_threshold[-0.5].relative_cost == pytest.approx((1 + 0.5 * 5) / 5)
    assert by_threshold[math.inf].small_share == 0 and by_threshold[math.inf].quality == pytest.approx(0.9)
    assert pick_threshold(curve, 0.9, max_drop=0.03).threshold == -0.5
    assert pick_threshold(curve, 0.9, max_drop=0.0).threshold in (-0.1, math.inf)
    assert pick_threshold(curve, 0.9, max_drop=1.0).threshold == -3.0  # everything to the small model


def test_generator_scores_its_own_tokens(demo_pair: Path) -> None:
    variant = Variant(name="small", path=demo_pair / "small", task="text-generation")
    scored = TorchGenerator(variant, Shape(128, 10), logprobs=True)
    answers = scored.answer(["Question: how do I reset my password?\nAnswer:", "Question: hi\nAnswer:"])
    for a in answers:
        assert a.logprobs is not None and len(a.logprobs) == len(a.tokens)
        assert all(lp <= 0 for lp in a.logprobs)
    # Greedy: each chosen token is the most likely one, so its log-probability is at least log(1/vocab).
    assert min(min(a.logprobs) for a in answers) >= math.log(1 / len(scored.tokenizer)) - 1e-4
    plain = TorchGenerator(variant, Shape(128, 10)).answer(["Question: hi\nAnswer:"])[0]
    assert plain.logprobs is None and plain.tokens == answers[1].tokens


def test_routed_generator_escalates_the_unsure(demo_pair: Path) -> None:
    shape = Shape(128, 10)
    large = TorchGenerator(Variant(name="large", path=demo_pair / "large", task="text-generation"), shape)
    small = TorchGenerator(Variant(name="small", path=demo_pair / "small", task="text-generation"), shape, logprobs=True)
    prompts = ["Question: how do I reset my password?\nAnswer:", "Question: what is the refund policy?\nAnswer:"]
    never = RoutedGenerator(large, small, RouterSettings(small=str(demo_pair / "small"), threshold=-math.inf))
    always = RoutedGenerator(large, small, RouterSettings(small=str(demo_pair / "small"), threshold=1.0))
    cheap, costly = never.answer(prompts), always.answer(prompts)
    assert [a.meta["model"] for a in cheap] == ["small", "small"]
    assert [a.meta["model"] for a in costly] == ["large", "large"]
    assert [a.tokens for a in costly] == [a.tokens for a in large.answer(prompts)]
    # An escalated answer waited for the small model's answer first.
    assert all(a.token_times_s[0] > 0 for a in costly)
    middle = sorted(a.meta["confidence"] for a in cheap)[0] + 1e-9
    split = RoutedGenerator(large, small, RouterSettings(small=str(demo_pair / "small"), threshold=middle)).answer(prompts)
    assert sorted(a.meta["model"] for a in split) == ["large", "small"]
    assert never.max_new_tokens == 10


def test_continuous_batching_serves_the_whole_stack_per_request(demo_pair: Path) -> None:
    """Cache, router and continuous batching together: repeats later in the same run hit answers that finished
    earlier in it, misses go to the small model's manager and unsure ones on to the large model's; every request
    gets its own answer, the one the stack gives one at a time."""
    from ratchet.hardware.runtimes.serving import BatchingEngine, ContinuousEngine, engine_for
    from ratchet.hardware.serving.cache import CachedGenerator, CacheSettings, ResponseCache
    from ratchet.hardware.serving.cache_stores import MemoryStore
    from ratchet.hardware.runtimes.embedder import sentence_embedder

    shape = Shape(128, 10)
    large = TorchGenerator(Variant(name="large", path=demo_pair / "large", task="text-generation"), shape)
    small = TorchGenerator(Variant(name="small", path=demo_pair / "small", task="text-generation"), shape, logprobs=True)
    questions = ["how do I reset my password", "what is the refund policy", "can I export invoices"]
    prompts = [f"Question: {q}\nAnswer:" for q in questions]
    probe = RoutedGenerator(large, small, RouterSettings(small=str(demo_pair / "small"), threshold=-math.inf))
    confidences = sorted(a.meta["confidence"] for a in probe.answer(prompts))
    router = RouterSettings(small=str(demo_pair / "small"), threshold=confidences[1])  # some escalate, not all

    def stack() -> CachedGenerator:
        return CachedGenerator(RoutedGenerator(large, small, router),
                               ResponseCache(CacheSettings(threshold=0.99), MemoryStore(), sentence_embedder()))

    one_at_a_time = {p: a for p, a in zip(prompts, stack().answer(prompts))}
    engine = engine_for(stack(), {"engine": "continuous", "max_batch_tokens": 256})
    assert isinstance(engine, ContinuousEngine) and set(engine.managers) == {"small", "large"}
    schedule = [*prompts, prompts[0], prompts[2]]
    try:
        engine.serve(["Question: hello\nAnswer:"], [0.0])  # warm: the managers' first batches
        answers = engine.serve(schedule, [0.0, 0.0, 0.0, 3.0, 3.1])
    finally:
        engine.close()
    assert max(a.e2e_s for a in answers[:3]) < 3.0  # the originals had finished when their repeats arrived
    assert [a.meta["cache"] for a in answers] == ["miss", "miss", "miss", "exact", "exact"]
    for prompt, answer in zip(schedule, answers):
        assert answer.text == one_at_a_time[prompt].text
    models = [a.meta["model"] for a in answers[:3]]
    assert models == [one_at_a_time[p].meta["model"] for p in prompts] and set(models) == {"small", "large"}
    assert answers[3].e2e_s < 0.5 and answers[3].tokens == answers[0].tokens
    assert isinstance(engine_for(stack(), {"engine": "static"}), BatchingEngine)
