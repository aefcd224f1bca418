"""The 2-D eqfree micro-model contract: the gap-tooth scheme with another detailed model (issue 11, item 1).

A user's model gives the time derivative of every patch's interior from the patch
fields with the coupled edge values (:class:`cgflow.methods.eqfree.gap_tooth.PatchRHS`);
the coupling, restriction and integration stay the scheme's. The user model here is
the lattice of seed eq. (25) written independently (numpy, coefficients from
:func:`cgflow.micro.lattice2d.coefficients_at` at the absolute lattice sites), with an
optional decay -k u: on the periodic domain the decay commutes with everything, so
its solution is exactly e^{-kt} times the built-in scheme's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cgflow.methods.eqfree.gap_tooth import GapTooth2D
from cgflow.micro import lattice2d


@dataclasses.dataclass(frozen=True)
class LatticeWithDecay:
    """div(kappa grad u) on the lattice of spacing h (seed eq. (25)) minus k u, per patch."""

    lattice: int
    cell_offset: tuple = (0, 2)
    convention: str = "paper"
    decay: float = 0.0

    def rhs(self, full, x, y):
        N, _, p, _ = full.shape
        h = 2 * np.pi / self.lattice
        # absolute lattice indices of the patch points: patch corner l = 0 carries cell_offset (mod 3)
        i = np.arange(p)[None, :] + self.cell_offset[0]
        j = np.arange(p)[None, :] + self.cell_offset[1]
        kx, _ = lattice2d.coefficients_at(i[0, :-1, None], j[0, None, 1:-1], self.convention)  # bonds (l, l+1) x rows
        _, ky = lattice2d.coefficients_at(i[0, 1:-1, None], j[0, None, :-1], self.convention)
        fx = kx * (full[:, :, 1:, 1:-1] - full[:, :, :-1, 1:-1])
        fy = ky * (full[:, :, 1:-1, 1:] - full[:, :, 1:-1, :-1])
        div = (fx[:, :, 1:] - fx[:, :, :-1] + fy[:, :, :, 1:] - fy[:, :, :, :-1]) / h**2
        return div - self.decay * full[:, :, 1:-1, 1:-1]


@pytest.fixture(scope="module")
def small():
    return dict(patches=8, h=2 * np.pi / 96, patch_points=5)


def test_a_user_lattice_gives_the_built_in_scheme(small):
    built_in = GapTooth2D(**small)
    user = GapTooth2D(**small, patch_solver=LatticeWithDecay(96))
    state = np.random.default_rng(0).standard_normal(built_in.size)
    np.testing.assert_allclose(user.rhs(0.0, state), built_in.rhs(0.0, state), rtol=1e-12, atol=1e-9)
    modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(1), 4, max_wavenumber=2)
    times = np.array([0.0, 0.02, 0.1])
    exact = built_in.integrate(modes, times, method="exact")
    bdf = user.integrate(modes, times, method="bdf", rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bdf.U, exact.U, atol=1e-7)
    np.testing.assert_allclose(bdf.dUdt, exact.dUdt, atol=1e-5)


def test_a_different_model_through_the_same_scheme(small):
    k = 3.0
    exact = GapTooth2D(**small).integrate(lattice2d.fourier_initial_condition_2d(np.random.default_rng(2), 4, max_wavenumber=2),
                                          np.array([0.0, 0.05, 0.2]), method="exact")
    decay = GapTooth2D(**small, patch_solver=LatticeWithDecay(96, decay=k))
    modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(2), 4, max_wavenumber=2)
    sol = decay.integrate(modes, np.array([0.0, 0.05, 0.2]), method="bdf", rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.U, np.exp(-k * sol.times)[:, None, None] * exact.U, atol=1e-7)
    euler = decay.integrate(modes, np.array([0.0, 0.05]), method="euler", step=2e-5)
    np.testing.assert_allclose(euler.U[-1], sol.U[1], atol=2e-3)  # first order


def test_the_2d_contract_is_enforced(small):
    with pytest.raises(ValueError, match="patch_solver must have an rhs"):
        GapTooth2D(**small, patch_solver=object())
    user = GapTooth2D(**small, patch_solver=LatticeWithDecay(96))
    modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(3), 2, max_wavenumber=2)
    with pytest.raises(ValueError, match="specific to the built-in lattice"):
        user.integrate(modes, [0.0, 0.1], method="exact")
    with pytest.raises(ValueError, match="needs an explicit step"):
        user.integrate(modes, [0.0, 0.1], method="euler")

    @dataclasses.dataclass(frozen=True)
    class WrongShape:
        def rhs(self, full, x, y):
            return full

    with pytest.raises(ValueError, match=r"must return finite values of shape \(8, 8, 3, 3\)"):
        GapTooth2D(**small, patch_solver=WrongShape()).rhs(0.0, np.zeros(8 * 8 * 9))
