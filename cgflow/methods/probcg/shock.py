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

The relative rule always reports a formation step, even for a profile that only
decays. :func:`viscous_bin_drop` gives an absolute scale instead: the walkers'
mean field is ρ_t + (cρ²/2)_y = Dρ_yy (D = δy²/2δt), whose travelling shock of
jump Δ is ρ̄ − (Δ/2) tanh(cΔξ/4D); averaged over bins of width w and centred on
a bin edge, its drop between neighbouring bins is Δ·ln cosh(kw)/(kw), k = cΔ/4D.
``formation_step(height, threshold=...)`` then reports the first step whose drop
reaches the threshold (e.g. half the binned drop of a formed viscous shock
carrying the initial contrast 2ρ̄A), and −1 if it never does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shock_track", "formation_step", "peak_step", "shock_speed", "viscous_bin_drop"]


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


def formation_step(height: np.ndarray, fraction: float = 0.8, threshold: float | None = None, start: int = 0) -> int:
    """First step whose drop reaches ``fraction`` of the largest drop of the horizon.

    With ``threshold``: the first step >= ``start`` whose drop reaches ``threshold`` (same
    units as ``height``), or −1 if none does (no shock formed within the horizon). Use
    ``start = 1`` when step 0 is a sampled fine state: its drop is multinomial noise, not steepening.
    """
    height = np.asarray(height, dtype=np.float64)
    if threshold is not None:
        hit = np.flatnonzero(height[start:] >= threshold)
        return int(hit[0]) + start if hit.size else -1
    return int(np.flatnonzero(height >= fraction * height.max())[0])


def peak_step(height: np.ndarray, start: int = 1) -> int:
    """Step (>= ``start``) of the largest drop over the horizon.

    The binned drop of a viscous shock grows while the front steepens and decays once the
    formed shock's jump decays (the N-wave of a sine start), so its peak follows formation:
    at c = 1/4, A = 1/2, 24 bins the continuum mean fields peak at 1.6 t* (inviscid) and
    1.3-1.4 t* (viscous, D = δy²/2δt). Compare with ``mean_field_*_peak`` of the predict
    attrs, not with t* itself.
    """
    height = np.asarray(height, dtype=np.float64)
    if height.size <= start:
        return -1
    return int(np.argmax(height[start:])) + start


def viscous_bin_drop(jump: float, width: float, density_scale: float, viscosity: float) -> float:
    """Drop between the two bin averages next to a viscous Burgers shock centred on their common edge.

    The travelling wave of ρ_t + (cρ²/2)_y = Dρ_yy with jump Δ is ρ̄ − (Δ/2) tanh(kξ), k = cΔ/(4D);
    the mean of tanh over [0, w] is ln cosh(kw)/(kw), so the drop is Δ ln cosh(kw)/(kw)
    (→ Δ for kw → ∞, a sharp shock; → Δkw/2 for kw → 0, a shock narrower than nothing it is binned on).
    ``jump`` and the result are in the same density units; ``width`` in the units of y.
    """
    for name, v in (("jump", jump), ("width", width), ("density_scale", density_scale), ("viscosity", viscosity)):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    kw = density_scale * jump * width / (4.0 * viscosity)
    # ln cosh(x) = x + log1p(exp(-2x)) - ln 2, stable for large x
    return float(jump * (kw + np.log1p(np.exp(-2.0 * kw)) - np.log(2.0)) / kw)


def shock_speed(position: np.ndarray, start: int) -> float:
    """Least-squares slope (per step) of the unwrapped position from ``start`` on (NaN with < 3 points)."""
    pos = np.unwrap(np.asarray(position, dtype=np.float64)[start:], period=2.0)
    if pos.size < 3:
        return float("nan")
    steps = np.arange(pos.size, dtype=np.float64)
    return float(np.polyfit(steps, pos, 1)[0])
