"""Prompt compression: the chunk that answers the question is kept, in order, under the budget; prompts of
another shape pass unchanged; the compressed stack answers what the model answers to the compressed prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.evals.support_qa import prompt_text
from ratchet.hardware.runtimes import Shape, load_variant
from ratchet.hardware.runtimes.embedder import sentence_embedder
from ratchet.hardware.runtimes.generation import TorchGenerator
from ratchet.hardware.serving.compression import CompressedGenerator, CompressionSettings, Compressor
from ratchet.tasks.techniques import technique_for

PASSWORD = "How do I reset my password? Click Forgot password on the sign-in page."
DARK = "Is there a dark mode? Yes, go to Profile > Preferences > Theme."
INVOICE = "Where are my invoices? Billing > Invoices lists every invoice as a PDF."


@pytest.fixture(scope="module")
def compressor():
    return Compressor(CompressionSettings(max_chunks=1), sentence_embedder())


def test_keeps_the_relevant_chunk_whatever_its_position(compressor: Compressor) -> None:
    for chunks in ([DARK, PASSWORD], [PASSWORD, DARK], [INVOICE, DARK, PASSWORD]):
        prompt = prompt_text("I forgot my password", chunks)
        assert compressor.compress(prompt) == prompt_text("I forgot my password", [PASSWORD])


def test_keeps_the_original_order_and_the_word_budget() -> None:
    prompt = prompt_text("invoices and passwords", [DARK, PASSWORD, INVOICE])
    two = Compressor(CompressionSettings(max_chunks=2), sentence_embedder()).compress(prompt)
    assert two == prompt_text("invoices and passwords", [PASSWORD, INVOICE])
    tight = Compressor(CompressionSettings(max_chunks=3, max_words=15), sentence_embedder()).compress(prompt)
    kept = [line for line in tight.splitlines() if line.startswith("- ")]
    assert len(kept) == 1 and kept[0][2:] in (PASSWORD, INVOICE)  # the best one always stays, the next does not fit


def test_prompts_without_the_context_shape_pass_unchanged(compressor: Compressor) -> None:
    for prompt in ("just a question?", "Question: what?\nAnswer:", "Context:\nno dashes\nQuestion: x\nAnswer:"):
        assert compressor.compress(prompt) == prompt


def test_the_stack_answers_the_compressed_prompt(demo_pair: Path, compressor: Compressor) -> None:
    variant = Variant(name="large", path=demo_pair / "large", task="text-generation")
    model = TorchGenerator(variant, Shape(256, 10))
    prompt = prompt_text("I forgot my password", [DARK, PASSWORD])
    answer = CompressedGenerator(model, compressor).answer([prompt])[0]
    direct = model.answer([compressor.compress(prompt)])[0]
    assert answer.tokens == direct.tokens and answer.prompt_tokens == direct.prompt_tokens
    assert answer.prompt_tokens < model.answer([prompt])[0].prompt_tokens
    assert answer.token_times_s[0] > 0


def test_the_step_adds_compression_to_the_serving_options(demo_pair: Path, tmp_path: Path) -> None:
    technique = technique_for("prompt_compression")
    spec = technique.spec_type(max_chunks=1)
    source = Variant(name="c", path=demo_pair / "large", task="text-generation",
                     runtime_options={"serving": {"engine": "static", "max_batch": 4}})
    assert technique.availability(spec, source).ok
    variant = technique.apply(spec, source, tmp_path, None)
    assert variant.runtime_options["serving"] == {"engine": "static", "max_batch": 4,
                                                  "compression": {"max_chunks": 1, "max_words": None,
                                                                  "embedder": "sentence-transformers/all-MiniLM-L6-v2"}}
    assert not technique.availability(spec, variant).ok
    loaded = load_variant(variant, HardwareSpec(), Shape(256, 8))
    assert isinstance(loaded, CompressedGenerator)
    encoder = Variant(name="e", path=demo_pair / "large", task="feature-extraction")
    assert "does not generate" in technique.availability(spec, encoder).reason
