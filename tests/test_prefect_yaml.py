"""prefect.yaml's deployments must stay runnable and in step with the example spec they inline."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]


def deployments() -> dict[str, dict]:
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in project["deployments"]}


def test_manual_and_nightly_deployments_on_a_process_pool() -> None:
    deps = deployments()
    assert set(deps) == {"ratchet-manual", "ratchet-nightly"}
    assert not deps["ratchet-manual"]["schedules"]
    assert deps["ratchet-nightly"]["schedules"][0]["cron"] == "0 2 * * *"
    for dep in deps.values():
        module, func = dep["entrypoint"].split(":")
        assert (ROOT / module).is_file() and func == "ratchet"
        assert dep["work_pool"]["name"] == "ratchet-process"


def test_inlined_spec_is_the_example_with_a_repo_relative_dataset() -> None:
    inlined = deployments()["ratchet-manual"]["parameters"]["spec"]
    example = yaml.safe_load((ROOT / "examples" / "minilm-support.yaml").read_text())
    example["workload"]["dataset"] = "evals/data/support_faq.json"
    assert inlined == example
    assert (ROOT / inlined["workload"]["dataset"]).is_file()
    parse_spec(inlined)  # the deployment's default parameters validate
