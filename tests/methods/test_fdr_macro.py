"""The fdr macro stage: seed 000 Fig. 4 with fitted operators (eq. (8), Algorithm 1 lines 21-43).

The ``/fit`` group is produced by the real fit stage (:class:`OperatorFit`) from an
in-memory ``/operator`` group whose "measurements" are noise-free exact stencils
(:func:`zrp_hydro.exact_stencil`) on a V_discr grid like the paper's (rho in [4, 10],
s in {0, +-5, +-11, +-15, +-19}; Appendix A). A quadratic fit of them is almost exact
(m = phi/2 is nearly quadratic in rho: phi ~ (rho + 1/4)**2 + 1/16), so the fitted
operator must reproduce the exact-operator reference closely, also where the
Dirichlet case extrapolates beyond the probed rho.

Measured (N = 20, t_end = 1e-3, explicit; relative L2 at t_end): 2e-6 (periodic)
and 2e-6 (Dirichlet) with mass conservation, 5e-6 and 2e-5 without.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import xarray as xr

from cgflow.engine.types import ReduceStage, fingerprint
from cgflow.macro import fem
from cgflow.methods.fdr import macro
from cgflow.methods.fdr.fit import FittedOperator, OperatorFit
from cgflow.methods.fdr.macro import CASES, MacroSimulation, rescale_stencil
from cgflow.micro import zrp_hydro

P = 2
N = 20
T_END = 1.0e-3
SAVES = 4
CASE_NAMES = ("periodic-cosine", "dirichlet-asymmetric")
RHO_GRID = np.linspace(4.0, 10.0, 13)
SLOPE_GRID = np.array([0.0, 5.0, 11.0, 15.0, 19.0, -5.0, -11.0, -15.0, -19.0])


# ----------------------------------------------------------------------------- fixtures
def operator_group(fit_elements: int, scale: dict[str, float]) -> xr.Dataset:
    """An in-memory /operator group of exact stencils on V_discr, one copy per estimator (times ``scale``)."""
    rho, slope = (a.ravel() for a in np.meshgrid(RHO_GRID, SLOPE_GRID, indexing="ij"))
    K = zrp_hydro.exact_stencil(rho, slope, fit_elements, P)
    names = list(scale)
    Ks = np.stack([scale[e] * K for e in names])
    return xr.Dataset(
        {
            "K": (("estimator", "point", "offset"), Ks),
            "K_stderr": (("estimator", "point", "offset"), 1e-3 * np.abs(Ks)),
        },
        coords={
            "estimator": np.array(names, dtype=object),
            "point": np.arange(rho.size),
            "offset": np.array([-1, 0, 1]),
            "rho": ("point", rho),
            "slope": ("point", slope),
        },
        attrs={"elements": fit_elements},
    )


def fit_tree(fit_elements: int = N, scale: dict[str, float] | None = None) -> xr.DataTree:
    """A DataTree holding a /fit group from the real fit stage (quadratic, both variants); no store."""
    scale = scale or {"carre_du_champ": 1.0}
    op = operator_group(fit_elements, scale)
    fit = OperatorFit(upstream="op", order=2, mass_conservation=(True, False)).compute(
        xr.DataTree.from_dict({"operator": op})
    )
    return xr.DataTree.from_dict({"fit": fit})


def stage(**kw) -> MacroSimulation:
    params = dict(upstream="fit", rate_exponent=P, elements=N, cases=CASE_NAMES, t_end=T_END, saves=SAVES,
                  method="explicit")
    params.update(kw)
    return MacroSimulation(**params)


@pytest.fixture(scope="module")
def explicit_run() -> xr.Dataset:
    # "increment" holds the exact stencils times 1.05: a 5 % faster operator, to tell estimators apart
    return stage().compute(fit_tree(scale={"carre_du_champ": 1.0, "increment": 1.05}))


# ----------------------------------------------------------------------------- cases
def test_case_profiles_match_their_description():
    x = np.linspace(0.0, 1.0, 100001)
    rho = macro.periodic_cosine(x)
    assert rho.min() == pytest.approx(5.0) and rho.max() == pytest.approx(9.0)
    assert np.abs(np.gradient(rho, x)).max() == pytest.approx(4 * np.pi, rel=1e-6)  # inside |s| <= 19
    d = macro.dirichlet_asymmetric(x)
    assert (d[0], d[-1]) == pytest.approx((3.0, 12.0))
    slope = np.gradient(d, x)
    assert slope.min() == pytest.approx(9 - 2 * np.pi, rel=1e-4) and slope.max() == pytest.approx(9 + 2 * np.pi, rel=1e-4)
    assert not np.allclose(d - d.mean(), (d - d.mean())[::-1]) and not np.allclose(d - d.mean(), -(d - d.mean())[::-1])
    outside = (d < 4) | (d > 10)
    assert x[outside & (x < 0.5)].max() == pytest.approx(0.0656, abs=1e-3)
    assert x[outside & (x > 0.5)].min() == pytest.approx(0.5594, abs=1e-3)
    xp, r0 = macro.initial_condition("periodic-cosine", 8)
    np.testing.assert_allclose(xp, np.arange(8) / 8)
    xd, _ = macro.initial_condition("dirichlet-asymmetric", 8)
    assert xd.size == 9 and CASES["dirichlet-asymmetric"].boundary == "dirichlet"
    np.testing.assert_allclose(macro.save_times(1.0, 4), [0, 0.25, 0.5, 0.75, 1.0])


def test_rescale_stencil_carries_the_operator_between_spacings():
    rho, s = np.meshgrid(np.linspace(3, 12, 10), np.linspace(-19, 19, 9), indexing="ij")
    fine = zrp_hydro.exact_stencil(rho, s, 20, P)
    for coarse_n in (10, 40):  # refine and coarsen
        coarse = zrp_hydro.exact_stencil(rho, s, coarse_n, P)
        flat = zrp_hydro.exact_stencil(rho, 0 * s, coarse_n, P)
        moved = rescale_stencil(coarse, flat, 20 / coarse_n)
        np.testing.assert_allclose(moved.sum(axis=-1), 0.0, atol=1e-12 * np.abs(fine).max())  # row sums stay 0
        rel = np.abs(moved - fine).max(axis=-1) / np.abs(fine[..., 1])
        assert rel.max() < 1e-4  # measured 4e-5 (10 -> 20) and 1.2e-5 (40 -> 20)
    # scaling the symmetric part alone would leave m'' s**2 (Delta_f**2 - Delta**2)/(6 m), 5 % here
    m, _, m2 = zrp_hydro.mobility_derivatives(rho, P)
    assert (np.abs(m2) * s**2 * (1 / 10**2 - 1 / 20**2) / (6 * m)).max() > 0.04
    np.testing.assert_array_equal(rescale_stencil(fine, None, 1), fine)


def test_stage_parameters_are_validated():
    st = stage()
    assert isinstance(st, ReduceStage) and st.name == "macro"
    assert pickle.loads(pickle.dumps(st)) == st
    assert fingerprint(st) != fingerprint(dataclasses.replace(st, method="implicit"))
    for bad in (dict(method="rk4"), dict(cases=("nope",)), dict(cases=()), dict(elements=2), dict(t_end=0.0),
                dict(saves=0), dict(cases=("periodic-cosine", "periodic-cosine"))):
        with pytest.raises(ValueError):
            stage(**bad)


# ----------------------------------------------------------------------------- the stage
def test_output_layout(explicit_run):
    ds = explicit_run
    assert dict(ds.sizes) == {"estimator": 2, "mass_conservation": 2, "case": 2, "time": SAVES + 1, "x": N + 1}
    assert list(ds.estimator.values) == ["carre_du_champ", "increment"]
    assert list(ds.mass_conservation.values) == [True, False]
    assert list(ds.case.values) == list(CASE_NAMES) and list(ds.boundary.values) == ["periodic", "dirichlet"]
    np.testing.assert_allclose(ds.time, np.linspace(0, T_END, SAVES + 1))
    np.testing.assert_allclose(ds.x, np.arange(N + 1) / N)
    run = ("estimator", "mass_conservation", "case")
    assert ds.rho.dims == run + ("time", "x")
    assert ds.rho_reference.dims == ("case", "time", "x")
    for name in ("rel_l2_error", "mass"):
        assert ds[name].dims == run + ("time",)
    assert ds.mass_reference.dims == ("case", "time")
    for name in ("dt", "dt_min", "steps", "wall_seconds", "failed", "extrapolated_fraction"):
        assert ds[name].dims == run
    for name in ("dt_reference", "steps_reference", "wall_seconds_reference", "wall_seconds_time_check"):
        assert ds[name].dims == ("case",)
    assert ds.reference_time_error.dims == ("case", "time")
    for key in ("method", "elements", "t_end", "stability_policy", "case_descriptions", "failures", "extrapolation",
                "stencil_rescale", "fit_elements", "reference_time_check", "reference_operator"):
        assert key in ds.attrs
    assert ds.attrs["failures"] == [] and not ds.failed.any()
    assert ds.attrs["stencil_rescale"] == 1.0 and ds.attrs["method"] == "explicit"
    assert np.all(np.isfinite(ds.rho)) and np.all(ds.steps > 0) and np.all(ds.dt > 0)
    # initial state is the case profile; periodic x = 1 repeats x = 0; Dirichlet ends stay fixed
    per, dirich = ds.rho_reference.sel(case="periodic-cosine"), ds.rho_reference.sel(case="dirichlet-asymmetric")
    np.testing.assert_allclose(per.isel(time=0), macro.periodic_cosine(ds.x.values), rtol=1e-14)
    np.testing.assert_array_equal(per.isel(x=-1), per.isel(x=0))
    np.testing.assert_array_equal(dirich.isel(x=0), 3.0)
    np.testing.assert_array_equal(dirich.isel(x=-1), 12.0)
    assert ds.rel_l2_error.isel(time=0).max() == 0.0


def test_noise_free_fit_reproduces_the_exact_operator(explicit_run):
    """The requirement: <= 1 % relative L2 at t_end in both cases, both variants.

    What holds is much tighter: the quadratic fit of exact stencils deviates by
    ~4e-6 relative inside V and the solution error is of that size, 2e-6..2e-5, also
    for the Dirichlet case, where half of the domain lies at rho in [10, 12] or
    [3, 4], outside the probed [4, 10] (the fit extrapolates m ~ rho**2/2 well). We
    assert 1e-4: far below the 1 % requirement, far above the measured values.
    """
    err = explicit_run.rel_l2_error.sel(estimator="carre_du_champ").isel(time=-1)
    assert np.all(err <= 1e-2)
    assert np.all(err <= 1e-4), err.values
    # the solution did evolve: a no-op would pass trivially
    ref = explicit_run.rho_reference
    change = np.abs(ref.isel(time=-1) - ref.isel(time=0)).max(dim="x")
    assert np.all(change > 0.1)  # measured 0.60 (periodic), 0.15 (Dirichlet)
    # the "increment" operator is 5 % too large: a visibly larger error (results land in the right slot)
    err_inc = explicit_run.rel_l2_error.sel(estimator="increment").isel(time=-1)
    assert np.all(err_inc > 10 * err) and np.all(err_inc < 1e-2)


def test_periodic_mass_is_conserved_by_the_constrained_fit(explicit_run):
    mass = explicit_run.mass.sel(case="periodic-cosine", mass_conservation=True)
    drift = np.abs(mass - mass.isel(time=0)) / mass.isel(time=0)
    assert float(drift.max()) <= 1e-10
    ref = explicit_run.mass_reference.sel(case="periodic-cosine")
    assert float(np.abs(ref - ref.isel(time=0)).max() / ref.isel(time=0)) <= 1e-10
    assert float(mass.isel(time=0, estimator=0)) == pytest.approx(7.0, rel=1e-12)  # integral of 7 + 2 cos 2 pi x
    # the Dirichlet case exchanges mass through its fixed ends
    dm = explicit_run.mass_reference.sel(case="dirichlet-asymmetric")
    assert abs(float(dm.isel(time=-1) - dm.isel(time=0))) > 1e-3


def test_extrapolation_is_counted_not_warned(explicit_run, recwarn):
    frac = explicit_run.extrapolated_fraction
    assert np.all(frac.sel(case="periodic-cosine") == 0.0)
    # about half of the Dirichlet nodes lie outside rho in [4, 10] (11 of 21 at t = 0)
    d = frac.sel(case="dirichlet-asymmetric")
    assert np.all((d > 0.3) & (d < 0.6))
    assert len(explicit_run.attrs["extrapolation"]) == 2 * 2 * 2
    stage(cases=("dirichlet-asymmetric",), t_end=1e-5, saves=1).compute(fit_tree())
    assert not [w for w in recwarn if "probed region" in str(w.message)]


def test_same_scheme_and_step_policy_for_fit_and_reference(explicit_run):
    dt = explicit_run.dt.sel(estimator="carre_du_champ")
    np.testing.assert_allclose(dt, np.broadcast_to(explicit_run.dt_reference.values, dt.shape), rtol=1e-3)
    # the explicit step is the Jacobian bound, well below Delta**2/(6 m'_max) of the physical diffusivity
    d_max = zrp_hydro.diffusivity(9.0, P)
    assert float(explicit_run.dt_reference.sel(case="periodic-cosine")) < fem.stable_time_step(d_max, N) / 3


def test_implicit_agrees_with_explicit(explicit_run):
    ds = stage(method="implicit").compute(fit_tree(scale={"carre_du_champ": 1.0, "increment": 1.05}))
    assert ds.attrs["failures"] == [] and ds.attrs["method"] == "implicit"
    assert np.all(ds.rel_l2_error.sel(estimator="carre_du_champ").isel(time=-1) <= 1e-4)
    # the two integrators differ by the O(dt) Euler error only, which is what the explicit run's
    # reference_time_error reports (its check is BDF at rtol 1e-10; the implicit reference has rtol 1e-8)
    diff = np.abs(ds.rho_reference - explicit_run.rho_reference).max()
    assert float(diff) < 2e-3
    assert np.all(ds.steps < explicit_run.steps.sel(estimator="carre_du_champ"))
    assert np.all(ds.reference_time_error.values <= 1e-6)  # measured 1e-8 .. 6e-9
    for case in CASE_NAMES:
        dist = _rel_m_distance(ds.rho_reference.sel(case=case), explicit_run.rho_reference.sel(case=case), case)
        expected = explicit_run.reference_time_error.sel(case=case).values
        np.testing.assert_allclose(dist[1:], expected[1:], rtol=1e-3)  # measured 3e-4
    # the reported errors do not depend on the integrator beyond a small fraction of their size: the
    # time error cancels between fitted and reference runs of the same scheme. The 5 % operator
    # "increment" (errors 2.3e-3, 4.5e-4): measured changes 5e-4..9e-4 relative; the noise-free fit
    # (errors 1.5e-6..2e-5): up to 4.5e-3 relative
    fig_i, fig_e = ds.rel_l2_error.isel(time=-1), explicit_run.rel_l2_error.isel(time=-1)
    change = np.abs(fig_i - fig_e) / fig_e
    assert np.all(change.sel(estimator="increment") <= 2e-3)
    assert np.all(change <= 2e-2)


# ----------------------------------------------------------------------------- the fast reference
class NewtonStage(MacroSimulation):
    """The stage as it was before the fugacity table: reference stencil and force by Newton (zrp.fugacity)."""

    def _force(self, rho):
        return zrp_hydro.thermodynamic_force(rho, self.rate_exponent)

    def _reference_stencil(self, rho, slope):
        return zrp_hydro.exact_stencil(rho, slope, self.elements, self.rate_exponent)


def _rel_m_distance(a, b, case: str) -> np.ndarray:
    """||a - b||_M / ||b||_M per time on the case's own nodes (as rel_l2_error)."""
    boundary = CASES[case].boundary
    a, b = np.asarray(a), np.asarray(b)
    if boundary == "periodic":  # drop the repeated x = 1 node
        a, b = a[:, :-1], b[:, :-1]
    m = fem.mass_matrix(N, boundary)
    return np.sqrt(macro._m_norm2(a - b, m) / macro._m_norm2(b, m))


def test_fast_reference_equals_the_newton_reference_within_its_time_error(explicit_run):
    """The tabulated reference (and force) against the Newton one: equal far inside the time-discretisation error.

    The table changes phi by < 1e-14 relative, so the runs take the same steps and
    differ by rounding: measured 1.6e-13 in rho (absolute) and 4e-9 relative in
    rel_l2_error (whose values here are ~1e-6), against a time-discretisation error
    of the reference of 1e-5..6e-5 (``reference_time_error``).
    """
    case = "dirichlet-asymmetric"  # the extrapolating case; the periodic one is compared in the benchmark
    old_stage = NewtonStage(upstream="fit", rate_exponent=P, elements=N, cases=(case,), t_end=T_END, saves=SAVES,
                            method="explicit")  # fmt: skip
    old = old_stage.compute(fit_tree(scale={"carre_du_champ": 1.0, "increment": 1.05}))
    new = explicit_run.sel(case=[case])
    np.testing.assert_array_equal(old.steps_reference, new.steps_reference)
    np.testing.assert_array_equal(old.steps, new.steps)
    dist = _rel_m_distance(new.rho_reference.sel(case=case), old.rho_reference.sel(case=case), case)
    time_err = new.reference_time_error.sel(case=case).values
    assert np.all(time_err[1:] > 1e-7)  # a real time error to compare with (measured 4.5e-6 .. 9.5e-6)
    assert np.all(dist <= 1e-6 * time_err)
    assert np.all(dist <= 1e-12)
    err_old, err_new = old.rel_l2_error.isel(time=-1), new.rel_l2_error.isel(time=-1)
    assert float(np.max(np.abs(err_new - err_old) / err_old)) <= 1e-6
    np.testing.assert_array_equal(old.extrapolated_fraction, new.extrapolated_fraction)


def test_reference_time_error_is_the_euler_error_and_is_converged(explicit_run):
    """reference_time_error is the distance from a time-converged solution: check it by step halving.

    Forward Euler is first order, so with rho_h and rho_h/2 the error of rho_h is
    2 (rho_h - rho_h/2) + O(h**2) (Richardson); the stage's estimate (BDF at rtol
    1e-10) must agree with it, and the BDF solution must itself be converged
    (rtol 1e-12 moves it by 6e-6 of the estimate).
    """
    ds = explicit_run
    st = stage()
    for case in CASE_NAMES:
        est = ds.reference_time_error.sel(case=case).values
        assert est[0] == 0.0 and np.all(est[1:] > 0) and np.all(est <= 1e-4)  # measured 6e-5 (periodic) at t_end
        _, rho0 = CASES[case].initial(N)
        boundary = CASES[case].boundary
        common = dict(elements=N, boundary=boundary, save_times=ds.time.values)
        halved = fem.simulate(rho0, st._reference_stencil, st._force, T_END, method="explicit",
                              safety=macro.EXPLICIT_SAFETY / 2, **common)  # fmt: skip
        ref = ds.rho_reference.sel(case=case).values
        ref_native = ref[:, :-1] if boundary == "periodic" else ref
        np.testing.assert_array_equal(ref_native, fem.simulate(rho0, st._reference_stencil, st._force, T_END,
                                                               safety=macro.EXPLICIT_SAFETY, **common).rho)  # fmt: skip
        richardson = 2 * _rel_m_distance(ref, macro._pad(halved.rho, boundary), case)
        np.testing.assert_allclose(richardson[1:], est[1:], rtol=0.02)  # measured within 0.25 %
        tight = fem.simulate(rho0, st._reference_stencil, st._force, T_END, method="implicit", rtol=1e-12,
                             atol=1e-14 * rho0.max(), **common)  # fmt: skip
        check = st._time_check(rho0, boundary, ds.time.values)
        moved = _rel_m_distance(macro._pad(check.rho, boundary), macro._pad(tight.rho, boundary), case)
        assert np.all(moved[1:] <= 1e-4 * est[1:])  # measured 6e-6
        # ... and well below the implicit reference's (rtol 1e-8) error of ~1e-8 too (measured 2.4 % of it)
        assert np.all(moved[1:] <= 1e-9)
    # the fitted runs share the scheme and the step policy: the time error cancels in rel_l2_error
    # (noise-free fits: 1e-6..2e-5 while the reference's own time error is 1e-5..6e-5)
    fitted = ds.rel_l2_error.sel(estimator="carre_du_champ", mass_conservation=True).isel(time=-1)
    assert np.all(fitted.values < ds.reference_time_error.isel(time=-1).values)


def test_fit_on_another_spacing_is_rescaled():
    ds = stage(cases=("periodic-cosine",)).compute(fit_tree(fit_elements=10))
    assert ds.attrs["fit_elements"] == 10 and ds.attrs["stencil_rescale"] == 2.0
    # the rescaled noise-free fit is as good as one fitted at the macro spacing (4e-5 in the stencil)
    err = ds.rel_l2_error.isel(time=-1)
    assert np.all(err < 1e-4), err.values


def test_a_bad_fit_is_recorded_not_raised():
    tree = fit_tree()
    fit = tree["fit"].ds.copy(deep=True)
    # flip the sign of the unconstrained operator: anti-diffusion, which blows up
    fit["coefficients"].loc[dict(mass_conservation=False)] *= -1.0
    ds = stage(cases=("periodic-cosine",)).compute(xr.DataTree.from_dict({"fit": fit}))
    bad = dict(estimator="carre_du_champ", mass_conservation=False, case="periodic-cosine")
    assert bool(ds.failed.sel(bad)) and int(ds.steps.sel(bad)) == -1
    assert np.all(np.isnan(ds.rho.sel(bad))) and np.all(np.isnan(ds.rel_l2_error.sel(bad)))
    assert np.isnan(float(ds.dt.sel(bad)))
    assert len(ds.attrs["failures"]) == 1
    assert ds.attrs["failures"][0].startswith("carre_du_champ / mass_conservation=False / periodic-cosine: ValueError")
    good = dict(bad, mass_conservation=True)
    assert not bool(ds.failed.sel(good)) and float(ds.rel_l2_error.sel(good).isel(time=-1)) <= 1e-4


def test_fitted_operator_reads_the_fit_group():
    """The stage's operator is FittedOperator.from_dataset of /fit (no private helpers)."""
    fit = fit_tree()["fit"].ds
    op = FittedOperator.from_dataset(fit, "carre_du_champ", True)
    rho, s = np.array([5.0, 7.0, 9.0]), np.array([-12.0, 0.0, 12.0])
    np.testing.assert_allclose(op.stencil(rho, s), zrp_hydro.exact_stencil(rho, s, N, P), rtol=1e-4)


def test_result_round_trips_through_zarr(explicit_run, tmp_path):
    path = tmp_path / "macro.zarr"
    explicit_run.to_zarr(path, zarr_format=3, consolidated=False)
    back = xr.open_zarr(path, consolidated=False).load()
    xr.testing.assert_allclose(back.drop_vars("boundary"), explicit_run.drop_vars("boundary"))
    assert back.attrs["failures"] == [] and back.attrs["case_descriptions"] == explicit_run.attrs["case_descriptions"]
    assert back.mass_conservation.dtype == bool


def test_a_runaway_run_is_stopped_by_the_evaluation_budget(monkeypatch):
    # a budget of half the reference's operator evaluations stops every fitted run half-way
    monkeypatch.setattr(macro, "BUDGET_MIN_CALLS", 0)
    monkeypatch.setattr(macro, "BUDGET_FACTOR", 0.5)
    ds = stage(cases=("periodic-cosine",), t_end=1e-4, saves=1).compute(fit_tree())
    assert bool(ds.failed.all()) and np.all(np.isnan(ds.rho))
    assert len(ds.attrs["failures"]) == 2
    assert all("_BudgetExceeded: stopped after" in f for f in ds.attrs["failures"])
    assert np.all(np.isfinite(ds.rho_reference))
