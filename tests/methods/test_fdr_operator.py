"""The operator stage against the exact operator of the particle system (seed 000 eq. 5; REFERENCE §1).

One small run (about a minute on 2 cores) feeds every test here. The estimates
must agree with the exact operator within their computed standard errors: with
clusters of independent preparations the z-scores follow Student's t with
(clusters - 1) degrees of freedom, which is what we test, estimator by estimator.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from scipy import stats

from cgflow import open_run

from ..conftest import cgflow_cmd

SPEC = """\
name: fdr-operator-test
method: fdr
seed: 11
stages: [ensemble, operator, fit, macro, particles, particles_vs_macro]
micro: {model: zrp, sites: 200, rate_exponent: 2, boundary: closed}
ensemble:
  profiles:
    flat: {rho: [4.0, 8.0]}
    affine: {rho_mid: [9.0], slopes: [12.0, -12.0]}
  basis_functions: 10
  replicas: {preparations: 96, continuations: 8, block: 32}
  times: {equilibrate: 1.0e-3, decorrelate: 2.5e-6, h: 2.5e-8, window: 2.5e-6}
operator: {margin: 1}
macro: {method: implicit, elements: 20, t_end: 1.0e-3, saves: 4}
particles: {sites: 200, replicas: 96, block: 16}
"""


def run(spec, store, *extra):
    return subprocess.run(cgflow_cmd("run", str(spec), "--store", str(store), "--workers", "2", "--no-progress", *extra),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fdr")
    (tmp / "spec.yaml").write_text(SPEC)
    store = tmp / "run.zarr"
    proc = run(tmp / "spec.yaml", store)
    assert proc.returncode == 0, proc.stderr
    return store


@pytest.fixture(scope="module")
def operator(store):
    return open_run(store)["operator"].ds.load()


def z_scores(op, estimator, offset):
    sel = op.sel(estimator=estimator, offset=offset)
    return ((sel.K - sel.K_reference) / sel.K_stderr).values


def test_layout(operator):
    op = operator
    assert list(op.estimator.values) == ["increment", "quadratic_variation", "carre_du_champ"]
    assert list(op.offset.values) == [-1, 0, 1]
    assert op.K.dims == ("estimator", "point", "offset") and op.K_stderr.dims == op.K.dims
    assert op.sizes["point"] == 4 * 7  # 4 profiles x interior nodes 2..8
    for name in ("rho", "slope", "profile", "node"):
        assert name in op.coords
    assert np.all(np.isfinite(op.K)) and np.all(op.K_stderr > 0)
    # an affine profile yields many (rho_a, s_a) pairs
    steep = op.slope_nominal == 12.0
    assert np.ptp(op.rho.values[steep]) > 5


@pytest.mark.parametrize("estimator", ["increment", "quadratic_variation", "carre_du_champ"])
def test_estimates_agree_with_the_exact_operator(operator, estimator):
    """z = (K - K_exact)/SE ~ t(clusters - 1): no bias, right spread, for every stencil entry."""
    dof = operator.attrs["clusters_per_profile"] - 1
    for offset in (-1, 0, 1):
        z = z_scores(operator, estimator, offset)
        # neighbouring nodes share an element; every other node gives independent values
        for start in (0, 1):
            sample = z[start::2]
            assert stats.kstest(sample, stats.t(dof).cdf).pvalue > 1e-3, (offset, np.round(sample, 2))
        assert abs(z.mean()) <= 4 * np.sqrt(dof / (dof - 2) * 2 / len(z))  # bias: 4 SE of the mean z (neighbours correlated: x2)
        assert np.abs(z).max() < stats.t(dof).ppf(1 - 1e-4 / len(z))  # no single wild outlier


def test_increment_is_the_noisiest_estimator(operator):
    # Here continuations share their preparation's state, so the carre-du-champ and the
    # window's quadratic variation are limited by the number of preparations alike.
    rel = (operator.K_stderr / np.abs(operator.K_reference)).sel(offset=0).median("point")
    inc, qv, cdc = (float(rel.sel(estimator=e)) for e in ("increment", "quadratic_variation", "carre_du_champ"))
    assert inc / cdc > 5 and inc / qv > 5


def test_locality_probe_is_zero(operator):
    dof = operator.attrs["clusters_per_profile"] - 1
    z = (operator.K_far / operator.K_far_stderr).values
    z = z[np.isfinite(z)]
    assert stats.kstest(z[::2], stats.t(dof).cdf).pvalue > 1e-3
    assert np.abs(z).max() < stats.t(dof).ppf(1 - 1e-4 / z.size)


def test_changed_operator_settings_recompute_only_the_operator(store, tmp_path):
    spec = store.parent / "spec.yaml"
    copy = tmp_path / "copy.zarr"
    import shutil

    shutil.copytree(store, copy)
    proc = run(spec, copy, "--set", "operator.margin=2")
    assert proc.returncode == 0, proc.stderr
    assert "ensemble: 0 blocks computed" in proc.stdout and "operator: computed" in proc.stdout
    assert open_run(copy)["operator"].ds.sizes["point"] == 4 * 5
    again = run(spec, copy, "--set", "operator.margin=2")
    assert "operator: up to date" in again.stdout
    status = subprocess.run(cgflow_cmd("status", str(copy)), capture_output=True, text=True, timeout=120).stdout
    assert "stage operator: written" in status and "stage macro: written" in status
    refused = run(spec, copy, "--set", "ensemble.times.h=5e-8")  # changes the ensemble: never mixed
    assert refused.returncode == 3 and "--restart" in refused.stderr


def test_plot_writes_figures(store, tmp_path):
    proc = subprocess.run(cgflow_cmd("plot", str(store), "--out", str(tmp_path)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["estimator_errors.png", "macro_evolution.png", "operator_entries.png", "v_discr.png"]
    assert all((tmp_path / n).stat().st_size > 10_000 for n in names)


def test_pipeline_reaches_the_macro_stage(store):
    """fit and macro run on the measured operator; mass conservation is exact in the constrained fit."""
    tree = open_run(store)
    fit = tree["fit"].ds.load()
    assert float(fit.column_sum_max.sel(mass_conservation=True).max()) < 1e-9 * float(np.abs(fit.coefficients).max())
    mac = tree["macro"].ds.load()
    assert mac.attrs["failures"] == []
    err = mac.rel_l2_error.sel(estimator="carre_du_champ", mass_conservation=True).isel(time=-1)
    assert np.all(np.isfinite(err)) and float(err.max()) < 0.05  # a 200-site lattice with 10 elements: percent level
    mass = mac.mass.sel(mass_conservation=True, case="periodic-cosine").values  # (estimator, time)
    np.testing.assert_allclose(mass, mass[:, :1] * np.ones_like(mass), rtol=1e-10)


def test_direct_particles_agree_with_the_macro_prediction(store):
    """Seed 000 beyond the paper: mean of direct KMC runs from the cosine profile vs the exact-operator FEM."""
    cmp = open_run(store)["particles_vs_macro"].ds.load()
    assert cmp.sizes["time"] == 5 and cmp.rho_particles.dims == ("time", "x")
    assert np.all(cmp.rho_particles_stderr > 0)
    # the exact-operator prediction sits in the 95 % band at most nodes, and no node is far out
    assert float(cmp.inside_band_reference.min()) >= 0.7
    assert float(cmp.z_max_reference.max()) < 4.5


def test_increment_h_check_is_stored_and_passes_at_the_papers_h(operator):
    """h L**2 = 1e-3: the increment estimator's O(h) bias is far below its noise, and the check says so."""
    a = operator.attrs
    assert a["h_check_reference"] == "carre_du_champ"
    assert np.isfinite(a["increment_relative_bias_se"]) and a["increment_relative_bias_se"] > 0
    assert abs(a["increment_bias_z"]) < 4 and a["h_check_passed"]
    # the steep profiles bend while they are prepared: the rows sit at the measured (rho, s), and the distance is stored
    assert a["profile_relaxation"] == pytest.approx(float(np.abs(operator.rho - operator.rho_nominal).max()))
    assert a["profile_relaxation"] > 0


def test_increment_h_check_flags_a_significant_bias_only():
    from cgflow.methods.fdr.operator import increment_h_check

    rng = np.random.default_rng(3)
    ref = rng.uniform(1.0, 3.0, size=40)
    K = np.zeros((2, 40, 3))
    K[1, :, 1] = ref
    K[0, :, 1] = 1.05 * ref  # a 5 % bias of the increment estimator
    se = np.zeros_like(K)
    se[0, :, 1], se[1, :, 1] = 0.01 * ref, 0.001 * ref
    est = ("increment", "carre_du_champ")
    check = increment_h_check(K, se, est, tolerance=0.02)
    assert check["increment_relative_bias"] == pytest.approx(0.05, rel=1e-9)
    # delta method: var of K_inc/K_ref - 1 per point = (0.01^2 + 1.05^2 0.001^2), pooled over 40 points
    assert check["increment_relative_bias_se"] == pytest.approx(np.sqrt((1e-4 + 1.05**2 * 1e-6) / 40), rel=1e-9)
    assert not check["h_check_passed"]
    assert increment_h_check(K, se, est, tolerance=0.06)["h_check_passed"]  # within the tolerance
    noisy = se.copy()
    noisy[0, :, 1] = 0.2 * ref  # same bias, buried in noise: not significant
    assert increment_h_check(K, noisy, est, tolerance=0.02)["h_check_passed"]
    alone = increment_h_check(K[:1], se[:1], ("increment",), tolerance=0.02)
    assert alone["h_check_reference"] == "none" and np.isnan(alone["increment_relative_bias"]) and alone["h_check_passed"]
    qv = increment_h_check(K, se, ("increment", "quadratic_variation"), tolerance=0.02)
    assert qv["h_check_reference"] == "quadratic_variation" and not qv["h_check_passed"]
