"""Tests of cgflow.micro.lattice2d: the 3-periodic lattice of seed 001 §5.2 and its homogenization."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import identity
from scipy.sparse.linalg import splu

from cgflow.micro import lattice2d as l2

#: REFERENCE §2 "2-D lattice with 3-periodic kappa": (A_xx, A_xy, A_yy) per convention.
REF_TENSOR = {
    "paper": (1.33993, 0.11047, 1.26456),
    "same-site": (1.33452, 0.04237, 1.24834),
}
#: REFERENCE §2: decay rates from a direct simulation (paper convention).
REF_RATES = {(1, 0): 1.33989, (0, 1): 1.26457, (1, 1): 2.82539, (1, -1): 2.38351}


# ----------------------------------------------------------------------------- the medium
@pytest.mark.parametrize("convention", l2.CONVENTIONS)
def test_tensor_matches_reference(convention):
    A = l2.homogenized_tensor(convention)
    np.testing.assert_allclose(A, REF_TENSOR[convention], rtol=0, atol=1e-4)


@pytest.mark.parametrize("convention", l2.CONVENTIONS)
def test_tensor_is_long_wave_limit_of_bloch_band(convention):
    # lambda_min(theta) = theta.A.theta + O(theta**4): an independent route to A
    kx, ky = l2.coefficient_fields(3, 3, convention)
    A = np.array(l2.homogenized_tensor(convention))
    A = np.array([[A[0], A[1]], [A[1], A[2]]])
    eps = 1e-3
    for direction in ([1, 0], [0, 1], [1, 1], [1, -1], [0.3, -0.8]):
        e = np.array(direction, dtype=float)
        lam = np.linalg.eigvalsh(l2.bloch_matrix(kx, ky, eps * e))[0]
        assert lam / eps**2 == pytest.approx(e @ A @ e, rel=1e-5)


def test_conventions_are_different_media():
    kx_p, ky_p = l2.coefficient_fields(6, 9, "paper")
    kx_s, ky_s = l2.coefficient_fields(6, 9, "same-site")
    np.testing.assert_array_equal(kx_p, kx_s)
    assert not np.array_equal(ky_p, ky_s)
    # layouts as documented (i = x index, j = y index)
    i, j = np.meshgrid(np.arange(6), np.arange(9), indexing="ij")
    np.testing.assert_array_equal(kx_p, l2.KAPPA_X[i % 3, j % 3])
    np.testing.assert_array_equal(ky_p, l2.KAPPA_Y[(i - 1) % 3, (j + 1) % 3])
    np.testing.assert_array_equal(ky_s, l2.KAPPA_Y[i % 3, j % 3])
    assert ky_p[0, 0] == l2.KAPPA_Y[2, 1]
    # different media: the cross terms differ by a factor ~2.6
    assert abs(l2.homogenized_tensor("paper")[1] - l2.homogenized_tensor("same-site")[1]) > 0.05


def test_bad_convention_and_sizes():
    with pytest.raises(ValueError, match="unknown convention"):
        l2.coefficient_fields(3, 3, "transposed")
    with pytest.raises(ValueError, match="unknown convention"):
        l2.homogenized_tensor("Paper")
    with pytest.raises(ValueError, match="unknown convention"):
        l2.lattice_decay_rate((1, 0), 30, "nope")
    with pytest.raises(ValueError, match="multiple of 3"):
        l2.coefficient_fields(10, 9)
    with pytest.raises(ValueError, match="integers"):
        l2.coefficients_at(np.array([0.5]), np.array([1]))


# ----------------------------------------------------------------------------- the lattice dynamics
def test_lattice_rhs_equals_sparse_operator():
    rng = np.random.default_rng(0)
    kx, ky = l2.coefficient_fields(12, 15, "paper")
    h = 2 * np.pi / 15
    u = rng.normal(size=(12, 15))
    L = l2.lattice_operator(kx, ky, h)
    rhs = l2.lattice_rhs(u, kx, ky, h)
    np.testing.assert_allclose(L @ u.ravel(), rhs.ravel(), rtol=0, atol=1e-12 * np.abs(rhs).max())
    # batch axes, symmetry, zero row sums, mass conservation
    batch = rng.normal(size=(12, 15, 4))
    np.testing.assert_allclose(
        l2.lattice_rhs(batch, kx, ky, h)[..., 2], l2.lattice_rhs(batch[..., 2], kx, ky, h), rtol=1e-14
    )
    assert abs(L - L.T).max() == 0.0
    np.testing.assert_allclose(L @ np.ones(L.shape[0]), 0.0, atol=1e-10)
    assert abs(rhs.sum()) < 1e-12 * np.abs(rhs).sum()
    # eq. (25) written out at one site
    i, j = 4, 7
    expected = (
        kx[i, j] * (u[i + 1, j] - u[i, j])
        + kx[i - 1, j] * (u[i - 1, j] - u[i, j])
        + ky[i, j] * (u[i, j + 1] - u[i, j])
        + ky[i, j - 1] * (u[i, j - 1] - u[i, j])
    ) / h**2
    assert rhs[i, j] == pytest.approx(expected, rel=1e-13)


def test_bloch_spectrum_is_full_lattice_spectrum():
    n = 12  # 4 cells per side
    kx, ky = l2.coefficient_fields(n, n, "paper")
    h = 2 * np.pi / n
    full = np.linalg.eigvalsh(-l2.lattice_operator(kx, ky, h).toarray())
    bloch = np.concatenate(
        [
            np.linalg.eigvalsh(l2.bloch_matrix(kx[:3, :3], ky[:3, :3], (h * a, h * b))) / h**2
            for a in range(n // 3)
            for b in range(n // 3)
        ]
    )
    np.testing.assert_allclose(np.sort(bloch), full, rtol=0, atol=1e-9 * full.max())


def test_lattice_decay_rates_reference_and_convergence():
    A = l2.homogenized_tensor("paper")
    for mode, ref in REF_RATES.items():
        rate = l2.lattice_decay_rate(mode, 480, "paper")
        assert rate == pytest.approx(ref, abs=1e-4)
        # O(h**2) approach to k.A.k from below: halving h divides the gap by ~4
        gap_480 = l2.homogenized_decay_rate(mode, A) - rate
        gap_240 = l2.homogenized_decay_rate(mode, A) - l2.lattice_decay_rate(mode, 240, "paper")
        assert 0 < gap_480 < 1e-4
        assert gap_240 / gap_480 == pytest.approx(4.0, rel=0.02)
    # the full operator agrees: inverse iteration from a sin x field converges to its rate
    n = 48
    kx, ky = l2.coefficient_fields(n, n, "paper")
    h = 2 * np.pi / n
    L = l2.lattice_operator(kx, ky, h).tocsc()
    solve = splu(identity(n * n, format="csc") - L).solve
    x = np.arange(n) * h
    v = np.repeat(np.sin(x)[:, None], n, axis=1).ravel()
    for _ in range(8):
        v = solve(v)
        v /= np.linalg.norm(v)
    assert -v @ (L @ v) == pytest.approx(l2.lattice_decay_rate((1, 0), n, "paper"), rel=1e-10)
    assert l2.lattice_decay_rate((0, 0), n) == 0.0
    with pytest.raises(ValueError, match="not resolved"):
        l2.lattice_decay_rate((40, 0), 48)


# ----------------------------------------------------------------------------- initial condition and exact solution
def test_initial_condition_draw_order_and_values():
    m = l2.fourier_initial_condition_2d(np.random.default_rng(7))
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(m.amplitudes, rng.uniform(-1, 1, 10))
    np.testing.assert_array_equal(m.wavenumbers_x, rng.integers(1, 6, 10))
    np.testing.assert_array_equal(m.wavenumbers_y, rng.integers(1, 6, 10))
    np.testing.assert_array_equal(m.phases_x, rng.uniform(0, 2 * np.pi, 10))
    np.testing.assert_array_equal(m.phases_y, rng.uniform(0, 2 * np.pi, 10))
    assert l2.fourier_initial_condition_2d(7) == m  # an int seeds default_rng
    assert hash(m) == hash(l2.fourier_initial_condition_2d(7))
    many = l2.fourier_initial_condition_2d(np.random.default_rng(1), n_modes=2000)
    assert set(many.wavenumbers_x) == {1, 2, 3, 4, 5} == set(many.wavenumbers_y)
    assert min(many.amplitudes) >= -1 and max(many.amplitudes) <= 1
    assert min(many.phases_x) >= 0 and max(many.phases_y) <= 2 * np.pi
    # seed eq. (28), and the plane-wave form used by the exact solution
    x, y = np.meshgrid(np.linspace(0, 6, 7), np.linspace(0, 5, 4), indexing="ij")
    explicit = sum(
        a * np.sin(lx * x + px) * np.sin(ly * y + py)
        for a, lx, ly, px, py in zip(m.amplitudes, m.wavenumbers_x, m.wavenumbers_y, m.phases_x, m.phases_y)
    )
    np.testing.assert_allclose(m(x, y), explicit, rtol=0, atol=1e-13)
    k, c, psi = m.plane_waves()
    waves = np.sum(c * np.cos(k[:, 0] * x[..., None] + k[:, 1] * y[..., None] + psi), axis=-1)
    np.testing.assert_allclose(waves, explicit, rtol=0, atol=1e-13)
    with pytest.raises(AttributeError):
        m.amplitudes = (0.0,) * 10


def test_homogenized_solution_satisfies_pde():
    modes = l2.fourier_initial_condition_2d(np.random.default_rng(11))
    A = l2.homogenized_tensor("paper")
    n = 32  # resolves wavenumbers <= 10 exactly, so FFT derivatives are exact
    x = np.arange(n) * 2 * np.pi / n
    t = np.array([0.0, 0.02, 0.3])
    u = l2.homogenized_solution_2d(modes, A, x, x, t)
    u_t = l2.homogenized_time_derivative_2d(modes, A, x, x, t)
    assert u.shape == u_t.shape == (3, n, n)
    np.testing.assert_allclose(u[0], modes(x[:, None], x[None, :]), rtol=0, atol=1e-13)
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    symbol = -(A[0] * kx**2 + 2 * A[1] * kx * ky + A[2] * ky**2)
    pde_rhs = np.fft.ifft2(symbol * np.fft.fft2(u, axes=(1, 2)), axes=(1, 2)).real
    np.testing.assert_allclose(u_t, pde_rhs, rtol=0, atol=1e-10 * np.abs(u_t).max())
    # u_t is the time derivative of u
    dt = 1e-5
    up = l2.homogenized_solution_2d(modes, A, x, x, t + dt)
    um = l2.homogenized_solution_2d(modes, A, x, x, t + 2 * dt)
    forward = (-3 * u + 4 * up - um) / (2 * dt)
    np.testing.assert_allclose(forward, u_t, rtol=0, atol=1e-6 * np.abs(u_t).max())
    # a single mode with the cross term: sin x sin y = [cos(x - y) - cos(x + y)]/2
    one = l2.FourierModes2D((1.0,), (1,), (1,), (0.0,), (0.0,))
    u1 = l2.homogenized_solution_2d(one, A, [0.3], [1.1], [0.7])
    slow, fast = A[0] - 2 * A[1] + A[2], A[0] + 2 * A[1] + A[2]
    expected = 0.5 * (np.exp(-slow * 0.7) * np.cos(0.3 - 1.1) - np.exp(-fast * 0.7) * np.cos(0.3 + 1.1))
    assert u1[0, 0, 0] == pytest.approx(expected, rel=1e-14)


def test_homogenized_solution_bad_input():
    modes = l2.fourier_initial_condition_2d(0, n_modes=2)
    with pytest.raises(ValueError, match="positive definite"):
        l2.homogenized_solution_2d(modes, (1.0, 2.0, 1.0), [0.0], [0.0], [0.0])
    with pytest.raises(ValueError, match=">= 0"):
        l2.homogenized_solution_2d(modes, (1.0, 0.0, 1.0), [0.0], [0.0], [-1.0])
    with pytest.raises(ValueError, match="integers"):
        l2.FourierModes2D((1.0,), (1.5,), (1,), (0.0,), (0.0,))
    with pytest.raises(ValueError, match="same, non-zero length"):
        l2.FourierModes2D((1.0, 2.0), (1,), (1,), (0.0,), (0.0,))
    with pytest.raises(ValueError, match="FourierModes2D"):
        l2.homogenized_time_derivative_2d(lambda x, y: x, (1.0, 0.0, 1.0), [0.0], [0.0], [0.0])
