"""Tests of cgflow.micro.heterodiffusion: coefficient, cell problem, exact homogenized solutions, micro solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from cgflow.micro import heterodiffusion as hd

A_PAPER = np.sqrt(0.21)  # REFERENCE §2: sqrt(1.1**2 - 1)


# ----------------------------------------------------------------------------- coefficient
def test_coefficient_defaults_and_values():
    c = hd.Coefficient()
    assert (c.mean, c.amplitude, c.table) == (1.1, 1.0, None)
    y = np.array([[0.0, 0.25], [0.5, 0.75]])
    np.testing.assert_allclose(c(y), 1.1 + np.sin(2 * np.pi * y), rtol=0, atol=1e-15)
    assert c(y).shape == (2, 2)
    assert c.minimum == pytest.approx(0.1)
    assert hash(c) == hash(hd.Coefficient(mean=1.1, amplitude=1.0))


def test_table_coefficient_cells():
    c = hd.Coefficient(table=(1.0, 2.0, 4.0))
    assert c.is_table and c.mean is None and c.minimum == 1.0
    y = np.array([0.0, 0.2, 1 / 3 + 1e-9, 0.5, 0.9, 1.0, 1.2, -0.1, -1e-17])
    np.testing.assert_array_equal(c(y), [1.0, 1.0, 2.0, 2.0, 4.0, 1.0, 1.0, 4.0, 4.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mean": 1.0, "amplitude": 1.0}, r"must be > 0 everywhere; its minimum is mean - \|amplitude\| = 0 at y = 0.75"),
        ({"mean": 0.5, "amplitude": -0.6}, r"minimum is mean - \|amplitude\| = -0.1 at y = 0.25"),
        ({"mean": float("nan")}, "mean must be a finite number"),
        ({"table": (1.0, -0.5, 2.0)}, r"table\[1\] = -0.5"),
        ({"table": (1.0, 0.0)}, r"table\[1\] = 0 on the cell \[1/2, 2/2\)"),
        ({"table": ()}, "at least one value"),
        ({"table": (1.0, float("inf"))}, "finite"),
        ({"table": (1.0, 2.0), "mean": 1.5}, "either a table or mean/amplitude"),
    ],
)
def test_coefficient_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hd.Coefficient(**kwargs)


# ----------------------------------------------------------------------------- effective coefficient
@pytest.mark.parametrize("mean, amp", [(1.1, 1.0), (2.0, -1.5), (3.0, 0.5), (1.05, 1.0)])
def test_cell_problem_gives_sqrt_formula(mean, amp):
    a_star = hd.effective_coefficient(hd.Coefficient(mean=mean, amplitude=amp))
    assert a_star == pytest.approx(np.sqrt(mean**2 - amp**2), abs=1e-10)
    assert hd.sine_effective(mean, amp) == pytest.approx(np.sqrt(mean**2 - amp**2), rel=1e-15)


def test_paper_value_is_slightly_low():
    a_star = hd.effective_coefficient(hd.Coefficient())
    assert a_star == pytest.approx(0.4582575695, abs=1e-10)
    assert a_star - 0.45825686 == pytest.approx(7.1e-7, abs=1e-8)  # REFERENCE §2: the paper's value is 7e-7 low


@pytest.mark.parametrize("table", [(1.0, 2.0, 4.0), (0.3, 5.0), (2.5,), (1.0, 1.5, 0.2, 7.0, 3.0, 0.9, 1.1)])
def test_cell_problem_table_is_harmonic_mean(table):
    harmonic = 1.0 / np.mean(1.0 / np.asarray(table))
    for n in (16, 100, 1024):
        assert hd.effective_coefficient(hd.Coefficient(table=table), n=n) == pytest.approx(harmonic, rel=1e-12)


def test_cell_problem_corrector_properties():
    coef = hd.Coefficient(mean=1.3, amplitude=0.9)
    y, chi, a_star = hd.cell_problem(coef, 256)
    dy = y[1] - y[0]
    assert abs(chi.sum()) < 1e-12  # normalisation, eq. (6)
    a_mid = coef(y + 0.5 * dy)
    flux = a_mid * (1.0 - (np.roll(chi, -1) - chi) / dy)  # a (1 - chi'), constant in 1-D
    np.testing.assert_allclose(flux, a_star, rtol=1e-11)
    # chi' = 1 - a*/a: the analytic corrector of the sine medium, up to a constant
    chi_exact = np.concatenate([[0.0], np.cumsum(dy * (1.0 - a_star / a_mid))[:-1]])
    np.testing.assert_allclose(chi - chi.mean(), chi_exact - chi_exact.mean(), atol=1e-12)


def test_effective_coefficient_bad_input():
    with pytest.raises(ValueError, match="Coefficient"):
        hd.effective_coefficient(1.1)
    with pytest.raises(ValueError, match="n must be an integer >= 3"):
        hd.effective_coefficient(hd.Coefficient(), n=2)
    with pytest.raises(ValueError, match="> 0 everywhere"):
        hd.sine_effective(1.0, 1.0)


# ----------------------------------------------------------------------------- micro lattice
def test_micro_coefficients_sample_right_end_of_bond():
    coef = hd.Coefficient()
    eps, dx = 1e-5, 1e-7
    x = 0.3 + np.arange(250) * dx
    got = hd.micro_coefficients(x, eps, dx, coef)
    np.testing.assert_allclose(got, 1.1 + np.sin(2 * np.pi * (x + dx) / eps), rtol=0, atol=1e-9)
    # a table makes the placement visible: bond [x_i, x_i + dx] takes the cell of x_i + dx
    tab = hd.Coefficient(table=(1.0, 3.0))
    eps, dx = 1.0, 0.125
    x = np.arange(8) * dx
    np.testing.assert_array_equal(hd.micro_coefficients(x, eps, dx, tab), [1, 1, 1, 3, 3, 3, 3, 1])
    # the discrete medium's effective coefficient (harmonic mean over a period) is a*
    bonds = hd.micro_coefficients(np.arange(100) * 1e-7, 1e-5, 1e-7, coef)
    assert 1.0 / np.mean(1.0 / bonds) == pytest.approx(A_PAPER, rel=1e-13)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        hd.micro_coefficients(x, 0.0, dx, coef)


# ----------------------------------------------------------------------------- initial conditions
def test_fourier_initial_condition_draw_order():
    modes = hd.fourier_initial_condition(np.random.default_rng(11), 20)
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(modes.amplitudes, rng.uniform(-1.0, 1.0, 20))
    np.testing.assert_array_equal(modes.wavenumbers, rng.uniform(0.0, 4.0, 20))
    np.testing.assert_array_equal(modes.phases, rng.uniform(0.0, 2 * np.pi, 20))
    assert isinstance(modes.amplitudes, tuple) and len(modes.phases) == 20
    x = np.linspace(0, 1, 7)
    direct = sum(a * np.sin(2 * np.pi * l * x + p) for a, l, p in zip(modes.amplitudes, modes.wavenumbers, modes.phases))
    np.testing.assert_allclose(modes(x), direct, atol=1e-13)
    assert modes(x.reshape(7, 1)).shape == (7, 1)
    h = 1e-4
    fd = (modes(x[1:-1] + h) - 2 * modes(x[1:-1]) + modes(x[1:-1] - h)) / h**2
    np.testing.assert_allclose(modes.second_derivative(x[1:-1]), fd, rtol=1e-5, atol=1e-4)
    # arrays are accepted (as stored in datasets) and become tuples; equal objects hash equal
    again = hd.FourierModes(np.asarray(modes.amplitudes), np.asarray(modes.wavenumbers), np.asarray(modes.phases))
    assert again == modes and hash(again) == hash(modes)


def test_fourier_modes_bad_input():
    with pytest.raises(ValueError, match="equal lengths"):
        hd.FourierModes((1.0, 2.0), (1.0,), (0.0, 0.0))
    with pytest.raises(ValueError, match="at least one mode"):
        hd.FourierModes((), (), ())
    with pytest.raises(ValueError, match="finite"):
        hd.FourierModes((np.nan,), (1.0,), (0.0,))
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        hd.fourier_initial_condition(np.random.RandomState(0))
    with pytest.raises(ValueError, match="n_modes must be an integer >= 1"):
        hd.fourier_initial_condition(np.random.default_rng(0), 0)


# ----------------------------------------------------------------------------- exact homogenized solution
@pytest.fixture(scope="module")
def modes():
    return hd.fourier_initial_condition(np.random.default_rng(7), 20)


def test_homogenized_t0_and_boundary_values(modes):
    x = np.linspace(0, 1, 41)
    t = np.array([0.0, 1e-4, 0.01, 0.2, 1.0])
    u = hd.homogenized_solution(modes, A_PAPER, x, t)
    assert u.shape == (5, 41)
    np.testing.assert_array_equal(u[0], modes(x))
    np.testing.assert_allclose(u[:, 0], modes(0.0), atol=1e-12)
    np.testing.assert_allclose(u[:, -1], modes(1.0), atol=1e-12)
    # t -> infinity: the linear steady state
    late = hd.homogenized_solution(modes, A_PAPER, x, [20.0])[0]
    np.testing.assert_allclose(late, modes(0.0) + (modes(1.0) - modes(0.0)) * x, atol=1e-12)


@pytest.mark.parametrize(
    "l, phase, k",
    [(0.5, 0.0, 1), (1.0, 0.0, 2), (1.5, 0.0, 3), (2.0, np.pi, 4)],  # resonant 2 l = k: eigenfunctions
)
def test_homogenized_resonant_modes_are_exact_eigenfunctions(l, phase, k):
    u0 = hd.FourierModes((0.7,), (l,), (phase,))
    x = np.linspace(0, 1, 33)
    t = np.array([1e-5, 0.01, 0.1])
    expected = 0.7 * np.exp(-A_PAPER * (k * np.pi) ** 2 * t)[:, None] * np.sin(2 * np.pi * l * x + phase)
    np.testing.assert_allclose(hd.homogenized_solution(u0, A_PAPER, x, t), expected, atol=1e-12)
    ut = hd.homogenized_time_derivative(u0, A_PAPER, x, t)
    np.testing.assert_allclose(ut, -A_PAPER * (k * np.pi) ** 2 * expected, atol=1e-8)


def test_homogenized_near_resonance_is_continuous():
    x = np.linspace(0, 1, 17)
    t = [0.003]
    u_res = hd.homogenized_solution(hd.FourierModes((1.0,), (1.0,), (0.3,)), A_PAPER, x, t)
    u_near = hd.homogenized_solution(hd.FourierModes((1.0,), (1.0 + 1e-11,), (0.3,)), A_PAPER, x, t)
    np.testing.assert_allclose(u_near, u_res, atol=1e-9)


def test_constant_initial_condition_stays():
    u0 = hd.FourierModes((0.8,), (0.0,), (np.pi / 2,))  # u0 = 0.8
    x = np.linspace(0, 1, 9)
    np.testing.assert_allclose(hd.homogenized_solution(u0, A_PAPER, x, [0.01, 0.5]), 0.8, atol=1e-13)


def test_homogenized_matches_fine_finite_differences(modes):
    """At t = 1e-3 the series agrees with a fine-grid solve of u_t = a* u_xx (N = 8000, TR-BDF2).

    The central-difference error is a* t dx**2 max|u''''|/12 ~ 0.46 * 1e-3 * 1.6e-8 * 4e6/12 ~ 2e-9 per
    unit amplitude at smooth points, but the corners (u0'' != 0 at the Dirichlet ends) make
    the time stepping the larger error: observed 1.9e-7 (4x smaller per halving of dx).
    """
    N = 8000
    x = np.linspace(0, 1, N + 1)
    u_fd = hd.dirichlet_steps(modes(x), np.full(N, A_PAPER), 1.0 / N, 1e-3, 200, "trbdf2")
    u = hd.homogenized_solution(modes, A_PAPER, x, [1e-3])[0]
    np.testing.assert_allclose(u, u_fd, rtol=0, atol=1e-6)


@pytest.mark.parametrize("t", [1e-3, 0.05, 0.3])
def test_homogenized_satisfies_pde(modes, t):
    xs = np.linspace(0.05, 0.95, 19)
    h = 1e-4
    u = hd.homogenized_solution(modes, A_PAPER, np.concatenate([xs - h, xs, xs + h]), [t])[0].reshape(3, -1)
    uxx = (u[0] - 2 * u[1] + u[2]) / h**2
    ut = hd.homogenized_time_derivative(modes, A_PAPER, xs, [t])[0]
    scale = np.abs(ut).max()
    # O(h**2 u'''') + rounding 1e-15/h**2: ~5e-7 relative at t = 1e-3
    np.testing.assert_allclose(A_PAPER * uxx, ut, rtol=0, atol=2e-6 * scale)
    pair = hd.homogenized_solution(modes, A_PAPER, xs, [t - 1e-6, t + 1e-6])
    np.testing.assert_allclose((pair[1] - pair[0]) / 2e-6, ut, rtol=0, atol=1e-7 * scale)


def test_time_derivative_at_t0(modes):
    x = np.linspace(0, 1, 11)
    ut = hd.homogenized_time_derivative(modes, A_PAPER, x, [0.0, 1e-7])
    expected = A_PAPER * modes.second_derivative(x)
    np.testing.assert_allclose(ut[0, 1:-1], expected[1:-1], rtol=1e-14)
    assert ut[0, 0] == 0.0 and ut[0, -1] == 0.0
    # continuous from the right at interior points
    np.testing.assert_allclose(ut[1, 1:-1], expected[1:-1], rtol=0, atol=1e-4 * np.abs(expected).max())


def test_homogenized_bad_input(modes):
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        hd.homogenized_solution(modes, A_PAPER, [0.5, 1.2], [0.1])
    with pytest.raises(ValueError, match="t must be finite and >= 0"):
        hd.homogenized_solution(modes, A_PAPER, [0.5], [-0.1])
    with pytest.raises(ValueError, match="a_star must be a finite number > 0"):
        hd.homogenized_solution(modes, 0.0, [0.5], [0.1])
    with pytest.raises(ValueError, match="too small for the sine series"):
        hd.homogenized_solution(modes, A_PAPER, [0.5], [1e-14])
    with pytest.raises(ValueError, match="FourierModes"):
        hd.homogenized_time_derivative(np.sin, A_PAPER, [0.5], [0.1])


# ----------------------------------------------------------------------------- implicit stepping
def _dense_generator(bonds, dx):
    n = bonds.size + 1
    L = np.zeros((n, n))
    for i in range(1, n - 1):
        L[i, i - 1], L[i, i + 1] = bonds[i - 1], bonds[i]
        L[i, i] = -(bonds[i - 1] + bonds[i])
    return L / dx**2


@pytest.mark.parametrize("scheme, order", [("backward_euler", 1), ("bdf2", 2), ("trbdf2", 2)])
def test_dirichlet_steps_converge_to_matrix_exponential(scheme, order):
    rng = np.random.default_rng(3)
    n, dx, T = 40, 1.0 / 39, 0.02
    bonds = hd.Coefficient(mean=1.0, amplitude=0.7)(np.arange(n - 1) / 7.0)
    u0 = np.sin(3 * np.linspace(0, 1, n)) + 0.1 * rng.standard_normal(n)
    f = np.cos(np.linspace(0, 2, n))
    L = _dense_generator(bonds, dx)
    # exact: u(T) = e^{TL} u0 + int_0^T e^{sL} f ds, via the augmented exponential
    M = np.zeros((n + 1, n + 1))
    M[:n, :n], M[:n, n] = L, np.r_[0.0, f[1:-1], 0.0]
    exact = (expm(T * M) @ np.r_[u0, 1.0])[:n]
    errs = [np.abs(hd.dirichlet_steps(u0, bonds, dx, T, s, scheme, forcing=f) - exact).max() for s in (40, 80)]
    assert errs[1] < 0.6 * errs[0]
    assert errs[0] / errs[1] == pytest.approx(2.0**order, rel=0.25)
    u = hd.dirichlet_steps(u0, bonds, dx, T, 40, scheme, forcing=f)
    assert u[0] == u0[0] and u[-1] == u0[-1]  # frozen ends, bit for bit


@pytest.mark.parametrize("solver", hd.MICRO_SOLVERS)
@pytest.mark.parametrize("scheme", hd.MICRO_SCHEMES)
def test_stacked_segments_equal_banded_and_single(scheme, solver):
    rng = np.random.default_rng(4)
    S, n, dx = 3, 50, 1e-2
    bonds = rng.uniform(0.2, 2.0, (S, n - 1))
    u0 = rng.standard_normal((S, n))
    f = rng.standard_normal((S, n))
    stacked = hd.dirichlet_steps(u0, bonds, dx, 1e-3, 7, scheme, forcing=f, solver=solver)
    banded = hd.dirichlet_steps(u0, bonds, dx, 1e-3, 7, scheme, forcing=f, solver="banded")
    np.testing.assert_allclose(stacked, banded, rtol=0, atol=1e-12)
    for s in range(S):  # stacking does not couple the segments
        one = hd.dirichlet_steps(u0[s], bonds[s], dx, 1e-3, 7, scheme, forcing=f[s], solver=solver)
        np.testing.assert_allclose(stacked[s], one, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scheme", hd.MICRO_SCHEMES)
@pytest.mark.parametrize("S, n", [(1, 3), (1, 4), (2, 3), (4, 9), (9, 201)])
def test_numba_kernel_equals_lapack_path(scheme, S, n):
    """The compiled burst kernel reproduces the LAPACK ("ldl") stages to rounding, on every shape and step count."""
    rng = np.random.default_rng(S * 100 + n)
    bonds = rng.uniform(0.1, 2.1, (S, n - 1))
    u0 = rng.standard_normal((S, n))
    f = rng.standard_normal((S, n))
    dx, tau = 1.0 / n, 3e-3 / n
    new = hd.DirichletStepper(bonds, dx, tau, scheme)
    old = hd.DirichletStepper(bonds, dx, tau, scheme, solver="ldl")
    assert new.solver == "numba"
    for steps in (0, 1, 2, 5):
        for forcing in (None, f, f[0] if S > 1 else 2.5):  # full, broadcast row / scalar
            a = new.run(u0, steps, forcing)
            b = old.run(u0, steps, forcing)
            assert a.shape == (S, n)
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * max(1.0, np.abs(b).max()))
            np.testing.assert_array_equal(a[:, [0, -1]], u0[:, [0, -1]])  # frozen ends, bit for bit
    one = hd.DirichletStepper(bonds[0], dx, tau, scheme)  # a single segment keeps shape (n,)
    assert one.shape == (n,) and one.run(u0[0], 3, f[0]).shape == (n,)
    np.testing.assert_allclose(one.run(u0[0], 3, f[0]), new.run(u0, 3, f)[0], rtol=0, atol=1e-13)


def test_numba_kernel_small_steps_are_stiff_stable():
    """Paper-like stiffness (tau a/dx**2 ~ 1e7): no growth, the steady state is kept."""
    rng = np.random.default_rng(1)
    bonds = 1.1 + np.sin(2 * np.pi * rng.uniform(size=(3, 400)))
    u0 = np.full((3, 401), 2.5)
    for scheme in hd.MICRO_SCHEMES:
        u = hd.DirichletStepper(bonds, 1e-7, 1e-7, scheme).run(u0, 10)
        np.testing.assert_allclose(u, 2.5, rtol=0, atol=1e-9)


def test_stepper_run_out_and_inputs_untouched():
    rng = np.random.default_rng(7)
    bonds = rng.uniform(0.5, 1.5, (2, 20))
    u0 = rng.standard_normal((2, 21))
    f = rng.standard_normal((2, 21))
    u0_copy, f_copy = u0.copy(), f.copy()
    for solver in hd.MICRO_SOLVERS:
        st = hd.DirichletStepper(bonds, 0.05, 1e-3, "bdf2", solver)
        ref = st.run(u0, 4, f)
        out = np.empty((2, 21))
        assert st.run(u0, 4, f, out=out) is out
        np.testing.assert_array_equal(out, ref)
        u = u0.copy()
        assert st.run(u, 4, f, out=u) is u  # out may be u0 itself
        np.testing.assert_array_equal(u, ref)
        np.testing.assert_array_equal(st.run(u0, 4, f), ref)  # reused work arrays: same result
        np.testing.assert_array_equal(u0, u0_copy)
        np.testing.assert_array_equal(f, f_copy)
        for bad in (np.empty((2, 20)), np.empty((2, 21), np.float32), np.empty((21, 2)).T):
            with pytest.raises(ValueError, match="out must be a writeable C-contiguous float64"):
                st.run(u0, 1, out=bad)
        with pytest.raises(ValueError, match="u0 must be finite"):
            st.run(np.where(np.arange(21) == 5, np.nan, u0), 1)
        with pytest.raises(ValueError, match=r"u0 must have shape \(2, 21\)"):
            st.run(u0[:, :-1], 1)


def test_single_segment_bdf2_without_forcing_ldl_regression():
    """With one segment the interior slice of the rhs was contiguous, so the "ldl" solve wrote into
    u itself and BDF2's first step lost its previous state (fixed; all solvers now agree)."""
    rng = np.random.default_rng(0)
    bonds = rng.uniform(0.2, 2.0, 49)
    u0 = rng.standard_normal(50)
    results = [hd.dirichlet_steps(u0, bonds, 1e-2, 1e-3, 5, "bdf2", solver=s) for s in hd.MICRO_SOLVERS]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-12)


def test_stepper_threads_and_pickle():
    """Concurrent runs on one stepper never share work arrays; a pickled stepper (work arrays dropped) agrees."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    bonds = rng.uniform(0.2, 2.0, (4, 3000))
    st = hd.DirichletStepper(bonds, 1e-3, 1e-4, "trbdf2")
    starts = [rng.standard_normal((4, 3001)) for _ in range(8)]
    serial = [st.run(u, 6) for u in starts]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda u: st.run(u, 6), starts))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
    clone = pickle.loads(pickle.dumps(st))
    np.testing.assert_array_equal(clone.run(starts[0], 6), serial[0])


def test_dirichlet_steps_bad_input():
    with pytest.raises(ValueError, match="scheme must be one of"):
        hd.dirichlet_steps(np.zeros(5), np.ones(4), 0.1, 1.0, 2, "euler")
    with pytest.raises(ValueError, match="bonds must be finite and > 0"):
        hd.dirichlet_steps(np.zeros(5), -np.ones(4), 0.1, 1.0, 2)
    with pytest.raises(ValueError, match=r"bonds \(n - 1,\)"):
        hd.dirichlet_steps(np.zeros(5), np.ones(5), 0.1, 1.0, 2)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        hd.dirichlet_steps(np.zeros(5), np.ones(4), 0.1, 1.0, 0)
    with pytest.raises(ValueError, match="solver must be one of"):
        hd.dirichlet_steps(np.zeros(5), np.ones(4), 0.1, 1.0, 1, solver="lu")


# ----------------------------------------------------------------------------- full resolution
def test_full_resolution_converges_to_homogenized_at_rate_eps(modes):
    """Coarse averages of the detailed solution approach the homogenized one as O(eps).

    Windows of 10 periods average the corrector eps chi(x/eps) u_x out, so what remains
    at O(eps) is the Dirichlet boundary layer: the micro solution is pinned at the ends
    where the corrector eps chi u_x does not vanish, which shifts the effective boundary
    data by O(eps |u_x|) and spreads inward (errors concentrate near x = 0.1 and 0.9).
    Observed: max error / eps = 1.45 (eps = 1e-3) and 1.45 (eps = 2e-3).
    TR-BDF2 at dt = 2e-5 is converged in time to < 1e-5 here.
    """
    coef = hd.Coefficient()
    a_star = hd.effective_coefficient(coef)
    centres = np.linspace(0.1, 0.9, 9)
    xf = np.linspace(0, 1, 200_001)
    uh = hd.homogenized_solution(modes, a_star, xf, [0.01])[0]
    errs = {}
    for eps in (2e-3, 1e-3):
        dx = eps / 100
        x = np.arange(int(round(1 / dx)) + 1) * dx
        res = hd.full_resolution_solve(coef, eps, dx, modes(x), 0.01, 2e-5, scheme="trbdf2")
        assert res.u.shape == (2, x.size) and res.times.tolist() == [0.0, 0.01]
        assert res.work == x.size * 500
        got = hd.coarse_average(res.u[-1], x, centres, 10 * eps)
        ref = hd.coarse_average(uh, xf, centres, 10 * eps)
        errs[eps] = np.abs(got - ref).max()
    assert errs[1e-3] < 3 * 1e-3
    assert errs[2e-3] / errs[1e-3] == pytest.approx(2.0, rel=0.25)


def test_full_resolution_homogeneous_medium_is_plain_diffusion():
    coef = hd.Coefficient(table=(0.5,))
    dx = 1e-3
    x = np.arange(1001) * dx
    u0 = hd.FourierModes((1.0,), (0.5,), (0.0,))  # sin(pi x)
    res = hd.full_resolution_solve(coef, 0.01, dx, u0(x), 0.1, 1e-3, scheme="trbdf2", save_every=25)
    assert res.times.tolist() == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    lam = 0.5 * (2 / dx * np.sin(np.pi * dx / 2)) ** 2  # discrete eigenvalue
    np.testing.assert_allclose(res.u[-1], np.exp(-lam * 0.1) * np.sin(np.pi * x), atol=2e-6)


def test_full_resolution_bad_input():
    coef = hd.Coefficient()
    with pytest.raises(ValueError, match="1/dx must be an integer"):
        hd.full_resolution_solve(coef, 1e-2, 0.3, np.zeros(4), 0.1, 0.01)
    with pytest.raises(ValueError, match=r"u0_values must have shape \(11,\)"):
        hd.full_resolution_solve(coef, 1e-2, 0.1, np.zeros(10), 0.1, 0.01)
    with pytest.raises(ValueError, match="t_end/dt must be a positive integer"):
        hd.full_resolution_solve(coef, 1e-2, 0.1, np.zeros(11), 0.1, 0.03)
    with pytest.raises(ValueError, match="Coefficient"):
        hd.full_resolution_solve(None, 1e-2, 0.1, np.zeros(11), 0.1, 0.01)


# ----------------------------------------------------------------------------- coarse average
def test_coarse_average():
    x = np.linspace(0, 1, 1001)
    lin = 2.0 + 3.0 * x
    c = np.array([0.1, 0.5, 0.95])
    np.testing.assert_allclose(hd.coarse_average(lin, x, c, 0.0123), 2.0 + 3.0 * c, atol=1e-13)
    # smooth function: average of sin, trapezoid error O(dx**2)
    w = 0.05
    exact = (np.cos(c - w / 2) - np.cos(c + w / 2)) / w
    np.testing.assert_allclose(hd.coarse_average(np.sin(x), x, c, w), exact, atol=1e-7)
    # batched over leading axes
    batch = np.stack([lin, np.sin(x)])
    assert hd.coarse_average(batch, x, c, w).shape == (2, 3)
    with pytest.raises(ValueError, match="every window must lie inside"):
        hd.coarse_average(lin, x, [0.01], 0.05)
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        hd.coarse_average(lin, x, [0.5], 0.0)
