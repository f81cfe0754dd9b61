"""The demo LLM pair: two Llama causal LMs, one shared tokenizer, trained here on the shipped support QA text.

No model can be downloaded, and the generative workload needs a model that
actually answers a question: the **large** one is what the pipeline optimizes,
the **small** one (several times cheaper per token) is the draft model of
speculative decoding and, later, the cheap model of routing. Both are trained
on ``support_qa.json``'s texts (retrieved FAQ text, a question, the answer),
with the loss on the answer tokens only, since the prompt is given at serving
time. Training is seeded; the pair is built once per settings and data and
kept in the cache (``$RATCHET_HOME``, default ``~/.cache/ratchet``), as plain
Hugging Face folders that ``AutoModelForCausalLM.from_pretrained`` loads.

Sharing the tokenizer is what makes assisted generation possible: the draft
proposes token ids the target verifies.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ratchet.core.hashing import stable_hash
from ratchet.evals import DATA_DIR
from ratchet.tasks.tiny_lm import TinyLmSettings, build_tokenizer, llama_config, save_lm, train_steps

DATA = DATA_DIR / "support_qa.json"
ANSWER_MARK = "Answer:"
ROLES = ("large", "small")
BUILDER_VERSION = 1  # bump when the training recipe changes, so cached pairs are rebuilt
Progress = Callable[[str, int, int], None]  # (role, step, steps)


@dataclass(frozen=True)
class DemoPairSettings:
    """Both models' shapes and training budgets.

    Measured on the 2-core AMD EPYC: the large model decodes at ~8 ms per token and the small one at ~1.6 ms
    (5x cheaper); every Linear dimension is a multiple of 128 so GPT-QModel's CPU kernels take the large one.
    """

    vocab_size: int = 2048
    large: TinyLmSettings = field(default_factory=lambda: TinyLmSettings(
        hidden_size=384, intermediate_size=1024, layers=4, heads=6, steps=360, batch_size=16, window=256, lr=1e-3))
    small: TinyLmSettings = field(default_factory=lambda: TinyLmSettings(
        hidden_size=64, intermediate_size=256, layers=2, heads=2, steps=360, batch_size=16, window=256, lr=3e-3))
    seed: int = 0

    def of(self, role: str) -> TinyLmSettings:
        return replace(getattr(self, role), vocab_size=self.vocab_size, seed=self.seed)


# Small enough for tests (seconds), same code path.
TEST_SETTINGS = DemoPairSettings(
    vocab_size=512,
    large=TinyLmSettings(hidden_size=64, intermediate_size=128, layers=2, heads=2, steps=30, batch_size=8, window=256),
    small=TinyLmSettings(hidden_size=32, intermediate_size=64, layers=1, heads=2, steps=30, batch_size=8, window=256),
)


def cache_root() -> Path:
    return Path(os.environ.get("RATCHET_HOME", Path.home() / ".cache" / "ratchet")).expanduser() / "demo-models"


def pair_dir(settings: DemoPairSettings = DemoPairSettings(), data: Path = DATA) -> Path:
    """Where this pair lives: keyed by the settings, the texts it is trained on and the recipe version (the rest of
    the data file, e.g. the questions traffic is drawn from, does not change the models)."""
    key = stable_hash({"settings": asdict(settings), "data": stable_hash(json.loads(data.read_text())["texts"]),
                       "version": BUILDER_VERSION})[:12]
    return cache_root() / f"support-lm-{key}"


def split_example(text: str) -> tuple[str, str]:
    """(prompt, answer) of a training text; the answer keeps its leading space, as generation produces it."""
    cut = text.rindex(ANSWER_MARK) + len(ANSWER_MARK)
    return text[:cut], text[cut:]


def demo_model(role: str, settings: DemoPairSettings = DemoPairSettings(), progress: Progress | None = None) -> Path:
    """The folder of the pair's ``role`` model, built (both models, under a lock) on first use."""
    from filelock import FileLock

    if role not in ROLES:
        raise ValueError(f"demo model role must be one of {ROLES}, got {role!r}")
    folder = pair_dir(settings)
    if not (folder / "done.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not (folder / "done.json").is_file():
                build_pair(folder, settings, progress=progress)
    return folder / role


def build_pair(out_dir: Path, settings: DemoPairSettings = DemoPairSettings(), texts: list[str] | None = None,
               progress: Progress | None = None) -> Path:
    """Train the tokenizer, then the large and the small model, into ``out_dir/{large,small}``."""
    texts = texts if texts is not None else json.loads(DATA.read_text())["texts"]
    tokenizer = build_tokenizer(texts, settings.vocab_size)
    report = {}
    for role in ROLES:
        report[role] = train_answerer(out_dir / role, tokenizer, texts, settings.of(role),
                                      (lambda done, total, r=role: progress(r, done, total)) if progress else None)
    (out_dir / "done.json").write_text(json.dumps({"settings": asdict(settings), **report}, indent=1))
    return out_dir


def train_answerer(out_dir: Path, tokenizer, texts: list[str], settings: TinyLmSettings,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """A Llama trained to continue each prompt with its answer and an end of sequence (loss on the answer only)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(settings.seed)
    rows = []
    for text in texts:
        prompt, answer = split_example(text)
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]
        ids = ([tokenizer.bos_token_id] + prompt_ids + answer_ids)[-settings.window:]
        rows.append((ids, len(answer_ids)))
    model = LlamaForCausalLM(llama_config(tokenizer, settings))
    generator = torch.Generator().manual_seed(settings.seed)
    started = time.perf_counter()

    def padded_batch() -> dict:
        picked = [rows[i] for i in torch.randint(0, len(rows), (settings.batch_size,), generator=generator).tolist()]
        width = max(len(ids) for ids, _ in picked)
        input_ids = torch.full((len(picked), width), tokenizer.pad_token_id)
        labels = torch.full((len(picked), width), -100)
        mask = torch.zeros((len(picked), width), dtype=torch.long)
        for row, (ids, answer_len) in enumerate(picked):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            mask[row, :len(ids)] = 1
            labels[row, len(ids) - answer_len:len(ids)] = torch.tensor(ids[-answer_len:])
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    loss = train_steps(model, settings, padded_batch, progress)
    save_lm(model, tokenizer, out_dir)
    report = {"settings": asdict(settings), "examples": len(rows), "final_loss": loss,
              "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
              "train_s": round(time.perf_counter() - started, 1)}
    (out_dir / "ratchet-demo-model.json").write_text(json.dumps(report, indent=1))
    return report
