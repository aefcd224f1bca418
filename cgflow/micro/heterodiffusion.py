"""One-dimensional heterogeneous diffusion: the detailed model of seed 001 §5.1 and its exact facts.

Detailed model (seed eq. (20)). On [0, 1],

    u_t = (a(x/eps) u_x)_x,   u(0, t) = u(0, 0),   u(1, t) = u(1, 0)   (seed eq. (21)),

with a 1-periodic coefficient a(y) > 0: the paper's a(y) = 1.1 + sin(2 pi y), or
any mean + amplitude sin(2 pi y), or a tabulated piecewise-constant a
(:class:`Coefficient`).

Micro lattice (REFERENCE §2; the authors' ``diff_hom.py``). Nodes x_i = x_0 + i dx;
the bond between x_i and x_{i+1} carries

    a_i = a((x_i + dx)/eps),

i.e. a is sampled at the *right* end x_{i+1} of its bond, not at the bond midpoint
(:func:`micro_coefficients`). The semi-discrete model is the conservative central
difference

    du_i/dt = [a_i (u_{i+1} - u_i) - a_{i-1} (u_i - u_{i-1})] / dx**2,

end values held fixed. Sampling at x_{i+1} instead of the midpoint translates the
medium by dx/2; it does not change the lattice's effective coefficient (the
harmonic mean of the samples), only the phase of the corrector.

Homogenization (seed eqs. (2)-(6), (22)). In 1-D the periodic cell problem gives
a* = (integral_0^1 dy/a(y))**-1, the harmonic mean (:func:`effective_coefficient`,
computed by solving the cell problem; :func:`sine_effective` is the closed form
sqrt(mean**2 - amplitude**2) for the sine family). For the paper's medium
a* = sqrt(0.21) = 0.4582575695; the paper prints 0.45825686, 7e-7 low (REFERENCE §2).

Exact homogenized solutions (seed eqs. (21)-(23)). For the Fourier initial
conditions of seed eq. (23) (:class:`FourierModes`) the solution of
u_t = a* u_xx with the Dirichlet data of eq. (21) is a linear steady part plus a
sine series whose coefficients are computed in closed form
(:func:`homogenized_solution`, :func:`homogenized_time_derivative`).

Implicit micro time stepping (:func:`dirichlet_steps`, :class:`DirichletStepper`)
on one or many segments with frozen ends is shared by :func:`full_resolution_solve`
and by patch dynamics (:mod:`cgflow.methods.eqfree.patch_dynamics`): all segments
form one stacked tridiagonal system whose L D L^T factors are computed once per
scheme and step size. By default (``solver="numba"``) a whole run of steps is one
compiled kernel (:func:`_burst_kernel`) on work arrays the stepper keeps: the
right-hand sides (flux-form Laplacian, forcing, the scheme's combinations) are
assembled inside the forward sweeps, the sweeps work in place, and the segments
are swept side by side in a site-major copy of the state, so a step allocates
nothing. That matters beyond speed: numpy temporaries of this size are mmap'ed
and unmapped by glibc on every step when ``MALLOC_TRIM_THRESHOLD_`` is small, as
in Dask worker processes, which made the numpy path 1.6-4x slower there. The
earlier numpy paths (LAPACK ``dpttrs`` on the cached factorisation, or
``scipy.linalg.solve_banded``) remain as ``solver="ldl"``/``"banded"``.

Everything else is vectorised numpy/scipy; no I/O.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real

import numba
import numpy as np
from scipy import sparse
from scipy.linalg import lapack, solve_banded
from scipy.sparse.linalg import spsolve

__all__ = [
    "MICRO_SCHEMES",
    "MICRO_SOLVERS",
    "Coefficient",
    "DirichletStepper",
    "FourierModes",
    "FullResolutionResult",
    "cell_problem",
    "coarse_average",
    "dirichlet_laplacian_apply",
    "dirichlet_steps",
    "effective_coefficient",
    "fourier_initial_condition",
    "full_resolution_solve",
    "homogenized_solution",
    "homogenized_time_derivative",
    "micro_coefficients",
    "sine_effective",
]

#: Implicit schemes of :func:`dirichlet_steps`.
MICRO_SCHEMES = ("backward_euler", "bdf2", "trbdf2")


# ----------------------------------------------------------------------------- validation helpers
def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_scheme(scheme: str) -> str:
    if scheme not in MICRO_SCHEMES:
        raise ValueError(f"scheme must be one of {MICRO_SCHEMES}, got {scheme!r}")
    return scheme


# ----------------------------------------------------------------------------- the coefficient
@dataclass(frozen=True)
class Coefficient:
    """A 1-periodic diffusivity a(y) > 0.

    Either the sine family a(y) = mean + amplitude sin(2 pi y) (seed eq. (20):
    mean 1.1, amplitude 1, the defaults), or a table: ``table[j]`` is the value
    of a on the cell [j/n, (j+1)/n) of one period, n = len(table).

    Parameters
    ----------
    mean, amplitude : float, optional
        Sine family; default 1.1 and 1.0 when no table is given. Must be left
        unset with a table.
    table : sequence of float, optional
        Values of a piecewise-constant a on n equal cells of one period.

    Raises
    ------
    ValueError
        If a is not > 0 everywhere (the message names the offending value), a
        value is not finite, or both a table and mean/amplitude are given.
    """

    mean: float | None = None
    amplitude: float | None = None
    table: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.table is not None:
            if self.mean is not None or self.amplitude is not None:
                raise ValueError("give either a table or mean/amplitude, not both")
            values = np.asarray(self.table, dtype=np.float64).ravel()
            if values.size == 0:
                raise ValueError("table must hold at least one value")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"table values must be finite, got {self.table!r}")
            bad = np.flatnonzero(values <= 0)
            if bad.size:
                j = int(bad[0])
                raise ValueError(
                    f"a must be > 0 everywhere: table[{j}] = {float(values[j]):g} "
                    f"on the cell [{j}/{values.size}, {j + 1}/{values.size}) of the period"
                )
            object.__setattr__(self, "table", tuple(float(v) for v in values))
            return
        mean = 1.1 if self.mean is None else self.mean
        amplitude = 1.0 if self.amplitude is None else self.amplitude
        for name, value in (("mean", mean), ("amplitude", amplitude)):
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if mean - abs(amplitude) <= 0:
            y_min = 0.75 if amplitude >= 0 else 0.25
            raise ValueError(
                f"a(y) = {mean:g} + ({amplitude:g}) sin(2 pi y) must be > 0 everywhere; "
                f"its minimum is mean - |amplitude| = {mean - abs(amplitude):g} at y = {y_min}"
            )
        object.__setattr__(self, "mean", float(mean))
        object.__setattr__(self, "amplitude", float(amplitude))

    @property
    def is_table(self) -> bool:
        """True for a tabulated (piecewise-constant) coefficient."""
        return self.table is not None

    @property
    def minimum(self) -> float:
        """min over y of a(y) (> 0 by construction)."""
        if self.table is not None:
            return float(min(self.table))
        return self.mean - abs(self.amplitude)

    def __call__(self, y):
        """a(y), vectorised over any array shape; y is in units of the period."""
        y = np.asarray(y, dtype=np.float64)
        if self.table is None:
            return self.mean + self.amplitude * np.sin(2.0 * np.pi * y)
        values = np.asarray(self.table)
        n = values.size
        frac = y - np.floor(y)
        # y - floor(y) can round up to 1.0 for tiny negative y: clip into the last cell
        idx = np.minimum((frac * n).astype(np.int64), n - 1)
        return values[idx]


def sine_effective(mean: float, amplitude: float) -> float:
    """Closed-form a* = sqrt(mean**2 - amplitude**2) for a(y) = mean + amplitude sin(2 pi y).

    Notes
    -----
    The harmonic mean: integral_0^1 dy/(m + A sin 2 pi y) = 1/sqrt(m**2 - A**2) for
    m > |A| (REFERENCE §2). For the paper's m = 1.1, A = 1: sqrt(0.21) = 0.4582575695
    (the paper's eq. (22) prints 0.45825686, 7e-7 low).
    """
    coef = Coefficient(mean=mean, amplitude=amplitude)  # validates positivity
    return math.sqrt((coef.mean - coef.amplitude) * (coef.mean + coef.amplitude))


def cell_problem(coef: Coefficient, n: int = 1024) -> tuple[np.ndarray, np.ndarray, float]:
    """Finite-volume solution of the periodic cell problem (seed eqs. (4)-(6)).

    Parameters
    ----------
    coef : Coefficient
    n : int, default 1024
        Cells on one period. For a table it is rounded up to a multiple of the
        table length so that every table cell holds whole FV cells.

    Returns
    -------
    y : ndarray, shape (n,)
        Nodes y_j = j/n.
    chi : ndarray, shape (n,)
        The periodic corrector at the nodes, mean zero (eq. (6)).
    a_star : float
        a* = integral a (1 - chi') dy (eq. (4)).

    Notes
    -----
    Cell j = [y_j, y_{j+1}] carries a_j = a(midpoint). Eq. (5), d/dy[a chi'] = a', is
    discretised in flux form d/dy[a (chi' - 1)] = 0: flux continuity at node j,

        a_j ((chi_{j+1} - chi_j)/dy - 1) = a_{j-1} ((chi_j - chi_{j-1})/dy - 1),

    periodic in j, closed by the normalisation sum_j chi_j = 0 (a bordered system
    with one Lagrange multiplier). Then a* = sum_j a_j (1 - (chi_{j+1} - chi_j)/dy) dy.
    The flux q = a_j (1 - chi'_j) is the same in every cell and sum_j chi'_j dy = 0
    (periodicity), so a* = q = (mean_j 1/a_j)**-1: the harmonic mean of the
    midpoint samples. For a table this is exact; for a smooth a it is the
    periodic midpoint rule for integral dy/a, which converges geometrically
    (error ~ exp(-n acosh(mean/|amplitude|)) for the sine family, below 1e-15 at
    the default n for mean/|amplitude| >= 1.04).
    """
    if not isinstance(coef, Coefficient):
        raise ValueError(f"coef must be a Coefficient, got {type(coef).__name__}")
    n = _check_int(n, "n", 3)
    if coef.table is not None:
        m = len(coef.table)
        n = max(m, -(-n // m) * m)
        if n < 3:
            n = 3 * m
    dy = 1.0 / n
    y = np.arange(n) * dy
    a = np.asarray(coef(y + 0.5 * dy))  # a_j on cell [y_j, y_{j+1}]
    a_left = np.roll(a, 1)  # a_{j-1}
    j = np.arange(n)
    # row j: a_j (chi_{j+1} - chi_j) - a_{j-1} (chi_j - chi_{j-1}) = dy (a_j - a_{j-1})
    rows = np.concatenate([j, j, j, np.full(n, n), j])
    cols = np.concatenate([(j + 1) % n, j, (j - 1) % n, j, np.full(n, n)])
    vals = np.concatenate([a, -(a + a_left), a_left, np.ones(n), np.ones(n)])
    K = sparse.csc_matrix((vals, (rows, cols)), shape=(n + 1, n + 1))
    rhs = np.concatenate([dy * (a - a_left), [0.0]])
    sol = spsolve(K, rhs)
    chi = sol[:n]
    dchi = (np.roll(chi, -1) - chi) / dy
    a_star = float(np.sum(a * (1.0 - dchi)) * dy)
    return y, chi, a_star


def effective_coefficient(coef: Coefficient, n: int = 1024) -> float:
    """Homogenized coefficient a* from the periodic cell problem (seed eqs. (4)-(6)).

    In 1-D a* is the harmonic mean (integral_0^1 dy/a(y))**-1; it is computed here as
    the finite-volume cell-problem solution of :func:`cell_problem` (which equals
    the harmonic mean of the midpoint samples, exactly for a table). For the sine
    family it agrees with :func:`sine_effective` to ~1e-15; for the paper's
    medium a* = sqrt(0.21) = 0.4582575695 (the paper's 0.45825686 is 7e-7 low).
    """
    return cell_problem(coef, n)[2]


def micro_coefficients(x, eps: float, dx: float, coef: Coefficient) -> np.ndarray:
    """Bond coefficients of the micro lattice, as the authors placed them (REFERENCE §2).

    Parameters
    ----------
    x : array_like
        Left end x_i of each bond (any shape); the bond joins x_i and x_{i+1} = x_i + dx.
    eps : float
        Period of the heterogeneity.
    dx : float
        Micro grid spacing.
    coef : Coefficient

    Returns
    -------
    ndarray, shape of ``x``
        a_i = a((x_i + dx)/eps): the coefficient of bond i is a sampled at the
        bond's *right* node x_{i+1} (the authors' ``diffCoeff``:
        ``xa = x[0:-1] + delta_x``), and it multiplies (u_{i+1} - u_i)/dx in the
        flux of the semi-discrete model (module docstring).
    """
    eps = _check_positive(eps, "eps")
    dx = _check_positive(dx, "dx")
    return np.asarray(coef((np.asarray(x, dtype=np.float64) + dx) / eps))


# ----------------------------------------------------------------------------- initial conditions
@dataclass(frozen=True)
class FourierModes:
    """u0(x) = sum_j a_j sin(2 pi l_j x + phi_j), seed eq. (23).

    Parameters
    ----------
    amplitudes, wavenumbers, phases : sequence of float
        a_j, l_j, phi_j (equal lengths; stored as tuples of floats).
    """

    amplitudes: tuple[float, ...]
    wavenumbers: tuple[float, ...]
    phases: tuple[float, ...]

    def __post_init__(self):
        arrays = []
        for name in ("amplitudes", "wavenumbers", "phases"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).ravel()
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite")
            arrays.append(arr)
            object.__setattr__(self, name, tuple(float(v) for v in arr))
        if not arrays[0].size == arrays[1].size == arrays[2].size:
            raise ValueError(
                f"amplitudes, wavenumbers and phases must have equal lengths, got "
                f"{arrays[0].size}, {arrays[1].size}, {arrays[2].size}"
            )
        if arrays[0].size == 0:
            raise ValueError("FourierModes needs at least one mode")

    def _arrays(self):
        return np.asarray(self.amplitudes), 2.0 * np.pi * np.asarray(self.wavenumbers), np.asarray(self.phases)

    def __call__(self, x):
        """u0(x), vectorised over any array shape."""
        a, w, p = self._arrays()
        x = np.asarray(x, dtype=np.float64)
        return np.sin(x[..., None] * w + p) @ a

    def second_derivative(self, x):
        """u0''(x) = -sum_j a_j (2 pi l_j)**2 sin(2 pi l_j x + phi_j)."""
        a, w, p = self._arrays()
        x = np.asarray(x, dtype=np.float64)
        return -(np.sin(x[..., None] * w + p) @ (a * w**2))


def fourier_initial_condition(rng: np.random.Generator, n_modes: int = 20) -> FourierModes:
    """Random initial condition of seed eq. (23).

    Draw order (part of reproducibility): three vectorised draws from ``rng``,
    amplitudes a_j ~ U[-1, 1], then wavenumbers l_j ~ U[0, 4], then phases
    phi_j ~ U[0, 2 pi], each ``rng.uniform(low, high, n_modes)``.

    Notes
    -----
    The paper's text says a_j ~ U[-1, 1]; the authors' ``generate_data_1d.py`` draws
    ``rand - 0.5`` (U[-0.5, 0.5]) and shifts the profile to be positive. cgflow
    follows the paper's text; the shift is irrelevant to a linear problem.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = _check_int(n_modes, "n_modes")
    amplitudes = rng.uniform(-1.0, 1.0, n)
    wavenumbers = rng.uniform(0.0, 4.0, n)
    phases = rng.uniform(0.0, 2.0 * np.pi, n)
    return FourierModes(amplitudes, wavenumbers, phases)


# ----------------------------------------------------------------------------- exact homogenized solution
def _check_modes(u0) -> FourierModes:
    if not isinstance(u0, FourierModes):
        raise ValueError(f"u0 must be FourierModes, got {type(u0).__name__}")
    return u0


def _check_xt(x, t) -> tuple[np.ndarray, np.ndarray]:
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if x.ndim != 1 or t.ndim != 1:
        raise ValueError(f"x and t must be scalars or 1-D, got shapes {x.shape} and {t.shape}")
    if not (np.all(np.isfinite(x)) and np.all((x >= 0) & (x <= 1))):
        raise ValueError("x must lie in [0, 1]")
    if not (np.all(np.isfinite(t)) and np.all(t >= 0)):
        raise ValueError("t must be finite and >= 0")
    return x, t


def _sine_coefficients(u0: FourierModes, k: np.ndarray) -> np.ndarray:
    """b_k = 2 integral_0^1 (u0(x) - c0 - c1 x) sin(k pi x) dx in closed form.

    With alpha = 2 pi l, beta = k pi:
    integral_0^1 sin(alpha x + phi) sin(beta x) dx = (G(alpha - beta) - G(alpha + beta))/2,
    G(d) = integral_0^1 cos(d x + phi) dx = (sin(d + phi) - sin phi)/d
         = cos(phi + d/2) sinc(d/(2 pi))   (numpy's sinc(z) = sin(pi z)/(pi z)),
    which is cos(phi) at the resonance d = 0 (2 l = k) and is evaluated without
    cancellation near it. The linear part: integral_0^1 sin(k pi x) dx = (1 - (-1)**k)/(k pi),
    integral_0^1 x sin(k pi x) dx = (-1)**(k+1)/(k pi).
    """
    a = np.asarray(u0.amplitudes)
    alpha = 2.0 * np.pi * np.asarray(u0.wavenumbers)
    phi = np.asarray(u0.phases)
    beta = np.pi * k[:, None].astype(np.float64)

    def G(d):
        return np.cos(phi + 0.5 * d) * np.sinc(d / (2.0 * np.pi))

    proj = 0.5 * (G(alpha - beta) - G(alpha + beta))  # (K, J)
    c0 = float(u0(0.0))
    c1 = float(u0(1.0)) - c0
    sign = np.where(k % 2 == 0, 1.0, -1.0)  # (-1)**k
    kpi = np.pi * k
    lin = c0 * (1.0 - sign) / kpi - c1 * sign / kpi
    return 2.0 * (proj @ a - lin)


def _n_modes(bound: float, a_star: float, t_min: float, power: int, tol: float, max_modes: int) -> int:
    """Smallest K with sum_{k>K} bound (a* pi**2 k**2)**power exp(-a* pi**2 k**2 t_min) <= tol."""
    gamma = a_star * np.pi**2 * t_min
    k_hi = int(math.ceil(math.sqrt((math.log(max(bound, 1e-300) / tol) + 60.0 + power * 60.0) / gamma))) + 2
    if k_hi > max_modes:
        raise ValueError(
            f"t = {t_min!r} is too small for the sine series (about {k_hi} modes needed, max_modes = {max_modes}); "
            "use t = 0 (the initial condition itself) or a larger time"
        )
    k = np.arange(1, k_hi + 1, dtype=np.float64)
    lam = a_star * np.pi**2 * k**2
    terms = bound * lam**power * np.exp(-lam * t_min)
    tail = np.cumsum(terms[::-1])[::-1]  # tail[i] = sum_{k >= i+1} terms
    ok = np.flatnonzero(tail <= tol)
    return int(ok[0]) if ok.size else k_hi  # K = ok[0] leaves out k >= ok[0] + 1


def _series(u0: FourierModes, a_star: float, x: np.ndarray, t: np.ndarray, power: int, tol: float, max_modes: int):
    """sum_k b_k (-lambda_k)**power exp(-lambda_k t) sin(k pi x) for t > 0, shape (len(t), len(x))."""
    bound = 4.0 * float(np.sum(np.abs(u0.amplitudes)))  # |b_k| <= 2 max|u0 - linear| <= 4 sum|a_j|
    K = max(1, _n_modes(bound, a_star, float(t.min()), power, tol, max_modes))
    out = np.zeros((t.size, x.size))
    chunk = max(1, min(K, 4_000_000 // max(1, x.size)))
    for start in range(1, K + 1, chunk):
        k = np.arange(start, min(K, start + chunk - 1) + 1)
        b = _sine_coefficients(u0, k)
        lam = a_star * np.pi**2 * k.astype(np.float64) ** 2
        weights = b * (-lam) ** power * np.exp(-np.outer(t, lam))  # (T, K)
        out += weights @ np.sin(np.pi * np.outer(k, x))
    return out


def _check_a_star(a_star) -> float:
    return _check_positive(a_star, "a_star")


def homogenized_solution(
    u0: FourierModes, a_star: float, x, t, *, tol: float = 1e-13, max_modes: int = 200_000
) -> np.ndarray:
    """Exact solution of u_t = a* u_xx on [0, 1], u(0,t) = u0(0), u(1,t) = u0(1) (seed eqs. (21)-(22)).

    Parameters
    ----------
    u0 : FourierModes
        Initial condition (seed eq. (23)).
    a_star : float
        Homogenized coefficient.
    x : array_like, 1-D
        Points in [0, 1].
    t : array_like, 1-D
        Times >= 0.
    tol : float, default 1e-13
        Bound on the neglected tail of the sine series (absolute).
    max_modes : int, default 200000
        Refuse times so small that more modes would be needed.

    Returns
    -------
    ndarray, shape (len(t), len(x))

    Notes
    -----
    u = c0 + c1 x + sum_k b_k exp(-a* k**2 pi**2 t) sin(k pi x), c0 = u0(0),
    c1 = u0(1) - u0(0), b_k the sine coefficients of u0 - c0 - c1 x, computed in
    closed form (:func:`_sine_coefficients`, resonance 2 l_j = k included). The
    series is cut at the first K whose tail bound sum_{k>K} B exp(-a* pi**2 k**2 t)
    is below ``tol``, B = 4 sum|a_j| >= max|b_k|. At t = 0 the row is u0(x)
    itself (the series converges only like k**-3 there, with Gibbs-free but slow
    convergence).
    """
    u0 = _check_modes(u0)
    a_star = _check_a_star(a_star)
    x, t = _check_xt(x, t)
    out = np.empty((t.size, x.size))
    zero = t == 0
    out[zero] = u0(x)
    if np.any(~zero):
        c0 = float(u0(0.0))
        c1 = float(u0(1.0)) - c0
        out[~zero] = c0 + c1 * x + _series(u0, a_star, x, t[~zero], 0, tol, max_modes)
    return out


def homogenized_time_derivative(
    u0: FourierModes, a_star: float, x, t, *, tol: float = 1e-11, max_modes: int = 200_000
) -> np.ndarray:
    """Exact du/dt of :func:`homogenized_solution`, shape (len(t), len(x)).

    For t > 0: -sum_k a* k**2 pi**2 b_k exp(-a* k**2 pi**2 t) sin(k pi x) (tail below
    ``tol``). At t = 0: a* u0''(x) at interior points, the limit t -> 0+ of du/dt
    there; at x = 0 and x = 1 the value is held fixed, so du/dt = 0 (as for t > 0).
    """
    u0 = _check_modes(u0)
    a_star = _check_a_star(a_star)
    x, t = _check_xt(x, t)
    out = np.empty((t.size, x.size))
    zero = t == 0
    if np.any(zero):
        row = a_star * u0.second_derivative(x)
        row[(x == 0) | (x == 1)] = 0.0
        out[zero] = row
    if np.any(~zero):
        out[~zero] = _series(u0, a_star, x, t[~zero], 1, tol, max_modes)
    return out


# ----------------------------------------------------------------------------- implicit micro stepping
def dirichlet_laplacian_apply(u: np.ndarray, bonds: np.ndarray, dx: float) -> np.ndarray:
    """(L u)_i = [a_i (u_{i+1} - u_i) - a_{i-1} (u_i - u_{i-1})]/dx**2 on interior nodes, 0 at the ends.

    ``u`` has shape (..., n), ``bonds`` (..., n - 1) (bond i joins nodes i and i+1).
    """
    flux = bonds * np.diff(u, axis=-1)
    out = np.zeros_like(u, dtype=np.float64)
    out[..., 1:-1] = (flux[..., 1:] - flux[..., :-1]) / dx**2
    return out


def _banded(bonds: np.ndarray, c: float) -> np.ndarray:
    """Banded storage (3, S*n) of I - c dx**2 L for S stacked segments, identity rows at every segment end.

    The identity rows (frozen ends) have zero off-diagonals, so the stacked
    tridiagonal system decouples into the segments and one solve serves them all.
    """
    S, m = bonds.shape
    n = m + 1
    diag = np.ones((S, n))
    diag[:, 1:-1] += c * (bonds[:, 1:] + bonds[:, :-1])
    upper = np.zeros((S, n))  # coefficient of u_{j+1} in row j
    upper[:, 1:-1] = -c * bonds[:, 1:]
    lower = np.zeros((S, n))  # coefficient of u_{j-1} in row j
    lower[:, 1:-1] = -c * bonds[:, :-1]
    ab = np.zeros((3, S * n))
    ab[0, 1:] = upper.ravel()[:-1]
    ab[1] = diag.ravel()
    ab[2, :-1] = lower.ravel()[1:]
    return ab


#: Linear solvers of :func:`dirichlet_steps` (the first is the default).
MICRO_SOLVERS = ("numba", "ldl", "banded")

_SCHEME_CODE = {"backward_euler": 0, "bdf2": 1, "trbdf2": 2}


class _Scratch:
    """Reusable work arrays behind a non-blocking lock; pickles and copies as an empty scratch.

    ``borrow(name=shape, ...)`` is a context manager yielding one float64 array per
    name: the cached ones (allocated on first use) when the lock is free, fresh
    ones when another thread is using them. A single-threaded caller therefore
    allocates nothing after its first call, and concurrent callers never share a
    buffer. Contents are unspecified on entry.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._arrays: dict[str, np.ndarray] = {}

    def __reduce__(self):
        return (_Scratch, ())

    @contextmanager
    def borrow(self, **shapes):
        if not self._lock.acquire(blocking=False):
            yield [np.zeros(shape) for shape in shapes.values()]
            return
        try:
            arrays = []
            for name, shape in shapes.items():
                arr = self._arrays.get(name)
                if arr is None or arr.shape != shape:
                    arr = self._arrays[name] = np.zeros(shape)
                arrays.append(arr)
            yield arrays
        finally:
            self._lock.release()


# Site-major ("transposed") kernels: an array of shape (n, S) holds node j of segment s
# at [j, s], so every sweep walks the S independent segments side by side (their
# recurrences interleave, the inner loop over s vectorises, and each array is read
# as one contiguous stream).
@numba.njit(cache=True, nogil=True)
def _ldl_factor(aT, c, lower, inv_pivot):
    """L D L^T factors of the interior rows of I - c dx**2 L on every segment (site-major).

    ``aT`` (n - 1, S): bond j of segment s at [j, s]. Writes, per segment s,
    ``lower[j]`` (j = 2..n-2) = e_{j-1}/D_{j-1} with e_{j-1} = -c a_{j-1} and
    ``inv_pivot[j]`` = 1/D_j, D_1 = d_1, D_j = d_j - lower[j] e_{j-1},
    d_j = 1 + c (a_j + a_{j-1}) (LAPACK ``dpttrf``'s recurrence). ``lower[1]`` = -c a_0
    eliminates the frozen left end (an identity row), so a forward sweep started
    from y_0 = u_0 adds c a_0 u_0 to row 1; ``lower[0]`` = ``lower[n-1]`` = 0 and the
    end pivots are unused (0).
    """
    n = aT.shape[0] + 1
    S = aT.shape[1]
    for s in range(S):
        lower[0, s] = 0.0
        lower[n - 1, s] = 0.0
        inv_pivot[0, s] = 0.0
        inv_pivot[n - 1, s] = 0.0
        lower[1, s] = -c * aT[0, s]
        inv_pivot[1, s] = 1.0 + c * (aT[1, s] + aT[0, s])  # pivot D_1, inverted below
    for j in range(2, n - 1):
        for s in range(S):
            e = -c * aT[j - 1, s]
            m = e / inv_pivot[j - 1, s]
            lower[j, s] = m
            inv_pivot[j, s] = (1.0 + c * (aT[j, s] + aT[j - 1, s])) - m * e
    for j in range(1, n - 1):
        for s in range(S):
            inv_pivot[j, s] = 1.0 / inv_pivot[j, s]


@numba.njit(cache=True, nogil=True)
def _close_forward(y, aT, u, c):
    """Add the frozen right end's coupling c a_{n-2} u_{n-1} to the last interior row of a forward sweep.

    The forward recurrence passes nothing on from the last interior row, so adding
    the end term after the sweep is the same as adding it to the right-hand side.
    """
    n, S = y.shape
    for s in range(S):
        y[n - 2, s] += (c * aT[n - 2, s]) * u[n - 1, s]


@numba.njit(cache=True, nogil=True)
def _back_substitute(y, lower, inv_pivot, out):
    """out_j = y_j/D_j - lower_{j+1} out_{j+1}, j = n-2..1 (``out`` may be ``y``; lower[n-1] = 0)."""
    n, S = y.shape
    for j in range(n - 2, 0, -1):
        for s in range(S):
            out[j, s] = y[j, s] * inv_pivot[j, s] - lower[j + 1, s] * out[j + 1, s]


@numba.njit(cache=True, nogil=True)
def _burst_kernel(u, f, aT, l1, p1, l2, p2, y, prev, scheme, steps, c1, c2, tau, dx2, g, d, wg, w0):
    """``steps`` implicit steps of du/dt = L u + f on all segments, in place on ``u`` (site-major, ends frozen).

    Arrays (n, S): ``u`` the state (rows 0 and n-1 are the frozen ends and are never
    written), ``f`` the forcing (rows 0 and n-1 ignored), ``l1, p1`` and ``l2, p2``
    the :func:`_ldl_factor` factors of the two implicit matrices (coefficients
    ``c1``, ``c2`` = their multiple of tau/dx**2), ``y`` work, ``prev`` BDF2's
    previous state (any shape for the other schemes); ``aT`` (n - 1, S) bonds.
    Every right-hand side is assembled inside the forward sweep that consumes it,
    and the sweeps work in place: no allocation, four passes over the sites per
    TR-BDF2 step and two per BDF2/backward-Euler step. The arithmetic follows
    :class:`_ImplicitSolve` ("ldl") operation by operation, except that pivots are
    applied as reciprocals and the end couplings are added after the forward sweep.

    scheme 0 (backward Euler, c1 = tau/dx**2): (u+ - u)/tau = L u+ + f.
    scheme 1 (BDF2, c1 = tau/dx**2, c2 = 2/3 tau/dx**2): a backward-Euler first step,
    then (3 u+ - 4 u + u-)/(2 tau) = L u+ + f.
    scheme 2 (TR-BDF2, c1 = g/2 tau/dx**2, c2 = d tau/dx**2, g = 2 - sqrt 2,
    d = (1 - g)/(2 - g)): trapezoidal stage u_g = u + g tau/2 (L u + L u_g) + g tau f,
    then u+ = w_g u_g - w_0 u + d tau (L u+ + f).
    """
    n, S = u.shape
    for s in range(S):
        y[n - 1, s] = 0.0  # multiplied by lower[n-1] = 0 in the back substitutions
    if scheme == 2:
        h, gt, dt = 0.5 * g * tau, g * tau, d * tau
        for _ in range(steps):
            # trapezoidal stage: rhs = u + (g tau/2) L u + g tau f, forward sweep with (l1, p1)
            for s in range(S):
                y[0, s] = u[0, s]
            for j in range(1, n - 1):
                for s in range(S):
                    lap = aT[j, s] * (u[j + 1, s] - u[j, s]) - aT[j - 1, s] * (u[j, s] - u[j - 1, s])
                    r = (u[j, s] + h * (lap / dx2)) + gt * f[j, s]
                    y[j, s] = r - l1[j, s] * y[j - 1, s]
            _close_forward(y, aT, u, c1)
            _back_substitute(y, l1, p1, y)  # y = u_g (interior)
            # BDF2 stage: rhs = w_g u_g - w_0 u + d tau f, forward sweep in place with (l2, p2)
            for j in range(1, n - 1):
                for s in range(S):
                    r = (wg * y[j, s] - w0 * u[j, s]) + dt * f[j, s]
                    y[j, s] = r - l2[j, s] * y[j - 1, s]
            _close_forward(y, aT, u, c2)
            _back_substitute(y, l2, p2, u)
    else:
        ft = (2.0 / 3.0) * tau
        for step in range(steps):
            for s in range(S):
                y[0, s] = u[0, s]
            if scheme == 0 or step == 0:  # backward Euler (BDF2's first step keeps u as prev)
                for j in range(1, n - 1):
                    for s in range(S):
                        if scheme == 1:
                            prev[j, s] = u[j, s]
                        y[j, s] = (u[j, s] + tau * f[j, s]) - l1[j, s] * y[j - 1, s]
                _close_forward(y, aT, u, c1)
                _back_substitute(y, l1, p1, u)
            else:
                for j in range(1, n - 1):
                    for s in range(S):
                        r = (4.0 * u[j, s] - prev[j, s]) / 3.0 + ft * f[j, s]
                        prev[j, s] = u[j, s]
                        y[j, s] = r - l2[j, s] * y[j - 1, s]
                _close_forward(y, aT, u, c2)
                _back_substitute(y, l2, p2, u)


@numba.njit(cache=True, nogil=True)
def _to_site_major(src, dst, check):
    """dst[j, s] = src[s, j]; with ``check``, False if a value is not finite."""
    S, n = src.shape
    ok = True
    for j in range(n):
        for s in range(S):
            v = src[s, j]
            dst[j, s] = v
            if check and not math.isfinite(v):
                ok = False
    return ok


@numba.njit(cache=True, nogil=True)
def _to_segment_major(src, dst):
    """dst[s, j] = src[j, s]."""
    n, S = src.shape
    for j in range(n):
        for s in range(S):
            dst[s, j] = src[j, s]


class _ImplicitSolve:
    """Solver of (I - c dx**2 L) u = r on S stacked segments with frozen ends, c fixed ("ldl", "banded").

    ``"ldl"``: the frozen end values go to the right-hand side, leaving the
    interior unknowns of all segments in one symmetric positive-definite
    tridiagonal system (zero couplings between segments). It is factorised once
    (LAPACK ``dpttrf``, L D L^T) and every stage is one ``dpttrs`` call.
    ``"banded"``: the full stacked system with identity end rows, one
    ``scipy.linalg.solve_banded((1, 1), ...)`` (pivoted LU) per stage. Same
    result to rounding; "ldl" is ~5x faster at 720k unknowns. (The default
    solver, "numba", does not use this class: :func:`_burst_kernel`.)
    """

    def __init__(self, bonds: np.ndarray, c: float, solver: str):
        self.bonds, self.c, self.solver = bonds, c, solver
        S, m = bonds.shape
        if solver == "banded":
            self.ab = _banded(bonds, c)
            return
        d = 1.0 + c * (bonds[:, 1:] + bonds[:, :-1])  # (S, n - 2)
        e = np.zeros((S, m - 1))
        e[:, :-1] = -c * bonds[:, 1:-1]  # coupling j <-> j+1 inside a segment; 0 across segments
        if d.size == 1:  # one unknown (f2py rejects the empty off-diagonal): D = d
            self.df, self.ef = d.ravel(), None
            return
        self.df, self.ef, info = lapack.dpttrf(d.ravel(), e.ravel()[:-1])
        if info != 0:  # pragma: no cover - SPD by construction (bonds > 0, c > 0)
            raise RuntimeError(f"dpttrf failed (info = {info}): the implicit matrix is not positive definite")

    def __call__(self, rhs: np.ndarray) -> np.ndarray:
        """Solve with end rows u_end = rhs_end (rhs has shape (S, n))."""
        if self.solver == "banded":
            return solve_banded((1, 1), self.ab, rhs.ravel(), check_finite=False).reshape(rhs.shape)
        # always a fresh copy (dpttrs overwrites it; for S = 1 the slice is already
        # contiguous and ascontiguousarray would hand back a view of rhs, i.e. of u)
        r = np.array(rhs[:, 1:-1], order="C")
        r[:, 0] += self.c * self.bonds[:, 0] * rhs[:, 0]
        r[:, -1] += self.c * self.bonds[:, -1] * rhs[:, -1]
        if self.ef is None:
            x, info = r.reshape(-1) / self.df, 0
        else:
            x, info = lapack.dpttrs(self.df, self.ef, r.reshape(-1), overwrite_b=True)
        if info != 0:  # pragma: no cover
            raise RuntimeError(f"dpttrs failed (info = {info})")
        out = np.empty_like(rhs)
        out[:, 0], out[:, -1] = rhs[:, 0], rhs[:, -1]
        out[:, 1:-1] = x.reshape(r.shape)
        return out


class DirichletStepper:
    """Implicit steps of size ``tau`` for du/dt = L u + f on S stacked segments with frozen ends.

    The factorisations depend only on the bonds, dx, tau and the scheme, so a
    stepper built once serves every burst of a patch-dynamics run.

    Parameters
    ----------
    bonds : array_like, shape (n - 1,) or (S, n - 1)
        Bond coefficients a_i (:func:`micro_coefficients`), > 0; n >= 3.
    dx : float
        Lattice spacing.
    tau : float
        Time step.
    scheme : {"trbdf2", "bdf2", "backward_euler"}, default "trbdf2"
        ``"backward_euler"``: one implicit solve per step, first order.
        ``"bdf2"``: BDF2 with a backward-Euler first step, one solve per step.
        ``"trbdf2"``: TR-BDF2 (trapezoidal stage to gamma tau, gamma = 2 - sqrt 2,
        then BDF2), second order and L-stable, two solves per step.
        All three damp the stiff micro modes (L-stable), which matters because a
        lifted profile lacks the corrector and relaxes on the time scale
        eps**2/a, far below tau.
    solver : {"numba", "ldl", "banded"}, default "numba"
        ``"numba"``: the whole run is one compiled kernel (:func:`_burst_kernel`)
        on work arrays kept by the stepper: right-hand sides assembled inside the
        forward sweeps, L D L^T factors (LAPACK ``dpttrf``'s recurrence) computed
        once at construction, no allocation per step, all segments swept side
        by side in a site-major copy of the state. ``"ldl"`` (LAPACK
        ``dpttrs`` per stage) and ``"banded"`` (``scipy.linalg.solve_banded``)
        are the earlier numpy paths (:class:`_ImplicitSolve`), which allocate
        several state-sized temporaries per step. All three agree to rounding
        (~1e-13 relative between "numba" and "ldl").
    """

    def __init__(self, bonds, dx: float, tau: float, scheme: str = "trbdf2", solver: str = "numba"):
        self.scheme = _check_scheme(scheme)
        if solver not in MICRO_SOLVERS:
            raise ValueError(f"solver must be one of {MICRO_SOLVERS}, got {solver!r}")
        self.solver = solver
        self.dx = _check_positive(dx, "dx")
        self.tau = _check_positive(tau, "tau")
        a = np.asarray(bonds, dtype=np.float64)
        self.single = a.ndim == 1
        a = np.atleast_2d(a)
        if a.ndim != 2 or a.shape[1] < 2:
            raise ValueError(f"bonds must be (n - 1,) or (S, n - 1) with n >= 3, got shape {np.shape(bonds)}")
        if not (np.all(np.isfinite(a)) and np.all(a > 0)):
            raise ValueError("bonds must be finite and > 0")
        self.bonds = a
        c = self.tau / self.dx**2
        g = 2.0 - math.sqrt(2.0)
        self._g, self._d = g, (1.0 - g) / (2.0 - g)
        if scheme == "backward_euler":
            coefficients = (c,)
        elif scheme == "bdf2":
            coefficients = (c, (2.0 / 3.0) * c)
        else:
            coefficients = (0.5 * g * c, self._d * c)
        self._coefficients = coefficients
        if solver == "numba":
            S, m = a.shape
            self._aT = np.ascontiguousarray(a.T)
            self._factors = []
            for coef in coefficients:
                lower, inv_pivot = np.empty((m + 1, S)), np.empty((m + 1, S))
                _ldl_factor(self._aT, coef, lower, inv_pivot)
                self._factors.append((lower, inv_pivot))
            if len(self._factors) == 1:
                self._factors.append(self._factors[0])
            self._scratch = _Scratch()
        else:
            self._solves = tuple(_ImplicitSolve(a, coef, solver) for coef in coefficients)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the state (n,) or (S, n)."""
        S, m = self.bonds.shape
        return (m + 1,) if self.single else (S, m + 1)

    def run(self, u0, steps: int, forcing=None, *, out=None) -> np.ndarray:
        """``steps`` steps from ``u0`` (shape :attr:`shape`); ``forcing`` f is constant, its end entries ignored.

        ``out``, optional: a C-contiguous float64 array of shape :attr:`shape` to
        receive the result (returned); it may be ``u0`` itself. Without it a new
        array is returned. ``u0`` and ``forcing`` are never modified.
        """
        steps = _check_int(steps, "steps", 0)
        if out is not None and not (
            isinstance(out, np.ndarray) and out.shape == self.shape and out.dtype == np.float64
            and out.flags.c_contiguous and out.flags.writeable
        ):
            raise ValueError(f"out must be a writeable C-contiguous float64 array of shape {self.shape}")
        if self.solver == "numba":
            return self._run_numba(u0, steps, forcing, out)
        u = self._run_numpy(u0, steps, forcing)
        if out is None:
            return u
        out[...] = u
        return out

    def _run_numba(self, u0, steps: int, forcing, out) -> np.ndarray:
        u = np.asarray(u0, dtype=np.float64)
        if u.shape != self.shape:
            raise ValueError(f"u0 must have shape {self.shape}, got {u.shape}")
        S, m = self.bonds.shape
        n = m + 1
        u = np.ascontiguousarray(u.reshape(S, n))
        if forcing is not None:
            f = np.asarray(forcing, dtype=np.float64)
            f = np.ascontiguousarray(np.broadcast_to(f, self.shape).reshape(S, n))
        result = np.empty(self.shape) if out is None else out
        (l1, p1), (l2, p2) = self._factors
        code = _SCHEME_CODE[self.scheme]
        prev_shape = (n, S) if code == 1 else (1, S)
        with self._scratch.borrow(u=(n, S), f=(n, S), y=(n, S), prev=prev_shape) as (ut, ft, y, prev):
            if not _to_site_major(u, ut, True):
                raise ValueError("u0 must be finite")
            if forcing is None:
                ft.fill(0.0)
            else:
                _to_site_major(f, ft, False)
            c1, c2 = self._coefficients[0], self._coefficients[-1]
            _burst_kernel(ut, ft, self._aT, l1, p1, l2, p2, y, prev, code, steps,
                          c1, c2, self.tau, self.dx**2, self._g, self._d, *self._trbdf2_weights)
            _to_segment_major(ut, result.reshape(S, n))
        return result

    @property
    def _trbdf2_weights(self) -> tuple[float, float]:
        """(w_g, w_0) of the BDF2 stage of TR-BDF2."""
        g = self._g
        return 1.0 / (g * (2.0 - g)), (1.0 - g) ** 2 / (g * (2.0 - g))

    def _run_numpy(self, u0, steps: int, forcing) -> np.ndarray:
        """The "ldl"/"banded" path: numpy stages around :class:`_ImplicitSolve`."""
        u = np.array(u0, dtype=np.float64)
        if u.shape != self.shape:
            raise ValueError(f"u0 must have shape {self.shape}, got {u.shape}")
        if not np.all(np.isfinite(u)):
            raise ValueError("u0 must be finite")
        u = np.atleast_2d(u)
        if forcing is None:
            f = None
        else:
            f = np.array(np.broadcast_to(np.asarray(forcing, dtype=np.float64), u.shape))
            f[:, 0] = f[:, -1] = 0.0  # frozen ends
        tau, a = self.tau, self.bonds

        def plus(x, coef):  # x + coef f without touching f when there is none
            return x if f is None else x + coef * f

        if steps and self.scheme == "backward_euler":
            (solve,) = self._solves
            for _ in range(steps):
                u = solve(plus(u, tau))
        elif steps and self.scheme == "bdf2":
            first, solve = self._solves
            ends = u[:, [0, -1]]
            prev, u = u, first(plus(u, tau))
            for _ in range(steps - 1):
                # (3 u+ - 4 u + u-)/(2 tau) = L u+ + f
                u, prev = solve(plus((4.0 * u - prev) / 3.0, (2.0 / 3.0) * tau)), u
                u[:, [0, -1]] = ends  # (4 b - b)/3 = b only up to rounding
        elif steps:  # trbdf2
            g, d = self._g, self._d
            solve_tr, solve_bdf = self._solves
            w_g, w_0 = self._trbdf2_weights
            ends = u[:, [0, -1]]
            for _ in range(steps):
                ug = solve_tr(plus(u + 0.5 * g * tau * dirichlet_laplacian_apply(u, a, self.dx), g * tau))
                u = solve_bdf(plus(w_g * ug - w_0 * u, d * tau))
                u[:, [0, -1]] = ends  # w_g - w_0 = 1 only up to rounding
        return u[0] if self.single else u


def dirichlet_steps(
    u0,
    bonds,
    dx: float,
    duration: float,
    steps: int,
    scheme: str = "trbdf2",
    forcing=None,
    *,
    solver: str = "numba",
) -> np.ndarray:
    """Advance du/dt = L u + f by ``steps`` equal implicit steps with every segment's end values frozen.

    Parameters
    ----------
    u0 : array_like, shape (n,) or (S, n)
        Initial values on one segment or on S stacked segments (e.g. patches), n >= 3.
    bonds : array_like, shape (n - 1,) or (S, n - 1)
        Bond coefficients, > 0.
    dx : float
    duration : float
        Time to advance (>= 0); tau = duration/steps.
    steps : int
    scheme, solver : str
        As in :class:`DirichletStepper`.
    forcing : array_like, optional
        Constant source f, shape of ``u0``; its end entries are ignored.

    Returns
    -------
    ndarray, shape of ``u0``
    """
    steps = _check_int(steps, "steps")
    if isinstance(duration, bool) or not isinstance(duration, Real) or not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration!r}")
    u = np.asarray(u0, dtype=np.float64)
    a = np.asarray(bonds, dtype=np.float64)
    if u.ndim not in (1, 2) or a.shape != u.shape[:-1] + (u.shape[-1] - 1,):
        raise ValueError(f"u0 must be (n,) or (S, n) and bonds (n - 1,) or (S, n - 1); got {u.shape} and {a.shape}")
    if duration == 0:
        _check_scheme(scheme)
        return u.copy()
    return DirichletStepper(a, dx, duration / steps, scheme, solver).run(u, steps, forcing)


# ----------------------------------------------------------------------------- full resolution
@dataclass(frozen=True)
class FullResolutionResult:
    """A full-resolution run of the detailed model on [0, 1].

    Attributes
    ----------
    x : ndarray, shape (N + 1,)
        Micro nodes i dx.
    times : ndarray, shape (n_saved,)
    u : ndarray, shape (n_saved, N + 1)
    work : int
        Micro grid-point x time-step updates: (N + 1) x steps.
    """

    x: np.ndarray
    times: np.ndarray
    u: np.ndarray
    work: int


def full_resolution_solve(
    coef: Coefficient,
    eps: float,
    dx: float,
    u0_values,
    t_end: float,
    dt: float,
    *,
    scheme: str = "trbdf2",
    save_every: int = 0,
    solver: str = "numba",
) -> FullResolutionResult:
    """The detailed problem (seed eqs. (20)-(21)) on the whole of [0, 1], implicit in time.

    Parameters
    ----------
    coef : Coefficient
    eps, dx : float
        Period of the medium and micro spacing; 1/dx must be an integer N (nodes i dx,
        i = 0..N). E.g. eps = 1e-3, dx = 1e-5 (100 points per period).
    u0_values : array_like, shape (N + 1,)
        Initial values at the nodes; u[0] and u[N] are held fixed (eq. (21)).
    t_end, dt : float
        Horizon and time step; t_end/dt must be an integer.
    scheme : {"trbdf2", "bdf2", "backward_euler"}, default "trbdf2"
        Implicit scheme (:class:`DirichletStepper`). TR-BDF2 is the default: the
        initial profile lacks the corrector, and the fast relaxation it triggers
        leaves BDF2's backward-Euler start with a visible O(dt) error (at eps = 1e-3,
        dt = 1e-5: 1.7e-4 in the coarse averages at t = 0.01, where TR-BDF2 is
        converged to < 1e-5).
    save_every : int, default 0
        Keep every ``save_every``-th step (and t = 0, t_end); 0 keeps t = 0 and t_end only.
    solver : {"numba", "ldl", "banded"}, default "numba"
        Tridiagonal solver (:func:`dirichlet_steps`).

    Returns
    -------
    FullResolutionResult
        With ``work`` = (N + 1) x number of time steps (the cost measure).
    """
    if not isinstance(coef, Coefficient):
        raise ValueError(f"coef must be a Coefficient, got {type(coef).__name__}")
    eps = _check_positive(eps, "eps")
    dx = _check_positive(dx, "dx")
    t_end = _check_positive(t_end, "t_end")
    dt = _check_positive(dt, "dt")
    _check_scheme(scheme)
    save_every = _check_int(save_every, "save_every", 0)
    N = int(round(1.0 / dx))
    if abs(N * dx - 1.0) > 1e-9 or N < 2:
        raise ValueError(f"1/dx must be an integer >= 2, got dx = {dx!r}")
    n_steps = int(round(t_end / dt))
    if n_steps < 1 or abs(n_steps * dt - t_end) > 1e-9 * t_end:
        raise ValueError(f"t_end/dt must be a positive integer, got t_end = {t_end!r}, dt = {dt!r}")
    u = np.asarray(u0_values, dtype=np.float64)
    if u.shape != (N + 1,):
        raise ValueError(f"u0_values must have shape ({N + 1},) for dx = {dx!r}, got {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("u0_values must be finite")
    x = np.arange(N + 1) * dx
    bonds = micro_coefficients(x[:-1], eps, dx, coef)
    every = save_every if save_every else n_steps
    stops = list(range(every, n_steps, every)) + [n_steps]
    times, saved, done = [0.0], [u.copy()], 0
    for stop in stops:
        # (BDF2 restarts with a BE step at every save point; TR-BDF2 is one-step)
        u = dirichlet_steps(u, bonds, dx, (stop - done) * dt, stop - done, scheme, solver=solver)
        done = stop
        times.append(done * dt)
        saved.append(u.copy())
    return FullResolutionResult(x=x, times=np.asarray(times), u=np.asarray(saved), work=int((N + 1) * n_steps))


def coarse_average(u, x, centres, width: float) -> np.ndarray:
    """Average of u over the windows [c - width/2, c + width/2], c in ``centres``.

    Parameters
    ----------
    u : array_like, shape (..., n)
        Values at the nodes ``x`` (last axis).
    x : array_like, shape (n,)
        Increasing nodes.
    centres : array_like, shape (m,)
    width : float
        Window width (> 0); every window must lie inside [x[0], x[-1]].

    Returns
    -------
    ndarray, shape (..., m)
        (1/width) times the exact integral of the piecewise-linear interpolant of u
        over each window (cumulative trapezoid, completed exactly inside the
        cells containing the window ends).
    """
    u = np.asarray(u, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    c = np.atleast_1d(np.asarray(centres, dtype=np.float64))
    width = _check_positive(width, "width")
    if x.ndim != 1 or x.size < 2 or u.shape[-1] != x.size or not np.all(np.diff(x) > 0):
        raise ValueError(f"x must be 1-D increasing and match u's last axis; got x {x.shape}, u {u.shape}")
    lo, hi = c - 0.5 * width, c + 0.5 * width
    if c.ndim != 1 or np.any(lo < x[0] - 1e-12 * abs(x[0] + 1)) or np.any(hi > x[-1] + 1e-12 * abs(x[-1] + 1)):
        raise ValueError(f"every window must lie inside [{x[0]}, {x[-1]}]")
    lo, hi = np.clip(lo, x[0], x[-1]), np.clip(hi, x[0], x[-1])
    cells = 0.5 * (u[..., 1:] + u[..., :-1]) * np.diff(x)
    cum = np.concatenate([np.zeros(u.shape[:-1] + (1,)), np.cumsum(cells, axis=-1)], axis=-1)

    def integral_to(p):
        j = np.clip(np.searchsorted(x, p, side="right") - 1, 0, x.size - 2)
        frac = (p - x[j]) / (x[j + 1] - x[j])
        up = u[..., j] + frac * (u[..., j + 1] - u[..., j])
        return cum[..., j] + 0.5 * (p - x[j]) * (u[..., j] + up)

    return (integral_to(hi) - integral_to(lo)) / width
