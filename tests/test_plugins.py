"""Tests for core.plugins: the one name -> plugin table behind techniques, scorers and backends."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ratchet.core import plugins
from ratchet.core.plugins import Registry, UnknownPluginError, load_plugins, unknown_name_message


def _registry() -> Registry[object]:
    """A registry with two techniques-like entries, one with aliases."""
    reg: Registry[object] = Registry("step kind")
    reg.register("int8_dynamic")(object())
    reg.register("cast", aliases=("fp16", "bf16"))(object())
    return reg


def test_register_returns_object_and_get_finds_it() -> None:
    """The decorator returns the object unchanged, so it can decorate classes; get returns it."""
    reg: Registry[type] = Registry("widget")

    @reg.register("thing")
    class Thing:
        pass

    assert Thing.__name__ == "Thing"
    assert reg.get("thing") is Thing
    assert "thing" in reg
    assert len(reg) == 1
    assert reg.names() == ["thing"]
    assert list(reg.items()) == [("thing", Thing)]


def test_aliases_resolve_to_the_canonical_entry() -> None:
    """An alias gets the same object and canonicalises to the registered name; aliases are not listed as names."""
    reg = _registry()
    assert reg.get("fp16") is reg.get("cast")
    assert reg.get("bf16") is reg.get("cast")
    assert reg.canonical("fp16") == "cast"
    assert reg.canonical("cast") == "cast"
    assert "fp16" in reg
    assert reg.names() == ["cast", "int8_dynamic"]
    assert len(reg) == 2


def test_duplicate_name_raises_value_error() -> None:
    reg = _registry()
    with pytest.raises(ValueError, match="'cast' is registered twice"):
        reg.register("cast")(object())


@pytest.mark.parametrize(
    ("name", "aliases", "clash"),
    [
        ("fp16", (), "fp16"),  # new name equals an existing alias
        ("half", ("cast",), "cast"),  # new alias equals an existing name
        ("half", ("bf16",), "bf16"),  # new alias equals an existing alias
    ],
)
def test_alias_clash_raises_and_leaves_registry_unchanged(name: str, aliases: tuple[str, ...], clash: str) -> None:
    """Any collision between names and aliases raises, and nothing of the failed registration is kept."""
    reg = _registry()
    original = reg.get(clash)
    with pytest.raises(ValueError, match=f"{clash!r} is registered twice"):
        reg.register(name, aliases=aliases)(object())
    assert reg.get(clash) is original
    assert name not in reg or name == clash
    assert reg.names() == ["cast", "int8_dynamic"]


def test_unknown_name_is_a_value_error_with_suggestion_and_known_names() -> None:
    """A close typo gets "did you mean 'x'" and the message lists every known name."""
    reg = _registry()
    with pytest.raises(UnknownPluginError) as info:
        reg.get("int8_dynamc")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LookupError)
    msg = str(info.value)
    assert "unknown step kind 'int8_dynamc'" in msg
    assert "did you mean 'int8_dynamic'" in msg
    assert "(known: cast, int8_dynamic)" in msg
    assert "\n" not in msg


def test_unknown_name_far_from_everything_has_no_suggestion() -> None:
    reg = _registry()
    with pytest.raises(UnknownPluginError) as info:
        reg.canonical("zzzzzzzz")
    msg = str(info.value)
    assert "did you mean" not in msg
    assert "known: cast, int8_dynamic" in msg


def test_unknown_name_suggests_aliases_too() -> None:
    """Aliases take part in the suggestion (a typo of an alias is still helped)."""
    reg = _registry()
    with pytest.raises(UnknownPluginError, match="did you mean 'fp16'"):
        reg.get("fp61")


def test_unknown_name_message_on_empty_registry() -> None:
    assert unknown_name_message("compile target", "onnx", []) == "unknown compile target 'onnx' (known: none yet)"
    with pytest.raises(UnknownPluginError, match="none yet"):
        Registry("compile target").get("onnx")


def test_a_registry_loads_every_plugin_on_its_first_lookup() -> None:
    """No caller imports plugin modules: the first lookup in any registry loads every plugin package."""
    probe = textwrap.dedent("""
        import sys
        from ratchet.tasks.techniques import TECHNIQUES
        before = "ratchet.tasks.techniques.cast" in sys.modules
        names = TECHNIQUES.names()
        print(before, "ratchet.tasks.techniques.cast" in sys.modules, "ratchet.evals.scorers.mrr" in sys.modules,
              "cast" in names)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True", "True", "True"], out.stderr


def test_the_shipped_plugins_are_registered() -> None:
    from ratchet.evals.scorers import SCORERS
    from ratchet.tasks.techniques import TECHNIQUES

    assert {"int8_dynamic", "cast"} <= set(TECHNIQUES.names())
    assert {"recall_at_k", "mrr", "fidelity_cosine", "accuracy", "label_agreement"} <= set(SCORERS.names())
    assert SCORERS.canonical("recall") == "recall_at_k"
    assert SCORERS.canonical("fidelity") == "fidelity_cosine"
    # Each registered technique carries a spec type whose kind tag is its registered name.
    for name, technique in TECHNIQUES.items():
        assert technique.spec_type.model_fields["kind"].default == name


def test_load_plugins_is_idempotent() -> None:
    """A second load must not import (and register) the same modules again: no duplicate-name error."""
    load_plugins()
    load_plugins()


def test_load_plugins_imports_every_module_of_a_plugin_package_and_skips_private(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a plugin is adding one module; modules starting with '_' are helpers and not imported."""
    pkg = tmp_path / "ratchet_fake_plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from ratchet.core.plugins import Registry\nTHINGS = Registry('thing')\n")
    (pkg / "alpha.py").write_text(
        textwrap.dedent(
            """
            from ratchet_fake_plugins import THINGS

            @THINGS.register("alpha", aliases=("a",))
            class Alpha:
                pass
            """
        )
    )
    (pkg / "_helper.py").write_text("raise RuntimeError('private helper module must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "PLUGIN_PACKAGES", ("ratchet_fake_plugins",))
    monkeypatch.setattr(plugins, "_loaded", False)
    try:
        things = importlib.import_module("ratchet_fake_plugins").THINGS
        assert things.names() == ["alpha"]
        assert things.get("a").__name__ == "Alpha"
        assert "ratchet_fake_plugins._helper" not in sys.modules
    finally:
        for mod in [m for m in sys.modules if m.startswith("ratchet_fake_plugins")]:
            del sys.modules[mod]
