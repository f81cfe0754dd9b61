"""Sentence embeddings (e.g. all-MiniLM-L6-v2): mean-pooled, L2-normalised, judged on retrieval."""

from __future__ import annotations

from typing import Any

from ratchet.core.model_tasks import ModelTask, declare


def mean_pooled(hidden: Any, attention_mask: Any) -> Any:
    """Sentence embedding as sentence-transformers computes it for MiniLM: masked mean, L2-normalised."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed.float(), dim=-1)


TASK = declare(ModelTask(
    name="feature-extraction",
    auto_class="AutoModel",
    workload="retrieval",
    scorers=("recall_at_k", "mrr", "fidelity_cosine"),
    head=lambda out, enc: mean_pooled(out.last_hidden_state, enc["attention_mask"]),
    output_name="embeddings",
    losses=("cosine", "hidden_mse"),
))
