"""What the answer scorers share: the split's prompts with the candidate's answer text, and text normalization.

A generator's outputs carry its answers as text (``prompts.text``, written by
the benchmark worker); the reference answer, the facts a right answer holds
and whether the question is answerable come from the workload's prompts.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

from ratchet.evals.scorers import EvalContext

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def answers(ctx: EvalContext) -> Iterator[tuple[object, str]]:
    """(prompt, answer text) for each prompt of the split."""
    if "prompts.text" not in ctx.outputs:
        raise ValueError("answer scorers need the generated text (outputs 'prompts.text'); this variant's runtime "
                         "returned token ids only")
    texts = ctx.outputs["prompts.text"]
    for i in ctx.workload.split_indices(ctx.split):
        yield ctx.workload.prompts[i], str(texts[i])
