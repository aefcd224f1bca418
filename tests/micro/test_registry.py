"""The micro-model registry and the fdr model contract (issue 11, items 1-2)."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from cgflow.methods import build_stages
from cgflow.micro import registry
from cgflow.micro.contract import REQUIRED, ContractError, FDRModel, check_model
from cgflow.micro.registry import ExclusionModel, ZeroRangeModel
from cgflow.spec import SpecError, load_spec

from ..conftest import cgflow_cmd

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


# ----------------------------------------------------------------------------- built-in models
def test_builtin_models_are_entry_points():
    """zrp and sep are declared in cgflow's pyproject under the group, like any plugin: no other path."""
    eps = {ep.name: ep.value for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert eps["zrp"] == "cgflow.micro.registry:ZeroRangeModel"
    assert eps["sep"] == "cgflow.micro.registry:ExclusionModel"
    assert {"zrp", "sep"} <= set(registry.available_models())
    assert registry.get_model_class("zrp") is ZeroRangeModel and registry.get_model_class("sep") is ExclusionModel


@pytest.mark.parametrize("name, params", [("zrp", {"rate_exponent": 2}), ("zrp", {"rate_exponent": 0}), ("sep", {})])
def test_builtin_models_meet_the_contract(name, params):
    model = registry.create_model(name, params)
    assert isinstance(model, FDRModel)
    check_model(model)  # determinism, conservation, bond_jumps, pickling
    assert pickle.loads(pickle.dumps(model)) == model
    assert registry.create_model(name, params) is model  # cached


def test_model_parameters_are_checked():
    with pytest.raises(ValueError, match="needs parameter"):
        registry.create_model("zrp", {})
    with pytest.raises(ValueError, match="takes no parameter"):
        registry.create_model("sep", {"rate_exponent": 2})
    with pytest.raises(ValueError):
        registry.create_model("zrp", {"rate_exponent": 3})


def test_zrp_adapter_calls_the_kernels_unchanged():
    """The adapter is the old direct call: same generator state, bitwise the same configuration."""
    from cgflow.micro import zrp

    rho = np.linspace(2.0, 9.0, 40)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    eta_a = ZeroRangeModel(2).sample_product_measure(rho, a)
    eta_b = zrp.sample_product_measure(rho, 2, b)
    ja, jb = np.zeros(40, np.int64), np.zeros(40, np.int64)
    assert ZeroRangeModel(2).run(eta_a, 3.0, False, a, bond_jumps=ja) == zrp.run_zrp(eta_b, 3.0, 2, False, b, bond_jumps=jb)
    assert np.array_equal(eta_a, eta_b) and np.array_equal(ja, jb)


# ----------------------------------------------------------------------------- registration
@dataclasses.dataclass(frozen=True)
class LazyExclusion(ExclusionModel):
    """A complete model without the optional capabilities (no bond rates, no exact facts)."""

    name: ClassVar[str] = "lazy-sep"
    has_bond_rates: ClassVar[bool] = False
    has_exact_facts: ClassVar[bool] = False


class NoRun:
    """Everything required but ``run``."""

    name = "norun"
    description = "broken"
    parameters = ()
    density_domain = (0.0, 1.0)

    def site_positions(self, sites):
        return np.arange(sites) / sites

    def check_density(self, rho):
        pass

    def sample_product_measure(self, rho_sites, rng):
        return np.zeros(len(rho_sites), np.int64)

    def event_rate(self, rho_sites, periodic):
        return 1.0

    def warmup(self):
        pass

    def conventions(self):
        return {"model": "broken"}


class PromisesBondRates(ExclusionModel):  # the flag is set but the method is gone
    bond_rates = None


@pytest.fixture
def in_process():
    names = []

    def add(name, cls):
        registry.register(name, cls)
        names.append(name)

    yield add
    for n in names:
        registry.unregister(n)


def test_missing_required_method_is_refused_naming_it():
    with pytest.raises(ContractError, match=r"missing required method\(s\) run"):
        registry.register("norun", NoRun)
    assert "norun" not in registry.available_models()
    with pytest.raises(ContractError, match="bond_rates"):  # a capability flag promises its methods
        check_model(PromisesBondRates)
    assert set(REQUIRED) >= {"sample_product_measure", "run", "event_rate", "warmup"}


def test_broken_entry_point_model_is_refused_by_the_spec(monkeypatch):
    """A plugin whose class lacks a required method: exit-2 spec error at micro.model, naming the method."""

    class FakeEntryPoint:
        name, value, group = "norun", "somewhere:NoRun", registry.ENTRY_POINT_GROUP

        def load(self):
            return NoRun

    real = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points", lambda: {**real(), "norun": FakeEntryPoint()})
    assert "norun" in registry.available_models()
    with pytest.raises(SpecError, match=r"micro.model: micro model 'norun' does not meet the fdr contract: "
                                        r"missing required method\(s\) run"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=norun"])


def test_unknown_model_lists_the_registered_ones(in_process):
    in_process("lazy-sep", LazyExclusion)
    with pytest.raises(SpecError, match=r"micro.model: expected a string in \{lazy-sep, sep, zrp\}, got 'nosuch'"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=nosuch"])
    with pytest.raises(registry.UnknownModelError, match="registered models: heterodiffusion, lattice2d, lazy-sep, sep, zrp"):
        registry.get_model_class("nosuch")
    with pytest.raises(registry.UnknownModelError, match="registered fdr models: lazy-sep, sep, zrp "):
        registry.get_model_class("nosuch", family="fdr")


def test_families_keep_fdr_and_eqfree_models_apart():
    """Both families share the entry-point group; each method sees (and accepts) only its own."""
    assert registry.available_models(family="fdr") == ["sep", "zrp"]
    assert registry.available_models(family="eqfree") == ["heterodiffusion", "lattice2d"]
    with pytest.raises(registry.UnknownModelError, match="'zrp' is a fdr model, not a eqfree one; registered eqfree models: heterodiffusion, lattice2d"):
        registry.get_model_class("zrp", family="eqfree")
    with pytest.raises(SpecError, match=r"micro.model: expected a string in \{sep, zrp\}, got 'lattice2d'"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=lattice2d"])
    with pytest.raises(SpecError, match=r"micro.model: expected one of \{heterodiffusion, lattice2d\}, got 'sep'"):
        load_spec(WORKFLOWS / "eqfree-1d-quick.yaml", ["micro.model=sep"])


def test_eqfree_contract_names_what_is_missing(in_process):
    from cgflow.methods.eqfree.models import HeterogeneousDiffusion

    class NoReference(HeterogeneousDiffusion):
        name = "noref"
        reference = None  # not callable

    with pytest.raises(ContractError, match="does not meet the eqfree contract: missing required method\\(s\\) reference"):
        registry.register("noref", NoReference)

    class Flat(HeterogeneousDiffusion):
        dimension = 3

    with pytest.raises(ContractError, match="dimension must be 1 or 2"):
        registry.register("flat", Flat)
    check_model(HeterogeneousDiffusion())  # the built-ins meet it


def test_unknown_model_is_exit_2_from_the_cli():
    proc = subprocess.run(cgflow_cmd("run", str(WORKFLOWS / "sep-fdr-quick.yaml"), "--set", "micro.model=nosuch"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "micro.model" in proc.stderr and "sep, zrp" in proc.stderr and "nosuch" in proc.stderr


def test_register_refuses_a_taken_name(in_process):
    in_process("lazy-sep", LazyExclusion)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("lazy-sep", LazyExclusion)


# ----------------------------------------------------------------------------- model parameters in the spec
def test_rate_exponent_is_a_zrp_parameter():
    with pytest.raises(SpecError, match="micro.rate_exponent: the sep model takes no rate_exponent"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.rate_exponent=2"])
    with pytest.raises(SpecError, match="micro.rate_exponent: missing required key for micro.model: zrp"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=zrp"])
    spec = load_spec(WORKFLOWS / "zrp-fdr-quick.yaml")
    ens = build_stages(spec)[0]
    assert ens.micro == ZeroRangeModel(2) and ens.rate_exponent == 2


def test_densities_must_lie_in_the_model_domain():
    with pytest.raises(SpecError, match=r"ensemble.profiles.flat.rho: the sep model needs densities \(0, 1\), got 4"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["ensemble.profiles.flat.rho=[0.5, 4.0]"])
    with pytest.raises(SpecError, match="ensemble.profiles.affine.slopes: rho_mid \\+ s \\(x - 1/2\\) must stay in the sep"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["ensemble.profiles.affine.slopes=[0.4, 0.95]",
                                                     "ensemble.profiles.affine.rho_mid=[0.6]"])


def test_sep_uses_its_own_macro_cases():
    stages = {s.name: s for s in build_stages(load_spec(WORKFLOWS / "sep-fdr-quick.yaml"))}
    for name in ("periodic-cosine", "dirichlet-asymmetric"):
        x, rho0 = stages["macro"].case_table[name].initial(40)
        assert 0 < rho0.min() and rho0.max() < 1
    assert 0.29 < stages["particles"].density_profile().min() and stages["particles"].density_profile().max() < 0.71


def test_capability_flags_gate_estimators_and_stages(in_process):
    in_process("lazy-sep", LazyExclusion)
    with pytest.raises(SpecError) as info:
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=lazy-sep"])
    text = str(info.value)
    assert "operator.estimators: the lazy-sep model gives no bond rates" in text
    assert "stages: the lazy-sep model gives no exact facts" in text
    spec = load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=lazy-sep", "operator.estimators=[increment]",
                                                        "stages=[ensemble, operator, fit]"])
    ens, op, _ = build_stages(spec)
    assert ens.micro == LazyExclusion()
    assert np.all(np.isnan(op.reference_stencils(0)))  # no exact facts: no reference column values


@dataclasses.dataclass(frozen=True)
class TiltedExclusion(ExclusionModel):
    """A model with parameters the fdr schema does not know: they become micro.* keys of their declared kinds."""

    tilt: float = 0.0
    sweeps: int = 1
    name: ClassVar[str] = "tilted-sep"
    parameters: ClassVar[tuple[str, ...]] = ("tilt", "sweeps")
    parameter_kinds: ClassVar[dict] = {"sweeps": "int"}


def test_plugin_parameters_become_spec_keys(in_process):
    in_process("tilted-sep", TiltedExclusion)
    spec = load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=tilted-sep", "micro.tilt=0.25", "micro.sweeps=3"])
    assert spec["micro.tilt"] == 0.25 and spec["micro.sweeps"] == 3
    ensemble = build_stages(spec)[0]
    assert ensemble.micro == TiltedExclusion(tilt=0.25, sweeps=3)
    with pytest.raises(SpecError, match="micro.sweeps: expected an integer, got 2.5"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=tilted-sep", "micro.tilt=0.25", "micro.sweeps=2.5"])
    with pytest.raises(SpecError, match="micro.tilt: missing required key"):
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.model=tilted-sep", "micro.sweeps=1"])
    with pytest.raises(SpecError, match="micro.tilt: unknown key"):  # the sep itself takes no tilt
        load_spec(WORKFLOWS / "sep-fdr-quick.yaml", ["micro.tilt=0.25"])
