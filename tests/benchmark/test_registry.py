"""The one registry class: taken names raise, unknown names list the valid ones, module:Class
and entry-point plugins register on first use."""

import sys
from importlib import metadata

import pytest

from benchmark.core import registry as registry_module
from benchmark.core.errors import UserError
from benchmark.core.registry import Registry, RegistryError
from methods import METHODS, resolve_method


def test_register_get_and_refuse_a_taken_name():
    reg = Registry("widget")
    a, b = object(), object()
    assert reg.register("a", a) is a
    assert reg.register("a", a) is a  # the same object again is no clash
    with pytest.raises(RegistryError, match="widget name 'a' is already registered"):
        reg.register("a", b)
    assert reg["a"] is a and "a" in reg and reg.names() == ["a"] and len(reg) == 1
    with pytest.raises(UserError, match="unknown widget 'z'; valid widgets: a"):
        reg.get("z")
    reg.unregister("a")
    assert "a" not in reg


def test_datasets_and_methods_share_the_registry_class():
    from datasets import DATASETS

    assert isinstance(METHODS, Registry) and isinstance(DATASETS, Registry)
    assert DATASETS.entry_point_group == "mlr_bench.datasets"
    assert METHODS.entry_point_group == "mlr_bench.methods"


def test_entry_point_plugins_register_on_first_lookup(monkeypatch):
    ep = metadata.EntryPoint("test-entry-point", "tests.plugin_method", "mlr_bench.methods")
    monkeypatch.setattr(registry_module.metadata, "entry_points",
                        lambda group: [ep] if group == "mlr_bench.methods" else [])
    monkeypatch.setattr(METHODS, "_plugins_loaded", False)
    try:
        assert "test-entry-point" in METHODS
        assert METHODS["test-entry-point"].__name__ == "EntryPointMethod"
    finally:
        METHODS.unregister("test-entry-point")
        sys.modules.pop("tests.plugin_method", None)


def test_a_broken_plugin_is_named(monkeypatch):
    ep = metadata.EntryPoint("broken", "tests.no_such_module", "mlr_bench.methods")
    monkeypatch.setattr(registry_module.metadata, "entry_points",
                        lambda group: [ep] if group == "mlr_bench.methods" else [])
    monkeypatch.setattr(METHODS, "_plugins_loaded", False)
    with pytest.raises(RegistryError, match="method plugin 'broken' .*failed to load"):
        METHODS.names()


def test_module_class_methods(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "user_mod.py").write_text(
        "from tests.fake_methods import PixelMethod\n"
        "class Mine(PixelMethod):\n    name = 'user-mine'\n    description = 'mine'\n"
        "class NotAMethod:\n    pass\n")
    try:
        cls = resolve_method("user_mod:Mine")
        assert cls.name == "user-mine" and METHODS["user-mine"] is cls
        assert resolve_method("user_mod:Mine") is cls  # resolving twice is fine
    finally:
        METHODS.unregister("user-mine")
    for spec, message in [("user_mod:NotAMethod", "not a subclass of methods.base.Method"),
                          ("user_mod:Nope", "has no 'Nope'"),
                          ("no_such_mod:X", "cannot import module 'no_such_mod'"),
                          ("user_mod:", "expected module:Name")]:
        with pytest.raises(UserError, match=message):
            resolve_method(spec)


def test_dataset_options_need_a_section():
    from benchmark.core.options import Option
    from datasets import DATASETS, DatasetSpec, register_dataset

    with pytest.raises(TypeError, match="dataset 'x-data' declares options but no config_section"):
        register_dataset(DatasetSpec("x-data", "x", build=lambda c, r: None,
                                     options={"a": Option(1, "a")}))
    spec = DatasetSpec("x-data", "x", build=lambda c, r: None)
    try:
        assert register_dataset(spec) is spec and DATASETS["x-data"] is spec
    finally:
        DATASETS.unregister("x-data")


def test_a_subclass_that_keeps_its_parents_name_is_told_to_set_one():
    from methods import METHODS
    from methods.base import register_method
    from methods.baseline import Baseline

    class MyMethod(Baseline):
        description = "a plugin that forgot its name"

    with pytest.raises(RegistryError, match=r"MyMethod inherits name 'baseline' from Baseline: "
                                            r"set its own, e.g. name = \"my-method\""):
        register_method(MyMethod)
    assert METHODS["baseline"] is Baseline
