"""The example micro-model plugin (examples/plugin/), used as a user would (issue 11, item 3).

The plugin is a separate package registering the two-server zero-range process
g(k) = min(k, 2) under the entry-point group ``cgflow.micro_models``. It is
pip-installed into this environment (offline: ``--no-deps --no-build-isolation``,
the package carries its own tiny build backend), found by name in a fresh
process, and its quick workflow is run end to end with the ``cgflow`` console
script. The operator tables must agree with the plugin's exact operator (its
``mean_bond_rates`` at the lattice mean field of t0) within their standard errors,
with the statistical test of tests/methods/test_fdr_sep.py:
z = (K - K_exact)/SE ~ Student t(clusters - 1). The fixture uninstalls the plugin
afterwards unless it was installed before the tests (environment left as found).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from .conftest import cgflow_cmd
from .oracles import assert_operator_matches_exact

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"
WORKFLOW = PLUGIN / "workflow.yaml"
EQFREE_WORKFLOW = PLUGIN / "eqfree-workflow.yaml"
DIST = "cgflow-example-plugin"


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def plugin():
    """pip-install examples/plugin; uninstall at the end if it was not installed before."""
    was_installed = _installed()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(PLUGIN)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    importlib.invalidate_caches()
    module = importlib.import_module("cgflow_example_plugin.model")
    installed_dir = Path(module.__file__).resolve().parent
    try:
        yield module
    finally:
        if not was_installed:
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", DIST],
                           capture_output=True, text=True, timeout=300)
            # pip removes the files it installed; numba's on-disk cache (__pycache__/*.nbi, *.nbc) stays behind
            if installed_dir.is_dir() and not (installed_dir / "__init__.py").exists() and installed_dir != PLUGIN / "cgflow_example_plugin":
                shutil.rmtree(installed_dir)


@pytest.fixture(scope="module")
def tree(plugin, tmp_path_factory):
    from cgflow import open_run

    store = tmp_path_factory.mktemp("plugin") / "run.zarr"
    proc = subprocess.run(cgflow_cmd("run", str(WORKFLOW), "--store", str(store), "--serial", "--no-progress"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return open_run(store)


@pytest.fixture(scope="module")
def eqfree_tree(plugin, tmp_path_factory):
    from cgflow import open_run

    store = tmp_path_factory.mktemp("plugin-eqfree") / "run.zarr"
    proc = subprocess.run(cgflow_cmd("run", str(EQFREE_WORKFLOW), "--store", str(store), "--serial", "--no-progress"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return open_run(store)


def test_registered_through_the_entry_point(plugin):
    """A fresh process (entry points are read at import) lists and builds the plugin model by name."""
    code = ("from cgflow.micro.registry import available_models, create_model, get_model_class\n"
            "from cgflow.micro.contract import check_model\n"
            "print(available_models())\n"
            "assert 'decaydiffusion' in available_models('eqfree') and 'decaydiffusion' not in available_models('fdr')\n"
            "cls = get_model_class('zrp2server'); print(cls.__module__ + ':' + cls.__name__)\n"
            "check_model(create_model('zrp2server', {}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names, where = proc.stdout.splitlines()[-2:]
    assert {"zrp", "sep", "zrp2server"} <= set(eval(names))  # noqa: S307 - our own printed list
    assert where == "cgflow_example_plugin.model:TwoServerZRP"


def test_spec_refuses_a_parameter_the_plugin_does_not_take(plugin, tmp_path):
    proc = subprocess.run(cgflow_cmd("run", str(WORKFLOW), "--store", str(tmp_path / "no.zarr"), "--serial", "--no-progress",
                                     "--set", "micro.rate_exponent=2"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "zrp2server model takes no rate_exponent" in proc.stdout + proc.stderr


def test_exact_facts_of_the_plugin(plugin):
    """rho(phi(rho)) = rho; the quadrature stencil equals the closed-form integral; phi' and chi by differences."""
    M = plugin
    rho = np.array([0.05, 0.5, 1.0, 2.0, 3.0, 10.0])
    np.testing.assert_allclose(M.density(M.fugacity(rho)), rho, rtol=1e-13)
    eps = 1e-6
    np.testing.assert_allclose(M.fugacity_derivative(rho), (M.fugacity(rho + eps) - M.fugacity(rho - eps)) / (2 * eps), rtol=1e-7)
    phi = M.fugacity(rho)
    np.testing.assert_allclose(M.compressibility(rho), phi / M.fugacity_derivative(rho), rtol=1e-12)
    N, s = 10, np.array([0.3, -0.3, 2.0, -2.0, 5.0, 40.0])
    K = M.exact_stencil(rho, s, N)
    closed = -(M.phi_antiderivative(rho + s / N) - M.phi_antiderivative(rho)) / (2 * s / N) * N
    np.testing.assert_allclose(K[:, 2], closed, rtol=1e-12)
    np.testing.assert_allclose(K.sum(-1), 0.0, atol=1e-12)


def test_product_measure_and_kmc_stationarity(plugin):
    """Sampled marginals and the KMC after 50 lattice time units both match P(k) ∝ phi^k / prod min(j, 2) (chi-square)."""
    M = plugin
    model = M.TwoServerZRP()
    rho, L = 1.5, 4000
    phi = M.fugacity(rho)
    kmax = 8
    pk = np.array([1.0] + [phi * (phi / 2) ** (k - 1) for k in range(1, kmax)])
    pk /= (2 + phi) / (2 - phi)
    pk = np.append(pk, 1 - pk.sum())
    rng = np.random.default_rng(11)
    eta = model.sample_product_measure(np.full(L, rho), rng)
    jumps = np.zeros(L, np.int64)
    n0, total = eta.sum(), 0
    for label in ("sampled", "evolved"):
        counts = np.bincount(np.minimum(eta, kmax), minlength=kmax + 1)
        assert stats.chisquare(counts, L * pk).pvalue > 1e-3, (label, counts, np.round(L * pk))
        moves = model.run(eta, 50.0, True, rng, bond_jumps=jumps)
        total += moves
    assert eta.sum() == n0 and jumps.sum() == total
    # about phi events per site and lattice time (stationary firing rate E g = phi)
    assert abs(moves / (50.0 * L) - phi) < 0.03 * phi


def test_every_stage_ran_with_the_plugin(tree):
    assert {"ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro"} <= set(tree.children)
    ens = tree["ensemble"].ds
    assert ens.attrs["model"] == "two-server zero-range process"
    assert ens.attrs["plugin"] == DIST
    assert tree["macro"].ds.attrs["model"] == "zrp2server"


@pytest.mark.parametrize("estimator", ["increment", "quadratic_variation", "carre_du_champ"])
def test_operator_tables_agree_with_the_plugins_exact_operator(tree, estimator):
    """z = (K - K_exact)/SE ~ t(clusters - 1) for every stencil entry (as tests/methods/test_fdr_sep.py)."""
    op = tree["operator"].ds.load()
    assert np.all(np.isfinite(op.K_reference))  # the plugin gives exact facts
    assert_operator_matches_exact(op, estimator)


def test_flat_reference_is_the_continuum_stencil(tree, plugin):
    """For flat profiles (L = nN) K_reference is the continuum stencil -m/Delta, m = phi/2."""
    op = tree["operator"].ds.load()
    flat = op.slope_nominal.values == 0
    N = int(op.attrs["elements"])
    for rho in np.unique(op.rho_nominal.values[flat]):
        sel = flat & (op.rho_nominal.values == rho)
        ref = op.K_reference.values[sel]
        np.testing.assert_allclose(ref[:, 0], -0.5 * plugin.fugacity(rho) * N, rtol=1e-12)


def test_fit_macro_and_particles(tree, plugin):
    from cgflow.methods.fdr.fit import FittedOperator

    fit = tree["fit"].ds.load()
    op = FittedOperator.from_dataset(fit, "carre_du_champ", True)
    rho = np.array([0.75, 1.0, 1.5, 2.0, 2.5])
    for s in (0.0, 1.0, -1.0):  # a quadratic fit of m = phi/2 (not a polynomial): a few percent
        got = op.stencil(rho, np.full_like(rho, s), on_extrapolation="ignore")
        want = plugin.exact_stencil(rho, s, 10)
        np.testing.assert_allclose(got, want, rtol=0.06, atol=0.03 * np.abs(want).max())
    mac = tree["macro"].ds.load()
    assert mac.attrs["failures"] == []
    assert 0.7 < float(mac.rho_reference.min()) and float(mac.rho_reference.max()) < 2.5  # the plugin's own cases
    err = mac.rel_l2_error.sel(estimator="carre_du_champ", mass_conservation=True).isel(time=-1)
    assert float(err.max()) < 0.01
    cmp = tree["particles_vs_macro"].ds.load()
    assert float(cmp.chi2_pvalue_reference.min()) > 1e-3  # direct plugin-model runs vs the exact-operator FEM


def test_eqfree_plugin_model_runs_with_its_own_solver(eqfree_tree):
    """u_t = (a u_x)_x - k u through cgflow's patch dynamics with the plugin's Crank-Nicolson patch solver."""
    traj = eqfree_tree["trajectories"].ds
    assert traj.attrs["model"] == "decaydiffusion" and traj.attrs["decay"] == 5.0
    assert traj.attrs["micro_solver"].startswith("DecaySolver(") and traj.attrs["buffer_within_tolerance"]
    np.testing.assert_allclose(traj["U"].values[:, :, [0, -1]], 0.0, atol=1e-12)  # the plugin's zero-end states
    # the patch estimates against the plugin's exact semi-discrete reference a* D2 U - k U (decay included):
    # as close as the built-in model's data are to a* D2 U (quick medium, ~1e-3)
    hom = eqfree_tree["homogenized"].ds.load()
    assert float(hom.rmse_dUdt_fd.max()) < 3e-3
    # the learned linear right-hand side implies a* once the decay's share k/lambda_1 is removed
    # (without the correction it would be a* + 5/9.79 = 0.97)
    learn = eqfree_tree["learn"].ds.load()
    assert abs(float(learn.a_implied.sel(model="linear")) / learn.attrs["a_star"] - 1) < 0.02


def test_eqfree_plugin_spec_keys_are_checked(plugin, tmp_path):
    for override, message in (("micro.decay=-1", "micro.decay: expected a number >= 0"),
                              ("micro.coefficient.table=[1, 2]", "decaydiffusion takes a(y) = mean + amplitude")):
        proc = subprocess.run(cgflow_cmd("run", str(EQFREE_WORKFLOW), "--store", str(tmp_path / "no.zarr"), "--serial",
                                         "--no-progress", "--set", override),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert not (tmp_path / "no.zarr").exists()
