"""Traffic traces: which questions arrive when, as a JSONL file that a server replays open-loop.

One request per line: ``{"t_s": 0.41, "prompt": "..."}`` is all a user-supplied trace needs (``type`` and
``tenant`` are optional); a generated trace also says which question was asked (``question``), the label of
its right answer (``label``) and how it was drawn (``kind``).

A generated trace is seeded and has the shape support traffic has, so that a
response cache meets what it meets in production:

* **popularity**: answers (labels) are drawn Zipf-like (rank ``r`` with weight ``r ** -zipf_s``) from the
  split's answerable head, so a few questions come back again and again;
* **other words**: a repeat is asked as one of the label's own questions (``paraphrase_share``: another one
  than the most common phrasing), sometimes with typos (``typo_share``);
* **unique questions**: ``unique_share`` of the requests are questions of the tail (labels outside the head,
  and the questions the FAQ does not cover), each asked once while the tail lasts;
* **bursts**: gamma-distributed gaps with mean ``1 / rate`` (``burstiness`` 1 is Poisson, below 1 burstier),
  as the server scenario draws them.

The prompt of a request is its question's RAG prompt (retrieved FAQ text, then the question) with the
question as asked.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ratchet.evals.workloads import TrafficSpec, WorkloadError, resolve_dataset
from ratchet.evals.workloads.prompts import Question
from ratchet.hardware.runtimes.serving import arrival_times

HEAD_SHARE = 0.5  # of the answerable labels, the share that make up the popular head


class TraceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    t_s: float = Field(ge=0, description="Arrival, seconds after the trace starts.")
    prompt: str = Field(min_length=1)
    type: str = Field("default", description="Request type (e.g. which output-length class it belongs to).")
    tenant: str = Field("default", description="Whose request it is: a response cache never shares across tenants.")
    question: str | None = None
    label: str | None = None
    kind: str | None = None


def typo(text: str, rng: random.Random) -> str:
    """One keyboard slip in one word of four letters or more: two letters swapped, one dropped or doubled."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    if not long:
        return text
    i = rng.choice(long)
    word = words[i]
    j = rng.randrange(1, len(word) - 2)
    words[i] = rng.choice([word[:j] + word[j + 1] + word[j] + word[j + 2:], word[:j] + word[j + 1:],
                           word[:j] + word[j] + word[j:]])
    return " ".join(words)


def asked(question: Question, text: str) -> str:
    """The question's prompt with the question as it was asked (its last occurrence: the context comes first)."""
    head, sep, tail = question.prompt.rpartition(question.text)
    return head + text + tail if sep else question.prompt


def generate_trace(questions: Sequence[Question], spec: TrafficSpec, rate: float) -> list[TraceRequest]:
    """``spec.requests`` requests drawn from the ``spec.split`` questions, arriving at ``rate`` per second."""
    pool = sorted((q for q in questions if q.split == spec.split), key=lambda q: q.id)
    if not pool:
        raise WorkloadError(f"workload.traffic: the dataset has no labelled questions in split {spec.split!r} to "
                            "draw a trace from (give workload.traffic.trace instead)")
    rng = random.Random(spec.seed)
    by_label: dict[str, list[Question]] = {}
    for q in pool:
        by_label.setdefault(q.label, []).append(q)
    answerable = sorted({q.label for q in pool if q.answerable})
    rng.shuffle(answerable)
    head = answerable[: max(1, round(len(answerable) * HEAD_SHARE))]
    tail = [q for q in pool if q.label not in head]
    rng.shuffle(tail)
    weights = np.arange(1, len(head) + 1, dtype=float) ** -spec.zipf_s
    arrivals = arrival_times(spec.requests, rate, spec.seed, spec.burstiness)
    out = []
    for t_s in arrivals:
        tenant = rng.choice(spec.tenants)
        if tail and rng.random() < spec.unique_share:
            question = tail.pop()
            out.append(TraceRequest(t_s=t_s, prompt=question.prompt, tenant=tenant, question=question.text,
                                    label=question.label, kind="unique"))
            continue
        label = head[rng.choices(range(len(head)), weights)[0]]
        phrasings = by_label[label]
        question, kind = phrasings[0], "repeat"
        if len(phrasings) > 1 and rng.random() < spec.paraphrase_share:
            question, kind = rng.choice(phrasings[1:]), "paraphrase"
        text = question.text
        if rng.random() < spec.typo_share:
            text, kind = typo(text, rng), "typo"
        out.append(TraceRequest(t_s=t_s, prompt=asked(question, text), tenant=tenant, question=text, label=label,
                                kind=kind))
    return out


def write_trace(path: Path, requests: Sequence[TraceRequest]) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for request in requests:
            fh.write(request.model_dump_json(exclude_none=True) + "\n")


def read_trace(path: Path) -> list[TraceRequest]:
    """A JSONL trace, checked line by line; arrivals must not go back in time."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"workload.traffic.trace: file {str(path)!r} does not exist")
    out: list[TraceRequest] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            request = TraceRequest.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"workload.traffic.trace: {path.name} line {number} is not JSON ({exc.msg})") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise WorkloadError(f"workload.traffic.trace: {path.name} line {number}: {where}: {err['msg']}") from None
        if out and request.t_s < out[-1].t_s:
            raise WorkloadError(f"workload.traffic.trace: {path.name} line {number}: t_s {request.t_s} is earlier "
                                f"than the line before ({out[-1].t_s}); arrivals must be in time order")
        out.append(request)
    if not out:
        raise WorkloadError(f"workload.traffic.trace: {path.name} holds no requests")
    return out


def load_traffic(spec: TrafficSpec, questions: Sequence[Question], rate: float, base_dir: Path) -> list[TraceRequest]:
    """The trace the spec names, or the one it describes."""
    if spec.trace is not None:
        return read_trace(resolve_dataset(spec.trace, base_dir))
    return generate_trace(questions, spec, rate)


def replay_schedule(requests: Sequence[TraceRequest], rate: float) -> list[float]:
    """Arrival times rescaled so the trace runs at ``rate`` requests per second (its shape, bursts included,
    kept); the first request arrives at 0."""
    times = np.array([r.t_s for r in requests], dtype=float)
    times -= times[0]
    span = times[-1]
    if len(times) < 2 or span <= 0:
        return (np.arange(len(times)) / rate).tolist()
    return (times * (len(times) - 1) / (span * rate)).tolist()


def trace_summary(requests: Sequence[TraceRequest]) -> dict[str, float]:
    """What a cache can expect from the trace: how often an answer, or the very same prompt, was seen before."""
    seen_labels: set[tuple[str, str | None]] = set()
    seen_prompts: set[tuple[str, str]] = set()
    label_repeats = prompt_repeats = 0
    for r in requests:
        label_key, prompt_key = (r.tenant, r.label), (r.tenant, r.prompt)
        label_repeats += r.label is not None and label_key in seen_labels
        prompt_repeats += prompt_key in seen_prompts
        seen_labels.add(label_key)
        seen_prompts.add(prompt_key)
    n = len(requests)
    span = requests[-1].t_s - requests[0].t_s
    return {"requests": n, "rate_rps": (n - 1) / span if span > 0 else float("nan"),
            "repeated_answer_share": label_repeats / n, "repeated_prompt_share": prompt_repeats / n,
            "unique_share": sum(r.kind == "unique" for r in requests) / n}
