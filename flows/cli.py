"""``ratchet``: the command line.

Exit codes (``flows/exit_codes.py``): 0 the final champion meets every target,
1 it does not, 2 invalid input (one line on stderr, nothing computed, nothing
written to MLflow), 3 a verdict could not be reached (a comparison stayed
inconclusive on a noisy machine).

Heavy packages (torch, transformers, MLflow, Prefect, rich's progress bars) are
imported by the command that needs them, not here: ``ratchet --help``,
``ratchet validate`` and every one-line input error answer without them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ratchet.core.layout import PROJECT_ROOT
from ratchet.flows import exit_codes

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_SPEC = PROJECT_ROOT / "examples" / "minilm-support.yaml"
TINY_LM = PROJECT_ROOT / ".ratchet" / "models" / "tiny-support-lm"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other input error
        sys.stderr.write(f"ratchet: {message}\n")
        raise SystemExit(exit_codes.INVALID)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ratchet", description="Make a model faster and cheaper without letting quality slip.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="baseline, gated steps, final gate, registry")
    run.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, help=f"pipeline spec YAML (default: {DEFAULT_SPEC.name})")
    run.add_argument("--quick", action="store_true", help="small measurement budgets, for smoke tests")
    run.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then the spec's)")
    run.add_argument("--no-cache", action="store_true", help="re-measure every step instead of reusing cached ones")
    run.add_argument("--no-prefect", action="store_true",
                     help="run the pipeline as plain Python (no Prefect server, no task cache); same tracking and registry")
    run.add_argument("--verbose", action="store_true", help="show Prefect's and MLflow's own logs")
    check = sub.add_parser("validate", help="validate a spec and its files, compute nothing")
    check.add_argument("spec", type=Path)
    trace = sub.add_parser("trace", help="write the traffic a spec replays (workload.traffic) as JSONL, and its shape")
    trace.add_argument("spec", type=Path)
    trace.add_argument("--out", type=Path, default=Path("trace.jsonl"), help="JSONL file to write (default: trace.jsonl)")
    sub.add_parser("backends", help="every compile backend and whether it can run on this machine, with the reason")
    tiny = sub.add_parser("tiny-lm", help="train the project's tiny causal LM on its shipped support text (offline)")
    tiny.add_argument("--out", type=Path, default=TINY_LM, help=f"model folder to write (default: {TINY_LM})")
    demo = sub.add_parser("demo-models", help="train the demo LLM pair (large + small, one tokenizer) on the shipped "
                                               "support QA text, once; later runs reuse it (offline)")
    demo.add_argument("--test-size", action="store_true", help="the seconds-long pair the tests use")
    env = sub.add_parser("env", help="the isolated environments some backends and techniques run in")
    env_sub = env.add_subparsers(dest="env_command", required=True, parser_class=_Parser)
    env_sub.add_parser("list", help="each environment, its requirements and whether it is built")
    build = env_sub.add_parser("build", help="create (or recreate) environments")
    build.add_argument("names", nargs="*", help="environment names (default: every one)")
    build.add_argument("--force", action="store_true", help="rebuild even if it is up to date")
    return parser


def stdout_console() -> Console:
    """Piped output (CI logs, files) gets room for the gate's reasons instead of rich's 80 columns."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def quiet_libraries() -> None:
    """Keep Prefect's, MLflow's and transformers' own chatter out of the user's terminal."""
    for name, value in (("PREFECT_LOGGING_LEVEL", "WARNING"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
                        ("MLFLOW_LOGGING_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # torchao's "failed to load a CUDA kernel library" and torch's pytree deprecation notices, on every import
    for name in ("torch", "torchao"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True)
    if args.command in ("backends", "env"):
        from ratchet.flows import plugins_cli

        return plugins_cli.backends(stdout_console()) if args.command == "backends" else plugins_cli.env(args, console)
    if args.command == "tiny-lm":
        return _tiny_lm(args.out, console)
    if args.command == "demo-models":
        return _demo_models(console, test_size=args.test_size)
    from ratchet.flows.spec import SpecError, load_spec, preflight

    try:
        spec = load_spec(args.spec)
        if args.command == "trace" and spec.workload.traffic is None:
            raise SpecError(f"{args.spec}: workload.traffic: the spec declares no traffic to write (add "
                            "workload.traffic, e.g. {requests: 600})")
        _build_demo_models(spec, console)
        prepared = preflight(spec)
    except SpecError as exc:
        sys.stderr.write(f"ratchet: {exc}\n")
        return exit_codes.INVALID
    if args.command == "trace":
        return _write_trace(prepared.workload.trace, args.out, console)
    if args.command == "validate":
        console.print(f"[green]{args.spec}: valid[/] ({len(spec.steps)} steps, {len(spec.targets)} targets)")
        return exit_codes.MET
    return _run(spec, args, console)


def _write_trace(trace, out: Path, console: Console) -> int:
    from ratchet.evals.traffic import trace_summary, write_trace

    write_trace(out, trace)
    shape = trace_summary(trace)
    console.print(f"[green]wrote {out}[/]: {shape['requests']} requests at {shape['rate_rps']:.2f} req/s; "
                  f"{shape['repeated_answer_share']:.0%} ask an answer asked before, {shape['repeated_prompt_share']:.0%} "
                  f"repeat a prompt word for word, {shape['unique_share']:.0%} are unique questions", soft_wrap=True)
    return exit_codes.MET


def _run(spec, args, console: Console) -> int:
    if not args.verbose:
        quiet_libraries()
    from rich.markup import escape

    from ratchet.flows import progress
    from ratchet.flows.benchmarks.tables import show
    from ratchet.flows.report import (COMPILE_HEADERS, LADDER_HEADERS, REFERENCE_HEADERS, compile_table_rows,
                                      gains_line, headers, ladder_rows, reference_rows, table_rows, verdict)

    with _progress_bars(console) as listener:
        progress.set_listener(listener)
        try:
            summary = _summary(spec, args)
        finally:
            progress.set_listener(None)
    out = stdout_console()
    show(out, f"Ratchet: {spec.name}", headers(summary), table_rows(summary))
    if summary["compile"]:
        show(out, f"Compile targets: {spec.name} (held-out split; parity against the variant compiled from)",
             COMPILE_HEADERS, compile_table_rows(summary))
    show(out, "The champion, step by step (ratios against the baseline)", LADDER_HEADERS, ladder_rows(summary))
    if summary.get("reference"):
        show(out, f"Against {summary['reference']['name']} (ratios to each one's own baseline)", REFERENCE_HEADERS,
             reference_rows(summary))
    console.print(("[green]" if summary["targets_met"] else "[red]") + escape(verdict(summary)) + "[/]", soft_wrap=True)
    console.print(escape(gains_line(summary)), soft_wrap=True)
    console.print(f"MLflow run {summary['mlflow_run_id']}; plots: {summary['plot']}, {summary['pareto_plot']}",
                  soft_wrap=True)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=1))
    return exit_code(summary)


def exit_code(summary: dict) -> int:
    """3 when any verdict could not be reached (even if the champion met its targets: a better one may have been
    passed over), else 0 when every target is met, else 1."""
    if summary["verdict"] == "inconclusive":
        return exit_codes.INCONCLUSIVE
    return exit_codes.MET if summary["targets_met"] else exit_codes.NOT_MET


def _summary(spec, args) -> dict:
    """The pipeline's summary: through the Prefect flow, or as plain Python with ``--no-prefect``."""
    if args.no_prefect:
        from ratchet.flows.pipeline import run_pipeline
        from ratchet.flows.spec import preflight, with_quick_measurement

        return run_pipeline(preflight(with_quick_measurement(spec) if args.quick else spec), args.tracking_uri).summary
    from ratchet.flows.ratchet_flow import ratchet

    return ratchet(spec=spec, quick=args.quick, tracking_uri=args.tracking_uri, refresh=args.no_cache)


def _tiny_lm(out: Path, console: Console) -> int:
    quiet_libraries()
    from ratchet.tasks.tiny_lm import build_tiny_lm

    with _progress_bars(console) as update:
        build_tiny_lm(out, progress=lambda done, total: update("tiny-support-lm", "train", done, total))
    console.print(f"[green]tiny-support-lm[/] written to {out}")
    return exit_codes.MET


def _demo_models(console: Console, test_size: bool = False) -> int:
    quiet_libraries()
    from ratchet.tasks.demo_models import TEST_SETTINGS, DemoPairSettings, demo_model, pair_dir

    settings = TEST_SETTINGS if test_size else DemoPairSettings()
    built = (pair_dir(settings) / "done.json").is_file()
    with _progress_bars(console) as update:
        demo_model("large", settings, progress=lambda role, done, total: update(f"support-lm-{role}", "train", done, total))
    console.print(f"demo models {'reused from' if built else 'written to'} {pair_dir(settings)} "
                  "(ids ratchet/support-lm-large, ratchet/support-lm-small)")
    return exit_codes.MET


def _build_demo_models(spec, console: Console) -> None:
    """Build the demo pair with progress bars before a run that names it (the first use trains for minutes)."""
    from ratchet.tasks.model_source import DEMO_MODELS

    named = {spec.model.id, *(getattr(step, "draft", None) for step in spec.steps)}
    if named & set(DEMO_MODELS):
        from ratchet.tasks.demo_models import pair_dir

        if not (pair_dir() / "done.json").is_file():
            console.print("building the demo models once (about 10 minutes on 2 cores); later runs reuse them")
            _demo_models(console)


class _progress_bars:
    """A rich bar per (variant, phase): evaluation passes and latency runs."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bars = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=False)
        self.tasks: dict[tuple[str, str], int] = {}

    def __enter__(self):
        self.bars.start()
        return self.update

    def update(self, variant: str, phase: str, done: int, total: int, note: str | None = None) -> None:
        key = (variant, phase)
        if key not in self.tasks:
            self.tasks[key] = self.bars.add_task(f"{variant}: {phase}", total=total)
        described = {"description": f"{variant}: {phase} ({note})"} if note else {}
        self.bars.update(self.tasks[key], completed=done, total=max(total, done), **described)

    def __exit__(self, *exc) -> None:
        self.bars.stop()


if __name__ == "__main__":
    raise SystemExit(main())
