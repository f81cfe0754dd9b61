"""Causal LMs answering prompts, with every output token's real timestamp.

A generator answers a prompt greedily and records when each token came out
(a ``transformers`` streamer is called as tokens are produced), so time to
first token, time per output token and inter-token latency are measured, not
estimated from the whole answer's duration. Greedy decoding makes the answer
a function of the model, which is what lets the gate demand that a decoding
technique (speculative decoding, a static cache) leaves it unchanged.

How a variant decodes is a serving option, not a weight change: the
variant's ``runtime_options["decoding"]`` holds the keyword arguments its
``generate`` calls get (``prompt_lookup_num_tokens``, ``assistant`` with
``num_assistant_tokens``, ``cache_implementation``), so a registered champion
decodes exactly as it was measured. ``runtime_options["output_length"]`` caps
the answer (``max_new_tokens``) and, when an answer was cut off, answers again
at ``retry_max_new_tokens``: the retry is part of the request, in its latency
and cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import Shape

if TYPE_CHECKING:
    import torch

GENERATED_PAD = -1  # fills a continuation after its end of sequence
SINGLE_ROW_OPTIONS = ("assistant", "prompt_lookup_num_tokens")  # transformers decodes these one prompt at a time


@dataclass
class Generated:
    """One answered request: its tokens and text, and when each token appeared (seconds after the start)."""

    tokens: list[int]
    text: str
    prompt_tokens: int
    token_times_s: list[float]
    cut_off: bool  # stopped by max_new_tokens rather than by an end of sequence
    queued_s: float = 0.0  # waiting before the model started on it (server scenario)
    meta: dict[str, Any] = field(default_factory=dict)
    logprobs: list[float] | None = None  # each token's log-probability, when the generator was asked for them

    @property
    def ttft_s(self) -> float | None:
        return self.queued_s + self.token_times_s[0] if self.token_times_s else None

    @property
    def e2e_s(self) -> float:
        return self.queued_s + (self.token_times_s[-1] if self.token_times_s else 0.0)

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT); None for a one-token answer."""
        n = len(self.token_times_s)
        return (self.token_times_s[-1] - self.token_times_s[0]) / (n - 1) if n > 1 else None

    def itl_s(self) -> list[float]:
        """Gaps between consecutive tokens; tokens accepted together (speculative decoding) have gap 0."""
        return list(np.diff(self.token_times_s)) if len(self.token_times_s) > 1 else []

    def record(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "output_tokens": len(self.tokens), "ttft_s": self.ttft_s,
                "tpot_s": self.tpot_s, "e2e_s": self.e2e_s, "queued_s": self.queued_s, "cut_off": self.cut_off,
                **self.meta}


class TokenClock:
    """A ``transformers`` streamer that timestamps each step's new tokens, per row of the batch.

    ``generate`` calls ``put`` once with the prompt, then with each step's tokens (shape ``(batch,)``, or
    ``(1, k)`` when speculative decoding accepts k tokens at once).
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.start = time.perf_counter()
        self.steps: list[tuple[float, np.ndarray]] = []
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        now = time.perf_counter()
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        tokens = value.detach().cpu().numpy().reshape(self.rows, -1)
        self.steps.append((now - self.start, tokens))

    def end(self) -> None:
        pass

    def per_row(self, eos: int | None, limit: int) -> list[tuple[list[int], list[float], bool]]:
        """Each row's tokens up to and including its end of sequence, their times, and whether it was cut off."""
        out = []
        for row in range(self.rows):
            tokens: list[int] = []
            times: list[float] = []
            ended = False
            for t, step in self.steps:
                for token in step[row].tolist():
                    if ended or len(tokens) >= limit:
                        break
                    tokens.append(int(token))
                    times.append(t)
                    ended = eos is not None and token == eos
            out.append((tokens, times, not ended))
        return out


class TorchGenerator:
    """A causal LM variant that answers prompts (greedy), as its ``decoding`` options say."""

    def __init__(self, variant: Variant, shape: Shape, device: str = "cpu", logprobs: bool = False) -> None:
        import torch
        from transformers import AutoTokenizer

        from ratchet.hardware.runtimes.torch_runtime import load_hf_model

        self.tokenizer = AutoTokenizer.from_pretrained(variant.path)
        self.tokenizer.padding_side = "left"  # decoder-only models continue from the last position
        self.tokenizer.truncation_side = "left"  # a long context loses its start, never the question
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device)
        self.model = load_hf_model(variant).to(self.device)
        self.sequence_length = shape.sequence_length
        self.max_new_tokens = shape.max_new_tokens
        self.decoding = dict(variant.runtime_options.get("decoding", {}))
        assistant = self.decoding.pop("assistant", None)
        if assistant is not None:
            draft = Variant(name="draft", path=assistant, task=variant.task)
            self.decoding["assistant_model"] = load_hf_model(draft).to(self.device)
        if self.decoding.pop("compile", False):
            # With a static cache every decode step has one shape, which inductor specialises on.
            self.model.forward = torch.compile(self.model.forward, dynamic=False)
        self.one_row = any(k in variant.runtime_options.get("decoding", {}) for k in SINGLE_ROW_OPTIONS)
        length = variant.runtime_options.get("output_length", {})
        self.limit = min(length.get("max_new_tokens", self.max_new_tokens), self.max_new_tokens)
        self.retry_limit = length.get("retry_max_new_tokens")
        self.logprobs = logprobs  # score each answer's tokens (what a router's confidence reads)

    def answer(self, texts: Sequence[str]) -> list[Generated]:
        """Answer each prompt (at the variant's output limit, retrying answers that were cut off)."""
        answers = self._generate(texts, self.limit)
        if self.retry_limit:
            cut = [i for i, a in enumerate(answers) if a.cut_off]
            for i, again in zip(cut, self._generate([texts[i] for i in cut], self.retry_limit) if cut else []):
                spent = answers[i].token_times_s[-1] if answers[i].token_times_s else 0.0
                again.token_times_s = [spent + t for t in again.token_times_s]
                again.meta.update(retried=True, first_try_s=spent)
                answers[i] = again
        return answers

    def _generate(self, texts: Sequence[str], limit: int) -> list[Generated]:
        """Greedy answers of at most ``limit`` tokens; rows are batched unless the decoding method takes one
        prompt at a time."""
        if self.one_row and len(texts) > 1:
            return [g for text in texts for g in self._generate([text], limit)]
        import torch

        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.sequence_length,
                             return_tensors="pt").to(self.device)
        clock = TokenClock(len(texts))
        scored = {"output_scores": True, "return_dict_in_generate": True} if self.logprobs else {}
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=limit, do_sample=False, streamer=clock,
                                      pad_token_id=self.tokenizer.pad_token_id, **scored, **self.decoding)
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        rows = clock.per_row(self.tokenizer.eos_token_id, limit)
        answers = [Generated(tokens, self.text_of(tokens), int(n), times, cut)
                   for (tokens, times, cut), n in zip(rows, prompt_lengths)]
        if self.logprobs:
            steps = torch.stack(out.scores, dim=1).log_softmax(dim=-1)  # (rows, steps, vocab)
            for row, answer in enumerate(answers):
                picked = steps[row, torch.arange(len(answer.tokens)), torch.tensor(answer.tokens, dtype=torch.long)]
                answer.logprobs = picked.tolist()
        return answers

    def kv_bytes_per_token(self) -> int:
        """Memory one token keeps in the KV cache: keys and values, every layer, every KV head, at the weights'
        dtype (what a prefix cache saves per shared token, and what bounds a batch's length)."""
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return 2 * config.num_hidden_layers * heads * head_dim * self.model.dtype.itemsize

    def text_of(self, tokens: list[int]) -> str:
        """An answer's text: the tokens decoded without special tokens (an end of sequence is not said)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids per prompt, ``max_new_tokens`` wide, ``-1`` after the end of sequence (what is compared)."""
        return token_matrix([g.tokens for g in self.answer(texts)], self.max_new_tokens)


def token_matrix(rows: list[list[int]], width: int) -> np.ndarray:
    """Rows of token ids (each up to and including its end of sequence) padded with ``GENERATED_PAD``."""
    out = np.full((len(rows), width), GENERATED_PAD, dtype=np.int64)
    for i, tokens in enumerate(rows):
        out[i, : min(len(tokens), width)] = tokens[:width]
    return out
