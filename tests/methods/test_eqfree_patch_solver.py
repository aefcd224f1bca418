"""The 1-D eqfree micro-model contract: patch dynamics with another detailed solver (issue 11, item 1).

A user's solver only advances the lifted values of every patch over a burst with the
patch ends held (:class:`cgflow.methods.eqfree.patch_dynamics.PatchSolver`); lifting,
restriction, eq. (11), projective steps and the buffer self-check stay the scheme's.
Here the user solver is an independent Crank-Nicolson discretisation of the same
u_t = (a(x/eps) u_x)_x (scipy's banded solver, none of cgflow's kernels), so the
patch estimates must agree with the built-in TR-BDF2 kernel to within the two
schemes' time-discretisation errors, and both with a* D2 U.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.linalg import solve_banded

from cgflow.methods.eqfree.patch_dynamics import PatchDynamics, check_buffer, select_buffer
from cgflow.micro.heterodiffusion import Coefficient, effective_coefficient, micro_coefficients


@dataclasses.dataclass(frozen=True)
class CrankNicolson:
    """u_t = (a(x/eps) u_x)_x - decay u on each patch, Crank-Nicolson steps, patch ends held."""

    coefficient: Coefficient
    eps: float
    dx: float
    steps: int = 64  # Crank-Nicolson damps the lift's stiff micro-scale modes poorly: 16 steps are 4e-4 off, 64 are 4e-6
    decay: float = 0.0

    def advance(self, u, x, duration):
        P, n = u.shape
        a = micro_coefficients(x[:, :-1], self.eps, self.dx, self.coefficient)  # bond m joins nodes m, m+1
        tau, h2 = duration / self.steps, self.dx**2
        lo, up = a[:, :-1] / h2, a[:, 1:] / h2  # interior node m: coefficients of u_{m-1} and u_{m+1}
        diag = -(lo + up) - self.decay
        # the held ends enter the interior system as known values (never as unknowns of the solve)
        inner = np.zeros((P, n - 2))
        inner[:, 0], inner[:, -1] = lo[:, 0] * u[:, 0], up[:, -1] * u[:, -1]
        lo_in, up_in = lo.copy(), up.copy()
        lo_in[:, 0] = up_in[:, -1] = 0.0  # no coupling across the ends (or between patches)
        ab = np.zeros((3, P * (n - 2)))
        ab[0, 1:] = -0.5 * tau * up_in.ravel()[:-1]
        ab[1] = 1.0 - 0.5 * tau * diag.ravel()
        ab[2, :-1] = -0.5 * tau * lo_in.ravel()[1:]
        v = u[:, 1:-1].ravel().copy()
        for _ in range(self.steps):
            Lv = diag.ravel() * v + inner.ravel()
            Lv[1:] += lo_in.ravel()[1:] * v[:-1]
            Lv[:-1] += up_in.ravel()[:-1] * v[1:]
            v = solve_banded((1, 1), ab, v + 0.5 * tau * Lv + 0.5 * tau * inner.ravel())
        out = u.copy()
        out[:, 1:-1] = v.reshape(P, n - 2)
        return out


def quick_scheme(**kw) -> PatchDynamics:
    """The quick workflow's geometry (eps = 1e-4, dx = 1e-6, its auto buffer 1.16e-2)."""
    return PatchDynamics(eps=1e-4, micro_dx=1e-6, tooth=1e-4, buffer=1.16e-2, burst=1e-6, substeps=8, **kw)


def test_a_user_solver_gives_the_same_patch_estimate():
    built_in = quick_scheme()
    user = quick_scheme(burst_solver=CrankNicolson(built_in.coefficient, 1e-4, 1e-6))
    x = built_in.x
    a_star = effective_coefficient(built_in.coefficient)
    for U in (x**2, np.sin(np.pi * x) + 0.3 * x):
        F_built_in, F_user = built_in.time_derivative(U)[0], user.time_derivative(U)[0]
        scale = np.abs(F_built_in[1:-1]).max()
        # two second-order time discretisations of one burst: ~1e-5 apart, far below the buffer tolerance
        assert np.abs(F_user - F_built_in)[1:-1].max() < 1e-4 * scale
    F = user.time_derivative(x**2)[0][1:-1]
    assert np.abs(F / (2 * a_star) - 1).max() < 2e-3  # a* D2 U, D2 x**2 = 2 exactly


def test_the_buffer_self_check_runs_on_the_user_solver():
    solver = CrankNicolson(Coefficient(), 1e-4, 1e-6)
    user, built_in = quick_scheme(burst_solver=solver), quick_scheme()
    chosen = select_buffer(dataclasses.replace(user, buffer=2e-4), warn=False)
    assert chosen.buffer == select_buffer(dataclasses.replace(built_in, buffer=2e-4), warn=False).buffer
    assert chosen.within_tolerance
    # at a narrow width the buffer error is large (percents) and the same for both solvers
    narrow_user = check_buffer(dataclasses.replace(user, buffer=4e-3), warn=False)
    narrow_built_in = check_buffer(dataclasses.replace(built_in, buffer=4e-3), warn=False)
    assert narrow_user.error > 1e-3 and not narrow_user.within_tolerance
    assert narrow_user.error == pytest.approx(narrow_built_in.error, rel=0.01)


def test_a_different_detailed_model_changes_the_estimate_by_its_physics():
    """u_t = (a u_x)_x - k u: the patch estimate gains -k U_i exactly (to the burst's time discretisation)."""
    k = 50.0
    base = quick_scheme(burst_solver=CrankNicolson(Coefficient(), 1e-4, 1e-6))
    decay = quick_scheme(burst_solver=CrankNicolson(Coefficient(), 1e-4, 1e-6, decay=k))
    x = base.x
    U = np.sin(np.pi * x) + 0.3 * x
    diff = decay.time_derivative(U)[0] - base.time_derivative(U)[0]
    np.testing.assert_allclose(diff[1:-1], -k * U[1:-1], rtol=1e-3)


class _MovesTheEnds(CrankNicolson):
    def advance(self, u, x, duration):
        return u + 1.0


def test_the_contract_is_enforced():
    with pytest.raises(ValueError, match="burst_solver must have an advance"):
        quick_scheme(burst_solver=object())
    bad = quick_scheme(burst_solver=_MovesTheEnds(Coefficient(), 1e-4, 1e-6))
    with pytest.raises(ValueError, match="must hold the first and last value of every patch"):
        bad.time_derivative(bad.x**2)
