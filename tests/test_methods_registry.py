"""The method registry: the validator and the CLI name no method, so a new one needs no edit outside its own modules."""

from __future__ import annotations

import sys
import types

import pytest

from cgflow.methods import registry
from cgflow.spec import Field, SpecError, spec_from_dict


def test_builtin_methods_and_their_stages():
    assert registry.available_methods() == ["fdr", "eqfree", "probcg", "partial"]
    assert registry.get_method("fdr").stages[:2] == ("ensemble", "operator")
    assert registry.get_method("eqfree").stages == ("trajectories", "homogenized", "learn", "rollout")
    assert registry.get_method("partial").stages[0] == "pairs"
    for name in registry.available_methods():  # what register() demands of a new method, the built-ins meet
        schema = registry.get_method(name).schema
        assert all(callable(getattr(schema, f)) for f in ("sections", "check")), name
        assert isinstance(schema.OPTIONAL_SECTIONS, frozenset) and schema.STAGES, name


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(SpecError, match="method: unknown method 'fdrr'; registered methods: fdr, eqfree, probcg, partial"):
        spec_from_dict({"name": "x", "method": "fdrr", "seed": 1})
    with pytest.raises(registry.UnknownMethodError):
        registry.get_method("fdrr")


@pytest.fixture
def toy_method(monkeypatch):
    """A method registered in-process from a schema module and a pipeline function of its own."""
    schema = types.ModuleType("toy_schema")
    schema.STAGES = ("count", "report")
    schema.OPTIONAL_SECTIONS = frozenset({"report"})
    schema.sections = lambda data, problems: {
        "toy": {"n": Field("int", minimum=1)},
        "report": {"digits": Field("int", required=False, default=3)},
    }

    def check(d, problems):
        if d["toy"].get("n", 0) % 2:
            problems.append(("toy.n", "must be even"))

    schema.check = check
    pipeline = types.ModuleType("toy_pipeline")
    pipeline.build = lambda spec: [f"{name}:{spec['toy.n']}" for name in spec.stages]
    monkeypatch.setitem(sys.modules, "toy_schema", schema)
    monkeypatch.setitem(sys.modules, "toy_pipeline", pipeline)
    method = registry.Method("toy", "toy_schema", "toy_pipeline:build", "a test method")
    registry.register(method)
    yield method
    registry._METHODS.pop("toy", None)


def test_a_registered_method_validates_and_builds(toy_method):
    spec = spec_from_dict({"name": "t", "method": "toy", "seed": 0, "toy": {"n": 4}, "stages": ["report"]})
    assert spec["report.digits"] == 3  # an omitted optional section takes its defaults
    assert registry.build_stages(spec) == ["report:4"]
    with pytest.raises(SpecError, match="toy.n: must be even"):
        spec_from_dict({"name": "t", "method": "toy", "seed": 0, "toy": {"n": 3}})
    with pytest.raises(SpecError, match=r"unknown stage\(s\) \['fit'\] for method 'toy'"):
        spec_from_dict({"name": "t", "method": "toy", "seed": 0, "toy": {"n": 2}, "stages": ["fit"]})
    with pytest.raises(ValueError, match="already registered"):
        registry.register(toy_method)


def test_register_refuses_an_incomplete_schema_module(monkeypatch):
    bare = types.ModuleType("bare_schema")
    bare.STAGES = ("a",)
    monkeypatch.setitem(sys.modules, "bare_schema", bare)
    with pytest.raises(TypeError, match=r"lacks \['OPTIONAL_SECTIONS', 'sections', 'check'\]"):
        registry.register(registry.Method("bare", "bare_schema", "x:y"))
    assert "bare" not in registry.available_methods()
