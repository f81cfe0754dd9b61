"""Causal LMs: greedy answers to prompts, judged by an answer rubric or against the baseline's own tokens.

``token_agreement`` needs nothing but the baseline; the answer scorers need the
workload's reference answers, facts and answerable flags (``prompts``
workload), and read the answers as text.
"""

from __future__ import annotations

from typing import Any

from ratchet.core.model_tasks import ModelTask, declare

ANSWER_SCORERS = ("required_facts", "exact_match", "rouge_l", "semantic_similarity", "length_bound", "refusal",
                  "hf_evaluate")

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def causal_lm_problem(config: dict[str, Any]) -> str | None:
    """Why the checkpoint cannot generate (an encoder such as BERT), judged on ``config.json``'s architectures
    before anything is loaded."""
    architectures = config.get("architectures") or []
    if not architectures or any(a.endswith(CAUSAL_SUFFIXES) for a in architectures) or config.get("is_decoder"):
        return None
    return (f"its architectures {architectures} have no language-model head; task 'text-generation' needs a causal "
            f"LM (an architecture ending in {' or '.join(CAUSAL_SUFFIXES)})")


TASK = declare(ModelTask(
    name="text-generation",
    auto_class="AutoModelForCausalLM",
    workload="prompts",
    scorers=("token_agreement", *ANSWER_SCORERS),
    check_config=causal_lm_problem,
))
