"""A response cache in front of a generator: exact match on the normalized question, then semantic match.

Wrong hits are the known failure of semantic caches (an answer to "reset my
password" served for "reset my username"), so this cache follows what the
careful ones do: it embeds only the user's question (never the retrieved
context, which would make every prompt look alike), it never matches across a
scope (tenant, prompt template version, model version: a new model version
starts empty), and its similarity threshold is tuned on labelled questions
for a bound on wrong hits (``tune_threshold``) and checked on others
(``cache_quality``). Exact matches come first: they need no embedding.

A hit is answered at once: its tokens all appear when the lookup ends. The
lookup (normalizing, embedding, the similarity scan) is part of every
request's latency, hit or miss.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ratchet.hardware.runtimes.embedder import EMBEDDER, Embed, lazy_embedder, sentence_embedder
from ratchet.hardware.runtimes.generation import Generated, token_matrix
from ratchet.hardware.serving.cache_stores import CacheStore, MemoryStore, RedisStore

QUESTION_PATTERN = r"Question:\s*(.*?)\s*\nAnswer:\s*$"  # the support agent's prompt template
THRESHOLDS = np.round(np.arange(0.5, 1.0001, 0.005), 3)  # what tuning tries, most hits first
TUNING_SAFETY = 0.5  # the threshold is tuned for half the false-hit bound: the held-out check has room to move


class CacheSettings(BaseModel):
    """How a variant's response cache works: ``runtime_options["serving"]["cache"]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    semantic: bool = True
    threshold: float = Field(0.95, gt=0, le=1, description="Smallest cosine similarity of two questions for a hit.")
    ttl_s: float | None = Field(None, gt=0, description="Seconds an answer is served; None: until invalidated.")
    template: str = Field("v1", description="Prompt template version: answers never cross templates.")
    model_version: str = Field("", description="The model's version: a new one never sees an older one's answers.")
    question_pattern: str = Field(QUESTION_PATTERN, description="Regex whose group 1 is the question in a prompt "
                                                               "(no match: the whole prompt is the question).")
    embedder: str = EMBEDDER
    store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "ratchet-cache"


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: what exact matching compares."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def question_of(prompt: str, pattern: str = QUESTION_PATTERN) -> str:
    match = re.search(pattern, prompt, flags=re.S)
    return match.group(1) if match else prompt


@dataclass
class Lookup:
    """One lookup's outcome; a miss keeps what ``store`` needs (the key and the embedding already computed)."""

    scope: str
    key: str
    kind: Literal["exact", "semantic", "miss"]
    answer: dict | None = None
    similarity: float | None = None
    embedding: np.ndarray | None = None


class ResponseCache:
    def __init__(self, settings: CacheSettings, store: CacheStore | None = None, embed: Embed | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else store_for(settings)
        self.embed = embed or lazy_embedder(settings.embedder)

    def scope(self, tenant: str) -> str:
        return f"{tenant}|{self.settings.template}|{self.settings.model_version}"

    def lookup(self, prompt: str, tenant: str = "default") -> Lookup:
        scope, key = self.scope(tenant), normalize(question_of(prompt, self.settings.question_pattern))
        answer = self.store.get(scope, key)
        if answer is not None:
            return Lookup(scope, key, "exact", answer, 1.0)
        embedding = self.embed([key])[0]
        if self.settings.semantic:
            keys, vectors = self.store.vectors(scope)
            if keys:
                sims = vectors @ embedding
                best = int(np.argmax(sims))
                if sims[best] >= self.settings.threshold:
                    answer = self.store.get(scope, keys[best])
                    if answer is not None:  # else it expired
                        return Lookup(scope, key, "semantic", answer, float(sims[best]))
        return Lookup(scope, key, "miss", embedding=embedding)

    def put(self, lookup: Lookup, answer: dict) -> None:
        """Keep the answer a missed lookup's request got."""
        embedding = lookup.embedding if lookup.embedding is not None else self.embed([lookup.key])[0]
        self.store.put(lookup.scope, lookup.key, embedding, answer, self.settings.ttl_s)

    def invalidate(self, tenant: str = "default") -> None:
        self.store.clear(self.scope(tenant))


def cached_answer(look: Lookup, at_s: float) -> Generated:
    """A hit as an answered request: every token appears at ``at_s``, when the lookup ended; no prompt was read."""
    tokens = look.answer["tokens"]
    return Generated(tokens, look.answer["text"], 0, [at_s] * len(tokens), look.answer["cut_off"],
                     meta={"cache": look.kind, "similarity": look.similarity})


def store_for(settings: CacheSettings) -> CacheStore:
    return RedisStore(settings.redis_url, settings.namespace) if settings.store == "redis" else MemoryStore()


class CachedGenerator:
    """A generator behind a response cache: hits are answered from the cache, misses by the generator (in one
    batch), whose answers are then kept. Everything else (tokenizer, limits) is the generator's."""

    def __init__(self, generator: Any, cache: ResponseCache, tenant: str = "default") -> None:
        self.generator = generator
        self.cache = cache
        self.tenant = tenant

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def answer(self, texts: Sequence[str]) -> list[Generated]:
        start = time.perf_counter()
        looked: list[tuple[Lookup, float]] = []  # each lookup, and when it ended
        for text in texts:
            look = self.cache.lookup(text, self.tenant)
            looked.append((look, time.perf_counter() - start))
        out = [cached_answer(look, at) if look.answer is not None else None for look, at in looked]
        missed = [i for i, a in enumerate(out) if a is None]
        if missed:
            spent = time.perf_counter() - start
            for i, fresh in zip(missed, self.generator.answer([texts[i] for i in missed])):
                fresh.token_times_s = [spent + t for t in fresh.token_times_s]
                fresh.meta["cache"] = "miss"
                self.cache.put(looked[i][0], {"tokens": fresh.tokens, "text": fresh.text, "cut_off": fresh.cut_off})
                out[i] = fresh
        return out  # type: ignore[return-value]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return token_matrix([g.tokens for g in self.answer(texts)], self.generator.max_new_tokens)


@dataclass(frozen=True)
class Outcome:
    """One lookup of a labelled question in a cache filled with other labelled questions."""

    exact: bool
    similarity: float  # to the nearest entry (1.0 for an exact match)
    right: bool  # the nearest entry's answer is this question's right answer


def outcomes(entries: Sequence[tuple[str, str]], queries: Sequence[tuple[str, str]], embed: Embed) -> list[Outcome]:
    """Each (question, label) of ``queries`` looked up among ``entries``: its exact match, else its nearest entry."""
    keys = [normalize(q) for q, _ in entries]
    exact = {k: label for k, (_, label) in zip(keys, entries)}
    vectors = embed(keys)
    out = []
    queried = embed([normalize(q) for q, _ in queries])
    for (question, label), vector in zip(queries, queried):
        key = normalize(question)
        if key in exact:
            out.append(Outcome(True, 1.0, exact[key] == label))
            continue
        sims = vectors @ vector
        best = int(np.argmax(sims))
        out.append(Outcome(False, float(sims[best]), entries[best][1] == label))
    return out


def rates(found: Sequence[Outcome], threshold: float, semantic: bool = True) -> dict[str, float]:
    """Hit rate, false-hit rate (wrong answers served per lookup) and the share of hits that were wrong."""
    hits = [o for o in found if o.exact or (semantic and o.similarity >= threshold)]
    wrong = sum(not o.right for o in hits)
    n = max(1, len(found))
    return {"hit_rate": len(hits) / n, "false_hit_rate": wrong / n,
            "wrong_share_of_hits": wrong / len(hits) if hits else 0.0, "lookups": float(len(found))}


def tune_threshold(questions: Sequence[tuple[str, str]], embed: Embed, max_false_hit_rate: float) -> tuple[float, dict]:
    """The lowest threshold (most hits) whose false-hit rate stays within ``TUNING_SAFETY`` of the bound, found by
    two-fold lookups among ``questions`` (each half looked up in a cache holding the other half)."""
    ordered = sorted(questions)
    halves = ordered[0::2], ordered[1::2]
    found = outcomes(halves[0], halves[1], embed) + outcomes(halves[1], halves[0], embed)
    for threshold in THRESHOLDS:
        measured = rates(found, float(threshold))
        if measured["false_hit_rate"] <= max_false_hit_rate * TUNING_SAFETY:
            return float(threshold), measured
    return 1.0, rates(found, 1.0)


def cache_quality(settings: CacheSettings, fill: Sequence[tuple[str, str]], lookups: Sequence[tuple[str, str]],
                  embed: Embed | None = None) -> dict[str, float]:
    """``settings``' hit and false-hit rates when ``lookups`` arrive at a cache holding ``fill``'s answers."""
    found = outcomes(fill, lookups, embed or sentence_embedder(settings.embedder))
    return rates(found, settings.threshold, settings.semantic)
