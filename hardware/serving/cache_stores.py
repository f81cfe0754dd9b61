"""Where a response cache keeps its entries: in this process, or in Redis so several replicas share hits.

An entry is an answer (tokens and text) under a key (the normalized question)
and the question's embedding. Redis 7 (the one Debian ships) has no vector
search, so similarity is computed by Ratchet over the embeddings the store
keeps: each replica mirrors a scope's embeddings locally and fetches only the
entries added since it last looked (an append-only list of keys per scope),
so a lookup costs one round trip when nothing changed, not a transfer of
every vector. Entries expire by TTL (Redis ``EX``; checked on read here), and
a scope (tenant, prompt template, model version) is dropped as a whole.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class CacheStore(Protocol):
    def get(self, scope: str, key: str) -> dict | None:
        """The answer stored under ``key`` in ``scope``, unless it expired."""

    def put(self, scope: str, key: str, embedding: np.ndarray, answer: dict, ttl_s: float | None) -> None:
        """Keep ``answer`` under ``key`` with the question's ``embedding``."""

    def vectors(self, scope: str) -> tuple[list[str], np.ndarray]:
        """Every key of ``scope`` with an embedding, and the embeddings as rows (expired ones may remain: ``get``
        is the judge)."""

    def clear(self, scope: str) -> None:
        """Drop the scope's entries (a new model version, a changed knowledge base)."""


@dataclass
class _Scope:
    answers: dict[str, tuple[dict, float]] = field(default_factory=dict)  # key -> (answer, expires at)
    keys: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)


class MemoryStore:
    """Entries in this process: the default (one replica, nothing to run)."""

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}

    def get(self, scope: str, key: str) -> dict | None:
        entry = self._scopes.get(scope, _Scope()).answers.get(key)
        return entry[0] if entry is not None and entry[1] > time.time() else None

    def put(self, scope: str, key: str, embedding: np.ndarray, answer: dict, ttl_s: float | None) -> None:
        state = self._scopes.setdefault(scope, _Scope())
        if key not in state.answers:
            state.keys.append(key)
            state.rows.append(np.asarray(embedding, np.float32))
        state.answers[key] = (answer, time.time() + ttl_s if ttl_s else float("inf"))

    def vectors(self, scope: str) -> tuple[list[str], np.ndarray]:
        state = self._scopes.get(scope)
        if state is None or not state.keys:
            return [], np.zeros((0, 0), np.float32)
        return state.keys, np.stack(state.rows)

    def clear(self, scope: str) -> None:
        self._scopes.pop(scope, None)


class RedisStore:
    """Entries in Redis (``redis://host:port/db``), shared by every replica that names the same ``namespace``."""

    def __init__(self, url: str, namespace: str = "ratchet-cache") -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.namespace = namespace
        self._mirror: dict[str, tuple[list[str], list[np.ndarray]]] = {}

    def _key(self, scope: str, *parts: str) -> str:
        return ":".join([self.namespace, scope, *parts])

    def get(self, scope: str, key: str) -> dict | None:
        raw = self.client.get(self._key(scope, "answer", key))
        return json.loads(raw) if raw is not None else None

    def put(self, scope: str, key: str, embedding: np.ndarray, answer: dict, ttl_s: float | None) -> None:
        pipe = self.client.pipeline()
        pipe.set(self._key(scope, "answer", key), json.dumps(answer), ex=max(1, round(ttl_s)) if ttl_s else None)
        pipe.hsetnx(self._key(scope, "vectors"), key, np.asarray(embedding, np.float32).tobytes())
        pipe.execute()
        # The key joins the scope's list once, by whichever replica adds it to the set first, after its vector.
        if self.client.sadd(self._key(scope, "listed"), key):
            self.client.rpush(self._key(scope, "keys"), key)

    def vectors(self, scope: str) -> tuple[list[str], np.ndarray]:
        keys, rows = self._mirror.setdefault(scope, ([], []))
        pipe = self.client.pipeline()
        pipe.llen(self._key(scope, "keys"))
        pipe.lrange(self._key(scope, "keys"), len(keys), -1)
        length, new = pipe.execute()
        if length < len(keys):  # another replica cleared the scope: start the mirror again
            self._mirror.pop(scope)
            return self.vectors(scope)
        if new:
            names = [k.decode() for k in new]
            for key, blob in zip(names, self.client.hmget(self._key(scope, "vectors"), names)):
                keys.append(key)
                rows.append(np.frombuffer(blob, np.float32))
        return (keys, np.stack(rows)) if keys else ([], np.zeros((0, 0), np.float32))

    def clear(self, scope: str) -> None:
        names = list(self.client.scan_iter(match=self._key(scope, "*"), count=1000))
        if names:
            self.client.delete(*names)
        self._mirror.pop(scope, None)
