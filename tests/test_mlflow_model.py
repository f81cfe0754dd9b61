"""Tests for ratchet.registry.mlflow_model: a logged variant loads back through ``load_variant``, the same call the
benchmark worker makes, with the hardware and shape it was measured with and its serving options."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np

from ratchet.core.profile import HardwareSpec
from ratchet.hardware.runtimes import Shape, load_variant
from ratchet.hardware.runtimes.length_buckets import LengthBucketed
from ratchet.registry.spec import RegistrySpec
from ratchet.registry.tracking import RunInfo, Tracker
from ratchet.tasks.records import StepRecord

TEXTS = ["How do I reset my password?", "a much longer question about invoices, refunds and billing cycles", "hi"]


def test_a_length_bucketed_champion_is_served_as_it_was_measured(tmp_path: Path, minilm) -> None:
    variant = minilm.child("buckets", minilm.path, "length_buckets", {},
                           runtime_options={"length_buckets": {"max_padding": 0.2}})
    hardware, shape = HardwareSpec(name="test-cpu", threads=1), Shape(sequence_length=32)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    tracker = Tracker(RegistrySpec(model_name="m"), uri, RunInfo("t", {}, {}, hardware, shape))
    tracker.start()
    tracker.log_record(StepRecord("buckets", "length_buckets", "accepted", "", variant=variant))
    tracker.end()

    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(tracker.model_uris["buckets"])
    served = loaded.unwrap_python_model().predictor
    assert isinstance(served, LengthBucketed) and served.max_padding == 0.2
    assert served.inner.sequence_length == 32  # the workload's shape, not a default
    expected = load_variant(variant, hardware, shape).predict(TEXTS)
    np.testing.assert_allclose(np.asarray(loaded.predict(TEXTS)), expected, atol=1e-5)


LLM_SHAPE = Shape(sequence_length=128, max_new_tokens=12)


def _log_llm(tmp_path: Path, variant, kind: str) -> tuple[str, list[str], str]:
    """Log ``variant`` as a step's model; return its model URI, its answers to TEXTS served as measured, and the
    step's run id."""
    hardware = HardwareSpec(name="test-cpu", threads=1)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    tracker = Tracker(RegistrySpec(model_name="m"), uri, RunInfo("t", {}, {}, hardware, LLM_SHAPE))
    tracker.start()
    run_id = tracker.log_record(StepRecord(variant.name, kind, "accepted", "", settings={"quantile": 0.1},
                                           variant=variant))
    tracker.end()
    mlflow.set_tracking_uri(uri)
    answers = [g.text for g in load_variant(variant, hardware, LLM_SHAPE).answer(TEXTS)]
    return tracker.model_uris[variant.name], answers, run_id


def test_a_speculative_llm_champion_answers_prompts_with_its_draft_logged_beside_it(tmp_path: Path,
                                                                                    demo_pair: Path) -> None:
    import shutil

    from ratchet.core.variant import Variant

    draft = shutil.copytree(demo_pair / "small", tmp_path / "draft")
    variant = Variant(name="spec", path=demo_pair / "large", task="text-generation",
                      runtime_options={"decoding": {"assistant": str(draft), "num_assistant_tokens": 4}})
    model_uri, expected, _ = _log_llm(tmp_path, variant, "speculative")
    shutil.rmtree(draft)  # the logged copy is what the model must use

    loaded = mlflow.pyfunc.load_model(model_uri)
    assert loaded.predict(TEXTS) == expected
    assert Path(loaded.unwrap_python_model().predictor.decoding["assistant_model"].name_or_path).exists()


def test_a_serving_recipe_round_trips_through_the_registry(tmp_path: Path, demo_pair: Path) -> None:
    """A champion served behind a response cache and a cheap-first router is one pyfunc: loaded from
    ``models:/NAME@champion`` it routes with its logged small model and answers repeats from its cache."""
    import shutil

    from ratchet.core.variant import Variant
    from ratchet.hardware.serving.cache import CachedGenerator, CacheSettings
    from ratchet.hardware.serving.routing import RoutedGenerator, RouterSettings

    small = shutil.copytree(demo_pair / "small", tmp_path / "small")
    serving = {"cache": CacheSettings(threshold=0.9).model_dump(),
               "router": RouterSettings(small=str(small), threshold=-1.5).model_dump()}
    variant = Variant(name="recipe", path=demo_pair / "large", task="text-generation",
                      params={"quantile": 0.1, "threshold": -1.5}, runtime_options={"serving": serving})
    model_uri, expected, run_id = _log_llm(tmp_path, variant, "routing")
    shutil.rmtree(small)  # the logged copy is what the recipe must use

    client = mlflow.MlflowClient()
    params = client.get_run(run_id).data.params
    assert params["chosen.threshold"] == "-1.5" and "chosen.quantile" not in params  # what tuning chose, logged
    assert "variant.json" in {a.path for a in client.list_artifacts(run_id)}
    client.create_registered_model("support-agent")
    version = client.create_model_version("support-agent", model_uri)
    client.set_registered_model_alias("support-agent", "champion", version.version)
    loaded = mlflow.pyfunc.load_model("models:/support-agent@champion")
    assert loaded.predict(TEXTS) == expected
    stack = loaded.unwrap_python_model().predictor
    assert isinstance(stack, CachedGenerator) and isinstance(stack.generator, RoutedGenerator)
    assert Path(stack.generator.settings.small).exists() and stack.generator.settings.threshold == -1.5
    again = stack.answer(TEXTS)
    assert [a.meta["cache"] for a in again] == ["exact"] * len(TEXTS) and [a.text for a in again] == expected
