"""Stochastic predator–prey reaction–diffusion on a 1-D grid (seed 002 system (a); REFERENCE-002 §1a, §2, §3).

Per cell i of a grid x_i = (i + 1/2)/n on [0, 1], prey u and predators v follow

    du_i = u_i (1 - u_i - v_i) dt                                   + sigma dW_i
    dv_i = [a v_i (u_i - b) + D (v_{i+1} - 2 v_i + v_{i-1}) / s] dt + sigma dW'_i

with a = 3, b = 0.4, sigma = 0.02, prey that do not move (D_u = 0) and independent
Brownian increments per cell and species, integrated by Euler–Maruyama with
dt = 0.01: x_{t+dt} = x_t + f(x_t) dt + sigma sqrt(dt) N(0, 1). The ends are zero
flux: the Laplacian sees the end values replicated (v_{-1} = v_0, v_n = v_{n-1}),
so sum_i v_i changes only by reaction and noise.

The scale s of the Laplacian (``laplacian``): the authors' code writes it in lattice
units, s = 1, D = 1 ("lattice", the default: this is what reproduces their runs);
a continuum reader expects s = dx**2 = 1/n**2 ("continuum"). These are different
physics at a given n: in lattice units a cell couples to its neighbours at rate D
whatever n is, so the n = 200 system is a *longer* domain of the same cells as
n = 100, not a finer grid; in continuum units D/dx**2 grows with n and explicit
Euler needs D dt/dx**2 <= 1/2 (D = 1 at n = 100 would need dt <= 5e-5, the
authors' dt = 0.01 diverges at once). :meth:`PredatorPreyParams.check_stability`
refuses unstable settings.

Initial states (REFERENCE-002 §1a): u = m + k cos(10 pi x), v = 1 - m - k cos(10 pi x).

Partial evolution (REFERENCE-002 §2): the grid is cut into K equal tiles; one tile
takes one Euler–Maruyama step with one ghost cell per side copied from the
neighbouring tile (the replicated end value at the domain ends), the rest frozen.
Upsampling (REFERENCE-002 §3): linear interpolation from n to 2n cell centres
(:func:`upsample`).

Everything is vectorised numpy over (batch, species, cell); no Python loop over
cells or trajectories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = [
    "LAPLACIANS",
    "PredatorPreyParams",
    "PredatorPreyPatchModel",
    "grid",
    "initial_state",
    "tile_means",
    "upsample",
]

#: Scales of the Laplacian: the authors' lattice units, or 1/dx**2.
LAPLACIANS = ("lattice", "continuum")


def grid(n: int) -> np.ndarray:
    """Cell centres x_i = (i + 1/2)/n of an n-cell grid on [0, 1]."""
    n = _count(n, "n", 2)
    return (np.arange(n) + 0.5) / n


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _finite(value, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return float(value)


def initial_state(n: int, m, k) -> np.ndarray:
    """u = m + k cos(10 pi x), v = 1 - m - k cos(10 pi x) (REFERENCE-002 §1a), shape (B, 2, n).

    ``m`` and ``k`` are scalars or equal-length 1-D arrays (one state per pair).
    """
    x = grid(n)
    m, k = np.broadcast_arrays(np.atleast_1d(np.asarray(m, dtype=np.float64)), np.atleast_1d(np.asarray(k, dtype=np.float64)))
    if m.ndim != 1 or not (np.all(np.isfinite(m)) and np.all(np.isfinite(k))):
        raise ValueError("m and k must be finite scalars or 1-D arrays of one length")
    wave = k[:, None] * np.cos(10.0 * np.pi * x)[None, :]
    return np.stack([m[:, None] + wave, 1.0 - m[:, None] - wave], axis=1)


@dataclass(frozen=True)
class PredatorPreyParams:
    """Parameters of the predator–prey SPDE (module docstring).

    Parameters
    ----------
    a, b : float, default 3, 0.4
        Predator growth rate and prey threshold.
    noise : float, default 0.02
        sigma of the additive noise of both species.
    dt : float, default 0.01
        Euler–Maruyama step.
    diffusion : float, default 1
        D of the predators (the prey do not move).
    laplacian : {"lattice", "continuum"}, default "lattice"
        Scale of the discrete Laplacian: 1 (the authors') or 1/dx**2.
    """

    a: float = 3.0
    b: float = 0.4
    noise: float = 0.02
    dt: float = 0.01
    diffusion: float = 1.0
    laplacian: str = "lattice"

    def __post_init__(self):
        for name in ("a", "b"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))
        object.__setattr__(self, "dt", _finite(self.dt, "dt", positive=True))
        noise = _finite(self.noise, "noise")
        diffusion = _finite(self.diffusion, "diffusion")
        if noise < 0 or diffusion < 0:
            raise ValueError(f"noise and diffusion must be >= 0, got {noise!r}, {diffusion!r}")
        object.__setattr__(self, "noise", noise)
        object.__setattr__(self, "diffusion", diffusion)
        if self.laplacian not in LAPLACIANS:
            raise ValueError(f"laplacian must be one of {LAPLACIANS}, got {self.laplacian!r}")

    def coupling(self, n: int) -> float:
        """D/s: the rate at which a predator cell exchanges with each neighbour."""
        return self.diffusion * (float(n) ** 2 if self.laplacian == "continuum" else 1.0)

    def check_stability(self, n: int) -> None:
        """Refuse grids on which explicit Euler diverges: D dt/s must be <= 1/2 (a cosine mode of the
        Laplacian decays by 1 - 4 D dt/s per step)."""
        c = self.coupling(n) * self.dt
        if c > 0.5:
            raise ValueError(
                f"Euler-Maruyama is unstable for the predators' diffusion on n = {n} cells: D dt/s = {c:g} > 1/2 "
                f"(laplacian = {self.laplacian!r}, D = {self.diffusion:g}, dt = {self.dt:g}); "
                f"use dt <= {0.5 / self.coupling(n):.3g} or the lattice Laplacian")

    # ------------------------------------------------------------------ dynamics
    def drift(self, state: np.ndarray, ghosts: tuple[np.ndarray, np.ndarray] | None = None,
              n_grid: int | None = None) -> np.ndarray:
        """f(x) of the SPDE, shape of ``state`` (..., 2, n).

        ``ghosts``: the (left, right) neighbour values of shape (..., 2) that the
        Laplacian sees beyond the two ends; default the end values themselves (zero
        flux). ``n_grid``: cells of the whole grid when ``state`` is one tile of it
        (it sets the continuum Laplacian's 1/dx**2; default the state's own size).
        """
        u, v = state[..., 0, :], state[..., 1, :]
        left = v[..., :1] if ghosts is None else ghosts[0][..., 1:2]
        right = v[..., -1:] if ghosts is None else ghosts[1][..., 1:2]
        padded = np.concatenate([left, v, right], axis=-1)
        lap = padded[..., 2:] - 2.0 * v + padded[..., :-2]
        out = np.empty_like(state)
        out[..., 0, :] = u * (1.0 - u - v)
        out[..., 1, :] = self.a * v * (u - self.b) + self.coupling(n_grid or state.shape[-1]) * lap
        return out

    def step(self, state: np.ndarray, rng: np.random.Generator, ghosts=None, n_grid: int | None = None) -> np.ndarray:
        """One Euler–Maruyama step: x + f(x) dt + sigma sqrt(dt) xi, xi ~ N(0, I) (a new array).

        ``n_grid`` is the size of the whole grid when ``state`` is one of its tiles
        (it sets the continuum Laplacian's 1/dx**2).
        """
        state = np.asarray(state, dtype=np.float64)
        f = self.drift(state, ghosts, n_grid)
        noise = self.noise * math.sqrt(self.dt) * rng.standard_normal(state.shape)
        return state + self.dt * f + noise

    def simulate(self, state, steps: int, rng: np.random.Generator, save_every: int = 1) -> np.ndarray:
        """Euler–Maruyama trajectories from ``state`` (B, 2, n): saved states (B, saves, 2, n), t = 0 included.

        Saves at steps 0, save_every, 2 save_every, ... <= steps.
        """
        x = np.array(state, dtype=np.float64)
        if x.ndim != 3 or x.shape[1] != 2:
            raise ValueError(f"state must have shape (B, 2, n), got {x.shape}")
        steps = _count(steps, "steps", 0)
        save_every = _count(save_every, "save_every", 1)
        self.check_stability(x.shape[-1])
        out = np.empty((x.shape[0], steps // save_every + 1, 2, x.shape[-1]))
        out[:, 0] = x
        for s in range(1, steps + 1):
            x = self.step(x, rng)
            if s % save_every == 0:
                out[:, s // save_every] = x
        return out

    # ------------------------------------------------------------------ partial evolution (REFERENCE-002 §2)
    def partial_step(self, state: np.ndarray, tiles: int, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One Euler–Maruyama step of tile ``chosen[b]`` of every state b, the others frozen.

        Parameters
        ----------
        state : ndarray (B, 2, n)
            Large states x_t (not modified).
        tiles : int
            K; must divide n.
        chosen : ndarray of int (B,)
            Tile of each state, in [0, K).
        rng : numpy.random.Generator

        Returns
        -------
        ndarray (B, 2, n / K)
            The evolved tile. Its ghost cells are the neighbouring tiles' edge values
            (the replicated end value at a domain end), exactly the values the full
            step would use, so the tile's drift is the full system's there.
        """
        return self.partial_run(state, tiles, chosen, rng)[0]

    def partial_run(self, state: np.ndarray, tiles: int, chosen: np.ndarray, rng: np.random.Generator,
                    steps: int = 1, record=()) -> tuple[np.ndarray, list]:
        """``steps`` Euler–Maruyama steps of tile ``chosen[b]`` of every state b, the rest frozen.

        The ghost cells keep the frozen neighbours' values throughout (REFERENCE-002 §2
        takes one step; longer runs see their neighbours' values at t). ``record``:
        step counts in [1, steps] after which the tile is also returned. Returns
        (the tile after ``steps`` (B, 2, n / K), [the tile after each recorded step]).
        """
        x = np.asarray(state, dtype=np.float64)
        B, _, n = x.shape
        K = _count(tiles, "tiles", 1)
        if n % K:
            raise ValueError(f"tiles = {K} must divide the grid size n = {n}")
        chosen = np.asarray(chosen, dtype=np.int64)
        if chosen.shape != (B,) or np.any(chosen < 0) or np.any(chosen >= K):
            raise ValueError(f"chosen must hold one tile index in [0, {K}) per state")
        steps = _count(steps, "steps", 1)
        record = [_count(r, "record step", 1) for r in record]
        if any(r > steps for r in record):
            raise ValueError(f"record steps must lie in [1, {steps}], got {record}")
        w = n // K
        rows = np.arange(B)
        cols = chosen[:, None] * w + np.arange(w)[None, :]
        tile = x[rows[:, None, None], np.arange(2)[None, :, None], cols[:, None, :]]  # (B, 2, w)
        left_idx, right_idx = np.maximum(chosen * w - 1, 0), np.minimum((chosen + 1) * w, n - 1)
        ghosts = (x[rows, :, left_idx], x[rows, :, right_idx])  # (B, 2) each
        seen = {}
        for s in range(1, steps + 1):
            tile = self.step(tile, rng, ghosts=ghosts, n_grid=n)
            if s in record:
                seen[s] = tile
        return tile, [seen[r] for r in record]


def tile_means(state: np.ndarray, tiles: int) -> np.ndarray:
    """Spatial means of u and v over each of ``tiles`` equal tiles: (B, K, 2) (the patch-additive z*)."""
    x = np.asarray(state, dtype=np.float64)
    K = _count(tiles, "tiles", 1)
    if x.ndim != 3 or x.shape[1] != 2 or x.shape[-1] % K:
        raise ValueError(f"state must have shape (B, 2, n) with n a multiple of tiles = {K}, got {x.shape}")
    B, _, n = x.shape
    return x.reshape(B, 2, K, n // K).mean(axis=-1).transpose(0, 2, 1)


def upsample(state: np.ndarray, factor: int = 2) -> np.ndarray:
    """Linear interpolation of cell-centre values onto a ``factor`` times finer grid (REFERENCE-002 §3).

    The new centres (j + 1/2)/(factor n) that lie beyond the outermost old centres
    take the end values (constant extrapolation: the zero-flux ends), so spatial
    means change only by the interpolation's O(dx**2 u'') error.
    """
    x = np.asarray(state, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != 2:
        raise ValueError(f"state must have shape (B, 2, n), got {x.shape}")
    factor = _count(factor, "factor", 1)
    n = x.shape[-1]
    old, new = grid(n), grid(factor * n)
    j = np.clip(np.searchsorted(old, new) - 1, 0, n - 2)
    w = np.clip((new - old[j]) / (old[j + 1] - old[j]), 0.0, 1.0)
    return x[..., j] * (1.0 - w) + x[..., j + 1] * w


@dataclass(frozen=True)
class PredatorPreyPatchModel:
    """The predator–prey system in the shape the partial method's numerics take (``PatchModel``).

    States are (B, 2, n) arrays (species, cells); tiles are ``tile_size`` consecutive
    cells, K = n / tile_size of them; the observables are the tile means of u and v
    (patch-additive). One "run" is one Euler–Maruyama step of ``params.dt`` (the
    authors' pairs, REFERENCE-002 §2): ``n_events`` and ``duration`` are accepted for
    the protocol's sake and must be None or one step.

    Parameters
    ----------
    params : PredatorPreyParams
    """

    params: PredatorPreyParams = PredatorPreyParams()

    observable_names = ("u", "v")

    def _tiles(self, states, tile_size):
        x = np.asarray(states, dtype=np.float64)
        if x.ndim != 3 or x.shape[1] != 2:
            raise ValueError(f"states must have shape (B, 2, n), got {x.shape}")
        ts = _count(tile_size, "tile_size", 1)
        if x.shape[-1] % ts:
            raise ValueError(f"tile_size = {ts} must divide the grid size n = {x.shape[-1]}")
        return x, x.shape[-1] // ts

    def n_tiles(self, n: int, tile_size: int) -> int:
        """K = n / tile_size."""
        return n // tile_size

    def tile_observables(self, states, tile_size: int, boundary: str = "frozen") -> np.ndarray:
        """(B, K, 2) tile means of u and v; ``boundary`` must be "frozen" (ghost cells from the neighbours)."""
        if boundary != "frozen":
            raise ValueError(f"the predator-prey tiles take ghost cells from their neighbours: boundary must be "
                             f"'frozen', got {boundary!r}")
        x, K = self._tiles(states, tile_size)
        return tile_means(x, K)

    def evolve_tiles(self, states, tile_size: int, tiles, n_events=None, boundary: str = "frozen", rng=None,
                     duration=None, return_tiles: bool = False, record_times=None):
        """Euler–Maruyama steps of tile ``tiles[b]`` of every state, the rest frozen (REFERENCE-002 §2).

        ``duration`` (a whole number of steps of ``params.dt``; default one step, the
        authors' pairs); ``n_events`` is accepted for the protocol's sake and ignored.
        Returns ``(before, after, increment, dt)`` (tile means (B, 2) before and after,
        the increment after - before of the target z1_hat - z0, dt (B,)), plus the
        evolved tiles (B, 2, tile_size) with ``return_tiles``, plus (increment_at,
        after_at) (B, n, 2) at the n ``record_times`` (whole numbers of steps) if given.
        """
        self.tile_observables(states, tile_size, boundary)  # validates
        steps = 1 if duration is None else self._steps(duration, "duration")
        rec = [] if record_times is None else [self._steps(t, "record time") for t in record_times]
        x, K = self._tiles(states, tile_size)
        tiles = np.asarray(tiles, dtype=np.int64)
        after_tile, seen = self.params.partial_run(x, K, tiles, rng, steps=steps, record=rec)
        w = x.shape[-1] // K
        cols = tiles[:, None] * w + np.arange(w)[None, :]
        before_tile = np.take_along_axis(x, np.broadcast_to(cols[:, None, :], (x.shape[0], 2, w)), axis=-1)
        before, after = before_tile.mean(axis=-1), after_tile.mean(axis=-1)
        out = (before, after, after - before, np.full(x.shape[0], steps * self.params.dt))
        out += ((after_tile,) if return_tiles else ())
        if record_times is not None:
            at = np.stack([t.mean(axis=-1) for t in seen], axis=1) if seen else np.empty((x.shape[0], 0, 2))
            out += (at - before[:, None, :], at)
        return out

    def _steps(self, duration, name: str) -> int:
        q = float(duration) / self.params.dt
        if not (round(q) >= 1 and math.isclose(q, round(q), rel_tol=1e-9)):
            raise ValueError(f"a predator-prey {name} must be a whole number >= 1 of Euler-Maruyama steps of "
                             f"dt = {self.params.dt:g}, got {duration!r}")
        return int(round(q))

    def evolve_full(self, states, n_events=None, rng=None):
        """One Euler–Maruyama step of the whole grid: (z0 (B, 2), z1 (B, 2), dt (B,)) of the spatial means."""
        x = np.asarray(states, dtype=np.float64)
        x1 = self.params.step(x, rng)
        return x.mean(axis=-1), x1.mean(axis=-1), np.full(x.shape[0], self.params.dt)

    def refine(self, states) -> np.ndarray:
        """Twice as many cells by linear interpolation (REFERENCE-002 §3; no relaxation follows)."""
        return upsample(states, 2)
