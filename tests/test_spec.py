"""Spec loading, overrides and validation."""

from __future__ import annotations

import pytest

from cgflow.spec import SpecError, load_spec, parse_override

from .conftest import TINY_SPEC


def test_tiny_spec_resolves_defaults(tiny_spec):
    spec = load_spec(tiny_spec)
    assert spec.stages == ("ensemble",)
    assert load_spec(tiny_spec, ["stages=[macro, ensemble]"]).stages == ("ensemble", "macro")  # method order
    tiny_spec.write_text(tiny_spec.read_text().replace("stages: [ensemble]\n", ""))
    assert load_spec(tiny_spec).stages == ("ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro")
    assert spec["micro.boundary"] == "closed"
    assert spec["ensemble.replicas.continuations"] == 4
    assert [(p.kind, p.rho_mid, p.slope) for p in spec.profiles] == [("flat", 3.0, 0.0), ("flat", 6.0, 0.0), ("affine", 5.0, 4.0)]


def test_overrides_are_typed_and_change_the_hash(tiny_spec):
    base = load_spec(tiny_spec)
    spec = load_spec(tiny_spec, ["ensemble.replicas.block=16", "ensemble.times.h=2e-7",
                                 "ensemble.profiles.flat.rho=[1, 2.5]", "ensemble.store_replicas=false"])
    assert spec["ensemble.replicas.block"] == 16
    assert spec["ensemble.times.h"] == 2e-7
    assert spec["ensemble.profiles.flat.rho"] == (1.0, 2.5)
    assert spec["ensemble.store_replicas"] is False
    assert spec.hash != base.hash
    assert load_spec(tiny_spec).hash == base.hash  # deterministic


def test_yaml_exponent_floats():
    # PyYAML alone reads "1e5" as a string; specs must not.
    assert parse_override("a=1e5") == ("a", 1e5)
    assert parse_override("a=4.0e-4") == ("a", 4e-4)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    with pytest.raises(ValueError, match="dotted.key=value"):
        parse_override("novalue")


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("micro.sitez=100", "micro.sitez", "did you mean 'sites'"),
        ("micro.sites=abc", "micro.sites", "expected an integer"),
        ("micro.sites=100.5", "micro.sites", "expected an integer"),
        ("micro.rate_exponent=3", "micro.rate_exponent", "in {0, 1, 2}"),
        ("micro.boundary=open", "micro.boundary", "periodic, closed"),
        ("ensemble.times.h=-1e-7", "ensemble.times.h", "> 0"),
        ("ensemble.replicas.block=7", "ensemble.replicas.block", "must divide the replica count"),
        ("ensemble.basis_functions=7", "ensemble.basis_functions", "must divide micro.sites"),
        ("ensemble.profiles.affine.slopes=[12]", "ensemble.profiles.affine.slopes", "stay > 0"),
        ("ensemble.store_replicas=3", "ensemble.store_replicas", "true or false"),
        ("stages=[plot]", "stages", "unknown stage"),
    ],
)
def test_invalid_values_name_the_key(tiny_spec, override, key, expected):
    with pytest.raises(SpecError) as err:
        load_spec(tiny_spec, [override])
    message = str(err.value)
    assert f"{tiny_spec}: {key}: " in message
    assert expected in message


def test_missing_required_key(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY_SPEC.replace("seed: 7\n", ""))
    with pytest.raises(SpecError, match=r"s\.yaml: seed: missing required key"):
        load_spec(path)


def test_all_problems_reported_at_once(tiny_spec):
    with pytest.raises(SpecError) as err:
        load_spec(tiny_spec, ["micro.sites=x", "seed=-1"])
    keys = [k for k, _ in err.value.problems]
    assert keys == ["seed", "micro.sites"]
