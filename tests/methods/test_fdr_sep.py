"""The whole fdr pipeline on the symmetric simple exclusion process (issue 11), through the model registry.

``workflows/sep-fdr-quick.yaml`` is run end to end (serial, a small lattice and
few replicas via ``--set``): ensemble -> operator -> fit -> macro -> particles.
The operator tables must agree with the exact SEP operator
(:mod:`cgflow.micro.sep_hydro`: E[r_i] = (rho_i (1 - rho_i+1) + rho_i+1 (1 - rho_i))/2
at the lattice mean field of t0) within their standard errors, with the same
statistical test as the zero-range process (tests/methods/test_fdr_operator.py):
z = (K - K_exact)/SE ~ Student t(clusters - 1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from cgflow import open_run
from cgflow.methods.fdr.fit import FittedOperator
from cgflow.micro import sep_hydro

from ..conftest import cgflow_cmd
from ..oracles import assert_operator_matches_exact

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "sep-fdr-quick.yaml"

#: Small size: 200 sites, 10 elements, 96 x 8 replicas in blocks of 32 (24 independent clusters per profile).
SMALL = [
    "micro.sites=200",
    "ensemble.basis_functions=10",
    "ensemble.replicas.preparations=96",
    "ensemble.replicas.continuations=8",
    "ensemble.replicas.block=32",
    "ensemble.times.equilibrate=1.0e-3",   # 40 lattice time units at L = 200
    "ensemble.times.decorrelate=2.5e-6",   # 0.1 lattice time units
    "ensemble.times.h=1.25e-6",            # 0.05 lattice time units
    "ensemble.times.window=2.5e-6",
    "macro.elements=20",
    "particles.sites=200",
    "particles.replicas=64",
    "particles.block=16",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("sep") / "run.zarr"
    args = [a for kv in SMALL for a in ("--set", kv)]
    proc = subprocess.run(cgflow_cmd("run", str(WORKFLOW), "--store", str(store), "--serial", "--no-progress", *args),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return store


@pytest.fixture(scope="module")
def tree(store):
    return open_run(store)


def test_every_stage_ran_with_the_sep(tree):
    assert {"ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro"} <= set(tree.children)
    ens = tree["ensemble"].ds
    assert ens.attrs["model"] == "symmetric simple exclusion process"
    assert "rate_exponent" not in ens.attrs  # a zrp parameter; the SEP has none
    assert tree["macro"].ds.attrs["model"] == "sep"


def test_reference_is_the_exact_sep_operator(tree):
    """K_reference is sep_hydro's lattice operator at the mean field of t0 (flat profiles: the flat state)."""
    op = tree["operator"].ds.load()
    flat = op.slope_nominal.values == 0
    for p in np.unique(op.profile.values[flat]):
        sel = op.profile.values == p
        rho = float(op.rho_nominal.values[sel][0])
        exact = sep_hydro.lattice_stencils(np.full(200, rho), 10, False)[op.node.values[sel]]
        np.testing.assert_allclose(op.K_reference.values[sel], exact, rtol=1e-12)
        # and, since L = nN, the continuum stencil exactly: K_a,a+-1 = -m/Delta, m = rho (1 - rho)/2
        np.testing.assert_allclose(exact[:, 0], -0.5 * rho * (1 - rho) * 10, rtol=1e-12)


@pytest.mark.parametrize("estimator", ["increment", "quadratic_variation", "carre_du_champ"])
def test_operator_tables_agree_with_the_exact_operator(tree, estimator):
    """z = (K - K_exact)/SE ~ t(clusters - 1) for every stencil entry: no bias, right spread."""
    op = tree["operator"].ds.load()
    assert_operator_matches_exact(op, estimator)


def test_locality_probe_is_zero(tree):
    op = tree["operator"].ds.load()
    dof = op.attrs["clusters_per_profile"] - 1
    z = (op.K_far / op.K_far_stderr).values
    z = z[np.isfinite(z)]
    assert stats.kstest(z[::2], stats.t(dof).cdf).pvalue > 1e-3
    assert np.abs(z).max() < stats.t(dof).ppf(1 - 1e-4 / z.size)


def test_fitted_stencils_match_the_exact_sep_operator(tree):
    """The carre-du-champ fit reproduces sep_hydro.exact_stencil inside the probed region (percent level)."""
    fit = tree["fit"].ds.load()
    op = FittedOperator.from_dataset(fit, "carre_du_champ", True)
    rho = np.array([0.25, 0.4, 0.5, 0.6, 0.75])
    for s in (0.0, 0.5, -0.5):
        got = op.stencil(rho, np.full_like(rho, s), on_extrapolation="ignore")
        want = sep_hydro.exact_stencil(rho, s, 10)
        np.testing.assert_allclose(got, want, rtol=0.05, atol=0.02 * np.abs(want).max())


def test_macro_and_particles(tree):
    mac = tree["macro"].ds.load()
    assert mac.attrs["failures"] == []
    assert float(mac.rho_reference.min()) > 0 and float(mac.rho_reference.max()) < 1  # the SEP's own cases
    err = mac.rel_l2_error.sel(estimator="carre_du_champ", mass_conservation=True).isel(time=-1)
    assert float(err.max()) < 0.02
    cmp = tree["particles_vs_macro"].ds.load()
    assert float(cmp.chi2_pvalue_reference.min()) > 1e-3  # direct SEP runs vs the exact-operator FEM


@pytest.mark.parametrize("name", ["ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro"])
def test_sep_stages_meet_the_stage_contract(store, name):
    """check_stage as for the built-in zrp stages: deterministic blocks/reduces, stable fingerprints, pickling."""
    from cgflow.engine import check_stage
    from cgflow.methods import build_stages
    from cgflow.spec import load_spec

    spec = load_spec(WORKFLOW, SMALL)
    stage = {s.name: s for s in build_stages(spec)}[name]
    assert getattr(stage, "model", "sep") == "sep"
    ran = check_stage(stage, open_run(store, chunks=None))
    assert "check_fingerprint_is_stable_across_processes" in ran
