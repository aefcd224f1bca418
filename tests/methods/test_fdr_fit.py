"""The fit stage: polynomial operator over V from V_discr (seed 000 eq. (9), Fig. 3, Appendix A).

Synthetic /operator data: the exact continuum stencil of the g(k) = k^2 ZRP
(zrp_hydro.exact_stencil, Delta = 1/40) on a V_discr like the paper's
(rho_a in [4, 10], s in {0, +-5, +-11, +-15, +-19}), plus Gaussian noise of known
per-entry standard error (0.5 % relative). Measured: the quadratic model misfits
the exact stencil by at most 3.3e-5 relative over this rectangle, i.e. <1 % of the
noise, so the noise-free fit is the truth of the quadratic model and chi^2/dof ~ 1.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from cgflow.engine.types import fingerprint
from cgflow.methods.fdr.fit import (
    ExtrapolationWarning,
    FittedOperator,
    OperatorFit,
    design_matrix,
    fit_stencil,
    fitted_operator,
    normalized_stencil,
)
from cgflow.micro import zrp_hydro

ELEMENTS = 40
P = 2
NOISE = 0.005
SLOPES = np.array([0.0, 5.0, -5.0, 11.0, -11.0, 15.0, -15.0, 19.0, -19.0])
ESTIMATORS = ("increment", "quadratic_variation", "carre_du_champ")


def v_discr():
    rho, s = np.meshgrid(np.linspace(4.0, 10.0, 25), SLOPES, indexing="ij")
    rho, s = rho.ravel(), s.ravel()
    keep = rho - np.abs(s) / ELEMENTS > 0
    return rho[keep], s[keep]


RHO, SLOPE = v_discr()
EXACT = zrp_hydro.exact_stencil(RHO, SLOPE, ELEMENTS, P)
SE = NOISE * np.abs(EXACT)


#: Zero-sum data (carré du champ, quadratic variation): K_aa = -(K_a,a-1 + K_a,a+1) sample by sample,
#: independent outer entries, so SE_0^2 = SE_-1^2 + SE_+1^2.
SE_ZS = np.stack([SE[:, 0], np.hypot(SE[:, 0], SE[:, 2]), SE[:, 2]], axis=1)


def noisy(seed: int) -> np.ndarray:
    return EXACT + SE * np.random.default_rng(seed).standard_normal(EXACT.shape)


def noisy_zero_sum(seed: int) -> np.ndarray:
    e = SE[:, [0, 2]] * np.random.default_rng(seed).standard_normal((RHO.size, 2))
    return EXACT + np.stack([e[:, 0], -(e[:, 0] + e[:, 1]), e[:, 1]], axis=1)


def synthetic_operator(seed: int = 0) -> xr.Dataset:
    """An /operator group as written by OperatorTable (the variables the fit reads).

    The increment estimator has independent entries, the other two are zero-sum.
    """
    K = np.stack([noisy(seed), noisy_zero_sum(seed + 100), noisy_zero_sum(seed + 200)])
    se = np.stack([SE, SE_ZS, SE_ZS])
    return xr.Dataset(
        {
            "K": (("estimator", "point", "offset"), K),
            "K_stderr": (("estimator", "point", "offset"), se),
        },
        coords={
            "estimator": np.array(ESTIMATORS, dtype=object),
            "point": np.arange(RHO.size),
            "offset": np.array([-1, 0, 1]),
            "rho": ("point", RHO),
            "slope": ("point", SLOPE),
        },
        attrs={"elements": ELEMENTS, "h": 1e-11},
    )


def tree_of(ds: xr.Dataset) -> xr.DataTree:
    return xr.DataTree.from_dict({"/": xr.Dataset(), "operator": ds})


@pytest.fixture(scope="module")
def truth():
    """Fits of the noise-free data: the truth of the quadratic model."""
    return {mc: fit_stencil(RHO, SLOPE, EXACT, SE, 2, mc, zero_sum_data=False) for mc in (True, False)}


# ----------------------------------------------------------------------------- design and helpers
def test_design_matrix_terms_and_values():
    X, terms = design_matrix([2.0, 3.0], [5.0, -1.0], 2)
    assert terms == ("1", "rho", "slope", "rho^2", "rho*slope", "slope^2")
    np.testing.assert_array_equal(X[1], [1, 3, -1, 9, -3, 1])
    X1, terms1 = design_matrix(2.0, np.zeros((4, 2)), 1)
    assert terms1 == ("1", "rho", "slope") and X1.shape == (4, 2, 3)
    with pytest.raises(ValueError):
        design_matrix(1.0, 1.0, 0)


def test_normalized_stencil_delta_method_matches_monte_carlo():
    rng = np.random.default_rng(5)
    v = np.array([-3.0, 0.1, 2.9])
    A = rng.normal(size=(3, 3)) * 0.01
    cov = A @ A.T
    n, se = normalized_stencil(v, cov)
    np.testing.assert_allclose(n, -v / v[0])
    draws = rng.multivariate_normal(v, cov, size=200_000)
    mc = -draws / draws[:, :1]
    np.testing.assert_allclose(se, mc.std(axis=0), rtol=0.02, atol=1e-12)


# ----------------------------------------------------------------------------- constraint
def test_mass_conservation_holds_identically_even_outside_the_data():
    f = fit_stencil(RHO, SLOPE, noisy(1), SE, 2, True)
    assert np.all(np.abs(f.coefficients.sum(axis=0)) <= 1e-14 * np.abs(f.coefficients).max(axis=0))
    op = f.operator()
    r, s = np.meshgrid(np.linspace(0.5, 40.0, 50), np.linspace(-80.0, 80.0, 41))
    with pytest.warns(ExtrapolationWarning):
        E = op.stencil(r, s)
    assert E.shape == r.shape + (3,)
    assert np.all(np.abs(E.sum(axis=-1)) <= 1e-9 * np.abs(E).max(axis=-1))
    with pytest.warns(ExtrapolationWarning):
        np.testing.assert_array_equal(op.column_sums(r, s), E.sum(axis=-1))
    assert np.abs(op.column_sums(RHO, SLOPE)).max() <= 1e-9 * np.abs(EXACT).max()


def test_free_fit_column_sums_are_not_zero_but_within_noise():
    f = fit_stencil(RHO, SLOPE, noisy(1), SE, 2, False)
    X, _ = design_matrix(RHO, SLOPE, 2)
    p = X.shape[1]
    S = np.kron(np.ones(3), np.eye(p))  # coefficients of the column sum: c_-1 + c_0 + c_+1
    sums = X @ (S @ f.coefficients.ravel())
    se_sums = np.sqrt(np.einsum("ni,ij,nj->n", X, S @ f.covariance @ S.T, X))
    assert np.abs(sums).max() > 1e-6 * np.abs(EXACT).max()  # not imposed
    assert np.all(np.abs(sums) <= 4 * se_sums)  # but consistent with 0
    np.testing.assert_allclose(f.operator().column_sums(RHO, SLOPE), sums, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("mc", [True, False])
def test_coefficients_within_4_se_of_the_noise_free_fit(truth, mc):
    f = fit_stencil(RHO, SLOPE, noisy(2), SE, 2, mc)
    ok = f.stderr > 0
    assert ok.sum() == f.coefficients.size  # the middle entry of the constrained fit has a derived SE
    z = (f.coefficients - truth[mc].coefficients) / f.stderr
    assert np.abs(z).max() < 4
    # unscaled covariance: the same for the noise-free and the noisy fit (depends on SE only)
    np.testing.assert_allclose(f.covariance, truth[mc].covariance, rtol=1e-8, atol=1e-12 * np.abs(f.covariance).max())


@pytest.mark.parametrize("mc", [True, False])
def test_chi2_dof_is_one_for_the_quadratic_model_and_large_for_a_linear_one(truth, mc):
    # measured model error of the quadratic in (rho, s) over [4, 10] x [-19, 19]: <= 3.3e-5 relative
    assert np.abs(truth[mc].fitted / EXACT - 1).max() < 1e-4
    assert truth[mc].chi2_dof < 1e-3  # negligible against the 0.5 % noise
    f = fit_stencil(RHO, SLOPE, noisy(3), SE, 2, mc)
    assert f.dof == 3 * RHO.size - (12 if mc else 18)
    assert abs(f.chi2_dof - 1) < 4 * np.sqrt(2 / f.dof)
    assert f.n_outliers <= 5  # expected 0.27 % of 675
    lin = fit_stencil(RHO, SLOPE, noisy(3), SE, 1, mc)
    assert lin.chi2_dof > 1 + 20 * np.sqrt(2 / lin.dof)  # m(rho) is far from linear on [4, 10]


# ----------------------------------------------------------------------------- seed eq. (9)
@pytest.mark.parametrize("mc", [True, False])
def test_normalised_stencils_of_noise_free_data(truth, mc):
    op = truth[mc].operator()
    assert op.rho_centre == 7.0
    for rho in (None, 4.0, 10.0):
        k1, _ = op.laplacian_stencil(rho)
        np.testing.assert_allclose(k1, [-1, 2, -1], atol=1e-3)
        k2, _ = op.gradient_stencil(rho)
        np.testing.assert_allclose(k2, [-1, 0, 1], atol=1e-3)
    m, m1, _ = zrp_hydro.mobility_derivatives(7.0, P)
    np.testing.assert_allclose(op.laplacian_scale()[0], m * ELEMENTS, rtol=1e-4)  # K(1) = (m/Delta)(-1, 2, -1)
    # raw dE/ds = (m'/2)(1, 0, -1) (REFERENCE §1), so -dE_-1/ds = -m'/2: the normalised (-1, 0, 1)
    np.testing.assert_allclose(op.gradient_scale()[0], -m1 / 2, rtol=1e-3)


def test_gradient_stencil_middle_entry_within_its_se_of_zero():
    f = fit_stencil(RHO, SLOPE, noisy(0), SE, 2, True)
    k2, se = f.operator().gradient_stencil()
    assert se[0] == 0 and k2[0] == -1
    assert abs(k2[1]) <= se[1]
    assert abs(k2[2] - 1) <= 4 * se[2]
    k1, se1 = f.operator().laplacian_stencil()
    assert np.all(np.abs(k1 - [-1, 2, -1]) <= 4 * se1 + 1e-12)


def test_delta_method_standard_errors_are_calibrated():
    """Across 200 noise draws the K(2) middle entry scatters by its SE, and sits within 1 SE ~68 % of the time."""
    z1, z2 = [], []
    for seed in range(200):
        op = fit_stencil(RHO, SLOPE, noisy(1000 + seed), SE, 2, True).operator()
        k1, se1 = op.laplacian_stencil()
        k2, se2 = op.gradient_stencil()
        z1.append((k1[1] - 2) / se1[1])
        z2.append(k2[1] / se2[1])
    z1, z2 = np.array(z1), np.array(z2)
    for z in (z1, z2):
        assert abs(z.mean()) < 4 / np.sqrt(z.size)
        assert 0.85 < z.std() < 1.15
    assert 0.58 < np.mean(np.abs(z2) <= 1) < 0.78


@pytest.mark.parametrize("mc", [True, False])
def test_zero_sum_data_are_detected_and_their_errors_calibrated(mc):
    """Entries summing to zero sample by sample: the middle one must not count as a measurement of its own."""
    op0 = fit_stencil(RHO, SLOPE, EXACT, SE_ZS, 2, mc).operator()
    g0 = op0.gradient_stencil()[0][1]
    z, z_naive, chi = [], [], []
    for seed in range(200):
        K = noisy_zero_sum(2000 + seed)
        f = fit_stencil(RHO, SLOPE, K, SE_ZS, 2, mc)
        assert f.zero_sum_data and f.dof == (2 if mc else 3) * RHO.size - (12 if mc else 18)
        k2, se = f.operator().gradient_stencil()
        z.append((k2[1] - g0) / se[1])
        chi.append(f.chi2_dof)
        naive = fit_stencil(RHO, SLOPE, K, SE_ZS, 2, mc, zero_sum_data=False)
        k2n, sen = naive.operator().gradient_stencil()
        z_naive.append((k2n[1] - g0) / sen[1])
    assert 0.85 < np.std(z) < 1.15
    assert abs(np.mean(chi) - 1) < 0.03
    if mc:  # counting the middle entry twice understates the K(2) SE by ~1.45
        assert np.std(z_naive) > 1.3
    assert not fit_stencil(RHO, SLOPE, noisy(1), SE, 2, mc).zero_sum_data


# ----------------------------------------------------------------------------- the fitted operator
def test_fitted_operator_reproduces_the_exact_stencil_and_warns_outside():
    op = fit_stencil(RHO, SLOPE, noisy(4), SE, 2, True).operator("carre_du_champ")
    assert op.rho_range == (4.0, 10.0) and op.slope_range == (-19.0, 19.0)
    rng = np.random.default_rng(9)
    r, s = rng.uniform(4, 10, 300), rng.uniform(-19, 19, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        E, se = op(r, s), op.stencil_stderr(r, s)
        op.stencil(10.0, -19.0)  # the corner is inside
    exact = zrp_hydro.exact_stencil(r, s, ELEMENTS, P)
    assert np.all(np.abs(E - exact) <= 4 * se + 1e-4 * np.abs(exact))
    with pytest.warns(ExtrapolationWarning, match=r"rho in \[2, 12\] outside the probed \[4, 10\]") as rec:
        op.stencil(np.array([2.0, 5.0, 12.0]), 0.0)
    assert len(rec) == 1  # once per call
    with pytest.warns(ExtrapolationWarning, match=r"slope in \[-30, 0\]"):
        op.stencil(5.0, np.array([-30.0, 0.0]))
    with pytest.raises(ValueError, match="outside the probed region"):
        op.stencil(5.0, 25.0, on_extrapolation="raise")
    k1, k2 = op.decompose(r, s)
    np.testing.assert_allclose(k1 + k2, E, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(k1, op.stencil(r, 0 * s))
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.order = 1
    assert not op.coefficients.flags.writeable


# ----------------------------------------------------------------------------- dropped points and errors
def test_nan_points_are_dropped_and_counted():
    K, se = noisy(6), SE.copy()
    K[[3, 50], 1] = np.nan
    se[7, 2] = 0.0
    se[8, 0] = np.inf
    f = fit_stencil(RHO, SLOPE, K, se, 2, True)
    assert f.n_dropped == 4 and f.n_used == RHO.size - 4
    assert np.all(np.isnan(f.residual[[3, 50, 7, 8]])) and np.all(np.isfinite(f.fitted))
    keep = np.ones(RHO.size, bool)
    keep[[3, 50, 7, 8]] = False
    g = fit_stencil(RHO[keep], SLOPE[keep], K[keep], se[keep], 2, True)
    np.testing.assert_allclose(f.coefficients, g.coefficients, rtol=1e-10, atol=1e-9)


def test_too_few_points_or_a_degenerate_design_raise():
    K = noisy(7)
    K[5:] = np.nan
    with pytest.raises(ValueError, match=r"only 5 usable V_discr points .* fewer than the 6 terms"):
        fit_stencil(RHO, SLOPE, K, SE, 2, True)
    flat = SLOPE == 0
    with pytest.raises(ValueError, match="rank-deficient"):
        fit_stencil(RHO[flat], SLOPE[flat], EXACT[flat], SE[flat], 2, False)
    ds = synthetic_operator()
    ds["K"][1, 6:] = np.nan
    stage = OperatorFit(upstream="x", order=2, mass_conservation=(True, False))
    with pytest.raises(ValueError, match="estimator 'quadratic_variation'"):
        stage.compute(tree_of(ds))


# ----------------------------------------------------------------------------- the stage
DIMS = {
    "coefficients": ("estimator", "mass_conservation", "offset", "term"),
    "coefficients_stderr": ("estimator", "mass_conservation", "offset", "term"),
    "coefficients_covariance": ("estimator", "mass_conservation", "param", "param_b"),
    "chi2_dof": ("estimator", "mass_conservation"),
    "n_points_used": ("estimator", "mass_conservation"),
    "residual": ("estimator", "mass_conservation", "point", "offset"),
    "column_sum_max": ("estimator", "mass_conservation"),
    "stencil_laplacian": ("estimator", "mass_conservation", "offset"),
    "stencil_laplacian_stderr": ("estimator", "mass_conservation", "offset"),
    "stencil_gradient": ("estimator", "mass_conservation", "offset"),
    "stencil_gradient_stderr": ("estimator", "mass_conservation", "offset"),
}


def test_operator_fit_compute(tmp_path):
    op_ds = synthetic_operator(seed=11)
    op_ds["K"][2, 4, 0] = np.nan  # one dropped point for carre_du_champ
    stage = OperatorFit(upstream="abc", order=2, mass_conservation=(True, False))
    assert len(fingerprint(stage)) == 64
    ds = stage.compute(tree_of(op_ds))
    for name, dims in DIMS.items():
        assert ds[name].dims == dims, name
    assert ds["coefficients"].shape == (3, 2, 3, 6) and ds["coefficients_covariance"].shape == (3, 2, 18, 18)
    assert ds["estimator"].dtype == object and list(ds["estimator"].values) == list(ESTIMATORS)
    assert ds["mass_conservation"].dtype == bool and list(ds["mass_conservation"].values) == [True, False]
    assert list(ds["offset"].values) == [-1, 0, 1]
    assert ds["term"].dtype == object and list(ds["term"].values) == ["1", "rho", "slope", "rho^2", "rho*slope", "slope^2"]
    np.testing.assert_array_equal(ds["rho"].values, RHO)
    np.testing.assert_array_equal(ds["slope"].values, SLOPE)
    assert ds.attrs["order"] == 2 and ds.attrs["terms"] == list(ds["term"].values)
    assert ds.attrs["rho_range"] == [4.0, 10.0] and ds.attrs["slope_range"] == [-19.0, 19.0]
    assert ds.attrs["elements"] == ELEMENTS
    assert list(ds["data_zero_sum"].values) == [False, True, True]
    assert all("description" in ds[v].attrs for v in ds.variables)
    assert "Appendix A" in ds["coefficients"].attrs["description"] and "eq. (9)" in ds["stencil_gradient"].attrs["description"]

    n = RHO.size
    np.testing.assert_array_equal(ds["n_points_used"].sel(estimator="carre_du_champ"), [n - 1, n - 1])
    np.testing.assert_array_equal(ds["n_points_dropped"].sel(estimator="increment"), [0, 0])
    assert np.isnan(ds["residual"].sel(estimator="carre_du_champ", point=4)).all()
    cs = ds["column_sum_max"].sel(mass_conservation=True).values
    assert np.all(cs <= 1e-9 * np.abs(EXACT).max())
    assert np.all(ds["column_sum_max"].sel(mass_conservation=False).values > 1e-6)
    assert np.all(np.abs(ds["chi2_dof"].values - 1) < 4 * np.sqrt(2 / ds["dof"].values))
    k2 = ds["stencil_gradient"].sel(mass_conservation=True)
    k2_se = ds["stencil_gradient_stderr"].sel(mass_conservation=True)
    assert np.all(np.abs(k2.sel(offset=0)) <= 4 * k2_se.sel(offset=0))
    np.testing.assert_allclose(ds["stencil_laplacian"], np.broadcast_to([-1, 2, -1], (3, 2, 3)), atol=6e-3)
    np.testing.assert_allclose(ds["stencil_laplacian_ends"].sel(offset=-1), -1.0)

    # the stored fit is the pure fit, and round-trips through a FittedOperator
    e = ESTIMATORS.index("increment")
    f = fit_stencil(RHO, SLOPE, op_ds["K"].values[e], op_ds["K_stderr"].values[e], 2, False)
    np.testing.assert_allclose(ds["coefficients"].sel(estimator="increment", mass_conservation=False), f.coefficients, rtol=1e-12)
    fo = fitted_operator(xr.DataTree.from_dict({"fit": ds}), "increment", False)
    np.testing.assert_allclose(fo.stencil(RHO, SLOPE), f.fitted, rtol=1e-12)
    np.testing.assert_allclose(fo.covariance, f.covariance, rtol=1e-12)
    assert fo.rho_range == (4.0, 10.0) and fo.estimator == "increment"

    # written as a reduce stage is (Zarr v3), read back by path
    store = tmp_path / "run.zarr"
    xr.Dataset(attrs={"spec_hash": "x"}).to_zarr(store, mode="w", zarr_format=3, consolidated=False)
    ds.to_zarr(store, group="fit", mode="w", zarr_format=3, consolidated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "consolidated metadata is not part of Zarr v3" (the store does it too)
        zarr.consolidate_metadata(str(store))
    back = fitted_operator(store, "carre_du_champ", True)
    ref = FittedOperator.from_dataset(ds, "carre_du_champ", True)
    np.testing.assert_array_equal(back.coefficients, ref.coefficients)
    np.testing.assert_array_equal(back.stencil(RHO, SLOPE), ref.stencil(RHO, SLOPE))
    with pytest.raises(KeyError):
        FittedOperator.from_dataset(ds, "nonsense", True)


def test_stage_parameters_are_validated():
    with pytest.raises(ValueError):
        OperatorFit(upstream="x", order=0, mass_conservation=(True,))
    with pytest.raises(ValueError):
        OperatorFit(upstream="x", order=2, mass_conservation=(True, True))
    with pytest.raises(ValueError):
        OperatorFit(upstream="x", order=2, mass_conservation=())
