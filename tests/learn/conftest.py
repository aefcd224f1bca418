"""Synthetic data for cgflow.learn.

1-D: the exact semi-discrete homogenized heat equation dU/dt = a* D2 U on n_x nodes
of [0, 1] with fixed (Dirichlet) end values, D2 the three-point discrete Laplacian,
a* = sqrt(1.1**2 - 1) (seed eq. (22); REFERENCE §2), initial conditions of the form
of seed eq. (23).

2-D: the exact solution of u_t = A_xx u_xx + 2 A_xy u_xy + A_yy u_yy on [0, 2 pi)^2
with the tensor of REFERENCE §2, initial conditions of the form of seed eq. (28),
sampled on a uniform grid (trigonometric polynomials, so spectral derivatives are exact).
"""

from __future__ import annotations

import numpy as np
import pytest

#: Homogenized coefficient of a(y) = 1.1 + sin(2 pi y) (REFERENCE §2).
A_STAR = 0.4582575695
#: Homogenized tensor of the 2-D lattice the seed's code simulates (REFERENCE §2).
A_TENSOR = np.array([[1.33993, 0.11047], [0.11047, 1.26456]])


def laplacian_matrix(n_x: int) -> np.ndarray:
    """D2 on the n_x - 2 interior nodes of [0, 1] (end values enter through the source)."""
    dx = 1.0 / (n_x - 1)
    m = n_x - 2
    return (np.diag(np.full(m - 1, 1.0), -1) - 2.0 * np.eye(m) + np.diag(np.full(m - 1, 1.0), 1)) / dx**2


def initial_condition(rng: np.random.Generator, x: np.ndarray, terms: int = 20) -> np.ndarray:
    """Seed eq. (23): sum_j a_j sin(2 pi l_j x + phi_j), a ~ U[-1, 1], l ~ U[0, 4], phi ~ U[0, 2 pi]."""
    a = rng.uniform(-1.0, 1.0, terms)
    l = rng.uniform(0.0, 4.0, terms)
    phi = rng.uniform(0.0, 2.0 * np.pi, terms)
    return (a[:, None] * np.sin(2.0 * np.pi * l[:, None] * x + phi[:, None])).sum(axis=0)


def exact_trajectory(u0: np.ndarray, times: np.ndarray, a: float = A_STAR) -> np.ndarray:
    """Exact solution of dU/dt = a D2 U with the ends of u0 held fixed, shape (n_times, n_x)."""
    n_x = u0.size
    dx = 1.0 / (n_x - 1)
    L = a * laplacian_matrix(n_x)
    src = np.zeros(n_x - 2)
    src[0], src[-1] = a * u0[0] / dx**2, a * u0[-1] / dx**2
    steady = -np.linalg.solve(L, src)
    lam, V = np.linalg.eigh(L)
    coef = V.T @ (u0[1:-1] - steady)
    U = np.empty((times.size, n_x))
    U[:, 0], U[:, -1] = u0[0], u0[-1]
    U[:, 1:-1] = steady + (np.exp(np.outer(times, lam)) * coef) @ V.T
    return U


def exact_rhs(U: np.ndarray, a: float = A_STAR) -> np.ndarray:
    """a* D2 U at the interior nodes, 0 at the (fixed) ends."""
    dx = 1.0 / (U.shape[-1] - 1)
    F = np.zeros_like(U)
    F[..., 1:-1] = a * (U[..., 2:] - 2.0 * U[..., 1:-1] + U[..., :-2]) / dx**2
    return F


def heat_data(n_traj: int, n_snap: int, *, seed: int, n_x: int = 11, dt: float = 1e-3, a: float = A_STAR):
    """(U, dUdt), each (n_traj * n_snap, n_x): n_traj trajectories sampled every dt from t = 0."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n_x)
    times = dt * np.arange(n_snap)
    U = np.concatenate([exact_trajectory(initial_condition(rng, x), times, a) for _ in range(n_traj)])
    return U, exact_rhs(U, a)


@pytest.fixture(scope="session")
def heat_train():
    """16 trajectories x 63 snapshots (dt = 1.6e-2, t in [0, 1)) on 11 nodes: 9,072 samples.

    As many samples as 4 trajectories x 250 snapshots, but more initial conditions:
    with few trajectories the networks fit the training set to 1e-4 and still
    generalise poorly to unseen ones (held-out rMSE up to ~2e-2), because late
    snapshots of one trajectory add little new information.
    """
    return heat_data(16, 63, seed=1, dt=1.6e-2)


@pytest.fixture(scope="session")
def heat_test():
    """2 unseen trajectories (the paper's validation setting), same sampling."""
    return heat_data(2, 250, seed=2, dt=4e-3)


def tensor_data(n_traj: int, times, *, seed: int, n: int = 16, terms: int = 10, A=A_TENSOR):
    """(U, dUdt), each (n_traj * len(times), n, n): exact 2-D anisotropic diffusion.

    Seed eq. (28): u0 = sum_j a_j sin(lx_j x + px_j) sin(ly_j y + py_j), a ~ U[-1, 1],
    l ~ {1..5}, phases ~ U[0, 2 pi]. Each product is (cos(k- . x + .) - cos(k+ . x + .))/2
    with k+- = (lx, +-ly), and cos(k . x + phi) decays at the rate k^T A k.
    """
    rng = np.random.default_rng(seed)
    times = np.asarray(times, dtype=float)
    x = np.arange(n) * 2.0 * np.pi / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    Us, Fs = [], []
    for _ in range(n_traj):
        a = rng.uniform(-1.0, 1.0, terms)
        lx, ly = rng.integers(1, 6, size=(2, terms))
        px, py = rng.uniform(0.0, 2.0 * np.pi, size=(2, terms))
        U = np.zeros((times.size, n, n))
        F = np.zeros_like(U)
        for sign, ky, ph in ((1.0, -ly, px - py), (-1.0, ly, px + py)):
            rate = A[0, 0] * lx**2 + 2 * A[0, 1] * lx * ky + A[1, 1] * ky**2
            modes = np.cos(lx[:, None, None] * X + ky[:, None, None] * Y + ph[:, None, None])
            amp = 0.5 * sign * a * np.exp(-np.outer(times, rate))
            U += np.einsum("tj,jxy->txy", amp, modes)
            F -= np.einsum("tj,jxy->txy", amp * rate, modes)
        Us.append(U)
        Fs.append(F)
    return np.concatenate(Us), np.concatenate(Fs)


#: Epochs for the 9,072-sample training set: ~1 s per network here, held-out rMSE ~1e-3.
EPOCHS = 60


@pytest.fixture(scope="session")
def networks(heat_train):
    """Both networks with the paper's settings, trained once per session on ``heat_train``."""
    from cgflow.learn import PointwiseNetwork, StencilNetwork

    U, F = heat_train
    return {
        "pointwise": PointwiseNetwork(max_iter=EPOCHS, random_state=0).fit(U, F),
        "stencil": StencilNetwork(max_iter=EPOCHS, random_state=0).fit(U, F),
    }
