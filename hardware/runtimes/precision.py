"""Mixed precision for PyTorch models: cast to fp16/bf16 but keep named modules in float32.

Shared by the ``cast`` technique (which makes such a model) and the torch runtime
(which must re-apply it after loading: transformers 5.23's ``from_pretrained``
loads every tensor in one dtype, measured: a bf16/fp32 checkpoint comes back all
bf16 or all fp32, whatever ``dtype`` says). Module-name patterns are also how
``weight_only`` names the layers it keeps in float.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where it runs: the runtimes load with every plugin lookup
    import torch

DTYPES = ("fp16", "bf16")


def torch_dtype(name: str) -> torch.dtype:
    """``fp16`` / ``bf16`` as torch's dtype."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}[name]


def apply_mixed_precision(model: torch.nn.Module, dtype: str, keep_fp32: list[str]) -> torch.nn.Module:
    """Cast ``model`` to ``dtype`` in place, keeping the modules named by ``keep_fp32`` in float32.

    Also what a runtime calls after ``from_pretrained`` (which loads one dtype for all tensors);
    load in float32 first so the kept weights were never rounded.
    """
    import torch

    kept = modules_matching(model, keep_fp32)
    model.to(torch_dtype(dtype))
    for module in kept.values():
        module.float()
        module.register_forward_pre_hook(_inputs_to(torch.float32), with_kwargs=True)
        module.register_forward_hook(_outputs_to(torch_dtype(dtype)))
    return model


def name_regex(pattern: str) -> str:
    """A module-name pattern as a regex matching a run of whole dotted parts anywhere in a name.

    "LayerNorm" matches ``encoder.layer.0.output.LayerNorm`` (and its ``.weight``), not ``LayerNormX``.
    """
    return rf"(?:^|.*\.)(?:{pattern})(?=\.|$)"


def modules_matching(model: torch.nn.Module, patterns: list[str], field: str = "keep_fp32") -> dict[str, torch.nn.Module]:
    """The outermost modules whose name matches a pattern (``name_regex``); unmatched patterns are an error.

    A module inside one already listed is not listed again, so the float32 region is cast only at its edges.
    """
    regexes = {p: re.compile(name_regex(p)) for p in patterns}
    named = [(name, module) for name, module in model.named_modules() if name]
    unmatched = [p for p, rx in regexes.items() if not any(rx.match(name) for name, _ in named)]
    if unmatched:
        parts = sorted({part for name, _ in named for part in name.split(".") if not part.isdigit()})
        raise ValueError(f"{field} {unmatched} match no module of this model (its module names use: {parts})")
    found: dict[str, torch.nn.Module] = {}
    for name, module in named:
        if any(rx.match(name) for rx in regexes.values()) and not any(name.startswith(f"{o}.") for o in found):
            found[name] = module
    return found


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    return value


def _inputs_to(dtype: torch.dtype) -> Callable[[torch.nn.Module, tuple, dict], tuple[tuple, dict]]:
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return _cast_floats(args, dtype), {k: _cast_floats(v, dtype) for k, v in kwargs.items()}

    return hook


def _outputs_to(dtype: torch.dtype) -> Callable[[torch.nn.Module, tuple, Any], Any]:
    def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
        return _cast_floats(output, dtype)

    return hook
