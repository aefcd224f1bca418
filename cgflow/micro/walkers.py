"""Fine-grained random walkers for probabilistic coarse-graining (seed 003): kernels and exact facts.

Models (Felsberger & Koutsourelakis 2019, §2.2 and §3; REFERENCE-003 §1, §6).
``n_f`` identical walkers live on the periodic domain [-1, 1). Positions are
reals, not lattice sites: the paper's fine step delta_y = 3.875e-3 gives
2/delta_y = 516.13, which is not an integer (REFERENCE §1 [G]). A jump moves a
walker by +-delta_y and wraps it modulo 2. One coarse step Delta_t is
``fine_steps_per_coarse`` (400) fine steps delta_t. The coarse state is the bin
count vector m of n_c equal bins j = [-1 + j w, -1 + (j+1) w), w = 2/n_c
(0-based here; the paper counts from 1).

Laws
----
``advection_diffusion`` (paper §3.2; REFERENCE §1b, faithful reading)
    Independent walkers; per fine step right with p_r = 0.205, left with
    p_l = 0.195, stay otherwise. Drift v = (p_r - p_l) delta_y / delta_t,
    D = (p_r + p_l) delta_y**2 / (2 delta_t). Two exact simulators:
    :func:`step_advection_diffusion` draws every fine step (numba), and
    :func:`sample_advection_diffusion` draws each walker's displacement over n
    fine steps from the n-fold trinomial convolution in O(1) per walker
    (n_r ~ Bin(n, p_r), n_l | n_r ~ Bin(n - n_r, p_l / (1 - p_r)), which is
    (n_r, n_l, n_stay) ~ Mult(n; p_r, p_l, p_stay)).
``burgers`` (paper §3.3, eq. (3.3)-(3.4); REFERENCE §1c, the [D] proposal)
    Every walker jumps at every fine step, right with
    p_r = clip(1/2 + kappa rho_loc, 0, 1), left otherwise, kappa = delta_t/(4 delta_y)
    (the paper prints the inverted ratio, a typo), and
    rho_loc = c (walkers in the walker's cell) / (n_f h), cells of width h
    (default h = 2/24, c = 1/12: rho_loc is the fraction of walkers in the
    walker's 24-bin). All walkers move synchronously: the cell counts are
    recomputed from all positions before every fine step. On fine cells (h = delta_y,
    walkers on a lattice) the mean field is exactly Lax-Friedrichs,
    rho'_j = (rho_{j-1} + rho_{j+1})/2 + kappa (rho_{j-1}**2 - rho_{j+1}**2)
    (:func:`burgers_mean_field`), a scheme for rho_t + (c rho**2/2)_y = D rho_yy,
    D = delta_y**2/(2 delta_t).
``synthetic`` (paper §3.1)
    No fine-grained dynamics. :func:`sample_counts` draws m ~ Mult(n_f, softmax X)
    (the map p_cf of paper eq. (2.13), REFERENCE §2) and :func:`sample_positions`
    lifts counts to positions, each walker uniform inside its bin (REFERENCE §1 [G]).
    These two are used by every law to lift a coarse state to walkers
    (:func:`sample_fine_state`).

Initial coarse states (REFERENCE §1 [G], proposed p_c,0):
:func:`sample_initial_states` draws zero-mean random Fourier series at bin centres.

Exact facts (REFERENCE §6): the trinomial displacement law
(:func:`ad_displacement_pmf`, :func:`ad_displacement_moments`), the bin-to-bin
kernel K^(n) (:func:`ad_bin_kernel`; built from P_{400 n}, not K**n) and the
exact coarse density evolution (:func:`ad_propagate_density`); the Burgers
mean field (:func:`burgers_mean_field`), shock time, Rankine-Hugoniot position
and shock states (:func:`burgers_shock_time`, :func:`burgers_shock_position`,
:func:`burgers_shock_states`).

All randomness comes from a caller's ``numpy.random.Generator``; the same
generator state gives bitwise the same output.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real

import numba
import numpy as np
from scipy import optimize

__all__ = [
    "LAWS",
    "WalkerParams",
    "ad_bin_kernel",
    "ad_displacement_moments",
    "ad_displacement_pmf",
    "ad_propagate_density",
    "bin_centres",
    "bin_counts",
    "burgers_mean_field",
    "burgers_mean_field_binned",
    "burgers_shock_position",
    "burgers_shock_states",
    "burgers_shock_time",
    "sample_advection_diffusion",
    "sample_counts",
    "sample_fine_state",
    "sample_initial_states",
    "sample_positions",
    "sample_smooth_state",
    "simulate",
    "simulate_counts",
    "smooth_bin_state",
    "smooth_subcells",
    "softmax",
    "step_advection_diffusion",
    "step_burgers",
    "wrap_positions",
]

#: Laws with fine-grained dynamics accepted by :func:`simulate`.
LAWS = ("advection_diffusion", "burgers")

_AD_METHODS = ("exact", "steps")


# ----------------------------------------------------------------------------- parameters
def _is_int(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class WalkerParams:
    """Parameters of the fine-grained walker models (defaults: paper §3.2-3.3, REFERENCE §1).

    Parameters
    ----------
    walkers : int
        Number of walkers n_f (2400 for advection-diffusion and Burgers; 4800 synthetic).
    jump_right, jump_left : float
        Per-fine-step jump probabilities p_r, p_l of the advection-diffusion law
        (0.205, 0.195; REFERENCE §1b faithful reading). Each in [0, 1], sum <= 1.
        Unused by the Burgers law (its walkers always jump).
    step : float
        Jump length delta_y (3.875e-3), > 0 and < 2.
    dt : float
        Fine time step delta_t (2.5e-3), > 0.
    fine_steps_per_coarse : int
        Fine steps per coarse step Delta_t (400), >= 1.
    density_scale : float
        Scale c of the Burgers local density rho_loc = c n_cell / (n_f h) (default 1/12), > 0.
    cell_width : float
        Width h of the Burgers density cells (default 2/24 = the coarse bin width);
        2/h must be an integer (to 1e-9 relative) so the cells tile the periodic domain.
    """

    walkers: int = 2400
    jump_right: float = 0.205
    jump_left: float = 0.195
    step: float = 3.875e-3
    dt: float = 2.5e-3
    fine_steps_per_coarse: int = 400
    density_scale: float = 1.0 / 12.0
    cell_width: float = 2.0 / 24.0

    def __post_init__(self):
        if not _is_int(self.walkers) or self.walkers < 1:
            raise ValueError(f"walkers must be an integer >= 1, got {self.walkers!r}")
        for name in ("jump_right", "jump_left"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
        if self.jump_right + self.jump_left > 1.0 + 1e-12:
            raise ValueError(
                f"jump_right + jump_left must be <= 1, got {self.jump_right!r} + {self.jump_left!r}"
            )
        if not _is_real(self.step) or not math.isfinite(self.step) or not 0.0 < self.step < 2.0:
            raise ValueError(f"step must be in (0, 2), got {self.step!r}")
        if not _is_real(self.dt) or not math.isfinite(self.dt) or self.dt <= 0.0:
            raise ValueError(f"dt must be finite and > 0, got {self.dt!r}")
        if not _is_int(self.fine_steps_per_coarse) or self.fine_steps_per_coarse < 1:
            raise ValueError(
                f"fine_steps_per_coarse must be an integer >= 1, got {self.fine_steps_per_coarse!r}"
            )
        if not _is_real(self.density_scale) or not math.isfinite(self.density_scale) or self.density_scale <= 0:
            raise ValueError(f"density_scale must be finite and > 0, got {self.density_scale!r}")
        h = self.cell_width
        if not _is_real(h) or not math.isfinite(h) or not 0.0 < h <= 2.0:
            raise ValueError(f"cell_width must be in (0, 2], got {h!r}")
        n = 2.0 / h
        if abs(n - round(n)) > 1e-9 * n:
            raise ValueError(f"cell_width must divide the domain length 2 (2/cell_width = {n!r} is not an integer)")

    @property
    def jump_stay(self) -> float:
        """p_stay = 1 - p_r - p_l (advection-diffusion)."""
        return max(0.0, 1.0 - self.jump_right - self.jump_left)

    @property
    def kappa(self) -> float:
        """Burgers coupling kappa = delta_t / (4 delta_y) (REFERENCE §1c; 0.1613 at the paper's values)."""
        return self.dt / (4.0 * self.step)

    @property
    def cells(self) -> int:
        """Number of Burgers density cells 2 / h."""
        return int(round(2.0 / self.cell_width))

    @property
    def coarse_dt(self) -> float:
        """Delta_t = fine_steps_per_coarse * delta_t (1.0 at the paper's values)."""
        return self.fine_steps_per_coarse * self.dt

    def replace(self, **changes) -> "WalkerParams":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- validation
def _check_params(params) -> WalkerParams:
    if not isinstance(params, WalkerParams):
        raise ValueError(f"params must be a WalkerParams, got {type(params).__name__}")
    return params


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_nonneg_int(x, name: str) -> int:
    if not _is_int(x) or x < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {x!r}")
    return int(x)


def _check_pos_int(x, name: str) -> int:
    if not _is_int(x) or x < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {x!r}")
    return int(x)


def _check_positions(positions, walkers: int | None = None) -> np.ndarray:
    x = np.asarray(positions)
    if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"positions must be a non-empty 1-D float array, got shape {x.shape} dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)) or np.any(x < -1.0) or np.any(x >= 1.0):
        raise ValueError("positions must be finite and inside the periodic domain [-1, 1)")
    if walkers is not None and x.size != walkers:
        raise ValueError(f"positions has {x.size} walkers but params.walkers = {walkers}")
    return x


# ----------------------------------------------------------------------------- geometry
def wrap_positions(x) -> np.ndarray:
    """Map reals onto the periodic domain [-1, 1) (x mod 2), guarding rounding at the edges."""
    y = np.asarray(x, dtype=np.float64)
    y = y - 2.0 * np.floor((y + 1.0) * 0.5)
    y = np.where(y >= 1.0, y - 2.0, y)
    return np.where(y < -1.0, y + 2.0, y)


@numba.njit(cache=True)
def _wrap1(y):
    if y >= 1.0 or y < -1.0:
        y = y - 2.0 * math.floor((y + 1.0) * 0.5)
        if y >= 1.0:
            y -= 2.0
        if y < -1.0:
            y += 2.0
    return y


def bin_centres(n_bins: int) -> np.ndarray:
    """Centres y_j = -1 + (j + 1/2) w, w = 2/n_bins, of the bins j = 0..n_bins-1."""
    n = _check_pos_int(n_bins, "n_bins")
    return -1.0 + (np.arange(n) + 0.5) * (2.0 / n)


def _bin_index(x: np.ndarray, n_bins: int) -> np.ndarray:
    idx = np.floor((x + 1.0) * (n_bins / 2.0)).astype(np.int64)
    return np.clip(idx, 0, n_bins - 1)


def bin_counts(positions, n_bins: int) -> np.ndarray:
    """Counts m_j of walkers in the n_bins equal bins of [-1, 1) (the CG statistic of paper eq. (2.9)).

    Parameters
    ----------
    positions : array_like of float, shape (..., n_f)
        Positions in [-1, 1); leading axes (e.g. coarse steps, replicas) are kept.
    n_bins : int
        Number of bins (24 for the CG state, 96 for the fine observable of §4).

    Returns
    -------
    ndarray of int64, shape (..., n_bins)
    """
    n = _check_pos_int(n_bins, "n_bins")
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"positions must have a non-empty last (walker) axis, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x < -1.0) or np.any(x >= 1.0):
        raise ValueError("positions must be finite and inside [-1, 1)")
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    idx = _bin_index(flat, n) + n * np.arange(flat.shape[0])[:, None]
    counts = np.bincount(idx.ravel(), minlength=n * flat.shape[0])
    return counts.reshape(lead + (n,)).astype(np.int64)


# ----------------------------------------------------------------------------- synthetic: p_cf and lifting
def softmax(X) -> np.ndarray:
    """rho = softmax(X) along the last axis (REFERENCE §2), overflow-free (max subtracted)."""
    x = np.asarray(X, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"X must have a non-empty last (bin) axis, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("X must be finite")
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample_counts(X, walkers: int, rng) -> np.ndarray:
    """Bin counts m ~ Mult(n_f, softmax X): the coarse-to-fine map p_cf (paper eq. (2.13)).

    Parameters
    ----------
    X : array_like of float, shape (..., n_c)
        Coarse states; leading axes are independent draws.
    walkers : int
        n_f >= 1.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int64, shape (..., n_c), each row summing to ``walkers``.
    """
    n_f = _check_pos_int(walkers, "walkers")
    rng = _check_rng(rng)
    rho = softmax(X)
    return rng.multinomial(n_f, rho).astype(np.int64)


def sample_positions(counts, rng) -> np.ndarray:
    """Lift bin counts to walker positions, each walker uniform inside its bin (REFERENCE §1 [G]).

    Parameters
    ----------
    counts : array_like of int, shape (n_bins,)
        Non-negative counts m_j of bins j = [-1 + j w, -1 + (j+1) w), w = 2/n_bins.
    rng : numpy.random.Generator
        One uniform per walker.

    Returns
    -------
    ndarray of float64, shape (sum(counts),)
        Positions in [-1, 1), grouped by bin (walkers are identical), with
        ``bin_counts(result, n_bins) == counts`` exactly. A draw that rounds onto a
        bin edge outside its bin (probability ~1e-16) is moved to the bin centre.
    """
    rng = _check_rng(rng)
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"counts must be a non-empty 1-D integer array, got shape {c.shape} dtype {c.dtype}")
    if np.any(c < 0):
        raise ValueError("counts must be non-negative")
    if c.sum() == 0:
        raise ValueError("counts must contain at least one walker")
    n = c.size
    j = np.repeat(np.arange(n, dtype=np.int64), c.astype(np.int64))
    u = rng.random(j.size)
    x = -1.0 + (j + u) * (2.0 / n)
    bad = _bin_index(x, n) != j
    bad |= x >= 1.0
    if bad.any():
        x[bad] = -1.0 + (j[bad] + 0.5) * (2.0 / n)
    return x


def sample_fine_state(X, walkers: int, rng) -> np.ndarray:
    """x ~ p_cf(x | X): counts from Mult(n_f, softmax X), then positions uniform in their bins.

    ``X`` has shape (n_c,); returns float64 positions of shape (walkers,).
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"X must be 1-D (one coarse state), got shape {x.shape}")
    return sample_positions(sample_counts(x, walkers, rng), rng)


def smooth_subcells(n_bins: int, step: float, per_step: int = 4) -> int:
    """Sub-cells per coarse bin for a relaxed (smooth) lifting: width at most ``step / per_step``.

    A density that is constant on sub-cells of width h has jumps of relative size
    ~|d log rho/dy| h at the sub-cell edges; one coarse step of walkers whose
    displacement variance is sigma**2 erases them and adds h**2/6 to the apparent
    bin-kernel variance (the variance of the triangle Lambda of two uniforms of
    width h). With h <= delta_y/4 that is <= delta_y**2/96, i.e. <= 6.5e-5 of the
    variance 159.96 delta_y**2 per Delta_t of the advection-diffusion walkers
    (REFERENCE §6); the uniform-in-bin lifting adds w**2/6 = 0.48 of it at 24 bins.
    """
    nb = _check_pos_int(n_bins, "n_bins")
    k = _check_pos_int(per_step, "per_step")
    if not _is_real(step) or not math.isfinite(step) or step <= 0:
        raise ValueError(f"step must be finite and > 0, got {step!r}")
    return max(1, int(math.ceil(k * (2.0 / nb) / step - 1e-9)))


def smooth_bin_state(log_density, n_bins: int) -> np.ndarray:
    """Coarse state of a sub-cell density: centred log of its bin masses.

    Parameters
    ----------
    log_density : array_like, shape (..., n_bins * s)
        log rho (up to a constant) at the centres of s equal sub-cells per bin.
    n_bins : int

    Returns
    -------
    ndarray, shape (..., n_bins)
        X_j = log sum_{sub-cells in j} rho - mean, so that softmax(X) are exactly the bin
        masses of the density the walkers of :func:`sample_smooth_state` are drawn from
        (p_cf of paper eq. (2.13) holds exactly).
    """
    nb = _check_pos_int(n_bins, "n_bins")
    z = np.asarray(log_density, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] % nb or not np.all(np.isfinite(z)):
        raise ValueError(f"log_density must be finite with a last axis that is a multiple of n_bins = {nb}, got {z.shape}")
    top = z.max(axis=-1, keepdims=True)
    e = np.exp(z - top).reshape(z.shape[:-1] + (nb, z.shape[-1] // nb)).sum(axis=-1)
    X = np.log(e)
    return X - X.mean(axis=-1, keepdims=True)


def sample_smooth_state(log_density, walkers: int, rng) -> np.ndarray:
    """A relaxed fine state: n_f walkers i.i.d. from the density exp(log_density) on sub-cells.

    ``log_density`` (G,) is log rho at the centres of G equal sub-cells of [-1, 1)
    (e.g. a smooth coarse field evaluated on ``n_bins * smooth_subcells(...)`` points);
    counts are Mult(n_f, softmax(log_density)) over the sub-cells and walkers are
    uniform inside their sub-cell (:func:`sample_positions`). The coarse counts are then
    Mult(n_f, softmax(smooth_bin_state(log_density, n_bins))): the map p_cf of paper
    eq. (2.13) with the within-bin placement following the smooth field instead of
    the uniform placement of :func:`sample_fine_state` (a gap of the paper, REFERENCE §1 [G]).
    """
    z = np.asarray(log_density, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"log_density must be 1-D (one state), got shape {z.shape}")
    return sample_positions(sample_counts(z, walkers, rng), rng)


def sample_initial_states(n: int, n_bins: int, modes: int, amplitude: float, rng) -> np.ndarray:
    """Coarse initial states X0 ~ p_c,0: zero-mean random Fourier series at bin centres (REFERENCE §1 [G]).

    X0_j = sum_{k=1..K} (a_k cos(k pi y_j) + b_k sin(k pi y_j)), a_k, b_k ~ N(0, (A/k)**2)
    independent, y_j the bin centres. For K <= n_bins/2 every sample has sum_j X0_j = 0
    (to rounding), Var X0_j = A**2 sum_k k**-2 and
    Cov(X0_i, X0_j) = A**2 sum_k cos(k pi (y_i - y_j)) / k**2.

    Parameters
    ----------
    n : int
        Number of samples (>= 1).
    n_bins : int
        Number of bins n_c (>= 2).
    modes : int
        K, 1 <= K <= n_bins // 2 (higher modes alias onto lower ones at the bin centres).
    amplitude : float
        A > 0 (REFERENCE §1: train with A ~ 0.3-0.5 for the synthetic law).
    rng : numpy.random.Generator
        Draws a (n, K) then b (n, K) standard normals.

    Returns
    -------
    ndarray of float64, shape (n, n_bins)
    """
    n = _check_pos_int(n, "n")
    nb = _check_pos_int(n_bins, "n_bins")
    if nb < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins!r}")
    if not _is_int(modes) or not 1 <= modes <= nb // 2:
        raise ValueError(f"modes must be an integer in [1, n_bins // 2 = {nb // 2}], got {modes!r}")
    if not _is_real(amplitude) or not math.isfinite(amplitude) or amplitude <= 0:
        raise ValueError(f"amplitude must be finite and > 0, got {amplitude!r}")
    rng = _check_rng(rng)
    k = np.arange(1, modes + 1, dtype=np.float64)
    scale = amplitude / k
    a = rng.standard_normal((n, modes)) * scale
    b = rng.standard_normal((n, modes)) * scale
    phase = np.pi * np.outer(k, bin_centres(nb))  # (K, n_bins)
    return a @ np.cos(phase) + b @ np.sin(phase)


# ----------------------------------------------------------------------------- advection-diffusion kernels
@numba.njit(cache=True)
def _ad_steps_kernel(x, n_coarse, n_fine, p_r, p_rl, dy, rng, out):
    """Step-by-step AD: one uniform per walker per fine step; out[t] = positions after t coarse steps.

    Walkers are independent, so each walker's n_fine fine steps are drawn in a row
    and its net jump count k gives x + k dy (wrapped) at the end of the coarse step.
    """
    nf = x.shape[0]
    for i in range(nf):
        out[0, i] = x[i]
    for t in range(n_coarse):
        for i in range(nf):
            k = 0
            for _ in range(n_fine):  # branch-free: +1 if u < p_r, -1 if p_r <= u < p_r + p_l
                u = rng.random()
                k += (u < p_r) - ((u >= p_r) & (u < p_rl))
            out[t + 1, i] = _wrap1(out[t, i] + k * dy)


def _ad_probs(params: WalkerParams):
    p_r = float(params.jump_right)
    p_l = float(params.jump_left)
    return p_r, p_l, min(1.0, p_r + p_l)


def step_advection_diffusion(positions, n_coarse_steps: int, params: WalkerParams, rng) -> np.ndarray:
    """Advection-diffusion walkers simulated fine step by fine step (numba).

    Per fine step each walker jumps right with ``params.jump_right``, left with
    ``params.jump_left``, stays otherwise (paper §3.2; REFERENCE §1b).

    Parameters
    ----------
    positions : array_like of float, shape (n_f,)
        Start positions in [-1, 1); n_f must equal ``params.walkers``.
    n_coarse_steps : int
        Number of coarse steps (each ``params.fine_steps_per_coarse`` fine steps).
    params : WalkerParams
    rng : numpy.random.Generator
        One uniform per walker per fine step.

    Returns
    -------
    ndarray of float64, shape (n_coarse_steps + 1, n_f)
        Row t = positions after t coarse steps (row 0 = the start).
    """
    params = _check_params(params)
    x = _check_positions(positions, params.walkers)
    n_c = _check_nonneg_int(n_coarse_steps, "n_coarse_steps")
    rng = _check_rng(rng)
    p_r, _, p_rl = _ad_probs(params)
    out = np.empty((n_c + 1, x.size), dtype=np.float64)
    _ad_steps_kernel(x, n_c, params.fine_steps_per_coarse, p_r, p_rl, float(params.step), rng, out)
    return out


def _ad_exact_displacement(size: int, n: int, p_r: float, p_l: float, rng) -> np.ndarray:
    """Net jump count k = n_r - n_l over n fine steps, (n_r, n_l, n_stay) ~ Mult(n; p_r, p_l, p_stay)."""
    n_r = rng.binomial(n, p_r, size=size)
    q = 0.0 if p_r >= 1.0 else min(1.0, p_l / (1.0 - p_r))
    n_l = rng.binomial(n - n_r, q)
    return (n_r - n_l).astype(np.int64)


def sample_advection_diffusion(positions, n_coarse_steps: int, params: WalkerParams, rng) -> np.ndarray:
    """Advection-diffusion walkers by exact sampling of each coarse step (O(1) per walker per step).

    The displacement over one coarse step of n = ``fine_steps_per_coarse`` fine
    steps is k delta_y with (n_r, n_l, n_stay) ~ Mult(n; p_r, p_l, p_stay),
    k = n_r - n_l, i.e. k ~ P_n, the n-fold convolution of (p_l, p_stay, p_r)
    (REFERENCE §6). Drawn as n_r ~ Bin(n, p_r), n_l ~ Bin(n - n_r, p_l/(1 - p_r)).
    The law of the output equals that of :func:`step_advection_diffusion`.

    Parameters and returns as :func:`step_advection_diffusion`; the generator
    supplies two binomial arrays of size n_f per coarse step.
    """
    params = _check_params(params)
    x = _check_positions(positions, params.walkers)
    n_c = _check_nonneg_int(n_coarse_steps, "n_coarse_steps")
    rng = _check_rng(rng)
    p_r, p_l, _ = _ad_probs(params)
    dy = float(params.step)
    out = np.empty((n_c + 1, x.size), dtype=np.float64)
    out[0] = x
    for t in range(n_c):  # loop over coarse steps only; walkers are vectorised
        k = _ad_exact_displacement(x.size, params.fine_steps_per_coarse, p_r, p_l, rng)
        out[t + 1] = wrap_positions(out[t] + k * dy)
    return out


# ----------------------------------------------------------------------------- Burgers kernel
@numba.njit(cache=True)
def _burgers_kernel(x, n_coarse, n_fine, n_cells, kappa_c, dy, rng, out, counts, cell):
    """Synchronous Lax-Friedrichs walkers (REFERENCE §1c).

    Per fine step: count walkers per cell (O(n_f + n_cells)), then every walker draws
    one uniform and jumps right if u < clip(1/2 + kappa_c * n_cell, 0, 1), else left,
    where kappa_c = kappa * c / (n_f h), so kappa_c * n_cell = kappa * rho_loc.
    """
    nf = x.shape[0]
    inv_h = n_cells / 2.0
    for i in range(nf):
        out[0, i] = x[i]
    for t in range(n_coarse):
        for s in range(n_fine):
            for j in range(n_cells):
                counts[j] = 0
            for i in range(nf):
                c = int((x[i] + 1.0) * inv_h)
                if c >= n_cells:
                    c = n_cells - 1
                cell[i] = c
                counts[c] += 1
            for i in range(nf):
                p = 0.5 + kappa_c * counts[cell[i]]
                if p > 1.0:
                    p = 1.0
                elif p < 0.0:
                    p = 0.0
                y = x[i] + dy * (2 * (rng.random() < p) - 1)  # branch-free +-dy
                if y >= 1.0:
                    y -= 2.0
                elif y < -1.0:
                    y += 2.0
                x[i] = y
        for i in range(nf):
            out[t + 1, i] = x[i]


def step_burgers(positions, n_coarse_steps: int, params: WalkerParams, rng) -> np.ndarray:
    """"Inviscid Burgers" walkers (paper §3.3; REFERENCE §1c), fine step by fine step (numba).

    Each walker jumps every fine step, right with p_r = clip(1/2 + kappa rho_loc, 0, 1)
    and left otherwise, kappa = dt/(4 step), rho_loc = c n_cell/(n_f h) with n_cell the
    number of walkers in the walker's cell of width h = ``params.cell_width`` and
    c = ``params.density_scale``. Cell counts are recomputed from all walkers before
    every fine step (synchronous update); cost O(n_f + 2/h) per fine step.

    Parameters and returns as :func:`step_advection_diffusion` (``jump_right`` and
    ``jump_left`` are not used); one uniform per walker per fine step.
    """
    params = _check_params(params)
    x = _check_positions(positions, params.walkers).copy()
    n_c = _check_nonneg_int(n_coarse_steps, "n_coarse_steps")
    rng = _check_rng(rng)
    n_cells = params.cells
    kappa_c = params.kappa * params.density_scale / (params.walkers * (2.0 / n_cells))
    out = np.empty((n_c + 1, x.size), dtype=np.float64)
    counts = np.empty(n_cells, dtype=np.int64)
    cell = np.empty(x.size, dtype=np.int64)
    _burgers_kernel(
        x, n_c, params.fine_steps_per_coarse, n_cells, kappa_c, float(params.step), rng, out, counts, cell
    )
    return out


# ----------------------------------------------------------------------------- entry point
def simulate(
    law: str, positions, n_coarse_steps: int, params: WalkerParams, rng, *, method: str | None = None
) -> np.ndarray:
    """Run a fine-grained walker law for ``n_coarse_steps`` coarse steps.

    Parameters
    ----------
    law : {"advection_diffusion", "burgers"}
        The "synthetic" law has no fine-grained dynamics (use :func:`sample_counts` /
        :func:`sample_positions` with the coarse law instead).
    positions : array_like of float, shape (params.walkers,)
        Start positions in [-1, 1) (e.g. from :func:`sample_fine_state`).
    n_coarse_steps : int
        >= 0.
    params : WalkerParams
    rng : numpy.random.Generator
    method : {"exact", "steps"}, optional
        Advection-diffusion only: "exact" (default) samples each coarse step's
        displacement exactly (:func:`sample_advection_diffusion`), "steps" draws every
        fine step (:func:`step_advection_diffusion`). Burgers accepts only "steps"
        (its default).

    Returns
    -------
    ndarray of float64, shape (n_coarse_steps + 1, params.walkers)
        Positions after 0, 1, ..., n_coarse_steps coarse steps.
    """
    if law == "advection_diffusion":
        m = "exact" if method is None else method
        if m not in _AD_METHODS:
            raise ValueError(f"method must be one of {_AD_METHODS} for law 'advection_diffusion', got {method!r}")
        fn = sample_advection_diffusion if m == "exact" else step_advection_diffusion
        return fn(positions, n_coarse_steps, params, rng)
    if law == "burgers":
        if method not in (None, "steps"):
            raise ValueError(f"method must be 'steps' for law 'burgers' (no exact sampler), got {method!r}")
        return step_burgers(positions, n_coarse_steps, params, rng)
    if law == "synthetic":
        raise ValueError(
            "law 'synthetic' has no fine-grained dynamics: evolve X with the coarse law and lift with "
            "sample_counts / sample_positions"
        )
    raise ValueError(f"law must be one of {LAWS}, got {law!r}")


def simulate_counts(
    law: str,
    positions,
    n_coarse_steps: int,
    params: WalkerParams,
    rng,
    n_bins: int = 24,
    *,
    method: str | None = None,
) -> np.ndarray:
    """Bin counts (n_coarse_steps + 1, n_bins) of :func:`simulate` (the coarse observations m)."""
    n = _check_pos_int(n_bins, "n_bins")
    return bin_counts(simulate(law, positions, n_coarse_steps, params, rng, method=method), n)


# ----------------------------------------------------------------------------- exact facts: advection-diffusion
def ad_displacement_pmf(n_fine_steps: int, jump_right: float, jump_left: float):
    """P_n(k): law of the net jump count k = n_r - n_l after n fine steps (REFERENCE §6).

    The n-fold convolution of (p_l, p_stay, p_r) on {-1, 0, 1}, computed exactly
    (no aliasing) by a length-(2n+1) discrete Fourier transform of the
    characteristic function (p_l e^{-i theta} + p_stay + p_r e^{i theta})**n;
    absolute accuracy ~1e-15 per entry.

    Returns
    -------
    k : ndarray of int64, shape (2n+1,)
        -n..n.
    p : ndarray of float64, shape (2n+1,)
        P_n(k), non-negative, summing to 1.
    """
    n = _check_pos_int(n_fine_steps, "n_fine_steps")
    WalkerParams(jump_right=jump_right, jump_left=jump_left)  # validates the probabilities
    p_r, p_l = float(jump_right), float(jump_left)
    p_s = max(0.0, 1.0 - p_r - p_l)
    L = 2 * n + 1
    theta = 2.0 * np.pi * np.arange(L) / L
    cf = (p_l * np.exp(-1j * theta) + p_s + p_r * np.exp(1j * theta)) ** n
    circ = np.fft.fft(cf).real / L  # circ[k mod L] = P_n(k)
    k = np.arange(-n, n + 1, dtype=np.int64)
    p = np.clip(circ[k % L], 0.0, None)
    return k, p / p.sum()


def ad_displacement_moments(params: WalkerParams, n_coarse_steps: int = 1):
    """Exact mean and variance of a walker's displacement over n coarse steps (length units).

    With n' = n_coarse_steps * fine_steps_per_coarse fine steps:
    mean = n' (p_r - p_l) delta_y, variance = n' (p_r + p_l - (p_r - p_l)**2) delta_y**2.
    At the paper's values, per Delta_t: 4 delta_y = 0.0155 and 159.96 delta_y**2 (REFERENCE §6).

    Returns
    -------
    (mean, variance) : tuple of float
    """
    params = _check_params(params)
    n = _check_nonneg_int(n_coarse_steps, "n_coarse_steps") * params.fine_steps_per_coarse
    p_r, p_l = params.jump_right, params.jump_left
    dy = params.step
    return n * (p_r - p_l) * dy, n * (p_r + p_l - (p_r - p_l) ** 2) * dy * dy


def ad_bin_kernel(n_bins: int, n_coarse_steps: int, params: WalkerParams) -> np.ndarray:
    """Exact bin-to-bin transition kernel K^(n) of the advection-diffusion walkers (REFERENCE §6).

    A walker uniform inside bin i ends, after n coarse steps, in bin i + m
    (mod n_bins) with probability

        K_m = sum_k P_{n N}(k) Lambda(k delta_y / w - m),   Lambda(z) = max(0, 1 - |z|),

    w = 2/n_bins, N = fine_steps_per_coarse, P the trinomial law of
    :func:`ad_displacement_pmf`. K^(n) is built from P_{nN}; it is not (K^(1))**n,
    because after one step walkers are no longer uniform inside bins.
    At 24 bins, one step, the paper's values, m = -2..3:
    0.0048, 0.1436, 0.5348, 0.2946, 0.0220, 0.0002.

    Returns
    -------
    ndarray of float64, shape (n_bins,)
        K[m mod n_bins] (wrapped around the periodic domain), summing to 1.
    """
    nb = _check_pos_int(n_bins, "n_bins")
    params = _check_params(params)
    n = _check_pos_int(n_coarse_steps, "n_coarse_steps") * params.fine_steps_per_coarse
    k, p = ad_displacement_pmf(n, params.jump_right, params.jump_left)
    z = k * params.step * (nb / 2.0)
    m0 = np.floor(z)
    f = z - m0
    m0 = m0.astype(np.int64)
    K = np.bincount(m0 % nb, weights=p * (1.0 - f), minlength=nb)
    K += np.bincount((m0 + 1) % nb, weights=p * f, minlength=nb)
    return K


def ad_propagate_density(rho0, n_coarse_steps: int, params: WalkerParams) -> np.ndarray:
    """Exact expected bin densities after n coarse steps from walkers uniform inside bins.

    rho_n[j] = sum_i rho0[i] K^(n)[(j - i) mod n_bins] (REFERENCE §6), for an initial
    state whose walkers are uniform inside their bins (as produced by
    :func:`sample_positions`). ``rho0`` has shape (..., n_bins); returns the same shape.
    """
    r = np.asarray(rho0, dtype=np.float64)
    if r.ndim == 0 or r.shape[-1] < 1 or not np.all(np.isfinite(r)):
        raise ValueError(f"rho0 must be a finite array with a bin axis last, got shape {r.shape}")
    nb = r.shape[-1]
    steps = _check_nonneg_int(n_coarse_steps, "n_coarse_steps")
    if steps == 0:
        return r.copy()
    K = ad_bin_kernel(nb, steps, params)
    return np.fft.irfft(np.fft.rfft(r, axis=-1) * np.fft.rfft(K), n=nb, axis=-1)


# ----------------------------------------------------------------------------- exact facts: Burgers
def burgers_mean_field(rho0, n_fine_steps: int, kappa: float) -> np.ndarray:
    """Mean field of the Burgers walkers on fine cells: Lax-Friedrichs (paper eq. (3.4); REFERENCE §1c).

    With walkers on a lattice of spacing delta_y and density cells equal to the
    lattice cells (h = delta_y), the expected next density given rho is

        rho'_j = rho_{j-1} p_r(rho_{j-1}) + rho_{j+1} (1 - p_r(rho_{j+1})),
        p_r(rho) = clip(1/2 + kappa rho, 0, 1),

    which without clipping is exactly
    rho'_j = (rho_{j-1} + rho_{j+1})/2 + kappa (rho_{j-1}**2 - rho_{j+1}**2), periodic in j.
    (The walkers' mean equals this recursion up to the covariance terms
    E[n_j**2] - E[n_j]**2, of relative size 1/n_cell.)

    Parameters
    ----------
    rho0 : array_like of float, shape (n_cells,)
        Density in rho_loc units (c n_cell / (n_f h)).
    n_fine_steps : int
    kappa : float
        delta_t / (4 delta_y).

    Returns
    -------
    ndarray of float64, shape (n_fine_steps + 1, n_cells)
        Row s = density after s fine steps. Total mass is conserved.
    """
    rho = np.asarray(rho0, dtype=np.float64)
    if rho.ndim != 1 or rho.size < 3 or not np.all(np.isfinite(rho)):
        raise ValueError(f"rho0 must be a finite 1-D array of >= 3 cells, got shape {rho.shape}")
    n = _check_nonneg_int(n_fine_steps, "n_fine_steps")
    if not _is_real(kappa) or not math.isfinite(kappa):
        raise ValueError(f"kappa must be a finite real, got {kappa!r}")
    out = np.empty((n + 1, rho.size))
    out[0] = rho
    for s in range(n):  # loop over time steps; cells are vectorised
        r = out[s]
        right = r * np.clip(0.5 + kappa * r, 0.0, 1.0)
        left = r - right
        out[s + 1] = np.roll(right, 1) + np.roll(left, -1)
    return out


def burgers_mean_field_binned(times, rho_mean: float, amplitude: float, density_scale: float, n_bins: int,
                              viscosity: float = 0.0, cells: int = 1200) -> np.ndarray:
    """Bin masses of rho_t + (c rho**2/2)_y = D rho_yy from rho0 = rho_bar (1 + A sin(pi y)) (REFERENCE §6).

    The continuum mean field of the Burgers walkers (D = delta_y**2/(2 delta_t), REFERENCE §1c),
    or with ``viscosity = 0`` the inviscid one whose shock forms at t* = 1/(c rho_bar A pi).
    Finite volumes on ``cells`` periodic cells of [-1, 1) started from the exact cell
    averages: Godunov flux (upwind, exact for rho > 0, i.e. A < 1) and explicit central
    diffusion, time step 0.4 h/(c max rho) and <= 0.25 h**2/D. A shock is a few cells wide,
    far below a bin at the default 50 cells per bin of 24.

    Parameters
    ----------
    times : array_like of float
        Non-decreasing output times (t >= 0, in the units of t*).
    rho_mean, amplitude, density_scale : float
        rho_bar, A (0 < A < 1), c.
    n_bins : int
        Bins of the output; ``cells`` must be a multiple.
    viscosity : float
        D >= 0.
    cells : int

    Returns
    -------
    ndarray, shape (len(times), n_bins)
        Bin masses (walker fractions: rho integrated over the bin, total 2 rho_bar).
    """
    _check_burgers_ic(rho_mean, amplitude, density_scale)
    if amplitude >= 1:
        raise ValueError(f"amplitude must be < 1 (positive density), got {amplitude!r}")
    nb = _check_pos_int(n_bins, "n_bins")
    n = _check_pos_int(cells, "cells")
    if n % nb:
        raise ValueError(f"cells ({n}) must be a multiple of n_bins ({nb})")
    if not _is_real(viscosity) or not math.isfinite(viscosity) or viscosity < 0:
        raise ValueError(f"viscosity must be finite and >= 0, got {viscosity!r}")
    ts = np.asarray(times, dtype=np.float64).reshape(-1)
    if ts.size == 0 or not np.all(np.isfinite(ts)) or ts.min() < 0 or np.any(np.diff(ts) < 0):
        raise ValueError("times must be a non-empty, finite, non-decreasing sequence of t >= 0")
    c, D, h = float(density_scale), float(viscosity), 2.0 / n
    left = -1.0 + np.arange(n) * h
    rho = rho_mean * (1.0 + amplitude * (np.cos(np.pi * left) - np.cos(np.pi * (left + h))) / (np.pi * h))
    dt = 0.4 * h / (c * rho_mean * (1.0 + amplitude))
    if D > 0:
        dt = min(dt, 0.25 * h * h / D)
    out = np.empty((ts.size, nb))
    t = 0.0
    for k, T in enumerate(ts):
        while t < T - 1e-12:
            s = min(dt, T - t)
            flux = 0.5 * c * rho * rho  # Godunov = upwind for rho > 0
            new = rho - (s / h) * (flux - np.roll(flux, 1))
            if D > 0:
                new += (s * D / (h * h)) * (np.roll(rho, 1) - 2.0 * rho + np.roll(rho, -1))
            rho, t = new, t + s
        out[k] = rho.reshape(nb, -1).sum(axis=1) * h
    return out


def _check_burgers_ic(rho_mean, amplitude, density_scale):
    for name, v in (("rho_mean", rho_mean), ("amplitude", amplitude), ("density_scale", density_scale)):
        if not _is_real(v) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")


def burgers_shock_time(rho_mean: float, amplitude: float, density_scale: float) -> float:
    """Shock formation time t* = 1/(c rho_bar A pi) of rho_t + (c rho**2/2)_y = 0 (REFERENCE §6).

    For the initial density rho0(y) = rho_bar (1 + A sin(pi y)) on [-1, 1):
    characteristics y0 + c rho0(y0) t first cross at t* = 1/max(-c rho0'), at y = -1 + c rho_bar t*.
    """
    _check_burgers_ic(rho_mean, amplitude, density_scale)
    return 1.0 / (density_scale * rho_mean * amplitude * math.pi)


def burgers_shock_position(t, rho_mean: float, density_scale: float):
    """Rankine-Hugoniot shock position y_s = -1 + c rho_bar t (mod 2, in [-1, 1)) (REFERENCE §6).

    By the symmetry of rho0 = rho_bar (1 + A sin(pi y)) about the shock,
    s = c (rho_L + rho_R)/2 = c rho_bar. Valid for t >= t* (before t* there is no shock).
    """
    _check_burgers_ic(rho_mean, 1.0, density_scale)
    y = wrap_positions(-1.0 + density_scale * rho_mean * np.asarray(t, dtype=np.float64))
    return float(y) if y.ndim == 0 else y


def burgers_shock_states(t: float, rho_mean: float, amplitude: float, density_scale: float):
    """Densities (rho_L, rho_R) on both sides of the shock at time t (REFERENCE §6).

    rho_{L,R} = rho_bar +- a/(c t), where a in (0, 1) solves a = c rho_bar A t sin(pi a)
    (the characteristics from y0 = -1 -+ a meet at the shock). Before t* (no shock)
    returns (rho_bar, rho_bar). As t -> inf the jump 2a/(ct) -> 2/(ct).
    """
    _check_burgers_ic(rho_mean, amplitude, density_scale)
    if not _is_real(t) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t must be finite and >= 0, got {t!r}")
    g = density_scale * rho_mean * amplitude * t
    if g * math.pi <= 1.0:
        return float(rho_mean), float(rho_mean)
    a = optimize.brentq(lambda s: s - g * math.sin(math.pi * s), 1e-12, 1.0, xtol=1e-15)
    jump = a / (density_scale * t)
    return float(rho_mean + jump), float(rho_mean - jump)
