"""PyTorch eager (optionally ``torch.compile``d) runtime for Hugging Face folders.

``torch`` is imported inside the functions: the benchmark worker imports every
runtime module, also in isolated environments that have no PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ratchet.core.model_tasks import model_task
from ratchet.core.profile import HardwareSpec
from ratchet.core.variant import Variant
from ratchet.hardware.runtimes import RUNTIMES, Shape

if TYPE_CHECKING:
    import torch


def load_hf_model(variant: Variant, **kwargs: object) -> torch.nn.Module:
    """The variant's model, with the Auto class its task declares, from safetensors only (``kwargs`` go to
    ``from_pretrained``).

    A mixed-precision variant is loaded in float32 and split again (``precision``), because
    ``from_pretrained`` gives every tensor one dtype.
    """
    import torch
    import transformers

    from ratchet.hardware.runtimes.precision import apply_mixed_precision

    auto_class = getattr(transformers, model_task(variant.task).auto_class)
    mixed = variant.runtime_options.get("mixed_precision")
    if mixed:
        kwargs = {**kwargs, "dtype": torch.float32}
    model = auto_class.from_pretrained(
        variant.path, use_safetensors=True, trust_remote_code=variant.trust_remote_code, **kwargs
    ).eval()
    return apply_mixed_precision(model, mixed["dtype"], mixed["keep_fp32"]) if mixed else model


class TorchPredictor:
    """Tokenise, run, and apply the task head, under ``inference_mode``."""

    def __init__(self, variant: Variant, sequence_length: int, device: str = "cpu") -> None:
        import torch
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(variant.path)
        self.device = torch.device(device)
        model = load_hf_model(variant).to(self.device)
        # torchao's int8 kernels only pay off once inductor fuses the dynamic
        # activation quantisation (measured: eager is slower than fp32 at batch 1).
        options = variant.runtime_options
        self.model = torch.compile(model, mode=options.get("compile_mode", "default"),
                                   dynamic=options.get("compile_dynamic", True)) if options.get("compile") else model
        self.head = model_task(variant.task).head  # None for a task that generates instead
        self.sequence_length = sequence_length

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.sequence_length, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            return self.head(self.model(**enc), enc).cpu().numpy()


@RUNTIMES.register("torch")
class TorchRuntime:
    def load(self, variant: Variant, hardware: HardwareSpec, shape: Shape) -> TorchPredictor:
        import torch

        if hardware.threads:
            torch.set_num_threads(hardware.threads)
        if not model_task(variant.task).traceable:  # no head: the task generates text
            from ratchet.hardware.runtimes.generation import TorchGenerator

            return TorchGenerator(variant, shape, hardware.device)
        return TorchPredictor(variant, shape.sequence_length, hardware.device)
