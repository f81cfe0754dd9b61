"""Model tasks: what Ratchet must know about one kind of model, declared in one module per task.

A task says how its checkpoints load (the transformers Auto class), what its
outputs are (a head that turns the model's output into one row per text, or
none for a task that generates text), what the exported graphs call that
output, which workload shape its data has, which rubric scorers can judge its
outputs, and which training losses match what those scorers read. Everything
that used to keep its own list of tasks (the spec, the workload loaders, the
runtimes, the exporters, the trainers, the scorers) asks this registry, so
they cannot disagree, and adding a task is adding one module here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ratchet.core.plugins import Registry

Head = Callable[[Any, dict[str, Any]], Any]  # (model output, tokenizer tensors) -> torch tensor, one row per text


@dataclass(frozen=True)
class ModelTask:
    name: str
    auto_class: str  # transformers Auto class that loads its checkpoints, e.g. "AutoModel"
    workload: str  # the workload loader (``ratchet.evals.workloads``) that reads its data
    scorers: tuple[str, ...]  # rubric scorers that can judge its outputs
    head: Head | None = None  # None: the task generates text instead of returning one row per text
    output_name: str | None = None  # what exported graphs call the head's output
    losses: tuple[str, ...] = ()  # training losses (distillation, recovery fine-tunes) that fit its outputs
    check_config: Callable[[dict[str, Any]], str | None] | None = None  # config.json -> why it cannot do the task

    @property
    def traceable(self) -> bool:
        """Whether the model plus its head is one function of the input tensors (export, compile, batch splitting)."""
        return self.head is not None


MODEL_TASKS: Registry[ModelTask] = Registry("model task")


def declare(task: ModelTask) -> ModelTask:
    """Register ``task`` under its name (called once, by the task's own module)."""
    return MODEL_TASKS.register(task.name)(task)


def model_task(name: str) -> ModelTask:
    return MODEL_TASKS.get(name)
