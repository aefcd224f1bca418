"""The exact homogenized solution beside every trajectory (seed 001, eqs. 22 and 27; REFERENCE §2).

For each stored trajectory the initial condition is rebuilt from its parameters
and the homogenized PDE is solved exactly at the same times and macro points:

* 1-D: u_t = a* u_xx with the Dirichlet data of eq. (21), a* from the cell
  problem (the harmonic mean, sqrt(1.1**2 - 1) for the paper's medium), by its
  sine series (``U_h``, ``dUdt_h``); and the *semi-discrete* homogenized system
  dU/dt = a* D2 U on the macro grid of the patches (central differences,
  Dirichlet ends), solved exactly in its eigenbasis (``U_fd``, ``dUdt_fd``).
  Patch dynamics approximates the second, which differs from the first by the
  O(dx**2) error of the macro grid — large for the initial condition's fast
  modes (l_j up to 4 on dx = 0.1) until they decay.
* 2-D: u_t = A_xx u_xx + 2 A_xy u_xy + A_yy u_yy on the periodic square with the
  tensor from the discrete cell problem (REFERENCE §2: the paper's eq. 27 swaps
  the directions and drops the cross term), averaged over each patch's interior
  points like the scheme's own restriction.

The stage also reports how far the scheme's data are from these references:
``rmse_U``, ``rmse_dUdt`` (seed eq. 24) per trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ...learn.metrics import relative_mse
from .schema import eqfree_model
from .trajectories import TRAJ, initial_condition

__all__ = ["Homogenized", "dirichlet_laplacian", "semidiscrete_solution"]


def dirichlet_laplacian(n_nodes: int, dx: float) -> np.ndarray:
    """Central second difference on the interior of ``n_nodes`` equispaced nodes (ends held fixed)."""
    m = n_nodes - 2
    return (np.diag(-2.0 * np.ones(m)) + np.diag(np.ones(m - 1), 1) + np.diag(np.ones(m - 1), -1)) / dx**2


def semidiscrete_solution(u0: np.ndarray, a_star: float, dx: float, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact solution of dU/dt = a* D2 U with fixed end values, at ``times``: (U, dU/dt), each (time, node).

    U = U_steady + V exp(a* Lambda t) V^T (U0 - U_steady) with D2 = V Lambda V^T
    (symmetric); the steady state is the straight line between the end values.
    """
    n = u0.size
    D2 = a_star * dirichlet_laplacian(n, dx)
    lam, V = np.linalg.eigh(D2)
    steady = np.linspace(u0[0], u0[-1], n)
    c0 = V.T @ (u0 - steady)[1:-1]
    decay = np.exp(np.outer(times, lam))  # (time, mode); lam < 0
    U = np.repeat(steady[None, :], len(times), axis=0)
    U[:, 1:-1] += (decay * c0) @ V.T
    dU = np.zeros_like(U)
    dU[:, 1:-1] = (decay * c0 * lam) @ V.T
    return U, dU


def reference(attrs: dict, modes, x: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    """The homogenized references of one initial condition at the macro points, each (time, *grid).

    ``attrs`` are the trajectories group's attributes (model, a* or the tensor,
    patch geometry). Keys: ``U_h``, ``dUdt_h`` and, in 1-D, ``U_fd``, ``dUdt_fd``.
    """
    return eqfree_model(attrs["model"]).reference(attrs, modes, x, times)


_DESCRIPTIONS = {
    "U_h": "exact solution of the homogenized PDE at the macro points",
    "dUdt_h": "its time derivative (the 'truth' of seed Fig. 4 / Fig. 6)",
    "U_fd": "exact solution of the semi-discrete homogenized system a* D2 U on the macro grid",
    "dUdt_fd": "its time derivative",
}


def interior(attrs: dict):
    """Index (time, *grid) of the data that carry information.

    In 1-D every node but the fixed Dirichlet ends. The first
    ``transient_snapshots`` snapshots are left out: the gap-tooth scheme starts
    from micro values without the micro-scale corrector, and its dU/dt at t = 0
    is dominated by their fast relaxation (rates > 1e4), not by the macro dynamics.
    """
    skip = slice(int(attrs.get("transient_snapshots", 0)), None)
    return (skip, *eqfree_model(attrs["model"]).interior_points())


@dataclass(frozen=True)
class Homogenized:
    """The ``homogenized`` reduce stage (implements ``ReduceStage``)."""

    upstream: str  # fingerprint of the trajectories it reads
    name: str = field(default="homogenized", kw_only=True)

    @classmethod
    def from_stage(cls, trajectories) -> "Homogenized":
        from ...engine.types import fingerprint

        return cls(upstream=fingerprint(trajectories))

    def compute(self, tree: xr.DataTree) -> xr.Dataset:
        traj = tree["trajectories"].to_dataset().load()
        times, attrs = traj["time"].values, dict(traj.attrs)
        grid = [d for d in ("x", "y") if d in traj.dims]
        dims = (TRAJ, "time", *grid)
        refs = [reference(attrs, initial_condition(traj, k), traj["x"].values, times) for k in range(traj.sizes[TRAJ])]
        out = xr.Dataset(coords={TRAJ: traj[TRAJ], "split": traj["split"], "time": traj["time"], **{d: traj[d] for d in grid}})
        for key in refs[0]:
            out[key] = (dims, np.stack([r[key] for r in refs]))
            out[key].attrs["description"] = _DESCRIPTIONS[key]
        out.attrs.update({k: attrs[k] for k in ("a_star", "A_xx", "A_xy", "A_yy") if k in attrs})

        # how far the scheme's data are from the references (seed eq. 24, per trajectory)
        inner = interior(attrs)
        U, dU = traj["U"].values, traj["dUdt"].values
        for suffix in ("h", "fd"):
            if f"U_{suffix}" not in out:
                continue
            label = "" if suffix == "h" else "_fd"
            what = "the homogenized solution" if suffix == "h" else "the semi-discrete homogenized system"
            for var, data in (("U", U), ("dUdt", dU)):
                ref = out[f"{var}_{suffix}"].values
                out[f"rmse_{var}{label}"] = (TRAJ, [relative_mse(data[k][inner], ref[k][inner]) for k in range(len(data))])
                out[f"rmse_{var}{label}"].attrs["description"] = f"rMSE (seed eq. 24) of the scheme's {var} against {what}"
        return out
