"""Text classifiers: class probabilities (softmax of the logits), judged on labelled texts."""

from __future__ import annotations

from ratchet.core.model_tasks import ModelTask, declare

TASK = declare(ModelTask(
    name="text-classification",
    auto_class="AutoModelForSequenceClassification",
    workload="classification",
    scorers=("accuracy", "label_agreement"),
    head=lambda out, enc: out.logits.float().softmax(dim=-1),
    output_name="probabilities",
    losses=("kl",),
))
