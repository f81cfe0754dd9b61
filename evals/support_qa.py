"""The support-agent question-answering set, built from the support FAQ: one source of truth for both workloads.

No dataset can be downloaded here, and a generative workload needs what the
retrieval one does not: a prompt a model answers (retrieved FAQ text, then the
question), the answer it should give, the facts that answer must contain, and
questions the FAQ does not cover, whose right answer is a refusal. All of it
follows from ``support_faq.json`` (its questions, their relevant entries and
splits), so this module derives it deterministically and the shipped
``support_qa.json`` is its output (a test rebuilds it and compares).

Each prompt is RAG-shaped: the entry that answers the question and one
distractor entry (two distractors for an out-of-scope question). Like a
retriever's ranking, the answering entry usually comes first, but not always
(``GOLD_FIRST``), so a model must match the question to its context or decline.
Every tuning question is written out ``VARIANTS`` times with other
distractors, so the models learn to read the context rather than memorize it. The reference answer
is the entry's first answer sentence, which a good answer mostly copies from
the context: the case prompt-lookup decoding is built for.

``questions`` are every FAQ question (both splits) with its RAG prompt and its
answer's label (the reference answer, or the refusal): the user traffic a
response cache sees. Two questions with the same label have the same right
answer, so a cache that serves one's answer for the other is right, and wrong
otherwise; traffic traces (``evals.traffic``) are drawn from them.

``python -m ratchet.evals.support_qa`` rewrites the shipped file.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from ratchet.evals import DATA_DIR

FAQ = DATA_DIR / "support_faq.json"
OUT = DATA_DIR / "support_qa.json"
REFUSAL = "Sorry, I can't help with that: it is not covered by the Acme Cloud help center."
PROMPT = "Context:\n{context}\nQuestion: {question}\nAnswer:"
GOLD_FIRST = 0.75  # share of prompts whose answering entry is the first context line
VARIANTS = 3  # training texts per tuning question (and per FAQ title: VARIANTS - 1), each with other distractors
EVAL_PER_SPLIT = 40  # prompts per split that are evaluated and benchmarked (every tuning one is training text)
SEED = 0

_QUESTION_SENTENCE = re.compile(r"^[^?]*\?\s*")
_FACT_PATTERNS = (
    re.compile(r"\b\d[\d,.:]*(?:\s?(?:%|minutes?|hours?|days?|months?|years?|GB|MB|seats?|users?|members?))?"),
    re.compile(r'"([^"]+)"'),
    re.compile(r"\b[A-Z]\w*(?: [a-z]\w*)?(?: > [A-Z]\w*(?: [A-Z]\w*)*)+"),
    re.compile(r"\b[\w.+-]+@[\w.-]+\b"),
)


def answer_of(entry_text: str) -> str:
    """The first sentence after the entry's own question: what the agent should say."""
    body = _QUESTION_SENTENCE.sub("", entry_text, count=1)
    first = re.split(r"(?<=[.!])\s+", body, maxsplit=1)[0]
    return first.strip()


def facts_of(answer: str) -> list[str]:
    """Short spans an answer must contain to be right: numbers with units, quoted labels, menu paths, addresses.

    An answer with none of these gets its two longest words, so every answerable question has checkable facts.
    """
    found: list[str] = []
    for pattern in _FACT_PATTERNS:
        for match in pattern.finditer(answer):
            span = (match.group(1) if match.groups() else match.group(0)).strip(" .,;")
            if span and span not in found and not any(span in f for f in found):
                found.append(span)
    if not found:
        words = sorted({w.strip(".,;:") for w in answer.split()}, key=lambda w: (-len(w), w))
        found = words[:2]
    return found[:3]


def prompt_text(question: str, contexts: list[str]) -> str:
    return PROMPT.format(context="\n".join(f"- {c}" for c in contexts), question=question)


def build(faq: dict[str, Any] | None = None, seed: int = SEED) -> dict[str, Any]:
    """The QA workload (``prompts`` workload shape) derived from the FAQ."""
    faq = faq if faq is not None else json.loads(FAQ.read_text())
    rng = random.Random(seed)
    entries = {e["id"]: e for e in faq["corpus"]}
    ids = sorted(entries)

    def contexts(relevant: list[str]) -> list[str]:
        distractors = rng.sample([i for i in ids if i not in relevant], 1 if relevant else 2)
        chosen = relevant + distractors if rng.random() < GOLD_FIRST else distractors + relevant
        return [entries[i]["text"] for i in chosen]

    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    for query in faq["queries"]:
        relevant = query["relevant"][:1]
        answer = answer_of(entries[relevant[0]]["text"]) if relevant else REFUSAL
        rows.append({
            "id": query["id"], "text": prompt_text(query["text"], contexts(relevant)), "reference": answer,
            "facts": facts_of(answer) if relevant else [], "answerable": bool(relevant), "split": query["split"],
        })
        if query["split"] == "tuning":
            texts += [f"{prompt_text(query['text'], contexts(relevant))} {answer}" for _ in range(VARIANTS)]
    for entry in faq["corpus"]:
        texts += [f"{prompt_text(entry['title'], contexts([entry['id']]))} {answer_of(entry['text'])}"
                  for _ in range(VARIANTS - 1)]
    prompts = []
    for split in ("tuning", "heldout"):
        pool = [r for r in rows if r["split"] == split]
        prompts += sorted(rng.sample(pool, min(EVAL_PER_SPLIT, len(pool))), key=lambda r: r["id"])
    questions = []
    for query in faq["queries"]:  # after every draw above, so the prompts and texts do not depend on it
        relevant = query["relevant"][:1]
        questions.append({"id": query["id"], "text": query["text"],
                          "prompt": prompt_text(query["text"], contexts(relevant)),
                          "label": answer_of(entries[relevant[0]]["text"]) if relevant else REFUSAL,
                          "answerable": bool(relevant), "split": query["split"]})
    return {
        "name": "support-qa",
        "description": (
            "Support-agent question answering built from support-faq (evals/support_qa.py): retrieved FAQ text, "
            "then the customer's question; the reference is the answering entry's first sentence, or a refusal "
            "for questions the FAQ does not cover. 'prompts' are the evaluated and benchmarked ones, "
            f"{EVAL_PER_SPLIT} per split; 'texts' (every tuning question and every FAQ title, answered, with "
            "several draws of distractors) are what the demo models are trained on; "
            "held-out questions are never in them."
        ),
        "refusal": REFUSAL,
        "prompts": prompts,
        "texts": texts,
        "questions": questions,
    }


def write(path=OUT) -> None:
    path.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write()
    print(f"wrote {OUT}")
