"""Tests of cgflow.learn.rollout: BDF rollouts of learned models, implied coefficients."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from cgflow.learn import LinearBaseline, effective_coefficient, effective_tensor, relative_mse, rollout

from .conftest import A_STAR, A_TENSOR, exact_trajectory, initial_condition, laplacian_matrix, tensor_data


@pytest.fixture(scope="module")
def linear_1d(heat_train):
    return LinearBaseline().fit(*heat_train)


def expm_solution(u0: np.ndarray, times: np.ndarray, a: float) -> np.ndarray:
    """dU/dt = a D2 U, ends fixed: the augmented linear system d/dt [u; 1] = [[a D2, s], [0, 0]] [u; 1]."""
    n = u0.size - 2
    dx = 1.0 / (u0.size - 1)
    M = np.zeros((n + 1, n + 1))
    M[:n, :n] = a * laplacian_matrix(u0.size)
    M[0, n], M[n - 1, n] = a * u0[0] / dx**2, a * u0[-1] / dx**2
    z0 = np.append(u0[1:-1], 1.0)
    out = np.tile(u0, (times.size, 1))
    out[:, 1:-1] = np.stack([expm(M * t) @ z0 for t in times])[:, :n]
    return out


def test_linear_baseline_rollout_matches_expm(linear_1d):
    u0 = initial_condition(np.random.default_rng(21), np.linspace(0.0, 1.0, 11))
    times = np.linspace(0.0, 0.5, 11)
    traj = rollout(linear_1d, u0, times, rtol=1e-10, atol=1e-12)
    ref = expm_solution(u0, times, A_STAR)
    assert traj.shape == (11, 11)
    np.testing.assert_array_equal(traj[0], u0)
    np.testing.assert_array_equal(traj[:, [0, -1]], np.tile(u0[[0, -1]], (11, 1)))
    np.testing.assert_allclose(traj, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ref, exact_trajectory(u0, times), rtol=0, atol=1e-10)  # two oracles agree


def test_effective_coefficient_of_exact_model_is_a_star(linear_1d, heat_test):
    for mode in (1, 2, 5):
        assert abs(effective_coefficient(linear_1d, mode=mode) - A_STAR) < 1e-8
    assert abs(effective_coefficient(linear_1d, amplitude=1e-3, base=heat_test[0][7]) - A_STAR) < 1e-8
    assert abs(effective_coefficient(linear_1d, heat_test[0]) - A_STAR) < 1e-8
    # the continuum ratio -F/(pi^2 U) is off by the discretisation: a* lambda/pi^2, 0.8% low at dx = 0.1
    x = np.linspace(0.0, 1.0, 11)
    F = linear_1d.predict(np.sin(np.pi * x))[1:-1]
    continuum = np.mean(-F / (np.pi**2 * np.sin(np.pi * x[1:-1])))
    lam = 4.0 / 0.1**2 * np.sin(np.pi * 0.1 / 2) ** 2
    assert continuum == pytest.approx(A_STAR * lam / np.pi**2, rel=1e-8)
    assert abs(continuum / A_STAR - 1.0) > 5e-3


@pytest.mark.parametrize("name", ["pointwise", "stencil"])
def test_network_rollout_and_coefficient(networks, name):
    model = networks[name]
    u0 = initial_condition(np.random.default_rng(33), np.linspace(0.0, 1.0, 11))
    times = np.linspace(0.0, 1.0, 51)
    traj = rollout(model, u0, times)
    ref = exact_trajectory(u0, times)
    assert relative_mse(traj, ref) < 1e-2
    assert abs(effective_coefficient(model) / A_STAR - 1.0) < 0.1


def test_two_dimensional_rollout_and_tensor():
    times = np.linspace(0.0, 0.4, 5)
    U, F = tensor_data(4, times, seed=8)
    model = LinearBaseline().fit(U, F)
    np.testing.assert_allclose(effective_tensor(model), A_TENSOR, rtol=0, atol=1e-8)
    traj = rollout(model, U[0], times, rtol=1e-10, atol=1e-12)
    assert traj.shape == (5, 16, 16)
    np.testing.assert_allclose(traj, U[:5], rtol=0, atol=1e-6)


def test_periodic_1d_effective_coefficient():
    n, a = 20, 0.7
    dx = 1.0 / n
    x = np.arange(n) * dx
    rng = np.random.default_rng(2)
    U = sum(rng.normal(size=(30, 1)) * np.cos(2 * np.pi * k * x + k) for k in (1, 2, 4))
    F = a * (np.roll(U, 1, axis=1) - 2 * U + np.roll(U, -1, axis=1)) / dx**2
    model = LinearBaseline(boundary="periodic").fit(U, F)
    assert abs(effective_coefficient(model, mode=3) - a) < 1e-9
    times = np.array([0.0, 0.01, 0.05])
    traj = rollout(model, U[0], times, rtol=1e-10, atol=1e-12)
    D2 = (np.roll(np.eye(n), 1, axis=1) - 2 * np.eye(n) + np.roll(np.eye(n), -1, axis=1)) / dx**2
    np.testing.assert_allclose(traj, [expm(a * D2 * t) @ U[0] for t in times], rtol=0, atol=1e-6)


def test_rollout_and_coefficient_errors(linear_1d):
    u0 = np.zeros(11)
    with pytest.raises(ValueError, match=r"U0 must be one snapshot of the fitted grid, shape \(11,\)"):
        rollout(linear_1d, np.zeros(9), [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        rollout(linear_1d, u0, [0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="does not match the model's 'dirichlet'"):
        rollout(linear_1d, u0, [0.0, 1.0], boundary="periodic")
    with pytest.raises(ValueError, match="not fitted"):
        rollout(LinearBaseline(), u0, [0.0, 1.0])
    np.testing.assert_array_equal(rollout(linear_1d, u0 + 1.0, [0.3]), (u0 + 1.0)[None])
    with pytest.raises(ValueError, match="mode 10 is not resolved on 11 dirichlet nodes"):
        effective_coefficient(linear_1d, mode=10)
    with pytest.raises(ValueError, match="amplitude must be"):
        effective_coefficient(linear_1d, amplitude=0.0)
    with pytest.raises(ValueError, match="use effective_coefficient for 1-D"):
        effective_tensor(linear_1d)
    model_2d = LinearBaseline().fit(*tensor_data(1, [0.0, 0.1], seed=0))
    with pytest.raises(ValueError, match="use effective_tensor for 2-D"):
        effective_coefficient(model_2d)
    with pytest.raises(ValueError, match="do not determine"):
        effective_tensor(model_2d, modes=((1, 0), (2, 0), (3, 0)))
    with pytest.raises(ValueError, match="not all resolved"):
        effective_tensor(model_2d, modes=((1, 0), (0, 1), (8, 1)))
