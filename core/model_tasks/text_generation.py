"""Causal LMs: greedy continuations of prompts, judged against the baseline's own."""

from __future__ import annotations

from ratchet.core.model_tasks import ModelTask, declare

TASK = declare(ModelTask(
    name="text-generation",
    auto_class="AutoModelForCausalLM",
    workload="prompts",
    scorers=("token_agreement",),
))
