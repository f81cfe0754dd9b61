"""prefect.yaml's deployments must stay runnable: each names a spec file of the checkout, which validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ratchet.core.layout import PROJECT_ROOT
from ratchet.flows.ratchet_flow import deployment_spec
from ratchet.flows.spec import SpecError, load_spec


def deployments() -> dict[str, dict]:
    project = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in project["deployments"]}


def test_manual_and_nightly_deployments_on_a_process_pool() -> None:
    deps = deployments()
    assert set(deps) == {"ratchet-manual", "ratchet-nightly"}
    assert not deps["ratchet-manual"]["schedules"]
    assert deps["ratchet-nightly"]["schedules"][0]["cron"] == "0 2 * * *"
    for dep in deps.values():
        module, func = dep["entrypoint"].split(":")
        assert (PROJECT_ROOT / module).is_file() and func == "ratchet"
        assert dep["work_pool"]["name"] == "ratchet-process"


def test_deployments_name_spec_files_that_validate_from_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment run starts in the checkout (the pull step): its spec_path resolves there, and its relative
    paths (the dataset) resolve against the spec file, as with ``ratchet run``."""
    monkeypatch.chdir(PROJECT_ROOT)
    for dep in deployments().values():
        params = dep["parameters"]
        assert "spec" not in params, "a deployment names a spec file instead of inlining a copy"
        spec = deployment_spec(params["spec_path"], None)
        assert spec == load_spec(PROJECT_ROOT / params["spec_path"])
        assert Path(spec.workload.dataset).is_file()


def test_the_flow_takes_a_spec_file_or_a_spec_not_both_nor_neither(default_spec_data: dict) -> None:
    from ratchet.flows.spec import parse_spec

    spec = parse_spec(default_spec_data)
    assert deployment_spec(None, spec) is spec
    with pytest.raises(SpecError, match="not both"):
        deployment_spec("examples/minilm-support.yaml", spec)
    with pytest.raises(SpecError, match="not neither"):
        deployment_spec(None, None)
