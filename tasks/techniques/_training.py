"""One "match the teacher" training loop, shared by distillation and pruning's recovery fine-tune.

Both techniques have the same problem: a student that was cut down from a
teacher (fewer layers, fewer FFN neurons, zeroed weights) must be nudged back
towards the teacher's outputs on the workload's own unlabeled texts. No labels
are needed: the frozen teacher's outputs are the targets, and the loss is
close to what the rubric later judges:

* feature-extraction, ``cosine``: 1 - cosine between the pooled, normalised
  embeddings (exactly the fidelity scorer). An MSE between those unit vectors
  is not offered: it equals 2(1 - cosine) / dim, and AdamW is blind to a
  constant loss scale, so it would train the same model.
* feature-extraction, ``hidden_mse``: MSE between the last hidden states, token
  by token (TinyBERT-style); a denser signal that also pins the pooled vector.
* text-classification, ``kl``: KL divergence between temperature-softened
  logits, scaled by T^2 (Hinton et al.), so gradients keep their size across T.

The loop is bounded twice, by ``max_steps`` and by a wall-clock
``time_budget_s``, stopping at whichever comes first, because on a 2-core CPU a
step count alone says little about how long a pipeline step takes. The teacher
runs once per text (its outputs are memoised), so after the first epoch each
step costs only the student's forward and backward pass.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt

from ratchet.core.availability import Availability, source_check
from ratchet.core.model_tasks import MODEL_TASKS, model_task
from ratchet.core.model_tasks.feature_extraction import mean_pooled
from ratchet.core.variant import Variant
from ratchet.tasks.techniques import TechniqueContext, TechniqueSpec

if TYPE_CHECKING:  # torch is imported where it runs: technique modules load with every spec validation
    import torch

Loss = Literal["cosine", "hidden_mse", "kl"]  # which fit a task: its ``losses`` (ratchet.core.model_tasks)
ProgressFn = Callable[[int, int], None]
POOL_BATCHES = 8
StepHook = Callable[[Any], None]  # called with the student after every optimizer step


@dataclass(frozen=True)
class TrainSettings:
    """How long and how hard to train; small defaults because this runs on the pipeline's own CPU.

    ``None`` for ``max_steps`` or ``time_budget_s`` means no limit of that kind; at least one must be set.
    """

    max_steps: int | None = 300
    time_budget_s: float | None = 120.0
    lr: float = 1e-4
    batch_size: int = 16
    loss: Loss = "cosine"
    temperature: float = 2.0
    seed: int = 0
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        if self.max_steps is None and self.time_budget_s is None:
            raise ValueError("training needs max_steps or time_budget_s (or both): it would never stop")


@dataclass
class TrainResult:
    """What the loop did: how far it got, why it stopped, and the loss of every step."""

    steps: int
    elapsed_s: float
    stopped_by: Literal["max_steps", "time_budget", "no_texts"]
    losses: list[float] = field(default_factory=list)

    def summary(self, prefix: str) -> dict[str, float | int | str | None]:
        """Flat numbers for a variant's params (MLflow logs them), named ``<prefix>_...``."""
        return {
            f"{prefix}_steps_run": self.steps,
            f"{prefix}_seconds": round(self.elapsed_s, 2),
            f"{prefix}_stopped_by": self.stopped_by,
            f"{prefix}_loss_first": round(self.losses[0], 6) if self.losses else None,
            f"{prefix}_loss_last": round(self.losses[-1], 6) if self.losses else None,
        }


def match_teacher(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    tokenizer: object,
    texts: list[str],
    task: str,
    settings: TrainSettings,
    sequence_length: int,
    *,
    progress: ProgressFn | None = None,
    after_step: StepHook | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Train ``student`` in place to reproduce the frozen ``teacher`` on ``texts``.

    ``after_step`` runs after every optimizer step (pruning uses it to put its
    zeros back); ``checkpoint_dir`` receives ``save_pretrained`` of the student
    and the tokenizer every ``settings.checkpoint_every`` steps, so a run that
    is killed still leaves a loadable student. Dropout stays off: the target is
    a deterministic function, and in a run of a few hundred steps dropout would
    only add noise to what little signal there is.
    """
    import torch

    fits = model_task(task).losses
    if settings.loss not in fits:
        raise ValueError(f"loss {settings.loss!r} does not fit task {task!r} (fits: {fits})")
    clock = _Clock(settings.time_budget_s)
    if not texts:
        return TrainResult(0, 0.0, "no_texts")
    teacher.eval().requires_grad_(False)
    student.eval()  # dropout off; gradients still flow
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=settings.lr)
    targets = _TeacherTargets(teacher, settings.loss)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=sequence_length)["input_ids"]]
    batches = _length_bucketed_batches(lengths, settings.batch_size, settings.seed)
    losses: list[float] = []
    while settings.max_steps is None or len(losses) < settings.max_steps:
        if clock.out_of_time():
            return TrainResult(len(losses), clock.elapsed(), "time_budget", losses)
        index = next(batches)
        enc = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                        max_length=sequence_length, return_tensors="pt")
        loss = _loss(settings, student(**enc), targets.get(index, enc), enc)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(student)
        losses.append(loss.item())
        clock.lap()
        _report(progress, settings, len(losses), clock)
        if checkpoint_dir is not None and settings.checkpoint_every and len(losses) % settings.checkpoint_every == 0:
            save_checkpoint(student, tokenizer, checkpoint_dir)
    return TrainResult(len(losses), clock.elapsed(), "max_steps", losses)


class _Clock:
    """Wall-clock budget: stop before a step that could end past it, judged by the longest step so far.

    The longest, not the mean: batches of long documents (and first-epoch
    batches, which also run the teacher) take several times a batch of short
    queries, and the budget is a promise to the pipeline.
    """

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self.start = self.last = time.perf_counter()
        self.longest = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def lap(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.elapsed() + self.longest > self.budget_s


def _report(progress: ProgressFn | None, settings: TrainSettings, steps: int, clock: _Clock) -> None:
    """Progress in steps of ``max_steps``; with only a time budget, in seconds of it."""
    if progress is None:
        return
    if settings.max_steps is not None:
        progress(steps, settings.max_steps)
    else:
        budget = math.ceil(settings.time_budget_s)
        progress(min(budget, int(clock.elapsed())), budget)


def _length_bucketed_batches(lengths: list[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of text indices, seeded so that runs repeat exactly.

    Each epoch is a fresh permutation, cut into pools of ``POOL_BATCHES`` batches;
    a pool is sorted by length before it is cut into batches, and the batches
    are shuffled. Short queries then rarely share a batch with long documents:
    on the support-FAQ texts (4 to 76 tokens) this halves the padded tokens
    per epoch, and a step costs what its tokens cost.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    pool = batch_size * POOL_BATCHES
    while True:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lengths.__getitem__)
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        yield from (batches[i] for i in torch.randperm(len(batches), generator=generator).tolist())


class _TeacherTargets:
    """The teacher's output per text, computed once per text and reused every later epoch.

    Memoising is exact up to float rounding: with an attention mask a text's
    outputs do not depend on which batch (and how much padding) it arrived with.
    Hidden states are stored unpadded (BERT-family tokenizers pad on the right)
    and padded again to each batch's length.
    """

    def __init__(self, teacher: torch.nn.Module, loss: Loss) -> None:
        self.teacher = teacher
        self.loss = loss
        self.memo: dict[int, torch.Tensor] = {}

    def get(self, index: list[int], enc: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        missing = [k for k, i in enumerate(index) if i not in self.memo]
        if missing:
            with torch.no_grad():
                sub = {name: value[missing] for name, value in enc.items()}
                for k, target in zip(missing, self._targets(self.teacher(**sub), sub)):
                    self.memo[index[k]] = target
        rows = [self.memo[i] for i in index]
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True) if self.loss == "hidden_mse" else torch.stack(rows)

    def _targets(self, out: object, enc: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.loss == "cosine":
            return list(mean_pooled(out.last_hidden_state, enc["attention_mask"]))
        if self.loss == "kl":
            return list(out.logits.float())
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        return [h[:n].clone() for h, n in zip(out.last_hidden_state, lengths)]  # not views of the whole batch


def _loss(settings: TrainSettings, out: object, target: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    """The distance the rubric cares about, between student output and teacher target."""
    import torch.nn.functional as F

    mask = enc["attention_mask"]
    if settings.loss == "cosine":
        return (1 - (mean_pooled(out.last_hidden_state, mask) * target).sum(dim=-1)).mean()
    if settings.loss == "kl":
        t = settings.temperature
        student_log = F.log_softmax(out.logits.float() / t, dim=-1)
        teacher_log = F.log_softmax(target / t, dim=-1)
        return F.kl_div(student_log, teacher_log, log_target=True, reduction="batchmean") * t * t
    # padding=True pads to the longest text in the batch, so the padded targets line up token by token
    hidden = out.last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return ((hidden - target) ** 2 * weights).sum() / (weights.sum() * hidden.shape[-1])


STAT_BATCH = 32
MAX_STAT_TEXTS = 512  # plenty for per-channel means and deviations; bounds the pass on big workloads


def statistics_pass(model: torch.nn.Module, tokenizer: object, texts: list[str], sequence_length: int,
                    install: Callable[[dict[str, torch.Tensor]], list], progress: ProgressFn | None = None) -> int:
    """One no-grad pass over (at most ``MAX_STAT_TEXTS`` of) ``texts``, for hooks that record activations.

    ``install(batch)`` registers the hooks and returns their handles; while a batch runs, ``batch["mask"]``
    holds its real (non-padding) token positions. Texts go in length order, so batches carry little
    padding. Returns how many real tokens went through; the hooks are removed whatever happens.
    """
    import torch

    if not texts:
        raise ValueError("ranking by activations needs the workload's tuning texts, and there are none")
    texts = sorted(texts[:: math.ceil(len(texts) / MAX_STAT_TEXTS)], key=len)
    batch: dict[str, torch.Tensor] = {}
    handles = install(batch)
    tokens = 0
    try:
        with torch.no_grad():
            for start in range(0, len(texts), STAT_BATCH):
                enc = tokenizer(texts[start:start + STAT_BATCH], padding=True, truncation=True,
                                max_length=sequence_length, return_tensors="pt")
                batch["mask"] = enc["attention_mask"].bool()
                model(**enc)
                tokens += int(batch["mask"].sum())
                if progress is not None:
                    progress(min(start + STAT_BATCH, len(texts)), len(texts))
    finally:
        for handle in handles:
            handle.remove()
    return tokens


def save_checkpoint(model: torch.nn.Module, tokenizer: object, folder: Path) -> None:
    """Replace ``folder`` with a loadable copy of ``model`` (written beside it, then moved into place)."""
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


# --- what the cut-down-and-retrain techniques share ------------------------------------------------------

# Encoders whose blocks sit at ``base_model.encoder.layer`` with an FFN of
# ``intermediate.dense`` -> ``output.dense``: the layout the surgery relies on.
ENCODER_MODEL_TYPES = ("bert", "roberta", "xlm-roberta")


def fp32_encoder_availability(kind: str, source: Variant) -> Availability:
    """Whether ``source`` is a float32, unquantized PyTorch encoder of a task these techniques train.

    Cutting and retraining needs real float weights: an int8 or half-precision
    champion would have to be trained in a precision it was not made for.
    """
    available = source_check(kind, source)
    if not available.ok:
        return available
    if not model_task(source.task).losses:
        trainable = sorted(name for name, task in MODEL_TASKS.items() if task.losses)
        return Availability(False, f"{kind} supports tasks {trainable}, not {source.task!r}")
    model_type = read_model_config(source.path).get("model_type")
    if model_type not in ENCODER_MODEL_TYPES:
        return Availability(False, f"{kind} supports model types {ENCODER_MODEL_TYPES}, not {model_type!r}")
    return Availability(True)


def read_model_config(folder: Path) -> dict:
    """The model folder's ``config.json`` (empty if it cannot be read: availability must not raise)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a model of one of ``ENCODER_MODEL_TYPES`` (bare or with a task head)."""
    return model.base_model.encoder.layer


def default_loss(task: str) -> Loss:
    """The loss that matches what the task's rubric reads: the embedding, or the class distribution."""
    return model_task(task).losses[0]


class RecoverySpec(TechniqueSpec):
    """The optional fine-tune after pruning: it runs when either limit is set, and stops at the first reached."""

    recovery_steps: PositiveInt | None = Field(None, description="Fine-tune steps at most after pruning.")
    recovery_time_s: float | None = Field(None, gt=0, description="Wall-clock budget of the fine-tune after pruning.")
    recovery_lr: float = Field(5e-5, gt=0, lt=1)

    def recovery_settings(self, task: str) -> TrainSettings | None:
        if self.recovery_steps is None and self.recovery_time_s is None:
            return None
        return TrainSettings(self.recovery_steps, self.recovery_time_s, self.recovery_lr, loss=default_loss(task))


def recover(student: torch.nn.Module, source: Variant, ctx: TechniqueContext, spec: RecoverySpec,
            after_step: StepHook | None = None) -> dict:
    """Fine-tune a pruned ``student`` towards the unpruned ``source`` (its teacher), if ``spec`` asks to.

    Returns what the fine-tune did, as params for the variant (empty when it did not run).
    """
    from transformers import AutoTokenizer

    from ratchet.hardware.runtimes.torch_runtime import load_hf_model

    settings = spec.recovery_settings(source.task)
    if settings is None:
        return {}
    result = match_teacher(student, load_hf_model(source), AutoTokenizer.from_pretrained(source.path), ctx.texts,
                           source.task, settings, ctx.sequence_length,
                           progress=partial(ctx.progress, f"{spec.kind} recovery"), after_step=after_step)
    return result.summary("recovery")
