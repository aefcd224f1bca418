"""Tests of the macroscopic P1 finite-element solver (seed 000 eq. (4)/(8), Algorithm 1 lines 21-43).

Models:
* linear diffusion: stencil (D0/Delta)(-1, 2, -1) and F = -rho, i.e. the standard P1 heat
  equation M rho' = -K rho, whose Fourier/sine modes decay at the closed-form rate
  lambda = D0 (2/Delta**2)(1 - cos theta)/((2 + cos theta)/3);
* zero-range process, g(k) = k**2 (REFERENCE §1): m = phi/2, F = -log phi, d rho/dt = (1/2) phi_xx,
  with the exact affine-profile stencil (10-point Gauss-Legendre), written here independently.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicSpline

from cgflow.macro import fem
from cgflow.micro.zrp import density, fugacity

PERIODIC, DIRICHLET = "periodic", "dirichlet"


# ----------------------------------------------------------------------------- models
def laplace_model(d0: float, delta: float):
    """Constant stencil (d0/Delta)(-1, 2, -1) with F = -rho: M rho' = -K_lap rho (P1 heat equation)."""

    def stencil(rho, slope):
        return np.broadcast_to(np.array([-1.0, 2.0, -1.0]) * (d0 / delta), (np.size(rho), 3)).copy()

    def force(rho):
        return -np.asarray(rho, dtype=float)

    return stencil, force


def p1_rate(d0: float, theta: float, delta: float) -> float:
    """Decay rate of a Fourier/sine mode of M^-1 K for P1 with consistent mass, theta = k Delta."""
    return d0 * (2.0 / delta**2) * (1.0 - math.cos(theta)) / ((2.0 + math.cos(theta)) / 3.0)


@lru_cache(maxsize=1)
def _phi_spline() -> CubicSpline:
    # zrp.fugacity (Newton on Bessel ratios) is exact but slow for the ~10^3 points per step of the
    # quadrature stencil; a cubic spline through it on a 0.01 grid is accurate to ~1e-11 (checked below).
    grid = np.linspace(0.5, 25.0, 2451)
    return CubicSpline(grid, fugacity(grid, 2))


def phi(rho):
    return _phi_spline()(rho)


def mobility(rho):
    return 0.5 * phi(rho)


def zrp_force(rho):
    return -np.log(phi(rho))


def zrp_diffusivity(rho):
    return 0.5 * _phi_spline()(rho, 1)  # D = m'(rho)


_GL_U, _GL_W = np.polynomial.legendre.leggauss(10)
_GL_U, _GL_W = 0.5 * (_GL_U + 1.0), 0.5 * _GL_W  # on [0, 1]


def zrp_stencil(elements: int):
    """Exact stencil for the affine profile rho_a + s (x - x_a) (REFERENCE §1, 'Exact operator')."""
    delta = 1.0 / elements

    def stencil(rho, slope):
        r = np.asarray(rho, dtype=float)[:, None]
        s = np.asarray(slope, dtype=float)[:, None]
        left = -(mobility(r - s * delta * _GL_U) @ _GL_W) / delta  # element [x_a - Delta, x_a]
        right = -(mobility(r + s * delta * _GL_U) @ _GL_W) / delta  # element [x_a, x_a + Delta]
        return np.stack([left, -(left + right), right], axis=1)

    return stencil


def cosine_profile(elements: int) -> np.ndarray:
    return 7.0 + 2.0 * np.cos(2.0 * np.pi * fem.node_positions(elements, PERIODIC))


def fd_reference(rho0: np.ndarray, t_end: float) -> np.ndarray:
    """rho_t = (1/2) (phi(rho))_xx on a periodic grid, method of lines, BDF with a sparse Jacobian."""
    n = rho0.size
    inv_h2 = float(n * n)
    lap = sp.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n), format="lil")
    lap[0, n - 1] = lap[n - 1, 0] = 1.0
    lap = 0.5 * inv_h2 * lap.tocsr()

    def rhs(t, y):
        return lap @ phi(y)

    def jac(t, y):
        return (lap @ sp.diags(_phi_spline()(y, 1))).tocsc()

    sol = solve_ivp(rhs, (0.0, t_end), rho0, method="BDF", jac=jac, rtol=1e-11, atol=1e-12, t_eval=[t_end])
    assert sol.success
    return sol.y[:, -1]


# ----------------------------------------------------------------------------- oracles of the helpers
def test_zrp_helpers_match_reference_tables():
    rho = np.array([4.0, 5.0, 7.0, 9.0, 10.0, 13.3, 0.8, 21.0])
    assert np.allclose(phi(rho), fugacity(rho, 2), rtol=1e-10, atol=0)
    # REFERENCE §1 table: D = m'(rho)
    assert np.allclose(zrp_diffusivity(np.array([4.0, 7.0, 10.0])), [4.248633, 7.249624, 10.249826], atol=2e-6)
    # REFERENCE §1 stencils for Delta = 1/40
    st = zrp_stencil(40)(np.array([7.0, 7.0, 4.0, 10.0]), np.array([0.0, 19.0, 5.0, -19.0]))
    table = [
        [-1052.5966, 2105.1933, -1052.5966],
        [-985.2296, 2108.2020, -1122.9724],
        [-352.1649, 725.5730, -373.4081],
        [-2201.4435, 4208.1403, -2006.6968],
    ]
    assert np.allclose(st, table, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- matrices
@pytest.mark.parametrize("elements", [3, 8, 40, 41])
def test_mass_matrix_periodic(elements):
    m = fem.mass_matrix(elements, PERIODIC)
    assert isinstance(m, sp.csr_matrix) and m.shape == (elements, elements)
    dense = m.toarray()
    delta = 1.0 / elements
    assert np.allclose(dense.sum(axis=1), delta, rtol=1e-14)
    assert np.allclose(dense, dense.T)
    assert dense[0, -1] == pytest.approx(delta / 6) and dense[0, 0] == pytest.approx(2 * delta / 3)
    ev = np.linalg.eigvalsh(dense)
    assert ev.min() > 0
    assert ev.min() == pytest.approx(fem._min_mass_eigenvalue(elements, PERIODIC), rel=1e-12)


@pytest.mark.parametrize("elements", [2, 9, 40])
def test_mass_matrix_dirichlet(elements):
    m = fem.mass_matrix(elements, DIRICHLET).toarray()
    delta = 1.0 / elements
    assert m.shape == (elements + 1, elements + 1)
    rows = m.sum(axis=1)
    assert np.allclose(rows[1:-1], delta, rtol=1e-14)
    assert np.allclose(rows[[0, -1]], delta / 2, rtol=1e-14)  # half hats
    assert np.linalg.eigvalsh(m).min() > 0
    muu = m[1:-1, 1:-1]
    assert np.linalg.eigvalsh(muu).min() == pytest.approx(fem._min_mass_eigenvalue(elements, DIRICHLET), rel=1e-12)
    # 1^T M rho integrates the P1 interpolant exactly (trapezoid rule on nodes)
    x = fem.node_positions(elements, DIRICHLET)
    assert np.sum(m @ (1 + 3 * x)) == pytest.approx(2.5, rel=1e-14)


def test_nodal_slopes():
    n = 16
    x = fem.node_positions(n, PERIODIC)
    rho = np.sin(2 * np.pi * x)
    expect = (np.sin(2 * np.pi * (x + 1 / n)) - np.sin(2 * np.pi * (x - 1 / n))) * n / 2
    assert np.allclose(fem.nodal_slopes(rho, n, PERIODIC), expect, atol=1e-13)
    xd = fem.node_positions(n, DIRICHLET)
    assert np.allclose(fem.nodal_slopes(3 + 5 * xd, n, DIRICHLET), 5.0, atol=1e-12)  # exact for affine
    q = xd**2
    s = fem.nodal_slopes(q, n, DIRICHLET)
    assert np.allclose(s[1:-1], 2 * xd[1:-1], atol=1e-13)
    assert s[0] == pytest.approx(1 / n) and s[-1] == pytest.approx(2 - 1 / n)  # one-sided
    with pytest.raises(ValueError, match="shape"):
        fem.nodal_slopes(np.ones(n), n, DIRICHLET)


@pytest.mark.parametrize("boundary", [PERIODIC, DIRICHLET])
def test_assemble_operator_columnwise(boundary):
    rng = np.random.default_rng(1)
    n_el = 7
    n = n_el if boundary == PERIODIC else n_el + 1
    st = rng.normal(size=(n, 3))
    k = fem.assemble_operator(st, boundary).toarray()
    for a in range(n):  # column a holds stencil a at rows a-1, a, a+1
        for off in (-1, 0, 1):
            b = a + off
            if boundary == PERIODIC:
                b %= n
            elif not 0 <= b < n:
                continue
            assert k[b, a] == st[a, off + 1]
    assert np.count_nonzero(k) == (3 * n if boundary == PERIODIC else 3 * n - 2)
    f = rng.normal(size=n)
    kf = k @ f
    expect = kf if boundary == PERIODIC else kf[1:-1]
    assert np.allclose(fem.apply_operator(st, f, boundary), expect, rtol=1e-14, atol=1e-14)
    # zero-sum stencils -> zero column sums (mass conservation, Appendix A)
    st0 = st.copy()
    st0[:, 1] = -(st0[:, 0] + st0[:, 2])
    cols = fem.assemble_operator(st0, boundary).toarray().sum(axis=0)
    assert np.allclose(cols if boundary == PERIODIC else cols[1:-1], 0, atol=1e-14)


def test_stable_time_step_formula():
    delta = 1 / 40
    assert fem.stable_time_step(10.249826, 40) == pytest.approx(delta**2 / (6 * 10.249826))
    assert fem.stable_time_step(10.249826, 40) == pytest.approx(1.0e-5, rel=0.02)  # REFERENCE §1 figure
    assert fem.stable_time_step(2.0, 40, mass="lumped") == pytest.approx(delta**2 / 4)
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError):
            fem.stable_time_step(bad, 40)
    with pytest.raises(ValueError, match="mass"):
        fem.stable_time_step(1.0, 40, mass="diagonal")


# ----------------------------------------------------------------------------- linear diffusion
@pytest.mark.parametrize("boundary", [PERIODIC, DIRICHLET])
@pytest.mark.parametrize("method", ["explicit", "implicit"])
def test_linear_diffusion_matches_semidiscrete_mode(boundary, method):
    n_el, d0, t_end = 20, 1.0, 2e-3
    delta = 1 / n_el
    stencil, force = laplace_model(d0, delta)
    x = fem.node_positions(n_el, boundary)
    if boundary == PERIODIC:
        mode, theta = np.cos(2 * np.pi * x), 2 * np.pi * delta
    else:
        mode, theta = np.sin(np.pi * x), np.pi * delta  # ends 1 stay fixed, the sine mode is exact
    lam = p1_rate(d0, theta, delta)
    rho0 = 1.0 + 0.5 * mode
    kwargs = dict(elements=n_el, boundary=boundary, save_times=[0.0, t_end / 2, t_end], method=method)
    if method == "explicit":
        dt = t_end / 8000
        res = fem.simulate(rho0, stencil, force, t_end, dt=dt, **kwargs)
        assert res.steps == 8000 and res.dt == pytest.approx(dt)
        # forward Euler is exact on the mode: amplitude (1 - lambda dt)**steps
        euler = 1.0 + 0.5 * mode * (1 - lam * dt) ** 8000
        assert np.max(np.abs(res.rho[-1] - euler)) < 1e-12
    else:
        res = fem.simulate(rho0, stencil, force, t_end, rtol=1e-11, atol=1e-13, **kwargs)
        assert res.steps > 0
    exact = 1.0 + 0.5 * mode[None, :] * np.exp(-lam * res.times[:, None])
    amp = 0.5 * np.exp(-lam * t_end)
    assert np.max(np.abs(res.rho[-1] - exact[-1])) / amp < 1e-6  # relative to the decaying mode
    assert np.max(np.abs(res.rho - exact)) < 1e-6
    np.testing.assert_array_equal(res.times, [0.0, t_end / 2, t_end])
    np.testing.assert_array_equal(res.x, x)
    if boundary == DIRICHLET:
        assert np.all(res.rho[:, 0] == 1.0) and np.all(res.rho[:, -1] == 1.0)


def test_linear_diffusion_default_step_and_landing():
    """Adaptive default step = safety * Delta**2/(6 D) (the bound is exact here); save times are hit exactly."""
    n_el, d0 = 16, 0.7
    stencil, force = laplace_model(d0, 1 / n_el)
    bound = fem.stable_time_step(d0, n_el)
    d_eff = fem.estimate_max_diffusivity(np.ones(n_el), stencil, force, elements=n_el, boundary=PERIODIC)
    assert d_eff == pytest.approx(d0, rel=1e-8)  # norm bound attained for constant coefficients (F' by FD)
    rho0 = 1 + 0.3 * np.cos(2 * np.pi * fem.node_positions(n_el, PERIODIC))
    save = [0.0, 0.37 * bound, 5.5 * bound, 10 * bound + 1e-7]
    res = fem.simulate(rho0, stencil, force, save[-1], elements=n_el, boundary=PERIODIC, save_times=save)
    assert res.dt == pytest.approx(0.9 * bound, rel=1e-8)
    np.testing.assert_array_equal(res.times, save)
    # 0.37 b (1 landing step), then to 5.5 b: 5 full + 1 landing, then to 10 b + 1e-7: 5 full + 1 landing
    assert res.steps == 1 + 6 + 6
    assert np.all(np.isfinite(res.rho))
    # a diffusivity function can only shorten the step
    capped = fem.simulate(rho0, stencil, force, 0.01, elements=n_el, boundary=PERIODIC,
                          diffusivity=lambda r: np.full(r.shape, 2 * d0))  # fmt: skip
    assert capped.dt == pytest.approx(0.45 * bound, rel=1e-8)
    loose = fem.simulate(rho0, stencil, force, 0.01, elements=n_el, boundary=PERIODIC,
                         diffusivity=lambda r: np.full(r.shape, d0 / 2))  # fmt: skip
    assert loose.dt == pytest.approx(0.9 * bound, rel=1e-8)


# ----------------------------------------------------------------------------- zero-range process
def test_jacobian_of_operator_matches_finite_differences():
    n_el = 12
    stencil = zrp_stencil(n_el)
    rng = np.random.default_rng(3)
    for boundary in (PERIODIC, DIRICHLET):
        n = n_el if boundary == PERIODIC else n_el + 1
        rho = 7 + rng.uniform(-1, 1, size=n)
        slope = fem.nodal_slopes(rho, n_el, boundary)
        st = stencil(rho, slope)
        f = zrp_force(rho)
        jac = fem._jacobian_g(rho, slope, st, f, stencil, zrp_force, n_el, boundary)

        def g_full(r):
            s_ = stencil(r, fem.nodal_slopes(r, n_el, boundary))
            return fem.assemble_operator(s_, boundary) @ zrp_force(r)

        brute = np.empty((n, n))
        for j in range(n):
            e = np.zeros(n)
            e[j] = 1e-5
            brute[:, j] = (g_full(rho + e) - g_full(rho - e)) / 2e-5
        rows = slice(None) if boundary == PERIODIC else slice(1, -1)
        scale = np.max(np.abs(brute[rows]))
        assert np.max(np.abs(jac[rows] - brute[rows])) < 1e-5 * scale


def test_stacked_explicit_step_equals_separate_calls():
    """The adaptive explicit step's one stacked stencil call gives the same g and stencils as separate calls."""
    n_el = 12
    stencil = zrp_stencil(n_el)
    rng = np.random.default_rng(5)
    for boundary in (PERIODIC, DIRICHLET):
        n = n_el if boundary == PERIODIC else n_el + 1
        rho = 7 + rng.uniform(-1, 1, size=n)
        g, f, slope, st = fem._rhs(rho, stencil, zrp_force, n_el, boundary, 0.0, 0)
        jac = fem._jacobian_g(rho, slope, st, f, stencil, zrp_force, n_el, boundary)
        g2, f2, slope2, st2, jac2 = fem._rhs_and_jacobian(rho, stencil, zrp_force, n_el, boundary, 0.0, 0)
        for a, b in ((g, g2), (f, f2), (slope, slope2), (st, st2)):
            np.testing.assert_array_equal(a, b)
        # equal up to the forward differences' amplification (1/h ~ 1e7) of last-ulp differences of a
        # matmul-based stencil evaluated on 3n instead of n rows (measured 2e-8 relative)
        np.testing.assert_allclose(jac2, jac, rtol=0, atol=1e-6 * np.abs(jac).max())
        assert np.count_nonzero(jac) > 4 * n  # pentadiagonal, not empty


def test_adaptive_explicit_step_calls_the_stencil_once():
    n_el = 20
    base = zrp_stencil(n_el)
    sizes = []

    def counting(rho, slope):
        sizes.append(np.size(rho))
        return base(rho, slope)

    rho0 = cosine_profile(n_el)
    res = fem.simulate(rho0, counting, zrp_force, 2e-5, elements=n_el, boundary=PERIODIC)
    assert len(sizes) == res.steps and set(sizes) == {3 * n_el}
    # a failing stacked evaluation names the node, not the stacked index
    def bad_force(rho):
        out = zrp_force(rho)
        if rho.size == 2 * n_el:  # the stacked call of the step (the initial check has n_el nodes)
            out[n_el + 3] = np.nan  # node 3 of the perturbed copy
        return out

    with pytest.raises(ValueError, match="at node 3,"):
        fem.simulate(rho0, base, bad_force, 2e-5, elements=n_el, boundary=PERIODIC)


def test_zrp_stability_bound_includes_operator_derivative():
    """D_eff bounds the true spectral radius; at a flat state it is m'(1 - F), ~5.5x m' at rho = 9."""
    n_el = 40
    stencil = zrp_stencil(n_el)
    flat = np.full(n_el, 9.0)
    d_eff = fem.estimate_max_diffusivity(flat, stencil, zrp_force, elements=n_el, boundary=PERIODIC)
    m1 = float(zrp_diffusivity(9.0))
    assert d_eff == pytest.approx(m1 * (1 - float(zrp_force(9.0))), rel=1e-5)
    assert d_eff / m1 > 5
    rho = cosine_profile(n_el)
    d_eff = fem.estimate_max_diffusivity(rho, stencil, zrp_force, elements=n_el, boundary=PERIODIC)
    m = fem.mass_matrix(n_el, PERIODIC).toarray()
    jac = fem._jacobian_g(
        rho, fem.nodal_slopes(rho, n_el, PERIODIC), stencil(rho, fem.nodal_slopes(rho, n_el, PERIODIC)),
        zrp_force(rho), stencil, zrp_force, n_el, PERIODIC,
    )  # fmt: skip
    radius = np.max(np.abs(np.linalg.eigvals(np.linalg.solve(m, jac))))
    assert radius <= 12 * d_eff * n_el**2 * (1 + 1e-9)
    assert radius >= 0.9 * 12 * d_eff * n_el**2  # and it is nearly tight


@lru_cache(maxsize=None)
def _zrp_cosine_run(method: str, n_el: int, t_end: float = 2e-3):
    rho0 = cosine_profile(n_el)
    save = np.linspace(0.0, t_end, 5)
    return fem.simulate(
        rho0, zrp_stencil(n_el), zrp_force, t_end, elements=n_el, boundary=PERIODIC, save_times=save,
        method=method, rtol=1e-10, atol=1e-12,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["explicit", "implicit"])
def test_zrp_mass_conserved_periodic(method):
    res = _zrp_cosine_run(method, 40)
    mass = res.mass()
    assert mass[0] == pytest.approx(7.0, rel=1e-14)
    assert np.max(np.abs(mass / mass[0] - 1)) < 1e-12
    assert np.all(np.isfinite(res.rho)) and np.all(res.rho > 0)


def test_zrp_explicit_and_implicit_agree():
    ex, im = _zrp_cosine_run("explicit", 40), _zrp_cosine_run("implicit", 40)
    rel = np.linalg.norm(ex.rho[-1] - im.rho[-1]) / np.linalg.norm(im.rho[-1])
    assert rel < 1e-4  # measured 1.9e-5 (forward-Euler time error)
    assert ex.steps > 5 * im.steps
    # explicit step = 0.9 x the Jacobian bound: about 2.2e-6 at t = 0 (not Delta**2/(6 m') = 1.1e-5)
    assert 1.5e-6 < ex.dt < 2.5e-6


def test_zrp_converges_to_homogeneous_state():
    n_el = 40
    rho0 = cosine_profile(n_el)
    save = [0.0, 0.01, 0.03, 0.1, 0.3]
    res = fem.simulate(
        rho0, zrp_stencil(n_el), zrp_force, 0.3, elements=n_el, boundary=PERIODIC, save_times=save, method="implicit"
    )
    dev = np.max(np.abs(res.rho - 7.0), axis=1)
    assert np.all(np.diff(dev) < 0)
    assert dev[-1] < 1e-8
    assert np.max(np.abs(res.mass() / 7.0 - 1)) < 1e-12


def test_zrp_fem_converges_to_pde_at_second_order():
    """FEM (implicit, tight tolerances) vs a fine finite-difference solution of rho_t = phi_xx / 2."""
    t_end, n_fd = 2e-3, 400
    ref = fd_reference(cosine_profile(n_fd), t_end)  # its own error is ~1e-5 (vs N_fd = 800)
    errors = {}
    for n_el in (40, 80):
        res = _zrp_cosine_run("implicit", n_el, t_end)
        errors[n_el] = np.max(np.abs(res.rho[-1] - ref[:: n_fd // n_el]))
    # measured max-abs errors: 2.13e-2 (N = 40), 5.42e-3 (N = 80); the cosine's amplitude is ~1.1 at t_end.
    # The O(Delta**2) constant is large because the column-wise operator is not invariant under F -> F + c
    # (its row sums are O(Delta**3), multiplied by F ~ -4.4); see test_zrp_fem_error_depends_on_force_gauge.
    assert errors[40] < 2.5e-2
    assert 3.6 < errors[40] / errors[80] < 4.4
    # the explicit scheme at N = 40 is as accurate (its time error is ~2e-4)
    ex = _zrp_cosine_run("explicit", 40)
    assert abs(np.max(np.abs(ex.rho[-1] - ref[:: n_fd // 40])) - errors[40]) < 1e-3


def test_zrp_fem_error_depends_on_force_gauge():
    """F and F + c give the same PDE but not the same column-wise FEM: the error is O(Delta**2) in both."""
    t_end, n_el = 2e-3, 40
    ref = fd_reference(cosine_profile(400), t_end)[::10]
    shifted = fem.simulate(
        cosine_profile(n_el), zrp_stencil(n_el), lambda r: zrp_force(r) + 4.45, t_end, elements=n_el,
        boundary=PERIODIC, method="implicit", rtol=1e-10, atol=1e-12,
    )  # fmt: skip
    err_shifted = np.max(np.abs(shifted.rho[-1] - ref))
    err_plain = np.max(np.abs(_zrp_cosine_run("implicit", n_el, t_end).rho[-1] - ref))
    assert err_shifted < err_plain / 4  # measured 3.8e-3 vs 2.1e-2
    assert np.max(np.abs(shifted.mass() / 7.0 - 1)) < 1e-12  # mass is conserved in any gauge


def test_zrp_dirichlet_approaches_affine_phi_profile():
    n_el = 40
    x = fem.node_positions(n_el, DIRICHLET)
    rho0 = 4.0 + 6.0 * x + 3.0 * np.sin(2 * np.pi * x)  # asymmetric; ends 4 and 10
    stencil = zrp_stencil(n_el)
    res = fem.simulate(
        rho0, stencil, zrp_force, 1.0, elements=n_el, boundary=DIRICHLET, save_times=[0.0, 0.5, 1.0], method="implicit"
    )
    assert np.all(res.rho[:, 0] == 4.0) and np.all(res.rho[:, -1] == 10.0)
    assert np.max(np.abs(res.rho[-1] - res.rho[-2])) < 1e-9  # stationary
    phi_ss = phi(4.0) * (1 - x) + phi(10.0) * x  # (1/2) phi_xx = 0: phi affine in x
    rho_ss = density(phi_ss, 2)
    err = np.max(np.abs(res.rho[-1] - rho_ss))
    assert err < 1e-2  # measured 7.3e-3 (discrete steady state; 2.3e-2 at N = 20, 2.1e-3 at N = 80)
    # a short explicit run keeps the ends fixed too and agrees with the implicit one
    short = [0.0, 1e-3]
    ex = fem.simulate(rho0, stencil, zrp_force, 1e-3, elements=n_el, boundary=DIRICHLET, save_times=short)
    im = fem.simulate(
        rho0, stencil, zrp_force, 1e-3, elements=n_el, boundary=DIRICHLET, save_times=short, method="implicit",
        rtol=1e-10,
    )  # fmt: skip
    assert ex.rho[-1, 0] == 4.0 and ex.rho[-1, -1] == 10.0
    assert np.linalg.norm(ex.rho[-1] - im.rho[-1]) / np.linalg.norm(im.rho[-1]) < 1e-4


# ----------------------------------------------------------------------------- guards
def test_explicit_dt_above_bound_raises_and_blows_up_when_allowed():
    n_el = 40
    rho0 = cosine_profile(n_el)
    stencil = zrp_stencil(n_el)
    d_eff = fem.estimate_max_diffusivity(rho0, stencil, zrp_force, elements=n_el, boundary=PERIODIC)
    bound = fem.stable_time_step(d_eff, n_el)
    kwargs = dict(elements=n_el, boundary=PERIODIC, save_times=[0.0, 2e-3])
    with pytest.raises(ValueError, match="exceeds the explicit stability limit"):
        fem.simulate(rho0, stencil, zrp_force, 2e-3, dt=1.5 * bound, **kwargs)
    with pytest.raises(ValueError, match=r"domain|non-finite") as info:
        fem.simulate(rho0, stencil, zrp_force, 2e-3, dt=1.5 * bound, allow_unstable=True, **kwargs)
    assert "step" in str(info.value) and "t = " in str(info.value)
    # the diffusivity-only limit Delta**2/(6 max m') of REFERENCE §1 is ~5x too large for this scheme
    naive = fem.stable_time_step(float(np.max(zrp_diffusivity(rho0))), n_el)
    with pytest.raises(ValueError, match=r"domain|non-finite"):
        fem.simulate(rho0, stencil, zrp_force, 2e-3, dt=naive, allow_unstable=True, **kwargs)
    # just below the bound it is stable
    ok = fem.simulate(rho0, stencil, zrp_force, 3e-4, dt=0.95 * bound, elements=n_el, boundary=PERIODIC)
    assert np.all(np.isfinite(ok.rho)) and np.ptp(ok.rho[-1]) < np.ptp(rho0)


def test_guards_on_invalid_states_and_arguments():
    n_el = 10
    stencil = zrp_stencil(n_el)
    rho0 = cosine_profile(n_el)
    kwargs = dict(elements=n_el, boundary=PERIODIC)
    bad = rho0.copy()
    bad[3] = -1.0
    with pytest.raises(ValueError, match="domain"):
        fem.simulate(bad, stencil, zrp_force, 1e-4, **kwargs)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fem.simulate(bad, stencil, zrp_force, 1e-4, **kwargs)

    def inf_force(r):
        out = zrp_force(r)
        out[r > 8.9] = np.inf
        return out

    with pytest.raises(ValueError, match="not finite"):
        fem.simulate(rho0, stencil, inf_force, 1e-4, **kwargs)

    def raising_force(r):
        return -np.log(fugacity(r, 2))  # raises ValueError for rho <= 0

    with pytest.raises(ValueError, match="force F"):
        fem.simulate(rho0, stencil, raising_force, 5e-3, require_positive=False, dt=1e-4, allow_unstable=True,
                     **kwargs)  # fmt: skip
    with pytest.raises(ValueError, match="save_times"):
        fem.simulate(rho0, stencil, zrp_force, 1e-4, save_times=[0, 2e-4], **kwargs)
    with pytest.raises(ValueError, match="method"):
        fem.simulate(rho0, stencil, zrp_force, 1e-4, method="rk4", **kwargs)
    with pytest.raises(ValueError, match="shape"):
        fem.simulate(rho0[:-1], stencil, zrp_force, 1e-4, **kwargs)
    with pytest.raises(ValueError, match="boundary"):
        fem.simulate(rho0, stencil, zrp_force, 1e-4, elements=n_el, boundary="neumann")
    with pytest.raises(ValueError, match="stencils must have shape"):
        fem.simulate(rho0, lambda r, s: np.zeros((r.size, 2)), zrp_force, 1e-4, **kwargs)


def test_implicit_guard_reports_domain_failure():
    """A model whose operator drives rho negative: BDF cannot continue and says why (no NaN returned)."""
    n_el = 10
    stencil, _ = laplace_model(1.0, 1 / n_el)
    rho0 = 1 + 0.5 * np.cos(2 * np.pi * fem.node_positions(n_el, PERIODIC))

    def anti(r):  # backward diffusion: F = +rho, the profile steepens until it leaves rho > 0
        return np.asarray(r, dtype=float)

    with pytest.raises(ValueError, match=r"domain|failed"):
        fem.simulate(rho0, stencil, anti, 1.0, elements=n_el, boundary=PERIODIC, method="implicit")


def test_runtime_is_small():
    start = time.perf_counter()
    res = _zrp_cosine_run("explicit", 40)
    assert res.wall_seconds < 5.0 and time.perf_counter() - start < 10.0


def test_large_grids_use_a_sparse_jacobian_with_the_same_entries(monkeypatch):
    """Above _DENSE_JACOBIAN_MAX nodes J_g is sparse (O(n) memory per step), with the same entries and bound."""
    n_el = 16
    stencil = zrp_stencil(n_el)
    for boundary in (PERIODIC, DIRICHLET):
        rho = fem.node_positions(n_el, boundary)
        rho = 7 + np.cos(2 * np.pi * rho) + 0.3 * rho
        slope = fem.nodal_slopes(rho, n_el, boundary)
        st, f = stencil(rho, slope), zrp_force(rho)
        dense = fem._jacobian_g(rho, slope, st, f, stencil, zrp_force, n_el, boundary)
        d_dense = fem.estimate_max_diffusivity(rho, stencil, zrp_force, elements=n_el, boundary=boundary)
        monkeypatch.setattr(fem, "_DENSE_JACOBIAN_MAX", 4)
        sparse = fem._jacobian_g(rho, slope, st, f, stencil, zrp_force, n_el, boundary)
        assert sp.issparse(sparse) and isinstance(dense, np.ndarray)
        np.testing.assert_array_equal(sparse.toarray(), dense)
        assert fem.estimate_max_diffusivity(rho, stencil, zrp_force, elements=n_el, boundary=boundary) == d_dense
        implicit = fem.simulate(rho, stencil, zrp_force, 1e-4, elements=n_el, boundary=boundary, method="implicit")
        monkeypatch.undo()
        again = fem.simulate(rho, stencil, zrp_force, 1e-4, elements=n_el, boundary=boundary, method="implicit")
        np.testing.assert_allclose(implicit.rho, again.rho, rtol=1e-12)
