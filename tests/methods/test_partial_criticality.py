"""Tests of the FSS numerics of the 2-D Ising critical point (cgflow.methods.partial.criticality, seed 002).

Oracles: the exact stationary law of the 4 x 4 torus (``glauber.ising_exact_law``,
enumeration), distributions with known moments, exact polynomials and power laws,
the AR(1) autocorrelation time. Fixed seeds; tolerances of 4 computed standard
errors; the simulation tests also bound the SE so they keep their power.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cgflow.methods.partial import criticality as cr
from cgflow.micro import glauber as g

L4 = 4
N4 = L4 * L4


def make_rng(*seed) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(seed))))


def exact_law(T):
    """(m, e, p) of the 4 x 4 torus at h = 0: magnetisation and energy per spin and probabilities."""
    M, B, p = g.ising_exact_law(L4, T, 0.0)
    return M / N4, -B / N4, p


def exact_moments(T):
    """Hand-written exact <|m|>, chi, U of the 4 x 4 torus (independent of the module's code)."""
    m, _, p = exact_law(T)
    a = float(np.sum(p * np.abs(m)))
    b = float(np.sum(p * m**2))
    c = float(np.sum(p * m**4))
    return a, (N4 / T) * (b - a * a), 1.0 - c / (3.0 * b * b)


# ----------------------------------------------------------------------------- moments
@pytest.mark.parametrize("T", [2.0, cr.ISING_TC, 2.5, 3.5])
def test_moments_equal_exact_formulas_on_exact_law(T):
    m, _, p = exact_law(T)
    mo = cr.moments(m, L4, T, weights=p)  # the law's support as one "run"
    a, chi, U = exact_moments(T)
    assert mo.abs_m == pytest.approx(a, rel=1e-12)
    assert mo.chi == pytest.approx(chi, rel=1e-10)
    assert mo.binder == pytest.approx(U, rel=1e-12)
    assert math.isnan(mo.abs_m_se) and math.isnan(mo.chi_se)  # one run: no SE


def test_moments_short_simulation_within_4_se_of_exact_law():
    T = 2.5
    p = g.GlauberParams("ising2d", T, 0.0, L4)
    R, n = 16, 1500
    m = np.empty((R, n))
    e = np.empty((R, n))
    for r in range(R):
        rng = make_rng(7, r)
        s = g.random_spins(1, L4, rng)[0]
        _, obs = g.run_time(s, 50.0 + np.arange(n), p, rng)
        m[r], e[r] = obs[:, 0], 4.0 * obs[:, 1] - 2.0
    mo = cr.moments(m, L4, T)
    a, chi, U = exact_moments(T)
    for est, se, exact, cap in ((mo.abs_m, mo.abs_m_se, a, 0.01), (mo.chi, mo.chi_se, chi, 0.05),
                                (mo.binder, mo.binder_se, U, 0.01)):
        assert 0 < se < cap  # power: the SE is small enough to catch an O(1%) error
        assert abs(est - exact) < 4 * se, (est, exact, se)
    # the fluctuation derivative too, against a finite difference of the exact U(T)
    h = 1e-4
    dU_exact = (exact_moments(T + h)[2] - exact_moments(T - h)[2]) / (2 * h)
    dU, dUse = cr.binder_derivative(m, e, L4, T)
    assert 0 < dUse < 0.3 * abs(dU_exact)
    assert abs(dU - dU_exact) < 4 * dUse, (dU, dU_exact, dUse)


@pytest.mark.parametrize("T", [2.0, cr.ISING_TC, 3.0])
def test_binder_derivative_exact_on_exact_law(T):
    m, e, p = exact_law(T)
    h = 1e-5
    fd = (exact_moments(T + h)[2] - exact_moments(T - h)[2]) / (2 * h)
    dU, _ = cr.binder_derivative(m, e, L4, T, weights=p)
    assert dU == pytest.approx(fd, rel=1e-6)


def test_reweighting_reproduces_exact_law_at_other_temperature():
    T0, T = 2.3, 2.2
    m, e, p = exact_law(T0)
    w, kish = cr.reweighting_weights(e, L4, T0, T)
    mo = cr.moments(m, L4, T, weights=p * w.ravel())
    a, chi, U = exact_moments(T)
    assert mo.abs_m == pytest.approx(a, rel=1e-10)
    assert mo.chi == pytest.approx(chi, rel=1e-9)
    assert mo.binder == pytest.approx(U, rel=1e-10)
    assert 0 < kish <= 1


def test_jackknife_se_of_mean_equals_std_of_run_means_and_batches():
    rng = make_rng(3)
    m = rng.uniform(-1, 1, size=(3, 12, 40))  # batch of 3, 12 runs, 40 samples
    mo = cr.moments(m, 8, np.array([2.2, 2.3, 2.4]))
    runs = np.abs(m).mean(axis=-1)
    np.testing.assert_allclose(mo.abs_m_se, runs.std(axis=-1, ddof=1) / math.sqrt(12), rtol=1e-12)
    one = cr.moments(m[1], 8, 2.3)
    assert one.chi == pytest.approx(mo.chi[1], rel=1e-12) and one.binder_se == pytest.approx(mo.binder_se[1])


def test_moment_ses_are_calibrated():
    """m ~ U(-1, 1): <|m|> = 1/2, chi = N/(12 T), U = 1 - (1/5)/(3 (1/3)**2) = 2/5.

    With R runs the z-scores (estimate - exact)/SE follow Student's t with R - 1 dof
    (std sqrt((R-1)/(R-3)) = 1.057 for R = 20); a SE off by a factor 1.3 fails.
    """
    rng = make_rng(11)
    L, T, reps, R = 8, 2.0, 400, 20
    m = rng.uniform(-1, 1, size=(reps, R, 50))
    mo = cr.moments(m, L, T)
    t_std = math.sqrt((R - 1) / (R - 3))
    for est, se, exact in ((mo.abs_m, mo.abs_m_se, 0.5), (mo.chi, mo.chi_se, L * L / (12 * T)),
                           (mo.binder, mo.binder_se, 0.4)):
        z = (est - exact) / se
        assert abs(z.mean()) < 0.2, z.mean()
        assert abs(z.std() / t_std - 1) < 0.15, z.std()


# ----------------------------------------------------------------------------- fits
def test_binder_slope_of_exact_polynomial():
    T = np.array([2.25, 2.26, 2.27, 2.28, 2.29])
    se = np.full(5, 1e-4)
    U = 0.61 - 1.8 * (T - cr.ISING_TC) + 30.0 * (T - cr.ISING_TC) ** 2
    bs = cr.binder_slope(T, U, se)
    assert bs["degree"] == 2  # a line is rejected by chi2
    assert bs["slope"] == pytest.approx(-1.8, abs=1e-9)
    assert bs["value"] == pytest.approx(0.61, abs=1e-12)
    lin = cr.binder_slope(T, 0.61 - 1.8 * (T - cr.ISING_TC), se)
    assert lin["degree"] == 1 and lin["slope"] == pytest.approx(-1.8, abs=1e-9)
    assert lin["slope_se"] == pytest.approx(1e-4 / math.sqrt(np.sum((T - T.mean()) ** 2)), rel=1e-9)
    forced = cr.binder_slope(T, U, se, degree=1)  # the wrong model is visible in its chi2
    assert forced["chi2_dof"] > 10


def test_binder_slope_noisy_line_within_4_se():
    rng = make_rng(5)
    T = np.linspace(2.2, 2.34, 8)
    se = np.full(8, 0.003)
    U = 0.6 - 1.3 * (T - 2.27) + rng.normal(0, 0.003, 8)
    bs = cr.binder_slope(T, U, se, T_c=2.27)
    assert abs(bs["slope"] + 1.3) < 4 * bs["slope_se"]
    assert bs["slope_se"] < 0.1


def test_fit_exponent_exact_and_noisy():
    L = np.array([8, 16, 32, 48, 64, 128])
    fit = cr.fit_exponent(L, 2.0 * L**1.75, 0.01 * L**1.75)
    assert fit["exponent"] == pytest.approx(1.75, abs=1e-10) and fit["amplitude"] == pytest.approx(2.0)
    assert fit["chi2"] < 1e-15
    rng = make_rng(9)
    z = []
    chi2 = []
    for _ in range(300):
        y = 0.9 * L**-0.125 * (1 + rng.normal(0, 0.01, L.size))
        f = cr.fit_exponent(L, y, 0.01 * y)
        z.append((-f["exponent"] - 0.125) / f["exponent_se"])
        chi2.append(f["chi2_dof"])
    assert abs(z[0]) < 4
    assert 0.8 < np.std(z) < 1.25 and abs(np.mean(z)) < 0.25
    assert 0.8 < np.mean(chi2) < 1.2


def test_exponents_recovers_exact_scaling_forms():
    L = np.array([8, 16, 32, 64])
    T = np.array([2.25, 2.26, 2.27, 2.28, 2.29])
    LL, TT = np.meshgrid(L, T, indexing="ij")
    x = TT - cr.ISING_TC
    abs_m = 1.0 * LL**-0.125 * (1 - 0.5 * x * LL)
    chi = 0.4 * LL**1.75 * (1 + 0.2 * x * LL)
    U = 0.61 - 0.3 * x * LL
    rel = 1e-4
    mom = cr.Moments(abs_m=abs_m, abs_m_se=rel * abs_m, m2=abs_m, m4=abs_m, chi=chi, chi_se=rel * chi, binder=U,
                     binder_se=np.full(U.shape, 1e-5), n_runs=8, n_samples=1)
    ex = cr.exponents(L, T, mom)
    for name, exact in cr.EXACT_EXPONENTS.items():
        assert ex[name]["value"] == pytest.approx(exact, abs=1e-6), name
        assert ex[name]["exact"] == exact
    assert [p["dU_dT"] for p in ex["per_size"]] == pytest.approx(-0.3 * L, rel=1e-6)
    ex2 = cr.exponents(L, T, mom, L_min=16, dU_dT=-0.3 * LL * 1.0, dU_dT_se=np.full(U.shape, 1e-3))
    assert ex2["sizes_fitted"] == [16, 32, 64]
    assert ex2["one_over_nu"]["value"] == pytest.approx(1.0, abs=1e-6)


def test_integrated_autocorr_time_ar1():
    phi, R, n = 0.9, 20, 5000
    rng = make_rng(13)
    x = np.empty((R, n))
    x[:, 0] = rng.normal(size=R) / math.sqrt(1 - phi**2)
    eps = rng.normal(size=(R, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    res = cr.integrated_autocorr_time(x, dt=0.5)
    exact = 0.5 * (1 + phi) / (1 - phi)  # 9.5 samples
    assert res["reliable"]
    assert abs(res["tau_int"] - 0.5 * exact) < 4 * res["tau_int_se"]
    assert res["tau_int_se"] < 0.05 * res["tau_int"]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, name", [
    (lambda: cr.moments(np.full((2, 5), 1.5), 4, 2.0), "m_samples"),
    (lambda: cr.moments(np.zeros((2, 5)), 0, 2.0), "L"),
    (lambda: cr.moments(np.zeros((2, 5)), 4, -1.0), "T"),
    (lambda: cr.moments(np.zeros((3, 2, 5)), 4, [2.0, 2.1]), "T"),
    (lambda: cr.moments(np.zeros((2, 5)), 4, 2.0, weights=np.ones(3)), "weights"),
    (lambda: cr.binder_derivative(np.zeros((2, 5)), np.zeros((2, 4)), 4, 2.0), "e_samples"),
    (lambda: cr.reweighting_weights(np.zeros((2, 5)), 4, 0.0, 2.0), "T0"),
    (lambda: cr.binder_slope([2.25, 2.27, 2.29], [0.6, 0.6, 0.6], [0.01, 0.0, 0.01]), "U_se"),
    (lambda: cr.binder_slope([2.25, 2.27, 2.29], [0.6, 0.6], [0.01, 0.01, 0.01]), "U"),
    (lambda: cr.binder_slope([2.25, 2.27, 2.29], [0.6] * 3, [0.01] * 3, T_c=float("nan")), "T_c"),
    (lambda: cr.binder_slope([2.25, 2.27, 2.29], [0.6] * 3, [0.01] * 3, degree=3), "degree"),
    (lambda: cr.poly_at([2.25, 2.25], [0.6] * 2, [0.01] * 2, 2.26), "x"),
    (lambda: cr.fit_exponent([8, 16, 32], [1.0, -1.0, 1.0], [0.1] * 3), "y"),
    (lambda: cr.fit_exponent([8, 8, 32], [1.0] * 3, [0.1] * 3), "L"),
    (lambda: cr.fit_exponent([8, 16, 32], [1.0] * 3, [0.1, np.inf, 0.1]), "y_se"),
    (lambda: cr.exponents([8, 16], [2.27, 2.28], cr.Moments(*([np.ones((2, 3))] * 8), 2, 2)), "mom.abs_m"),
    (lambda: cr.integrated_autocorr_time(np.zeros((2, 2))), "x"),
])
def test_bad_input_raises_naming_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
