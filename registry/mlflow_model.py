"""The MLflow pyfunc wrapper every logged variant uses (MLflow "models from code").

Logged from this file rather than pickled, so loading a registered model runs
no pickle: ``mlflow.pyfunc.load_model("models:/NAME@champion").predict(texts)``
rebuilds the variant from its safetensors folder and its ``variant.json``.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.models import set_model

from hardware.profile import HardwareSpec
from hardware.runtimes import RUNTIMES, Shape
from registry.plugins import import_submodules
from tasks.variant import Variant


class RatchetModel(mlflow.pyfunc.PythonModel):
    """Texts in, the variant's task outputs (e.g. embeddings) out."""

    def load_context(self, context) -> None:
        for package in ("hardware.runtimes", "hardware.backends"):  # compiled artifacts' runtimes live in backends
            import_submodules(package)
        variant = Variant.model_validate_json(Path(context.artifacts["variant"]).read_text())
        variant = variant.model_copy(update={"path": Path(context.artifacts["model"])})
        self.predictor = RUNTIMES.get(variant.runtime)().load(variant, HardwareSpec(), Shape(sequence_length=512))

    def predict(self, context, model_input: list[str], params=None) -> list[list[float]]:
        return self.predictor.predict(model_input).tolist()


set_model(RatchetModel())
