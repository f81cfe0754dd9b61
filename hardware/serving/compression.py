"""Prompt compression: keep only the retrieved context chunks most relevant to the question, under a budget.

The baseline is the simplest one that works: score each chunk of the
prompt's context against the question with the MiniLM embedder and keep the
best ones, in their original order, while they fit ``max_chunks`` and
``max_words``. A learned compressor (LLMLingua-2) is the other option the
literature offers; its own users report that on small local models it adds
more latency than it saves, and this top-k selection is what it would have
to beat here (README), so it is the one built.

A prompt is ``Context:`` then one ``- chunk`` line per chunk, then the
question (``evals.support_qa``'s template); a prompt without that shape is
left as it is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ratchet.hardware.runtimes.embedder import EMBEDDER, Embed, lazy_embedder
from ratchet.hardware.runtimes.generation import Generated
from ratchet.hardware.serving.cache import QUESTION_PATTERN

_CONTEXT = re.compile(r"^(Context:\n)((?:- [^\n]*\n)+)(.*)$", re.S)


class CompressionSettings(BaseModel):
    """A variant's prompt compression: ``runtime_options["serving"]["compression"]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_chunks: int = Field(1, ge=1, description="Context chunks kept, at most.")
    max_words: int | None = Field(None, ge=1, description="Words of context kept, at most (the best chunk always).")
    embedder: str = EMBEDDER


class Compressor:
    def __init__(self, settings: CompressionSettings, embed: Embed | None = None) -> None:
        self.settings = settings
        self.embed = embed or lazy_embedder(settings.embedder)

    def compress(self, prompt: str) -> str:
        match = _CONTEXT.match(prompt)
        question = re.search(QUESTION_PATTERN, prompt, flags=re.S)
        if match is None or question is None:
            return prompt
        head, block, tail = match.groups()
        chunks = [line[2:] for line in block.splitlines()]
        vectors = self.embed([question.group(1), *chunks])
        order = np.argsort(-(vectors[1:] @ vectors[0]), kind="stable")
        kept, words = [], 0
        for i in order[: self.settings.max_chunks]:
            size = len(chunks[i].split())
            if kept and self.settings.max_words is not None and words + size > self.settings.max_words:
                break
            kept.append(int(i))
            words += size
        return head + "".join(f"- {chunks[i]}\n" for i in sorted(kept)) + tail


class CompressedGenerator:
    """A generator whose prompts are compressed first; the compression is part of each request's time."""

    def __init__(self, generator: Any, compressor: Compressor) -> None:
        self.generator = generator
        self.compressor = compressor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def answer(self, texts: Sequence[str]) -> list[Generated]:
        start = time.perf_counter()
        prompts = [self.compressor.compress(t) for t in texts]
        spent = time.perf_counter() - start
        out = self.generator.answer(prompts)
        for answer in out:
            answer.token_times_s = [spent + t for t in answer.token_times_s]
        return out
