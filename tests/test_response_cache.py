"""The response cache: exact and semantic hits, no hit across scopes or on near-miss questions, TTL, tuning
for a false-hit bound, a generator behind it, and Redis shared by two serving processes (a real redis-server
these tests start)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import Shape
from ratchet.hardware.runtimes.embedder import sentence_embedder
from ratchet.hardware.runtimes.generation import TorchGenerator
from ratchet.hardware.serving.cache import (CachedGenerator, CacheSettings, ResponseCache, cache_quality, normalize,
                                            outcomes, question_of, rates, tune_threshold)
from ratchet.hardware.serving.cache_stores import MemoryStore, RedisStore

PROMPT = "Context:\n- some FAQ text.\nQuestion: {q}\nAnswer:"
ANSWER = {"tokens": [5, 6, 7], "text": "Click Forgot password.", "cut_off": False}


@pytest.fixture(scope="module")
def embed():
    return sentence_embedder()


def cache(embed, **settings) -> ResponseCache:
    return ResponseCache(CacheSettings(**settings), MemoryStore(), embed)


def fill(c: ResponseCache, question: str, answer: dict = ANSWER, tenant: str = "default") -> None:
    look = c.lookup(PROMPT.format(q=question), tenant)
    assert look.kind == "miss"
    c.put(look, answer)


def test_normalize_and_question_of() -> None:
    assert normalize("  How do I RESET my password?! ") == "how do i reset my password"
    assert question_of(PROMPT.format(q="reset it")) == "reset it"
    assert question_of("no template here") == "no template here"


def test_exact_then_semantic_hits_and_near_misses(embed) -> None:
    c = cache(embed, threshold=0.85)
    fill(c, "How do I reset my password?")
    exact = c.lookup(PROMPT.format(q="how do i reset my PASSWORD"))
    assert exact.kind == "exact" and exact.answer == ANSWER
    reworded = c.lookup(PROMPT.format(q="I need to reset my password"))
    assert reworded.kind == "semantic" and reworded.similarity >= 0.85 and reworded.answer == ANSWER
    # Another context does not matter (only the question is matched)...
    assert c.lookup("Context:\n- other text\nQuestion: How do I reset my password?\nAnswer:").kind == "exact"
    # ...but another question does, even a close one.
    assert c.lookup(PROMPT.format(q="How do I reset my username?")).kind == "miss"
    assert c.lookup(PROMPT.format(q="What does the Business plan cost?")).kind == "miss"


def test_exact_only_cache_never_matches_by_meaning(embed) -> None:
    c = cache(embed, semantic=False, threshold=0.5)
    fill(c, "How do I reset my password?")
    assert c.lookup(PROMPT.format(q="I need to reset my password")).kind == "miss"


def test_scopes_tenant_template_and_model_version(embed) -> None:
    store = MemoryStore()
    c = ResponseCache(CacheSettings(model_version="a"), store, embed)
    fill(c, "reset my password", tenant="acme")
    assert c.lookup(PROMPT.format(q="reset my password"), "acme").kind == "exact"
    assert c.lookup(PROMPT.format(q="reset my password"), "globex").kind == "miss"
    for changed in ({"model_version": "b"}, {"model_version": "a", "template": "v2"}):
        other = ResponseCache(CacheSettings(**changed), store, embed)
        assert other.lookup(PROMPT.format(q="reset my password"), "acme").kind == "miss"
    c.invalidate("acme")
    assert c.lookup(PROMPT.format(q="reset my password"), "acme").kind == "miss"


def test_entries_expire(embed, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    c = cache(embed, ttl_s=60, threshold=0.9)
    fill(c, "reset my password")
    now[0] += 59
    assert c.lookup(PROMPT.format(q="reset my password")).kind == "exact"
    assert c.lookup(PROMPT.format(q="reset my password now")).kind == "semantic"
    now[0] += 2
    assert c.lookup(PROMPT.format(q="reset my password")).kind == "miss"
    assert c.lookup(PROMPT.format(q="reset my password now")).kind == "miss"


def test_rates_count_hits_and_wrong_hits(embed) -> None:
    entries = [("how do I reset my password", "pw"), ("what does the Business plan cost", "price")]
    queries = [("how do I reset my password", "pw"), ("I need to reset my password", "pw"), ("how do I reset my username", "user"),
               ("tell me a joke about penguins", "none")]
    found = outcomes(entries, queries, embed)
    assert found[0].exact and found[0].right
    assert not found[1].exact and found[1].right and found[1].similarity > found[3].similarity
    assert not found[2].right
    strict, loose = rates(found, 0.999), rates(found, 0.0)
    assert strict == {"hit_rate": 0.25, "false_hit_rate": 0.0, "wrong_share_of_hits": 0.0, "lookups": 4.0}
    assert loose["hit_rate"] == 1.0 and loose["false_hit_rate"] == 0.5 and loose["wrong_share_of_hits"] == 0.5


def test_tuned_threshold_holds_the_bound_on_tuning_and_is_checked_on_heldout(qa_workload, embed) -> None:
    tuning = [(q.text, q.label) for q in qa_workload.labelled_questions("tuning")]
    heldout = [(q.text, q.label) for q in qa_workload.labelled_questions("heldout")]
    strict, tuned = tune_threshold(tuning, embed, 0.01)
    loose, tuned_loose = tune_threshold(tuning, embed, 0.2)
    assert tuned["false_hit_rate"] <= 0.005 and tuned["hit_rate"] > 0
    assert loose <= strict and tuned_loose["hit_rate"] >= tuned["hit_rate"]
    checked = cache_quality(CacheSettings(threshold=strict), tuning, heldout, embed)
    anything = cache_quality(CacheSettings(threshold=0.3), tuning, heldout, embed)
    assert checked["lookups"] == len(heldout)
    assert anything["hit_rate"] > checked["hit_rate"] and anything["false_hit_rate"] > checked["false_hit_rate"]


def test_generator_behind_the_cache(demo_pair: Path, embed) -> None:
    generator = TorchGenerator(Variant(name="large", path=demo_pair / "large", task="text-generation"), Shape(128, 12))
    served = CachedGenerator(generator, ResponseCache(CacheSettings(threshold=0.9), MemoryStore(), embed))
    prompts = [PROMPT.format(q="how do I reset my password"), PROMPT.format(q="what does the Business plan cost")]
    first = served.answer(prompts)
    assert [a.meta["cache"] for a in first] == ["miss", "miss"]
    again = served.answer([prompts[1], PROMPT.format(q="How do I reset my password?"), PROMPT.format(q="hello there")])
    assert [a.meta["cache"] for a in again] == ["exact", "exact", "miss"]
    assert again[0].tokens == first[1].tokens and again[0].text == first[1].text
    assert again[0].prompt_tokens == 0 and again[0].e2e_s < first[1].e2e_s
    assert served.max_new_tokens == 12  # the generator's own settings show through
    matrix = served.predict(prompts)
    assert matrix.shape == (2, 12) and np.array_equal(matrix[0][: len(first[0].tokens)], first[0].tokens)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A redis-server of the tests' own (an empty one on a free port), stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (the project's machines have Debian's Redis 7)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)


def test_redis_store_shares_entries_between_replicas(redis_url: str, embed) -> None:
    settings = CacheSettings(store="redis", redis_url=redis_url, threshold=0.85, namespace="replicas")
    one = ResponseCache(settings, RedisStore(redis_url, "replicas"), embed)
    two = ResponseCache(settings, RedisStore(redis_url, "replicas"), embed)
    fill(one, "How do I reset my password?")
    assert two.lookup(PROMPT.format(q="how do I reset my password")).kind == "exact"
    look = two.lookup(PROMPT.format(q="I need to reset my password"))
    assert look.kind == "semantic" and look.answer == ANSWER
    fill(two, "What does the Business plan cost?", {"tokens": [1], "text": "$12", "cut_off": False})
    assert one.lookup(PROMPT.format(q="what does the business plan cost")).answer["text"] == "$12"
    assert one.lookup(PROMPT.format(q="How do I reset my username?")).kind == "miss"
    # Invalidation by one replica empties the scope for both; the other's mirror starts again.
    one.invalidate()
    assert two.lookup(PROMPT.format(q="I need to reset my password")).kind == "miss"
    fill(one, "How do I export invoices?")
    assert two.lookup(PROMPT.format(q="how can I export my invoices")).kind == "semantic"


def test_redis_entries_expire(redis_url: str, embed) -> None:
    c = ResponseCache(CacheSettings(store="redis", redis_url=redis_url, ttl_s=1, namespace="ttl"),
                      RedisStore(redis_url, "ttl"), embed)
    fill(c, "reset my password")
    assert c.lookup(PROMPT.format(q="reset my password")).kind == "exact"
    time.sleep(2.1)
    assert c.lookup(PROMPT.format(q="reset my password")).kind == "miss"


SERVE = """
import json, sys
from ratchet.hardware.serving.cache import CacheSettings, ResponseCache
cache = ResponseCache(CacheSettings(store="redis", redis_url=sys.argv[1], threshold=0.85, namespace="processes"))
for line in sys.stdin:
    command = json.loads(line)
    look = cache.lookup(command["prompt"])
    if look.kind == "miss" and "answer" in command:
        cache.put(look, command["answer"])
    print(json.dumps({"kind": look.kind, "text": (look.answer or {}).get("text")}), flush=True)
"""


def test_two_serving_processes_share_hits_through_redis(redis_url: str) -> None:
    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", SERVE, redis_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)

    def ask(process: subprocess.Popen, prompt: str, answer: dict | None = None) -> dict:
        import json

        process.stdin.write(json.dumps({"prompt": prompt, **({"answer": answer} if answer else {})}) + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    first, second = start(), start()
    try:
        assert ask(first, PROMPT.format(q="How do I reset my password?"), ANSWER)["kind"] == "miss"
        assert ask(second, PROMPT.format(q="how do I reset my password")) == {"kind": "exact", "text": ANSWER["text"]}
        assert ask(second, PROMPT.format(q="I need to reset my password"))["kind"] == "semantic"
        assert ask(second, PROMPT.format(q="How do I reset my username?"))["kind"] == "miss"
    finally:
        for process in (first, second):
            process.stdin.close()
            process.wait(60)
