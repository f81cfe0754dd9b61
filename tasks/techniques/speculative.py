"""Speculative decoding: cheap drafts of several tokens, verified by the model in one forward pass.

Two drafters, both through ``transformers``' ``generate``:

* ``draft_model``: assisted generation with a smaller causal LM that shares
  the model's tokenizer (the demo pair's small model, for the demo large one);
* ``prompt_lookup``: n-gram drafts copied from the prompt itself, strong when
  answers copy from retrieved context, and free of any second model.

Under greedy decoding the verified output is the model's own, token for token,
so this step declares ``exact_outputs``: the gate compares its answers with the
champion's and rejects the step on any difference (a numerical near-tie in a
batched verification pass can flip one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ratchet.core.availability import Availability
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TECHNIQUES, TechniqueContext, TechniqueSpec
from ratchet.tasks.techniques._decoding import decoding_availability, with_decoding

DECODING_KEYS = ("assistant", "prompt_lookup_num_tokens")


class SpeculativeSpec(TechniqueSpec):
    kind: Literal["speculative"] = "speculative"
    method: Literal["draft_model", "prompt_lookup"] = "prompt_lookup"
    draft: str | None = Field(None, description="draft_model: the draft's model id or folder (same tokenizer).")
    num_tokens: int = Field(10, ge=1, le=64, description="Tokens drafted per step (prompt_lookup: n-gram length "
                                                         "copied; draft_model: the draft's initial run length).")

    @model_validator(mode="after")
    def _draft_fits_method(self) -> "SpeculativeSpec":
        if self.method == "draft_model" and not self.draft:
            raise ValueError("method 'draft_model' needs draft (the draft model's id or folder)")
        if self.method == "prompt_lookup" and self.draft:
            raise ValueError("method 'prompt_lookup' drafts from the prompt; remove draft or use method 'draft_model'")
        return self


def same_tokenizer(other: Path, model: Path) -> str | None:
    """None when ``other``'s tokenizer is the model's (same vocabulary and special tokens); else why not."""
    from transformers import AutoTokenizer

    a, b = AutoTokenizer.from_pretrained(other), AutoTokenizer.from_pretrained(model)
    if a.get_vocab() != b.get_vocab():
        return f"its tokenizer ({len(a)} tokens) is not the model's ({len(b)} tokens)"
    specials = [(name, getattr(a, name), getattr(b, name)) for name in ("bos_token_id", "eos_token_id")]
    differ = [f"{name} {x} vs {y}" for name, x, y in specials if x != y]
    return f"its special tokens differ ({', '.join(differ)})" if differ else None


def check_companion(model_id: str, model_path: Path, role: str, needs: str) -> None:
    """A second model beside the champion (a draft, a router's small model) must be a causal LM sharing its
    tokenizer; ValueError (one line) naming the ``role`` and what ``needs`` it otherwise."""
    from ratchet.tasks.model_source import resolve_model

    folder = resolve_model(model_id)
    config = json.loads((folder / "config.json").read_text())
    if not any(a.endswith("ForCausalLM") for a in config.get("architectures", [])):
        raise ValueError(f"{role} {model_id!r} is not a causal LM (architectures {config.get('architectures')})")
    problem = same_tokenizer(folder, model_path)
    if problem:
        raise ValueError(f"{role} {model_id!r}: {problem}; {needs}")


@TECHNIQUES.register("speculative", aliases=("speculative_decoding", "assisted_generation", "prompt_lookup"))
class Speculative:
    spec_type: ClassVar[type[TechniqueSpec]] = SpeculativeSpec

    def exact_outputs(self, spec: SpeculativeSpec) -> bool:
        """Greedy speculative decoding returns the model's own tokens: any difference fails the step."""
        return True

    def preflight_files(self, spec: SpeculativeSpec, model_path: Path) -> None:
        """The draft must exist and share the model's tokenizer (a one-line input error before any work)."""
        if spec.method == "draft_model":
            check_companion(spec.draft, model_path, "draft", "assisted generation needs one tokenizer")

    def availability(self, spec: SpeculativeSpec, source: Variant) -> Availability:
        return decoding_availability("speculative decoding", source, DECODING_KEYS)

    def apply(self, spec: SpeculativeSpec, source: Variant, out_dir: Path, ctx: TechniqueContext) -> Variant:
        """The champion's own files, decoding with drafts; ``out_dir`` stays empty because no weights change."""
        if spec.method == "prompt_lookup":
            options = with_decoding(source, prompt_lookup_num_tokens=spec.num_tokens)
        else:
            from ratchet.tasks.model_source import resolve_model

            options = with_decoding(source, assistant=str(resolve_model(spec.draft)),
                                    num_assistant_tokens=spec.num_tokens)
        return source.child(spec.label, source.path, "speculative", spec.settings(), runtime_options=options)
