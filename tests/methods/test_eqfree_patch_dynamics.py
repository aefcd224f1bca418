"""Tests of cgflow.methods.eqfree.patch_dynamics: lifting, restriction, the patch estimate, projective integration."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow.methods.eqfree.patch_dynamics import PatchDynamics, PatchTrajectory, relative_derivative_error
from cgflow.micro import heterodiffusion as hd

A_STAR = np.sqrt(0.21)
#: The paper's parameters with 40 instead of 100 micro points per period: 2.5x fewer unknowns,
#: same buffer physics (the lattice's harmonic mean still equals a* to ~1e-8).
FAST = dict(micro_dx=2.5e-7)
#: The paper's scheme scaled up by 100 in space and 1e4 in time (same H/sqrt(a* dt), eps/h, ...),
#: 80 points per period: second differences no longer cancel to the last digits.
COARSE = dict(eps=1e-3, micro_dx=1.25e-5, tooth=1e-2, buffer=0.08, burst=1e-2)


def semi_discrete(U0, a_star, dx):
    """Interior matrix A and boundary forcing b of dU/dt = a* D2 U with fixed ends."""
    n = U0.size - 2
    A = a_star / dx**2 * (np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1))
    b = np.zeros(n)
    b[0], b[-1] = a_star / dx**2 * U0[0], a_star / dx**2 * U0[-1]
    return A, b


# ----------------------------------------------------------------------------- parameters
def test_defaults_are_the_papers():
    pd = PatchDynamics()
    assert (pd.eps, pd.micro_dx, pd.macro_nodes, pd.tooth, pd.buffer, pd.burst) == (1e-5, 1e-7, 11, 1e-4, 8e-3, 1e-6)
    assert pd.coefficient == hd.Coefficient(mean=1.1, amplitude=1.0)
    assert pd.n_patches == 9 and pd.n_micro == 80_001 and pd.macro_dx == pytest.approx(0.1)
    np.testing.assert_allclose(pd.centres, np.arange(1, 10) / 10)
    assert pd.micro_grid.shape == (9, 80_001)
    assert pd.micro_grid[4, 40_000] == pytest.approx(0.5, abs=1e-15)
    assert pd.space_fraction == pytest.approx(0.072) and pd.time_fraction() == pytest.approx(1e-3)
    assert pd.work_per_estimate == 9 * 80_001 * pd.substeps
    # the paper's "10**4 smaller space-time grid": 1e7 nodes x 1e7 micro steps vs 1001 bursts of 9 patches
    assert pd.patch_work(1.0, 1e-3) == 1001 * pd.work_per_estimate
    assert pd.full_resolution_work(1.0) == (10**7 + 1) * 10**7
    assert 1e4 < pd.cost_ratio(1.0, 1e-3) < 1.5e4
    assert PatchDynamics(time_stepper="heun").patch_work(1.0) == 2001 * pd.work_per_estimate


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"coefficient": 1.1}, "coefficient must be a Coefficient"),
        ({"eps": 0.0}, "eps must be a finite number > 0"),
        ({"micro_dx": 2e-5}, "micro_dx must resolve the period"),
        ({"macro_nodes": 2}, "macro_nodes must be an integer >= 3"),
        ({"macro_nodes": 11.0}, "macro_nodes must be an integer"),
        ({"tooth": 9e-3}, "tooth < buffer"),
        ({"buffer": 0.1}, r"patches must not overlap: buffer < macro spacing"),
        ({"tooth": 1.5e-7}, "tooth/micro_dx must be an even integer"),
        ({"tooth": 1.01e-5}, "tooth/micro_dx must be an even integer"),
        ({"buffer": 8.0001e-3}, "buffer/micro_dx must be an even integer"),
        ({"burst": -1e-6}, "burst must be a finite number > 0"),
        ({"substeps": 0}, "substeps must be an integer >= 1"),
        ({"micro_scheme": "crank_nicolson"}, "micro_scheme must be one of"),
        ({"micro_solver": "cg"}, "micro_solver must be one of"),
        ({"lift_order": 3}, "lift_order must be 2 or 4"),
        ({"time_stepper": "rk4"}, "time_stepper must be one of"),
        ({"deviation_form": "yes"}, "deviation_form must be a bool"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchDynamics(**kwargs)


def test_bad_call_arguments():
    pd = PatchDynamics(**COARSE)
    U = pd.x**2
    with pytest.raises(ValueError, match=r"U must have shape \(11,\)"):
        pd.time_derivative(U[:-1])
    with pytest.raises(ValueError, match="U must be finite"):
        pd.lift(np.full(11, np.nan))
    with pytest.raises(ValueError, match="u must have trailing shape"):
        pd.restrict(np.zeros((9, 10)))
    with pytest.raises(ValueError, match="t_end/macro_dt must be a positive integer"):
        pd.integrate(U, 0.0105, 1e-2)
    with pytest.raises(ValueError, match="macro_dt must be >= burst"):
        pd.integrate(U, 0.01, 1e-3)
    with pytest.raises(ValueError, match="save_every must be an integer >= 1"):
        pd.integrate(U, 0.02, 1e-2, save_every=0)
    with pytest.raises(ValueError, match="vanishes"):
        relative_derivative_error(pd, pd.x)  # linear: D2 = 0
    with pytest.raises(ValueError, match="PatchDynamics"):
        relative_derivative_error(None, U)


# ----------------------------------------------------------------------------- lifting and restriction
@pytest.mark.parametrize("order", [2, 4])
def test_lift_preserves_tooth_averages(order):
    pd = PatchDynamics(lift_order=order)
    rng = np.random.default_rng(order)
    for U in (rng.uniform(-3, 3, 11), np.cos(7 * pd.x) + 2 * pd.x, np.full(11, 5.0)):
        u = pd.lift(U)
        assert u.shape == (9, 80_001)
        np.testing.assert_allclose(pd.restrict(u), U[1:-1], rtol=0, atol=1e-12 * max(1.0, np.abs(U).max()))


def test_lift_order2_is_the_reference_formula():
    pd = PatchDynamics(**FAST)
    U = np.random.default_rng(0).uniform(-1, 1, 11)
    dX, h = pd.macro_dx, pd.tooth
    D1 = (U[2:] - U[:-2]) / (2 * dX)
    D2 = (U[2:] - 2 * U[1:-1] + U[:-2]) / dX**2
    s = pd.micro_grid - pd.centres[:, None]
    expected = U[1:-1, None] + D1[:, None] * s + 0.5 * D2[:, None] * (s**2 - h**2 / 12)
    np.testing.assert_allclose(pd.lift(U), expected, rtol=0, atol=1e-13)
    c = pd.lift_coefficients(U)
    np.testing.assert_allclose(2 * c[:, 2] / dX**2, D2, rtol=1e-12)
    np.testing.assert_allclose(c[:, 1] / dX, D1, rtol=1e-12)


def test_lift_order4_reproduces_a_quartic_and_falls_back_at_the_ends():
    pd4, pd2 = PatchDynamics(lift_order=4, **FAST), PatchDynamics(lift_order=2, **FAST)
    q = np.polynomial.Polynomial([0.3, -1.0, 2.0, 0.7, -3.0])
    # macro values = discrete tooth averages of q around every node (ends included)
    tooth = (np.arange(-pd4._tooth_half, pd4._tooth_half + 1) * pd4.micro_dx)
    U = q(pd4.x[:, None] + tooth[None, :]) @ pd4.tooth_weights
    u4 = pd4.lift(U)
    # patches 2..8 (nodes 0.2..0.8) use the 5-point stencil: the quartic is recovered exactly
    np.testing.assert_allclose(u4[1:-1], q(pd4.micro_grid[1:-1]), rtol=0, atol=1e-11)
    # patches next to the Dirichlet ends fall back to the order-2 lift
    np.testing.assert_array_equal(u4[[0, -1]], pd2.lift(U)[[0, -1]])
    assert not np.allclose(u4[0], q(pd4.micro_grid[0]), atol=1e-6)


def test_restrict_is_simpson_tooth_average():
    pd = PatchDynamics(**FAST)
    cubic = np.polynomial.Polynomial([1.0, 2.0, -3.0, 4.0])
    s = pd.micro_grid - pd.centres[:, None]
    h = pd.tooth
    exact = cubic.integ()(h / 2) - cubic.integ()(-h / 2)
    np.testing.assert_allclose(pd.restrict(cubic(s)), exact / h, rtol=1e-13)
    assert pd.restrict(np.stack([cubic(s)] * 2)).shape == (2, 9)


# ----------------------------------------------------------------------------- micro evolution
def test_evolve_keeps_steady_states_and_frozen_ends():
    pd = PatchDynamics(**FAST)
    u = np.full((pd.n_patches, pd.n_micro), 2.5)
    # the implicit matrices have condition ~ 4 tau a/dx**2 ~ 1e7: direct evolution of O(1) values
    # keeps ~9 digits (why time_derivative evolves the deviation from the lift)
    np.testing.assert_allclose(pd.evolve(u, pd.burst), 2.5, rtol=0, atol=1e-8)
    homog = PatchDynamics(coefficient=hd.Coefficient(table=(0.7,)), **FAST)
    lin = homog.lift(1.0 + 3.0 * homog.x)  # linear profiles are steady in a homogeneous medium
    np.testing.assert_allclose(homog.evolve(lin, 2 * homog.burst), lin, rtol=0, atol=1e-8)
    U = np.sin(3 * pd.x)
    u0 = pd.lift(U)
    u1 = pd.evolve(u0, pd.burst)
    np.testing.assert_array_equal(u1[:, [0, -1]], u0[:, [0, -1]])
    np.testing.assert_array_equal(pd.evolve(u0, 0.0), u0)


def test_deviation_form_equals_direct_form_when_rounding_is_harmless():
    """Both forms are the same scheme in exact arithmetic; on a coarse lattice they agree to rounding."""
    kw = dict(COARSE, micro_dx=5e-5)  # 20 points per period, 1601 per patch
    U = np.random.default_rng(2).uniform(-1, 1, 11)
    F_dev, w = PatchDynamics(**kw).time_derivative(U)
    F_dir, _ = PatchDynamics(deviation_form=False, **kw).time_derivative(U)
    np.testing.assert_allclose(F_dev, F_dir, rtol=0, atol=1e-8 * np.abs(F_dev).max())
    F_band, _ = PatchDynamics(micro_solver="banded", **kw).time_derivative(U)
    np.testing.assert_allclose(F_band, F_dev, rtol=0, atol=1e-10 * np.abs(F_dev).max())
    assert F_dev[0] == 0.0 and F_dev[-1] == 0.0
    assert w == 9 * 1601 * 10


QUICK = dict(eps=1e-4, micro_dx=1e-6, substeps=4)  # the quick workflow's medium (8,001 points per patch)


@pytest.mark.parametrize(
    "kw",
    [
        QUICK,
        dict(QUICK, micro_scheme="bdf2"),
        dict(QUICK, micro_scheme="backward_euler", substeps=3),
        dict(QUICK, lift_order=4),
        dict(FAST, buffer=4e-3, substeps=10),
    ],
    ids=["trbdf2", "bdf2", "backward_euler", "order4", "paper-medium"],
)
def test_numba_solver_reproduces_lapack_solver(kw):
    """The default compiled burst ("numba") gives the F of the LAPACK path ("ldl") to ~1e-13 relative."""
    pd = PatchDynamics(**kw)
    assert pd.micro_solver == "numba"
    U = np.sin(np.pi * pd.x) + pd.x**2 + 3.0 + np.random.default_rng(1).uniform(-0.1, 0.1, 11)
    F, w = pd.time_derivative(U)
    F_ldl, w_ldl = PatchDynamics(micro_solver="ldl", **kw).time_derivative(U)
    assert w == w_ldl
    np.testing.assert_allclose(F, F_ldl, rtol=0, atol=1e-12 * np.abs(F_ldl).max())
    np.testing.assert_array_equal(pd.time_derivative(U)[0], F)  # reused work arrays: same result


def test_numba_solver_direct_form_matches_to_its_rounding_floor():
    """Direct form (deviation_form=False): numba vs ldl agree to the direct form's own rounding level."""
    kw = dict(COARSE, micro_dx=5e-5)
    U = np.random.default_rng(2).uniform(-1, 1, 11)
    F = PatchDynamics(deviation_form=False, **kw).time_derivative(U)[0]
    F_ldl = PatchDynamics(deviation_form=False, micro_solver="ldl", **kw).time_derivative(U)[0]
    np.testing.assert_allclose(F, F_ldl, rtol=0, atol=1e-10 * np.abs(F_ldl).max())
    pd = PatchDynamics(**kw)
    u = pd.lift(U)
    np.testing.assert_allclose(pd.evolve(u, pd.burst), PatchDynamics(micro_solver="ldl", **kw).evolve(u, pd.burst),
                               rtol=0, atol=1e-12)


def test_lift_forcing_is_the_flux_form_laplacian_of_the_lift():
    """_lift_forcing (compiled, factorised increments) = L p from the bond increments formed in numpy."""
    for order in (2, 4):
        pd = PatchDynamics(lift_order=order, **QUICK)
        c = pd.lift_coefficients(np.cos(3 * pd.x) + pd.x**3)
        flux = pd.bonds * (c @ pd._bond_increments)
        expected = np.zeros((pd.n_patches, pd.n_micro))
        expected[:, 1:-1] = (flux[:, 1:] - flux[:, :-1]) / pd.micro_dx**2
        np.testing.assert_allclose(pd._lift_forcing(c), expected, rtol=1e-13, atol=1e-13 * np.abs(expected).max())
        # and, away from rounding, the increments are those of p itself
        p = pd.lift(np.cos(3 * pd.x) + pd.x**3)
        np.testing.assert_allclose(c @ pd._bond_increments, np.diff(p, axis=1), rtol=0, atol=1e-12)


def test_time_derivative_allocates_no_patch_sized_arrays():
    """After the first call, a burst allocates nothing of the size of the patch state (glibc would mmap it)."""
    import tracemalloc

    for kw in (QUICK, dict(QUICK, deviation_form=False)):
        pd = PatchDynamics(**kw)
        U = np.sin(np.pi * pd.x)
        pd.time_derivative(U)  # builds the stepper, factorisations and work arrays
        state_bytes = pd.n_patches * pd.n_micro * 8
        tracemalloc.start()
        try:
            pd.time_derivative(U)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < state_bytes / 8, (kw, peak, state_bytes)


def test_patch_dynamics_threads_and_pickle():
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    pd = PatchDynamics(**QUICK)
    Us = [np.sin(k * pd.x) + pd.x for k in range(1, 7)]
    serial = [pd.time_derivative(U)[0] for U in Us]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda U: pd.time_derivative(U)[0], Us))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
    clone = pickle.loads(pickle.dumps(pd))  # cached stepper travels, its work arrays do not
    assert clone == pd
    np.testing.assert_array_equal(clone.time_derivative(Us[0])[0], serial[0])


def test_deviation_form_is_offset_invariant():
    """Adding a constant to U must not change F; the direct form loses digits to rounding (module docstring)."""
    pd = PatchDynamics(**FAST)
    U = pd.x**2
    F0 = pd.time_derivative(U)[0]
    np.testing.assert_allclose(pd.time_derivative(U + 10.0)[0], F0, rtol=0, atol=1e-9 * np.abs(F0).max())


# ----------------------------------------------------------------------------- the patch estimate
def test_paper_buffer_estimate_within_1e3_of_homogenized():
    """H = 8e-3 with the paper's eps, dx, h, dt: F agrees with a* D2 to <= 1e-3 on quadratics.

    Measured (U = x**2, nodes 0.1..0.9): -2.7e-5 .. -2.4e-4; the error grows with D1/D2 = x_i
    (module docstring: the lift lacks the corrector eps D1 chi(x/eps)).
    """
    pd = PatchDynamics()
    for U in (pd.x**2, 3.0 - 2.0 * pd.x**2 + 0.5 * pd.x):
        err, work = relative_derivative_error(pd, U, A_STAR)
        assert np.abs(err).max() <= 1e-3
        assert work == pd.work_per_estimate
    err, _ = relative_derivative_error(pd, pd.x**2)
    assert err[4] == pytest.approx(-1.3e-4, abs=5e-5)  # REFERENCE §2 prints -3.5e-4 (its rounding floor)


def test_small_buffer_reproduces_reference_bias():
    """H = 4e-3: REFERENCE §2 gives -16 % (for D1/D2 = 1/2, i.e. U = x**2 at x = 0.5)."""
    pd = PatchDynamics(buffer=4e-3, **FAST)
    err, _ = relative_derivative_error(pd, pd.x**2)
    assert err[4] == pytest.approx(-0.16, abs=0.01)
    assert np.all(np.diff(err) < 0)  # larger slope D1 = 2 x_i, larger bias


def test_order4_lift_improves_smooth_profile():
    pd2, pd4 = PatchDynamics(**FAST), PatchDynamics(lift_order=4, **FAST)
    U = np.sin(np.pi * pd2.x)
    exact = -A_STAR * np.pi**2 * np.sin(np.pi * pd2.x[1:-1])  # a* u'' (tooth averaging changes it by 1e-9)
    e2 = np.abs(pd2.time_derivative(U)[0][1:-1] - exact)
    e4 = np.abs(pd4.time_derivative(U)[0][1:-1] - exact)
    assert e2.max() / np.abs(exact).max() == pytest.approx(np.pi**2 * 0.01 / 12, rel=0.05)  # O(dx**2) of D2
    assert e4[1:-1].max() < 0.02 * e2[1:-1].max()


# ----------------------------------------------------------------------------- projective integration
def test_integrate_matches_forward_euler_of_the_semi_discrete_system():
    """Patch dynamics = forward Euler on dU/dt = a* D2 U (central differences, dx = 0.1) + estimate error.

    The estimate error is ~1.3e-4 |D1| (buffer, module docstring) plus ~1e-5 |a* D2|, so
    after T = 0.02 the trajectories differ by at most T * 2.5e-4 * max|D1| (= 1.5e-4 here;
    observed 2e-5). Against the exact semi-discrete solution forward Euler is off by
    O(dt) (0.08 here: the initial condition's fast modes have dt lambda ~ 0.4), and against the
    continuum by the O(dx**2) error of l_j up to 4 on dx = 0.1, so neither is the right oracle.
    """
    pd = PatchDynamics(**FAST)
    modes = hd.fourier_initial_condition(np.random.default_rng(5), 20)
    U0 = modes(pd.x)
    dt, T = 2e-3, 0.02
    calls = []
    res = pd.integrate(U0, T, dt, save_every=1, progress=calls.append)
    assert isinstance(res, PatchTrajectory) and calls == list(range(1, 11))
    assert res.U.shape == res.F.shape == (11, 11) and res.dUdt is res.F
    np.testing.assert_allclose(res.times, np.arange(11) * dt)
    assert res.work == pd.patch_work(T, dt) == 11 * pd.work_per_estimate
    np.testing.assert_array_equal(res.U[:, [0, -1]], np.tile(U0[[0, -1]], (11, 1)))
    np.testing.assert_array_equal(res.F[:, [0, -1]], 0.0)
    A, b = semi_discrete(U0, A_STAR, pd.macro_dx)
    V = [U0[1:-1]]
    for _ in range(10):
        V.append(V[-1] + dt * (A @ V[-1] + b))
    V = np.array(V)
    D1 = (U0[2:] - U0[:-2]) / (2 * pd.macro_dx)
    np.testing.assert_allclose(res.U[:, 1:-1], V, rtol=0, atol=T * 2.5e-4 * np.abs(D1).max())
    F_fd = V @ A.T + b
    np.testing.assert_allclose(res.F[:, 1:-1], F_fd, rtol=0, atol=2.5e-4 * np.abs(D1).max() + 1e-4 * np.abs(F_fd).max())


@pytest.mark.parametrize("stepper", ["forward_euler", "heun"])
def test_integrate_single_mode_against_exact_solutions(stepper):
    """u0 = sin(pi x): an eigenvector of the central-difference system, so every oracle is explicit.

    Semi-discrete eigenvalue lam_h = (4 a*/dx**2) sin(pi dx/2)**2; forward Euler multiplies by
    (1 - dt lam_h) per step, Heun by 1 - dt lam_h + (dt lam_h)**2/2. The patch result must match
    that to the estimate error (|F error| <~ 2.6e-4 |F| at x = 0.1, where D1/D2 ~ 1; times
    T = 0.02 -> 5e-6 absolute). The continuum solution exp(-a* pi**2 T) sin(pi x) differs from
    it by a known O(dx**2) + O(dt) amount, which the test checks as well.
    """
    pd = PatchDynamics(time_stepper=stepper, **FAST)
    U0 = np.sin(np.pi * pd.x)
    dt, n = 2e-3, 10
    res = pd.integrate(U0, n * dt, dt, save_every=5)
    np.testing.assert_allclose(res.times, [0.0, 0.01, 0.02])
    assert res.work == (n * (2 if stepper == "heun" else 1) + 1) * pd.work_per_estimate
    z = dt * (4 * A_STAR / pd.macro_dx**2) * np.sin(np.pi * pd.macro_dx / 2) ** 2
    growth = 1 - z if stepper == "forward_euler" else 1 - z + z**2 / 2
    discrete = growth ** np.array([0, 5, 10])[:, None] * U0
    np.testing.assert_allclose(res.U, discrete, rtol=0, atol=1e-5)
    continuum = hd.homogenized_solution(hd.FourierModes((1.0,), (0.5,), (0.0,)), A_STAR, pd.x, res.times)
    gap = np.abs(discrete - continuum).max()
    assert 1e-4 < gap < 2e-3  # the macro grid's own error, not the patches'
    np.testing.assert_allclose(res.U, continuum, rtol=0, atol=gap + 1e-5)
