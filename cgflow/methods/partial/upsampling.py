"""Hierarchical upsampling of small-system snapshots to large ones (seed 002, REFERENCE-002 §3).

One level: refine every snapshot (spins: 2 x 2 pixel replication, L -> 2L), then
relax it locally: windows of side ``window`` (16) at origins (a stride, b stride)
with ``stride`` 8, processed sequentially row by row with wrap-around, each run
for a fixed time ``window_time`` (clock "time", the default) or for exactly
``events_per_window`` (256) flips (clock "events", the authors'). Repeated
log2(L/L_s) times. Pixel
replication doubles every domain and leaves the magnetisation unchanged, but
makes straight domain walls of even length (too few broken bonds: rho_dw is
halved); the relaxation restores local equilibrium at the new size.

Clock. Only the fixed-time clock leaves the Gibbs measure invariant under
frozen windows. Stopping after a fixed number of flips samples the embedded jump
chain, whose stationary law is pi(x) R(x)/Z (R = the window's total flip rate):
it favours states with many flippable spins. Measured (Ising T = 2.5, h = 0.1,
L = 32 equilibrium snapshots, one relaxation pass, 16/8/256): <m> 0.723 -> 0.712,
<rho_dw> 0.156 -> 0.162; on a 4 x 4 torus with 2 x 2 windows and 3 flips each
<m> = 0.10 against the exact 0.39 (the fixed-time clock gives 0.37 +- 0.05).

Relaxation length. Replicated snapshots relax back slowly in m (large minority
domains shrink on the collective time scale). Measured, Ising T = 2.5, h = 0.1,
300 equilibrium L = 16 snapshots (<m> = 0.724) upsampled once to L = 32 (direct
L = 32: <m> = 0.725 +- 0.004, <rho_dw> = 0.156), frozen windows 16/8:
window_time 4 -> <m> 0.691, rho 0.161; 16 -> 0.718, 0.156; 64 -> 0.722, 0.156;
authors' 256 flips -> 0.682, 0.167. Hence the default window_time = 16.

Window boundary: ``"frozen"`` (default) takes the real neighbours outside the
window as a frozen ghost ring (Ising; the authors' PT choice) or the global mean
field of the current lattice (Curie–Weiss); ``"periodic"`` makes each window an
isolated torus / window-local mean field (the authors' CW and IS choice,
REFERENCE §8.5), which leaves seams.

:func:`hierarchical_upsample` also reproduces the authors' pool step: at every
level it draws the batch with replacement from the current pool. Model-agnostic
through :class:`RelaxingPatchModel` (a :class:`~cgflow.methods.partial.evolution.PatchModel` that refines and relaxes); no Dask, no I/O.
"""

from __future__ import annotations

from numbers import Integral
from typing import Protocol, runtime_checkable

import numpy as np

from .evolution import PatchModel, _check_model


@runtime_checkable
class RelaxingPatchModel(PatchModel, Protocol):
    """A :class:`PatchModel` that hierarchical upsampling can refine and relax (lattice models)."""

    def refine(self, snapshots) -> np.ndarray:
        """Refine each snapshot to twice the linear size."""

    def relax_windows(self, lattices, window: int, stride: int, n_events: int, boundary: str, rng,
                      duration=None):
        """Local relaxation in overlapping windows, n_events or a fixed duration each: (lattices, elapsed)."""

__all__ = ["check_upsampling", "hierarchical_upsample", "upsample_level"]


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


CLOCKS = ("time", "events")


def check_upsampling(small_size: int, target_size: int, window: int = 16, stride: int = 8,
                     events_per_window: int = 256, clock: str = "time", window_time: float = 16.0) -> int:
    """Validate the upsampling parameters; return the number of levels log2(target/small).

    Raises
    ------
    ValueError
        Naming the offending key: ``target_size`` not a multiple of ``small_size`` or
        not a power-of-two multiple; ``window`` larger than the first refined lattice
        (2 small_size) -- the smallest lattice a window must fit; ``stride`` not
        dividing every level's lattice side or larger than ``window`` (gaps would be
        left unrelaxed); bad ``events_per_window``, ``clock`` or ``window_time``.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    wt = float(window_time)
    if not (wt > 0 and wt < float("inf")):
        raise ValueError(f"window_time must be finite and > 0, got {window_time!r}")
    Ls = _int(small_size, "small_size", 2)
    L = _int(target_size, "target_size", 2)
    w = _int(window, "window", 2)
    st = _int(stride, "stride", 1)
    _int(events_per_window, "events_per_window", 0)
    if L % Ls:
        raise ValueError(f"target_size = {L} is not a multiple of small_size = {Ls}")
    ratio = L // Ls
    if ratio & (ratio - 1):
        raise ValueError(f"target_size / small_size = {ratio} must be a power of two")
    levels = ratio.bit_length() - 1
    if levels == 0:
        return 0
    if w > 2 * Ls:
        raise ValueError(f"window = {w} is larger than the first refined lattice (side {2 * Ls})")
    if st > w:
        raise ValueError(f"stride = {st} exceeds window = {w}: sites between windows would never relax")
    if (2 * Ls) % st:
        raise ValueError(f"stride = {st} must divide the refined lattice sides (first: {2 * Ls})")
    return levels


def upsample_level(snapshots, model: RelaxingPatchModel, rng, window: int = 16, stride: int = 8,
                   events_per_window: int = 256, boundary: str = "frozen", clock: str = "time",
                   window_time: float = 16.0) -> np.ndarray:
    """One level: refine (B, L, L) -> (B, 2L, 2L) and relax in sequential windows."""
    _check_model(model, RelaxingPatchModel)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    snaps = np.asarray(snapshots)
    if snaps.ndim < 3:
        raise ValueError(f"snapshots must have shape (B, L, L), got {snaps.shape}")
    check_upsampling(snaps.shape[1], 2 * snaps.shape[1], window, stride, events_per_window, clock, window_time)
    fine = model.refine(snaps)
    relaxed, _ = model.relax_windows(fine, window, stride, events_per_window, boundary, rng,
                                     duration=window_time if clock == "time" else None)
    return relaxed


def hierarchical_upsample(pool, target_size: int, model: RelaxingPatchModel, rng, n_out: int | None = None,
                          window: int = 16, stride: int = 8, events_per_window: int = 256,
                          boundary: str = "frozen", resample: bool = True, clock: str = "time",
                          window_time: float = 16.0) -> np.ndarray:
    """Upsample small snapshots to side ``target_size`` in log2(target/L_s) levels (REFERENCE §3).

    Parameters
    ----------
    pool : array of shape (P, L_s, L_s)
        Small-system snapshots (not modified).
    target_size : int
        L, a power-of-two multiple of L_s (L = L_s returns a copy, or a resample).
    model : RelaxingPatchModel
    rng : numpy.random.Generator
    n_out : int, optional
        Snapshots produced per level (default P).
    window, stride, events_per_window, boundary
        Relaxation windows (defaults: the authors' 16, 8, 256; frozen ghost ring).
    clock, window_time
        "time" (default): every window runs for ``window_time`` (attempts per spin;
        16.0 = every window spin attempts 16 flips on average); "events": exactly
        ``events_per_window`` flips (the authors', biased, see the module docstring).
    resample : bool
        Draw each level's batch with replacement from the previous level's output
        (the authors' pool step); False upsamples the pool in order (needs n_out = P).

    Returns
    -------
    ndarray of int8, shape (n_out, L, L)
    """
    _check_model(model, RelaxingPatchModel)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    cur = np.asarray(pool)
    if cur.ndim < 3 or cur.shape[0] < 1:
        raise ValueError(f"pool must have shape (P, L_s, L_s) with P >= 1, got {cur.shape}")
    P = cur.shape[0]
    n = P if n_out is None else _int(n_out, "n_out", 1)
    if not resample and n != P:
        raise ValueError(f"n_out = {n} must equal the pool size {P} when resample is False")
    levels = check_upsampling(cur.shape[1], target_size, window, stride, events_per_window, clock, window_time)
    if levels == 0:
        return cur[rng.integers(0, P, size=n)].copy() if resample else cur.copy()
    for _ in range(levels):
        batch = cur[rng.integers(0, cur.shape[0], size=n)] if resample else cur
        fine = model.refine(batch)
        cur, _ = model.relax_windows(fine, window, stride, events_per_window, boundary, rng,
                                     duration=window_time if clock == "time" else None)
    return cur
