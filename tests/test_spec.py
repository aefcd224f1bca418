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


# --------------------------------------------------------------------------- method eqfree

from pathlib import Path  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


@pytest.mark.parametrize("name", ["eqfree-1d-paper", "gaptooth-2d-paper"])
def test_eqfree_paper_workflows_validate(name):
    spec = load_spec(WORKFLOWS / f"{name}.yaml")
    assert spec.method == "eqfree"
    assert spec.stages == ("trajectories", "homogenized", "learn", "rollout")
    assert spec["learn.batch"] == 64 and spec["learn.learning_rate"] == 1e-3  # seed §5.1


def test_eqfree_1d_keys_follow_the_model():
    spec = load_spec(WORKFLOWS / "eqfree-1d-paper.yaml")
    assert spec["micro.coefficient.mean"] == 1.1 and spec["micro.coefficient.amplitude"] == 1.0
    # a tabulated periodic coefficient instead of the sine family
    from cgflow.methods import build_stages

    table = load_spec(WORKFLOWS / "eqfree-1d-paper.yaml", ["micro.coefficient={table: [0.5, 2.0, 1.0, 4.0]}"])
    a_star = build_stages(table)[0].coefficient_effective
    assert a_star == pytest.approx(4 / (1 / 0.5 + 1 / 2.0 + 1 / 1.0 + 1 / 4.0), rel=1e-12)  # harmonic mean
    with pytest.raises(SpecError, match="micro.coefficient.table: give either a table or mean/amplitude"):
        load_spec(WORKFLOWS / "eqfree-1d-paper.yaml", ["micro.coefficient.table=[1.0, 2.0]"])
    assert spec["patch_dynamics.buffer"] == 8e-3
    # a lattice2d key is unknown for the 1-D model, with the model's own keys listed
    with pytest.raises(SpecError) as info:
        load_spec(WORKFLOWS / "eqfree-1d-paper.yaml", ["micro.lattice=480"])
    assert "micro.lattice: unknown key" in str(info.value)
    with pytest.raises(SpecError, match=r"micro.model: expected one of \{heterodiffusion, lattice2d\}, got 'lattice3d'"):
        load_spec(WORKFLOWS / "eqfree-1d-paper.yaml", ["micro.model=lattice3d"])


@pytest.mark.parametrize(
    "name, override, key, expected",
    [
        ("eqfree-1d-paper", "micro.coefficient.amplitude=1.2", "micro.coefficient", "must stay > 0"),
        ("eqfree-1d-paper", "micro.dx=5e-6", "micro.dx", "at least 4 points per period"),
        ("eqfree-1d-paper", "patch_dynamics.buffer=5e-5", "patch_dynamics.buffer", "wider than patch_dynamics.tooth"),
        ("eqfree-1d-paper", "patch_dynamics.buffer=0.2", "patch_dynamics.buffer", "must not overlap"),
        ("eqfree-1d-paper", "patch_dynamics.burst=0.1", "patch_dynamics.burst", "must not exceed"),
        ("eqfree-1d-paper", "trajectories.sample_every=1.5e-3", "trajectories.sample_every", "whole multiple of patch_dynamics.macro_dt"),
        ("eqfree-1d-paper", "trajectories.sample_every=0.3", "trajectories.sample_every", "must divide trajectories.t_end"),
        ("eqfree-1d-paper", "rollout.times=[0.5, 2.0]", "rollout.times", "must be <= trajectories.t_end"),
        ("eqfree-1d-paper", "learn.models=[transformer]", "learn.models", "pointwise, stencil, linear"),
        ("gaptooth-2d-paper", "gap_tooth.patches=7", "gap_tooth.patches", "must divide micro.lattice"),
        ("gaptooth-2d-paper", "gap_tooth.patch_points=30", "gap_tooth.patch_points", "must leave gaps"),
        ("gaptooth-2d-paper", "micro.convention=diagonal", "micro.convention", "paper, same-site"),
        ("gaptooth-2d-paper", "stages=[ensemble]", "stages", "unknown stage"),
    ],
)
def test_eqfree_invalid_values_name_the_key(name, override, key, expected):
    with pytest.raises(SpecError) as info:
        load_spec(WORKFLOWS / f"{name}.yaml", [override])
    text = str(info.value)
    assert f": {key}: " in text and expected in text, text


def test_eqfree_patch_widths_must_sit_on_the_micro_grid():
    with pytest.raises(SpecError, match=r"patch_dynamics.tooth: must be an even number"):
        load_spec(WORKFLOWS / "eqfree-1d-paper.yaml", ["patch_dynamics.tooth=1.5e-7"])
    with pytest.raises(SpecError, match=r"patch_dynamics.buffer: must be an even number"):
        load_spec(WORKFLOWS / "eqfree-1d-paper.yaml", ["patch_dynamics.buffer=8.0001e-3"])
