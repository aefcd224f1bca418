"""Shock measurements on binned densities (the Burgers walkers of seed 003 §3.3; REFERENCE-003 §6).

A shock of ρ_t + (cρ²/2)_y = 0 with ρ > 0 moves right and is a downward jump.
On a periodic grid of n bins the shock sits between the bins with the largest
drop ρ_j − ρ_{j+1}; its height grows while the profile steepens and saturates
once the shock has formed. The formation step is the first step at which the
drop reaches ``fraction`` of its largest value over the horizon; the speed is
the least-squares slope of the (unwrapped) position after formation. The
same definitions are applied to the predictive mean and to the fine-grained
mean, and compared with the inviscid mean-field facts t* = 1/(c ρ̄ A π) and
s = c ρ̄ (Rankine–Hugoniot) of :mod:`cgflow.micro.walkers`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shock_track", "formation_step", "shock_speed"]


def shock_track(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position (in [-1, 1), at the bin edge) and height of the largest periodic drop, per step.

    Parameters
    ----------
    density : (T, n) array
        Bin densities on n equal bins of [-1, 1).
    """
    rho = np.asarray(density, dtype=np.float64)
    if rho.ndim != 2 or rho.shape[1] < 3:
        raise ValueError(f"density must have shape (steps, bins >= 3), got {rho.shape}")
    drop = rho - np.roll(rho, -1, axis=1)  # rho_j - rho_{j+1}
    j = np.argmax(drop, axis=1)
    n = rho.shape[1]
    return -1.0 + (j + 1) * 2.0 / n, drop[np.arange(len(j)), j]


def formation_step(height: np.ndarray, fraction: float = 0.8) -> int:
    """First step whose drop reaches ``fraction`` of the largest drop of the horizon."""
    height = np.asarray(height, dtype=np.float64)
    return int(np.flatnonzero(height >= fraction * height.max())[0])


def shock_speed(position: np.ndarray, start: int) -> float:
    """Least-squares slope (per step) of the unwrapped position from ``start`` on (NaN with < 3 points)."""
    pos = np.unwrap(np.asarray(position, dtype=np.float64)[start:], period=2.0)
    if pos.size < 3:
        return float("nan")
    steps = np.arange(pos.size, dtype=np.float64)
    return float(np.polyfit(steps, pos, 1)[0])
