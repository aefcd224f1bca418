"""An eqfree plugin model: heterogeneous diffusion with linear decay, u_t = (a(x/eps) u_x)_x - k u.

``micro.model: decaydiffusion`` (entry-point group ``cgflow.micro_models``, family
``eqfree``). It reuses cgflow's 1-D heterogeneous-diffusion model for everything
the physics shares (the medium a(y), its spec keys, patch dynamics with buffers)
and brings its own:

* detailed solver (:class:`DecaySolver`, cgflow's ``PatchSolver`` contract):
  Crank–Nicolson steps of the decaying diffusion on every patch, the two patch
  ends held as the boundary data, by scipy's banded solver over all patches at
  once (the ends enter as known values, never as unknowns);
* spec key ``micro.decay`` (k >= 0, per unit time);
* initial conditions with zero ends, u0 = sum_j c_j sin(j pi x), j = 1..J,
  c_j ~ U(-1, 1)/j (a FourierModes with wavenumbers j/2 and phases 0), so that the
  Dirichlet data stay 0 and the exact homogenized solution is the pure-diffusion
  one times exp(-k t): with zero ends u = exp(-k t) w, w_t = a* w_xx exactly;
* the exact reference (homogenized and semi-discrete) and the learned models'
  implied coefficient, corrected for the decay: a learned dU/dt = a* D2 U - k U
  responds to sin(pi x) with -(a* lambda_1 + k), lambda_1 = (2/dx**2)(1 - cos(pi dx))
  the grid eigenvalue, so a_implied = response/lambda_1 - k/lambda_1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_banded

from cgflow.methods.eqfree.models import HeterogeneousDiffusion
from cgflow.micro import heterodiffusion
from cgflow.spec import Field

__all__ = ["DecayDiffusion", "DecaySolver"]


@dataclass(frozen=True)
class DecaySolver:
    """Crank–Nicolson for u_t = (a(x/eps) u_x)_x - k u on every patch, the patch ends held.

    Parameters
    ----------
    mean, amplitude : float
        a(y) = mean + amplitude sin(2 pi y).
    eps, dx : float
        Period of the medium and micro grid spacing.
    decay : float
        k.
    steps : int
        Crank–Nicolson steps per burst (64: Crank–Nicolson damps the stiff
        micro-scale modes of the lift poorly; 4e-6 of the converged estimate).
    """

    mean: float
    amplitude: float
    eps: float
    dx: float
    decay: float
    steps: int = 64

    def attrs(self) -> dict:
        return {"decay": self.decay, "solver": "Crank-Nicolson (scipy banded), ends held", "solver_steps": self.steps}

    def advance(self, u, x, duration):
        P, n = u.shape
        coef = heterodiffusion.Coefficient(mean=self.mean, amplitude=self.amplitude)
        a = heterodiffusion.micro_coefficients(x[:, :-1], self.eps, self.dx, coef)  # bond m joins nodes m, m + 1
        tau, h2 = duration / self.steps, self.dx**2
        lo, up = a[:, :-1] / h2, a[:, 1:] / h2  # interior node m: couplings to u_{m-1} and u_{m+1}
        diag = -(lo + up) - self.decay
        known = np.zeros((P, n - 2))
        known[:, 0], known[:, -1] = lo[:, 0] * u[:, 0], up[:, -1] * u[:, -1]
        lo, up = lo.copy(), up.copy()
        lo[:, 0] = up[:, -1] = 0.0  # the ends are known values: no coupling across them or between patches
        lo, up, diag, known = lo.ravel(), up.ravel(), diag.ravel(), known.ravel()
        ab = np.zeros((3, P * (n - 2)))
        ab[0, 1:] = -0.5 * tau * up[:-1]
        ab[1] = 1.0 - 0.5 * tau * diag
        ab[2, :-1] = -0.5 * tau * lo[1:]
        v = u[:, 1:-1].ravel().copy()
        for _ in range(self.steps):
            Lv = diag * v + known
            Lv[1:] += lo[1:] * v[:-1]
            Lv[:-1] += up[:-1] * v[1:]
            v = solve_banded((1, 1), ab, v + 0.5 * tau * Lv + 0.5 * tau * known, check_finite=False)
        out = u.copy()
        out[:, 1:-1] = v.reshape(P, n - 2)
        return out


class DecayDiffusion(HeterogeneousDiffusion):
    """1-D heterogeneous diffusion with decay, u_t = (a(x/eps) u_x)_x - k u, by patch dynamics (module docstring)."""

    name = "decaydiffusion"
    description = "1-D heterogeneous diffusion with linear decay u_t = (a(x/eps) u_x)_x - k u (plugin)"

    @staticmethod
    def sections() -> dict:
        sections = HeterogeneousDiffusion.sections()
        micro = dict(sections["micro"])
        micro["decay"] = Field("float", minimum=0, doc="decay rate k of u_t = (a u_x)_x - k u")
        return {**sections, "micro": micro}

    @staticmethod
    def check_spec(d: dict, problems: list) -> None:
        HeterogeneousDiffusion.check_spec(d, problems)
        if (d.get("micro", {}).get("coefficient") or {}).get("table") is not None:
            problems.append(("micro.coefficient.table", "decaydiffusion takes a(y) = mean + amplitude sin(2 pi y) only"))

    @staticmethod
    def trajectories(spec):
        from cgflow.methods.eqfree.trajectories import PatchTrajectories

        micro = spec["micro"]
        coef = micro["coefficient"]
        solver = DecaySolver(
            mean=1.1 if coef.get("mean") is None else coef["mean"],
            amplitude=1.0 if coef.get("amplitude") is None else coef["amplitude"],
            eps=micro["eps"], dx=micro["dx"], decay=micro["decay"],
        )
        return PatchTrajectories.from_spec(spec, burst_solver=solver)

    @staticmethod
    def random_initial_condition(rng: np.random.Generator, modes: int):
        j = np.arange(1, modes + 1)
        return heterodiffusion.FourierModes(amplitudes=rng.uniform(-1.0, 1.0, modes) / j, wavenumbers=j / 2.0,
                                            phases=np.zeros(modes))

    @staticmethod
    def reference(attrs: dict, modes, x: np.ndarray, times: np.ndarray) -> dict:
        k = float(attrs["decay"])
        pure = HeterogeneousDiffusion.reference(attrs, modes, x, times)  # zero ends: u = exp(-k t) w
        damp = np.exp(-k * np.asarray(times))[:, None]
        return {
            "U_h": damp * pure["U_h"],
            "dUdt_h": damp * (pure["dUdt_h"] - k * pure["U_h"]),
            "U_fd": damp * pure["U_fd"],
            "dUdt_fd": damp * (pure["dUdt_fd"] - k * pure["U_fd"]),
        }

    @staticmethod
    def implied_variables(implied: np.ndarray, attrs: dict):
        coords, variables, extra = HeterogeneousDiffusion.implied_variables(implied, attrs)
        dims, values, var_attrs = variables["a_implied"]
        dx = 1.0 / (int(attrs["macro_nodes"]) - 1)
        lam1 = 2.0 / dx**2 * (1.0 - math.cos(math.pi * dx))
        corrected = values - float(attrs["decay"]) / lam1
        var_attrs = {**var_attrs, "description": var_attrs["description"] + "; the decay's share k/lambda_1 removed"}
        return coords, {"a_implied": (dims, corrected, var_attrs)}, {**extra, "decay": float(attrs["decay"])}
