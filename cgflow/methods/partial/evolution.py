"""Partial-evolution training pairs (seed 002, REFERENCE-002 §0, §2).

A large snapshot x_t (L x L) is cut into K = (L/L_s)**2 aligned tiles. One tile I
is drawn uniformly and only its spins are evolved for n_s = L_s**2 events; the
rest of the lattice is held fixed. With a patch-additive observable,
phi(x) = (1/K) sum_J phi(x_J), the pair is

    z0 = phi(x_t),
    z1_hat = phi(x_t) + [phi(x_{t+dt, I}) - phi(x_{t, I})],      dt = elapsed time,

so z1_hat - z0 is K times the change of the large system's observable caused by
tile I. Its mean is (1/K) sum over tiles of K E[Delta_J] = b(z0) dt (unbiased for
the large system's drift, every spin being equally likely to be in the evolved
tile), while its covariance is about K times the large system's (independent
tiles): the reason for lambda = K in the loss (REFERENCE §0).

Boundary modes (model-defined, see :mod:`cgflow.micro.glauber`):

* ``"frozen"`` (default): the tile evolves under the large system's own rates
  with everything outside held fixed (Ising: real neighbours as a frozen ghost
  ring; Curie–Weiss: the global mean field /L**2). z0 is the exact observable of
  the whole lattice. The bracket is the change over *everything the tile
  touches*: for Ising rho_dw the bonds across the tile's left/upper edges belong
  to the neighbouring tiles (ownership keeps the tile observable exactly
  patch-additive) but change when edge spins flip, so they are included.
  Equivalently z1_hat = z0 + K (phi(x_{t+dt}) - phi(x_t)).
* ``"periodic"`` (the authors' Ising choice): the tile evolves as an isolated
  torus (Curie–Weiss: an isolated mean-field system of L_s**2 spins); z0 is the
  mean of the per-tile torus observables and the bracket the torus observable's
  change (REFERENCE §1b, §8.5).

The baseline (small-system) pair is (phi(x_{t, I}), phi(x_{t+dt, I})), tile
observables as :meth:`tile_observables` defines them for the boundary mode.

Everything here is model-agnostic: a model meets :class:`PatchModel`
(:class:`cgflow.micro.glauber.GlauberParams` does). No Dask, no I/O.
"""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["PartialPairs", "PatchModel", "full_pairs", "partial_evolution_pairs"]


@runtime_checkable
class PatchModel(Protocol):
    """What a lattice model supplies to the partial-evolution and upsampling numerics.

    Snapshots are arrays of shape (B, L, L) (a 3-D model would use (B, L, L, L)
    and the same calls). Every observable listed is patch-additive over aligned
    tiles.
    """

    observable_names: tuple

    def tile_observables(self, snapshots, tile_size: int, boundary: str) -> np.ndarray:
        """(B, K, d) observables of the K aligned tiles; their mean over K is phi(x)."""

    def evolve_tiles(self, snapshots, tile_size: int, tiles, n_events: int, boundary: str, rng,
                     duration=None, return_tiles: bool = False, record_times=None):
        """Evolve one tile per snapshot: (before (B, d), after (B, d), increment (B, d), dt (B,)),
        plus the evolved tiles (B, tile_size, tile_size) with ``return_tiles`` (learned closures), plus
        (increment_at, after_at) (B, n, d) at the n ``record_times`` of the same run (optional: only
        passed when not None; the Richardson drift of the sde stage needs it)."""

    def evolve_full(self, snapshots, n_events: int, rng):
        """Whole-system runs: (z0 (B, d), z1 (B, d), dt (B,))."""


class PartialPairs(NamedTuple):
    """Partial-evolution training pairs, one per snapshot (d = number of observables).

    z0 : (B, d)       phi(x_t) of the large snapshot.
    z1_hat : (B, d)   phi(x_t) + increment of the evolved tile (the method's target).
    dt : (B,)         elapsed time of the tile run (attempts per spin).
    tile : (B,)       index of the evolved tile (row-major over the K tiles).
    z0_tile : (B, d)  phi(x_{t, I}) (baseline input).
    z1_tile : (B, d)  phi(x_{t+dt, I}) (baseline target).
    n_tiles : int     K.
    tile_after : (B, L_s, L_s) or None   the evolved tiles (``return_tiles``), for learned closures.
    increment_at : (B, n, d) or None     z1_hat - z0 at the ``record_times`` of the same run.
    z_tile_at : (B, n, d) or None        phi(x_{t+s, I}) at the ``record_times`` s (baseline).
    """

    z0: np.ndarray
    z1_hat: np.ndarray
    dt: np.ndarray
    tile: np.ndarray
    z0_tile: np.ndarray
    z1_tile: np.ndarray
    n_tiles: int
    tile_after: np.ndarray | None = None
    increment_at: np.ndarray | None = None
    z_tile_at: np.ndarray | None = None


def _check_model(model, protocol=PatchModel) -> None:
    if not isinstance(model, protocol):
        raise ValueError(f"model must implement the {protocol.__name__} protocol, got {type(model).__name__}")


def partial_evolution_pairs(snapshots, tile_size: int, model: PatchModel, rng, boundary: str = "frozen",
                            n_events: int | None = None, duration: float | None = None,
                            return_tiles: bool = False, record_times=None, tiles=None) -> PartialPairs:
    """Partial-evolution pairs from a batch of large snapshots (REFERENCE §2).

    Parameters
    ----------
    snapshots : array of shape (B, L, L) (spins; the model defines the layout, e.g. (B, 2, n))
        Large-system configurations x_t (not modified).
    tile_size : int
        L_s; must divide L. K = (L/L_s)**2 (the number of tiles ``model.tile_observables`` returns).
    model : PatchModel
        E.g. ``GlauberParams("curie_weiss", 1.1, 0.1, 64)``.
    rng : numpy.random.Generator
        Draws the tile of every snapshot (first, B integers) and then drives the runs.
    boundary : {"frozen", "periodic"}
        See the module docstring.
    n_events : int, optional
        Events per tile run; default L_s**2 (the authors' n_s); dt is random.
    duration : float, optional
        Run every tile for this fixed time instead (dt = duration, ``n_events``
        ignored). Note that with O(1) durations (n_s = L_s**2 events give
        dt ~ 2.2 for Curie–Weiss at T = 1.1) the tile relaxes on its own at rate ~1:
        E[z1_hat - z0] and Var(z1_hat - z0) are then well below a(m) dt and
        K sigma^2 dt (measured, see tests/methods/test_partial_numerics.py); the
        relations hold as dt -> 0.
    return_tiles : bool
        Also return the evolved tiles (``PartialPairs.tile_after``).
    tiles : array of int (B,), optional
        The tile to evolve in each snapshot (row-major index in [0, K)); default
        uniform draws from ``rng``.
    record_times : sequence of float, optional
        Times in (0, duration) (needs ``duration``) at which the same run is also
        observed (``PartialPairs.increment_at``, ``z_tile_at``): e.g. [duration/2]
        for the Richardson drift of :mod:`cgflow.methods.partial.stages`.

    Returns
    -------
    PartialPairs
    """
    _check_model(model)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    snaps = np.asarray(snapshots)
    if snaps.ndim < 2 or snaps.shape[0] < 1:
        raise ValueError(f"snapshots must have shape (B, L, L) (or the model's layout) with B >= 1, got {snaps.shape}")
    if isinstance(tile_size, bool) or not isinstance(tile_size, Integral) or tile_size < 2:
        raise ValueError(f"tile_size must be an integer >= 2, got {tile_size!r}")
    z0_all = model.tile_observables(snaps, tile_size, boundary)  # (B, K, d); validates boundary, shapes, tile_size
    K = z0_all.shape[1]
    if n_events is None:
        n_events = int(tile_size) ** (snaps.ndim - 1)
    if tiles is None:
        tiles = rng.integers(0, K, size=snaps.shape[0])
    else:
        tiles = np.asarray(tiles, dtype=np.int64)
        if tiles.shape != (snaps.shape[0],) or np.any(tiles < 0) or np.any(tiles >= K):
            raise ValueError(f"tiles must hold one index in [0, {K}) per snapshot, got shape {tiles.shape}")
    z0 = z0_all.mean(axis=1)
    extra = ({"return_tiles": True} if return_tiles else {}) | \
        ({"record_times": record_times} if record_times is not None else {})
    out = model.evolve_tiles(snaps, tile_size, tiles, n_events, boundary, rng, duration=duration, **extra)
    before, after, incr, dt = out[:4]
    at = out[5 if return_tiles else 4:] if record_times is not None else (None, None)
    return PartialPairs(z0=z0, z1_hat=z0 + incr, dt=dt, tile=tiles, z0_tile=before, z1_tile=after, n_tiles=K,
                        tile_after=out[4] if return_tiles else None, increment_at=at[0], z_tile_at=at[1])


def full_pairs(snapshots, model: PatchModel, rng, n_events: int | None = None):
    """True large-system pairs: every snapshot evolved whole for n_events (default L**2) events.

    The validation pairs of REFERENCE §1b (one full sweep of N events) and the
    direct-simulation cost reference. Returns (z0 (B, d), z1 (B, d), dt (B,)).
    """
    _check_model(model)
    snaps = np.asarray(snapshots)
    if snaps.ndim < 3 or snaps.shape[0] < 1:
        raise ValueError(f"snapshots must have shape (B, L, L) with B >= 1, got {snaps.shape}")
    if n_events is None:
        n_events = int(np.prod(snaps.shape[1:]))
    return model.evolve_full(snaps, n_events, rng)
