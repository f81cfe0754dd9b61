"""The MLflow pyfunc wrapper every logged variant uses (MLflow "models from code").

Logged from this file rather than pickled, so loading a registered model runs
no pickle: ``mlflow.pyfunc.load_model("models:/NAME@champion").predict(texts)``
rebuilds the variant from its artifacts ``model`` (the folder), ``variant`` (its
description) and ``serving`` (the hardware profile and workload shape it was
measured with) through
``load_variant``, the same call the benchmark worker makes: a registered
champion is served exactly as it was measured (its runtime, options such as
length-bucketed batches, its sequence length).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.models import set_model

from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant, companions, with_companions
from ratchet.hardware.runtimes import Shape, load_variant


class RatchetModel(mlflow.pyfunc.PythonModel):
    """Texts in, the variant's task outputs out: embeddings, or a causal LM's answers as text. A serving recipe
    (a response cache, a router with its small model, in front of the model) is served whole, as measured."""

    def load_context(self, context) -> None:
        variant = Variant.model_validate_json(Path(context.artifacts["variant"]).read_text())
        variant = variant.model_copy(update={"path": Path(context.artifacts["model"])})
        # Companion models (a draft, a router's small model) were logged beside it: wherever the artifacts now are.
        variant = with_companions(variant, {role: context.artifacts[role] for role in companions(variant)})
        serving = json.loads(Path(context.artifacts["serving"]).read_text())
        self.predictor = load_variant(variant, HardwareSpec(**serving["hardware"]), Shape(**serving["shape"]))

    def predict(self, context, model_input: list[str], params=None):  # embeddings (lists of floats) or answers (text)
        answer = getattr(self.predictor, "answer", None)  # a generator, decoding as it was measured
        if answer is not None:
            return [generated.text for generated in answer(list(model_input))]
        return self.predictor.predict(model_input).tolist()


set_model(RatchetModel())
