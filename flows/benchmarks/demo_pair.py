"""The demo LLM pair side by side: held-out answer quality and decode cost of the large and the small model.

    python -m ratchet.flows.benchmarks.demo_pair [--markdown]

Builds the pair on first use, then answers every held-out prompt of the
support QA workload with each model (greedy, one request at a time, the two
models alternating per prompt so machine noise hits both alike) and scores
the answers with the example spec's rubric. The large model must answer
measurably better; the small one must be several times cheaper per token.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ratchet.core.layout import PROJECT_ROOT
from ratchet.core.variant import Variant
from ratchet.evals.rubric import score_rubric
from ratchet.evals.scorers import EvalContext
from ratchet.evals.workloads import load_workload
from ratchet.flows.benchmarks.tables import cell, show
from ratchet.flows.cli import quiet_libraries, stdout_console
from ratchet.flows.spec import load_spec
from ratchet.hardware.runtimes import Shape
from ratchet.hardware.runtimes.generation import TorchGenerator
from ratchet.tasks.demo_models import ROLES, TEST_SETTINGS, DemoPairSettings, demo_model

SPEC = PROJECT_ROOT / "examples" / "support-llm.yaml"
COLUMNS = ("model", "parameters", "trained in", "held-out rubric", "facts", "rouge-L", "similarity", "refusal",
           "TPOT p50 ms", "cost per token vs large")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ratchet.flows.benchmarks.demo_pair")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--test-size", action="store_true", help="the seconds-long pair the tests use")
    args = parser.parse_args(argv)
    quiet_libraries()
    spec = load_spec(SPEC)
    workload = load_workload(spec.workload, spec.model.task, PROJECT_ROOT)
    shape = Shape(spec.workload.sequence_length, spec.workload.max_new_tokens)
    settings = TEST_SETTINGS if args.test_size else DemoPairSettings()
    folders = {role: demo_model(role, settings) for role in ROLES}
    generators = {role: TorchGenerator(Variant(name=role, path=folder, task=spec.model.task), shape)
                  for role, folder in folders.items()}
    heldout = workload.split_indices("heldout")
    answers: dict[str, list] = {role: [None] * len(workload.prompts) for role in ROLES}
    for i in heldout:
        for role in (ROLES if i % 2 else ROLES[::-1]):
            answers[role][i] = generators[role].answer([workload.prompts[i].text])[0]
    rows, tpot = [], {}
    for role in ROLES:
        texts = np.array([a.text if a is not None else "" for a in answers[role]])
        result = score_rubric(spec.rubric, EvalContext(workload, "heldout", {"prompts.text": texts}, {}))
        tpot[role] = float(np.median([a.tpot_s for a in answers[role] if a is not None and a.tpot_s]) * 1e3)
        report = json.loads((folders[role] / "ratchet-demo-model.json").read_text())
        metrics = result.metrics()
        rows.append([f"support-lm-{role}", f"{report['params_m']:.2f} M", f"{report['train_s']:.0f} s",
                     cell(result.score, ".3f"), *(cell(metrics.get(k), ".3f") for k in ("facts", "rouge_l",
                                                                                           "similarity", "refusal")),
                     cell(tpot[role], ".2f")])
    for row, role in zip(rows, ROLES):
        row.append(f"{tpot[role] / tpot['large']:.2f}")
    show(stdout_console(), f"demo pair on {len(heldout)} held-out prompts (greedy, one request at a time)", COLUMNS,
         rows, args.markdown)


if __name__ == "__main__":
    main()
