"""Two-dimensional gap-tooth (patch) scheme for the 3-periodic lattice (seed 001 §3, §5.2).

Geometry (seed §5.2; the authors' ``generate_data_2d.m`` with ``configPatches2``).
N x N square patches on the periodic square [0, 2 pi)**2, centred at
X_I = (I + 1/2) DX, Y_J = (J + 1/2) DX, DX = 2 pi/N. Each patch is a window of
(n + 2) x (n + 2) lattice points of spacing h, at X_I + (l - (n+1)/2) h,
l = 0..n+1: the n x n interior points are unknowns, the points l = 0 and
l = n + 1 are edge values set by the coupling (corners are never used by the
five-point stencil). The paper uses N = 16, n = 3 (one period of the medium),
h = 2 pi/480, H = (n + 1) h = 4h = 0.0524: the patches cover
(H/DX)**2 ~ 1.8 % of the square (9/900 = 1 % counted by interior points).
Inside a patch the interior points obey seed eq. (25)
(:func:`cgflow.micro.lattice2d.lattice_rhs`) with the patch's window of the medium.

Coupling: "edgy" interpolation (Bunder, Kevrekidis & Roberts 2021, seed ref.
[29]; EquationFreeGit ``patchEdgeInt2`` with ``EdgyInt = 1``). The value on the
right edge of patch I, at x = X_I + (n+1) h/2, is the macroscale interpolant,
along the row of patches through I, of the *left next-to-edge* values
(x = X_I' - (n-1) h/2), evaluated a shift rho = n h/DX patches further:

    u_right(I) = sum_I' S(rho)[I, I'] u_left-next(I'),  u_left(I) = sum_I' S(-rho)[I, I'] u_right-next(I'),

and likewise in y. Because the interior spans a whole number of periods
(n = 3 p), an edge point and the next-to-edge points it is interpolated from
sit at the same phase of the micro-structure, so no microscale corrector enters
the coupling. Two interpolations S are offered (:func:`interpolation_matrix`):

* ``"spectral"`` (the authors' choice): trigonometric interpolation on the
  N-periodic row of patches; S(rho) = F^{-1} diag(e^{2 pi i k rho/N}) F, the
  zig-zag mode (N even) as a cosine. It shifts every resolved macroscale
  wave exactly, so a Bloch mode e^{i k.x} p(x) (p 3-periodic, |k_x|, |k_y| < N/2)
  of the full lattice of spacing h, restricted to the patches, is an *exact*
  eigenvector of the scheme: the slow eigenvalues of the scheme equal the
  lattice's (:func:`cgflow.micro.lattice2d.lattice_decay_rate` with n = 2 pi/h),
  which differ from the homogenized k.A.k by O(h**2 |k|**4) (5e-5 for sin y at
  h = 2 pi/480).
* ``"polynomial"`` of even ``order`` p: Lagrange interpolation through the
  p + 1 patches I - p/2..I + p/2 (seed eq. (8); ``ordCC = p``), exact for
  macroscale polynomials of degree p. The slow rates then carry an
  interpolation error that falls quickly with p; for the paper's geometry the
  sin y rate is off by 0.27, 1e-2, 3e-4, 1e-5 for p = 2, 4, 6, 8, so p >= 6 is
  needed for the 1e-3 target.

Both S are circulant, with unit row and column sums and S(-rho) = S(rho)^T.
With the period fitting the interior this makes the Jacobian symmetric (the
"self-adjoint coupling" of ref. [29]) and the total interior mass
sum_{patches, interior} u is exactly conserved (the right-edge and left-edge bonds
carry the same conductivity and the coupling fluxes cancel in the sum over a row
of patches). Centre-value coupling (the edge value interpolated from patch
centres, the ``EdgyInt = 0`` option of the toolbox) is not offered: the centre
of a patch sits at one phase of the medium and the edges at others, so the
interpolated edge values miss the O(h) corrector differences. For the paper's
patches it gives a non-symmetric Jacobian whose slowest non-zero rate is
1.136 instead of 1.265, and rates that change with the window of the medium
that the patch holds.

Restriction = average over the interior points (seed eq. (7)); the macroscale
time derivative (the dU/dt that the networks regress) is the restriction of
the micro right-hand side. No projective integration: the whole trajectory is
integrated in time (seed §5.2, "gap-tooth scheme"), by one of
:data:`INTEGRATORS` (:meth:`GapTooth2D.integrate`):

* ``"rkc"``: adaptive second-order Runge-Kutta-Chebyshev (Sommeijer, Shampine &
  Verwer 1997) on a compiled kernel that updates all patches at once (the
  coupling needs only the next-to-edge values: 4 N**3 n multiply-adds per
  evaluation). The stage count s is chosen every step from the Gershgorin bound
  rho of the scheme's spectral radius (:meth:`GapTooth2D.stability_bound`), so
  that dt rho <= 0.9 beta(s), beta(s) ~ 0.65 s**2. Uses only right-hand-side
  evaluations, so it does not rely on linearity. For the paper's geometry it
  follows ``"exact"`` to ~4e-6 and costs ~1/85 of the full 480**2 lattice
  integrated explicitly at equal accuracy against the homogenized solution
  (``benchmarks/bench_gaptooth_cost.py``), against ~1.3x the full lattice for BDF.
* ``"euler"``: explicit Euler at 0.9 of the stability limit 2/rho (first order).
* ``"exact"``: the exact propagator of the linear scheme (block-diagonal in the
  macroscale Fourier basis).
* ``"bdf"``: scipy BDF with the sparse Jacobian; the spectral coupling fills in
  the LU, so it is as slow as the full lattice.

Everything else is vectorised numpy/scipy; no I/O.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, replace
from typing import Protocol
from numbers import Integral, Real

import numba
import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp
from scipy.sparse.linalg import splu

from ...micro import lattice2d

__all__ = [
    "COUPLINGS",
    "COUPLING_TOLERANCE",
    "INTEGRATORS",
    "CouplingWarning",
    "GapTooth2D",
    "PatchRHS",
    "GapToothSolution",
    "check_coupling",
    "interpolation_matrix",
    "lagrange_weights",
]

COUPLINGS = ("spectral", "polynomial")
#: Integrators of :meth:`GapTooth2D.integrate` (lower case; the method argument is case-insensitive).
INTEGRATORS = ("bdf", "exact", "euler", "rkc")
#: Explicit Euler step as a fraction of the stability limit 2/rho.
EULER_SAFETY = 0.9
#: RKC steps satisfy dt rho <= RKC_SAFETY beta(s).
RKC_SAFETY = 0.9
#: Most stages an RKC step may take.
RKC_MAX_STAGES = 10_000


# ----------------------------------------------------------------------------- interpolation
def lagrange_weights(order: int, shift: float) -> np.ndarray:
    """Weights of the degree-``order`` Lagrange interpolant through offsets -order/2..order/2.

    Parameters
    ----------
    order : int
        Even degree p >= 2.
    shift : float
        Evaluation point, in units of the node spacing.

    Returns
    -------
    ndarray, shape (order + 1,)
        w_m = prod_{l != m} (shift - l)/(m - l), m = -p/2..p/2; sum(w) = 1 and
        w_m(-shift) = w_{-m}(shift).
    """
    if isinstance(order, bool) or not isinstance(order, Integral) or order < 2 or order % 2:
        raise ValueError(f"order must be an even integer >= 2, got {order!r}")
    m = np.arange(-(order // 2), order // 2 + 1)
    diff = m[:, None] - m[None, :]
    np.fill_diagonal(diff, 1)
    num = shift - m[None, :] * np.ones((m.size, 1))
    np.fill_diagonal(num, 1.0)
    return np.prod(num, axis=1) / np.prod(diff, axis=1)


def interpolation_matrix(n: int, shift: float, coupling: str = "spectral", order: int | None = None) -> np.ndarray:
    """Circulant S with (S v)[I] = interpolant of the n-periodic sequence v at I + shift.

    Parameters
    ----------
    n : int
        Period (number of patches along a direction), >= 1.
    shift : float
        Shift in units of the patch spacing.
    coupling : {"spectral", "polynomial"}
    order : int, optional
        Even degree for ``"polynomial"`` (order + 1 <= n); ignored for ``"spectral"``.

    Returns
    -------
    ndarray, shape (n, n)

    Notes
    -----
    Spectral: S = Re F^{-1} diag(exp(2 pi i k shift/n)) F with k = 0..n/2 (rfft
    bins). The zig-zag bin k = n/2 of even n keeps only its real part,
    cos(pi shift), i.e. it is interpolated as a cosine (as ``patchEdgeInt2``).
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    shift = float(shift)
    if not np.isfinite(shift):
        raise ValueError("shift must be finite")
    if coupling == "spectral":
        k = np.arange(n // 2 + 1)
        phase = np.exp(2j * np.pi * k * shift / n)
        return np.fft.irfft(np.fft.rfft(np.eye(n), axis=0) * phase[:, None], n=n, axis=0)
    if coupling == "polynomial":
        w = lagrange_weights(order, shift)
        if order + 1 > n:
            raise ValueError(f"order {order} needs at least {order + 1} patches, got {n}")
        S = np.zeros((n, n))
        rows = np.arange(n)
        for m, wm in zip(range(-(order // 2), order // 2 + 1), w):
            S[rows, (rows + m) % n] += wm
        return S
    raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")


# ----------------------------------------------------------------------------- explicit stepping (numba)
#: Damping of the Runge-Kutta-Chebyshev stability polynomial (Sommeijer, Shampine & Verwer 1997).
RKC_DAMPING = 2.0 / 13.0


@numba.njit(cache=True, nogil=True)
def _patch_rhs(u, kx, ky, Sp, Sm, inv_h2, work, out):  # pragma: no cover - compiled
    """out = rhs(u) for all patches at once; u, out of shape (N, N, n, n), work (8, N, N, n) scratch.

    The edge values are the coupling of :meth:`GapTooth2D.with_edges`: the four
    next-to-edge slabs are gathered into contiguous (N, N n) arrays and multiplied
    by S(+-rho) (4 N**3 n multiply-adds, inner loops of length N n); the interior
    update is the five-point stencil of seed eq. (25) with the patch-local bonds
    kx[l, b] (l -> l+1) and ky[a, l]. work[0:4] hold the gathered slabs, work[4:8]
    the right, left, top and bottom edge values, the y edges indexed [J, I, a].
    """
    N = u.shape[0]
    n = u.shape[2]
    M = N * n
    gath = work[:4].reshape(4, N, M)  # contiguous views, rows of length N n
    edge = work[4:].reshape(4, N, M)
    for K in range(N):
        for J in range(N):
            for r in range(n):
                q = J * n + r
                gath[0, K, q] = u[K, J, 0, r]  # next-to-left column, row r, of patch (K, J)
                gath[1, K, q] = u[K, J, n - 1, r]
                gath[2, J, K * n + r] = u[K, J, r, 0]  # [patch along y, patch along x, column]
                gath[3, J, K * n + r] = u[K, J, r, n - 1]
    for d in range(4):
        S = Sp if d % 2 == 0 else Sm
        for I in range(N):
            row = edge[d, I]
            for q in range(M):
                row[q] = 0.0
            for K in range(N):
                w = S[I, K]
                src = gath[d, K]
                for q in range(M):
                    row[q] += w * src[q]
    for I in range(N):
        for J in range(N):
            for a in range(n):
                for b in range(n):
                    c = u[I, J, a, b]
                    right = u[I, J, a + 1, b] if a < n - 1 else work[4, I, J, b]
                    left = u[I, J, a - 1, b] if a > 0 else work[5, I, J, b]
                    up = u[I, J, a, b + 1] if b < n - 1 else work[6, J, I, a]
                    down = u[I, J, a, b - 1] if b > 0 else work[7, J, I, a]
                    out[I, J, a, b] = inv_h2 * (
                        kx[a + 1, b] * (right - c) - kx[a, b] * (c - left) + ky[a, b + 1] * (up - c) - ky[a, b] * (c - down)
                    )


@numba.njit(cache=True, nogil=True)
def _euler_run(u, t_out, dt_max, kx, ky, Sp, Sm, inv_h2, states, f, work):  # pragma: no cover
    """Explicit Euler from t_out[0] with steps <= dt_max, landing on every t_out; u is advanced in place.

    Each output interval is split into ceil(interval/dt_max) equal steps.
    Returns the number of right-hand-side evaluations.
    """
    size = u.size
    uf = u.reshape(size)
    ff = f.reshape(size)
    states[0] = u
    nfev = 0
    for k in range(1, t_out.shape[0]):
        span = t_out[k] - t_out[k - 1]
        m = int(np.ceil(span / dt_max * (1.0 - 1e-12)))
        dt = span / m
        for _ in range(m):
            _patch_rhs(u, kx, ky, Sp, Sm, inv_h2, work, f)
            nfev += 1
            for i in range(size):
                uf[i] += dt * ff[i]
        states[k] = u
    return nfev


@numba.njit(cache=True, nogil=True)
def _rkc_beta(s, eps):  # pragma: no cover - compiled
    """Length beta(s) = (1 + w0)/w1 of the real stability interval [-beta, 0] of s-stage RKC2."""
    w0 = 1.0 + eps / (s * s)
    t0, t1 = 1.0, w0
    d0, d1 = 0.0, 1.0
    e0, e1 = 0.0, 0.0
    for _ in range(2, s + 1):
        t2 = 2.0 * w0 * t1 - t0
        d2 = 2.0 * t1 + 2.0 * w0 * d1 - d0
        e2 = 4.0 * d1 + 2.0 * w0 * e1 - e0
        t0, t1, d0, d1, e0, e1 = t1, t2, d1, d2, e1, e2
    return (1.0 + w0) * e1 / d1


@numba.njit(cache=True, nogil=True)
def _rkc_coefficients(s, eps, mu, nu, mut, gt):  # pragma: no cover - compiled
    """Fill mu, nu, mut, gt[1..s] (arrays of length >= s + 1) of the s-stage RKC2 scheme.

    Sommeijer, Shampine & Verwer (1997), eqs. (2.5)-(2.8): w0 = 1 + eps/s**2,
    w1 = T_s'(w0)/T_s''(w0), b_j = T_j''(w0)/T_j'(w0)**2 (b_0 = b_1 = b_2),
    a_j = 1 - b_j T_j(w0), mut_1 = b_1 w1, and for j >= 2 mu_j = 2 b_j w0/b_{j-1},
    nu_j = -b_j/b_{j-2}, mut_j = 2 b_j w1/b_{j-1}, gt_j = -a_{j-1} mut_j.
    """
    w0 = 1.0 + eps / (s * s)
    w1 = (1.0 + w0) / _rkc_beta(s, eps)
    # second pass: the recurrences again, now emitting the coefficients
    t0, t1 = 1.0, w0
    d0, d1 = 0.0, 1.0
    e0, e1 = 0.0, 0.0
    b_jm2 = b_jm1 = 0.0
    a_jm1 = 0.0
    for j in range(2, s + 1):
        t2 = 2.0 * w0 * t1 - t0
        d2 = 2.0 * t1 + 2.0 * w0 * d1 - d0
        e2 = 4.0 * d1 + 2.0 * w0 * e1 - e0
        b_j = e2 / (d2 * d2)
        if j == 2:  # b_0 = b_1 = b_2, a_1 = 1 - b_1 T_1(w0)
            b_jm2 = b_jm1 = b_j
            a_jm1 = 1.0 - b_j * w0
            mut[1] = b_j * w1
        mu[j] = 2.0 * b_j * w0 / b_jm1
        nu[j] = -b_j / b_jm2
        mut[j] = 2.0 * b_j * w1 / b_jm1
        gt[j] = -a_jm1 * mut[j]
        a_jm1 = 1.0 - b_j * t2
        b_jm2, b_jm1 = b_jm1, b_j
        t0, t1, d0, d1, e0, e1 = t1, t2, d1, d2, e1, e2


@numba.njit(cache=True, nogil=True)
def _rkc_stages(dt, rho, safety, eps, s_max):  # pragma: no cover - compiled
    """Fewest stages s >= 2 with dt rho <= safety beta(s), or 0 if s_max stages are not enough."""
    s = max(2, int(np.sqrt(1.0 + 1.54 * dt * rho / safety)) - 2)
    while s > 2 and _rkc_beta(s - 1, eps) * safety >= dt * rho:
        s -= 1
    while s <= s_max:
        if _rkc_beta(s, eps) * safety >= dt * rho:
            return s
        s += 1
    return 0


@numba.njit(cache=True, nogil=True)
def _rkc_step(y0, f0, dt, s, mu, nu, mut, gt, kx, ky, Sp, Sm, inv_h2, ya, yb, fj, work):  # pragma: no cover
    """One s-stage RKC2 step of size dt from y0 (f0 = rhs(y0)); returns ya or yb, whichever holds Y_s.

    Y_1 = Y_0 + mut_1 dt F_0, Y_j = (1 - mu_j - nu_j) Y_0 + mu_j Y_{j-1} + nu_j Y_{j-2}
    + mut_j dt F(Y_{j-1}) + gt_j dt F_0. No allocation: Y_{j-2} is overwritten by Y_j.
    """
    size = y0.size
    z0 = y0.reshape(size)
    g0 = f0.reshape(size)
    gj = fj.reshape(size)
    prev = ya  # Y_{j-1}
    prev2 = yb  # Y_{j-2}
    p1 = prev.reshape(size)
    p2 = prev2.reshape(size)
    c1 = mut[1] * dt
    for i in range(size):
        p2[i] = z0[i]
        p1[i] = z0[i] + c1 * g0[i]
    for j in range(2, s + 1):
        _patch_rhs(prev, kx, ky, Sp, Sm, inv_h2, work, fj)
        c0 = 1.0 - mu[j] - nu[j]
        cm, cn, cf, cg = mu[j], nu[j], mut[j] * dt, gt[j] * dt
        p1 = prev.reshape(size)
        p2 = prev2.reshape(size)
        for i in range(size):
            p2[i] = c0 * z0[i] + cm * p1[i] + cn * p2[i] + cf * gj[i] + cg * g0[i]
        prev, prev2 = prev2, prev
    return prev


@numba.njit(cache=True, nogil=True)
def _rkc_run(
    u, t_out, rho, fixed_dt, rtol, atol, safety, s_max, kx, ky, Sp, Sm, inv_h2, states, work
):  # pragma: no cover - compiled
    """Second-order RKC from t_out[0] to every t_out (states[k]); u is advanced in place.

    fixed_dt > 0: each output interval is split into equal steps <= fixed_dt, no
    error control. fixed_dt == 0: adaptive steps with the RKC error estimate
    est = (12 (y_n - y_{n+1}) + 6 dt (F_n + F_{n+1}))/15 (Sommeijer et al. 1997,
    eq. 2.10), err = rms(est/(atol + rtol max(|y_n|, |y_{n+1}|))), accept if
    err <= 1, dt <- dt min(10, max(0.1, 0.8 err**(-1/3))). The stage count is
    re-chosen every step so that dt rho <= safety beta(s). Work arrays are
    allocated once. Returns (nfev, accepted steps, rejected steps, largest stage
    count); nfev = -1 if s_max stages do not cover a step.
    """
    size = u.size
    f0 = np.empty_like(u)
    f1 = np.empty_like(u)
    fj = np.empty_like(u)
    ya = np.empty_like(u)
    yb = np.empty_like(u)
    mu = np.zeros(s_max + 1)
    nu = np.zeros(s_max + 1)
    mut = np.zeros(s_max + 1)
    gt = np.zeros(s_max + 1)
    s_cur = 0
    uf = u.reshape(size)
    g0 = f0.reshape(size)
    g1 = f1.reshape(size)
    states[0] = u
    _patch_rhs(u, kx, ky, Sp, Sm, inv_h2, work, f0)
    nfev = 1
    steps = 0
    rejected = 0
    s_used = 0
    t = t_out[0]
    if fixed_dt > 0:
        dt = fixed_dt
    else:  # initial step: the explicit stability limit, or smaller if F is large (cf. the RKC code)
        fn = 0.0
        yn = 0.0
        for i in range(size):
            fn += g0[i] * g0[i]
            yn += uf[i] * uf[i]
        fn = np.sqrt(fn / size)
        yn = np.sqrt(yn / size)
        dt = t_out[-1] - t_out[0]
        if rho > 0:
            dt = min(dt, 1.0 / rho)
        if fn > 0:
            dt = min(dt, 0.1 * (atol + rtol * yn) / fn)
    for k in range(1, t_out.shape[0]):
        if fixed_dt > 0:
            span = t_out[k] - t_out[k - 1]
            m = int(np.ceil(span / fixed_dt * (1.0 - 1e-12)))
            h_step = span / m
            s = _rkc_stages(h_step, rho, safety, RKC_DAMPING, s_max)
            if s == 0:
                return -1, steps, rejected, s_used
            if s != s_cur:
                _rkc_coefficients(s, RKC_DAMPING, mu, nu, mut, gt)
                s_cur = s
            s_used = max(s_used, s)
            for _ in range(m):
                y = _rkc_step(u, f0, h_step, s, mu, nu, mut, gt, kx, ky, Sp, Sm, inv_h2, ya, yb, fj, work)
                u[...] = y
                _patch_rhs(u, kx, ky, Sp, Sm, inv_h2, work, f0)
                nfev += s
                steps += 1
            states[k] = u
            continue
        while t < t_out[k]:
            last = t + dt * (1.0 + 1e-12) >= t_out[k]
            h_step = t_out[k] - t if last else dt
            s = _rkc_stages(h_step, rho, safety, RKC_DAMPING, s_max)
            if s == 0:
                return -1, steps, rejected, s_used
            if s != s_cur:
                _rkc_coefficients(s, RKC_DAMPING, mu, nu, mut, gt)
                s_cur = s
            s_used = max(s_used, s)
            y = _rkc_step(u, f0, h_step, s, mu, nu, mut, gt, kx, ky, Sp, Sm, inv_h2, ya, yb, fj, work)
            _patch_rhs(y, kx, ky, Sp, Sm, inv_h2, work, f1)
            nfev += s
            yf = y.reshape(size)
            err = 0.0
            for i in range(size):
                est = (12.0 * (uf[i] - yf[i]) + 6.0 * h_step * (g0[i] + g1[i])) / 15.0
                w = atol + rtol * max(abs(uf[i]), abs(yf[i]))
                err += (est / w) ** 2
            err = np.sqrt(err / size)
            fac = 10.0 if err == 0.0 else min(10.0, max(0.1, 0.8 * err ** (-1.0 / 3.0)))
            if err <= 1.0:
                for i in range(size):
                    uf[i] = yf[i]
                    g0[i] = g1[i]
                t = t_out[k] if last else t + h_step
                steps += 1
                # a step shortened to land on an output time does not shrink the next one
                dt = max(dt, h_step * fac) if last else h_step * fac
            else:
                rejected += 1
                dt = h_step * fac
        states[k] = u
    return nfev, steps, rejected, s_used


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class GapToothSolution:
    """Output of :meth:`GapTooth2D.integrate`.

    Attributes
    ----------
    times : ndarray, shape (n_t,)
    U, dUdt : ndarray, shape (n_t, N, N)
        Patch averages and their time derivatives, axes (time, X index, Y index).
    X, Y : ndarray, shape (N,)
        Patch centres.
    nfev, njev, nlu : int
        Right-hand-side evaluations, Jacobian evaluations and LU factorisations
        (njev = nlu = 0 for the explicit methods).
    work : int
        Micro-point updates, nfev x (number of interior micro points) (0 for the
        exact propagator, which takes no time steps). For BDF the Jacobian is
        assembled once (:meth:`GapTooth2D.jacobian`); the nlu sparse LU
        factorisations are extra and dominate its cost.
    states : ndarray or None, shape (n_t, N, N, n, n)
        The interior micro fields, if requested.
    steps, rejected : int
        Accepted and rejected time steps of ``"euler"`` and ``"rkc"`` (0 otherwise).
    stages : int
        Largest number of RKC stages used in a step (1 for ``"euler"``, 0 otherwise).
    """

    times: np.ndarray
    U: np.ndarray
    dUdt: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    nfev: int
    njev: int
    nlu: int
    work: int
    states: np.ndarray | None = None
    steps: int = 0
    rejected: int = 0
    stages: int = 0


# ----------------------------------------------------------------------------- the scheme
@dataclass(frozen=True)
class GapTooth2D:
    """Gap-tooth scheme for seed eq. (25) on N x N patches (module docstring).

    Parameters
    ----------
    patches : int, default 16
        N, patches per direction on [0, 2 pi).
    h : float, default 2 pi/480
        Micro lattice spacing.
    patch_points : int, default 5
        Lattice points per patch side, edges included: n = patch_points - 2
        interior points (:attr:`interior`), a multiple of the period 3 (the edgy
        coupling needs whole periods). Patch side H = (patch_points - 1) h < 2 pi/N.
    coupling : {"spectral", "polynomial"}, default "spectral"
    order : int, default 6
        Even interpolation degree of ``"polynomial"`` coupling (validated, unused
        by ``"spectral"``). Degree 6 is the lowest that meets 1e-3 in the slow rates
        for the paper's geometry (module docstring).
    convention : {"paper", "same-site"}, default "paper"
        Layout of the eq. (26) tables (:mod:`cgflow.micro.lattice2d`).
    cell_offset : (int, int), default (0, 2)
        Lattice indices (i, j) (mod 3) that the patch corner point l = 0 takes in
        :func:`~cgflow.micro.lattice2d.coefficients_at`: the bond l -> l + 1 of patch
        row m carries kx at (l + i0, m + j0). Every patch holds the same window of the
        medium. (0, 2) with the ``"paper"`` convention is the patch of the authors'
        code (``cx``, ``cy`` of ``generate_data_2d.m``); the slow rates do not depend on it.
    patch_solver : PatchRHS, optional
        Another detailed model (the eqfree micro-model contract in 2-D,
        :class:`PatchRHS`): the time derivative of every patch's interior given its
        edge values, which the coupling supplies as the boundary data. It replaces
        the built-in lattice of eq. (25) in :meth:`rhs` and :meth:`integrate`
        (methods ``"bdf"``, with the coupling's sparsity pattern for the
        finite-difference Jacobian, and ``"euler"`` with an explicit ``step``); the
        lattice-specific ``"exact"`` and ``"rkc"`` paths refuse it.

    Notes
    -----
    The state is the C-order ravel of the interior array u[I, J, a, b] of shape
    (N, N, n, n): I, J patch indices (x, y), a, b interior point indices (x, y),
    at x = X_I + (a + 1 - (n+1)/2) h, y = Y_J + (b + 1 - (n+1)/2) h.
    """

    patches: int = 16
    h: float = 2.0 * np.pi / 480.0
    patch_points: int = 5
    coupling: str = "spectral"
    order: int = 6
    convention: str = "paper"
    cell_offset: tuple[int, int] = (0, 2)
    patch_solver: "PatchRHS | None" = None

    def __post_init__(self):
        N, p = self.patches, self.patch_points
        if self.patch_solver is not None and not callable(getattr(self.patch_solver, "rhs", None)):
            raise ValueError(f"patch_solver must have an rhs(full, x, y) method, got {self.patch_solver!r}")
        if isinstance(N, bool) or not isinstance(N, Integral) or N < 3:
            raise ValueError(f"patches must be an integer >= 3, got {N!r}")
        if isinstance(p, bool) or not isinstance(p, Integral) or p < 2 + lattice2d.PERIOD or (p - 2) % lattice2d.PERIOD:
            raise ValueError(
                f"patch_points - 2 (the interior points) must be a positive multiple of {lattice2d.PERIOD}, got {p!r}"
            )
        if not isinstance(self.h, Real) or not np.isfinite(self.h) or self.h <= 0:
            raise ValueError(f"h must be finite and > 0, got {self.h!r}")
        if (p - 1) * self.h >= 2.0 * np.pi / N:
            raise ValueError(f"patch side (patch_points - 1) h = {(p - 1) * self.h:.4g} must be < 2 pi/patches")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {self.coupling!r}; expected one of {COUPLINGS}")
        lagrange_weights(self.order, 0.0)  # validates the order
        if self.coupling == "polynomial" and self.order + 1 > N:
            raise ValueError(f"order {self.order} needs at least {self.order + 1} patches, got {N}")
        lattice2d._check_convention(self.convention)
        off = tuple(self.cell_offset)
        if len(off) != 2 or not all(isinstance(o, Integral) and not isinstance(o, bool) for o in off):
            raise ValueError(f"cell_offset must be a pair of integers, got {self.cell_offset!r}")
        object.__setattr__(self, "cell_offset", (int(off[0]), int(off[1])))

    # ------------------------------------------------------------------ geometry
    @property
    def interior(self) -> int:
        """n = patch_points - 2, interior points per patch side."""
        return self.patch_points - 2

    @property
    def spacing(self) -> float:
        """Patch spacing DX = 2 pi/N."""
        return 2.0 * np.pi / self.patches

    @property
    def shift(self) -> float:
        """Coupling shift rho = n h/DX (in patch spacings), the next-to-edge -> edge distance."""
        return self.interior * self.h / self.spacing

    @property
    def centres(self) -> np.ndarray:
        """Patch centres X_I = (I + 1/2) DX, shape (N,)."""
        return (np.arange(self.patches) + 0.5) * self.spacing

    @property
    def state_shape(self) -> tuple[int, int, int, int]:
        return (self.patches, self.patches, self.interior, self.interior)

    @property
    def size(self) -> int:
        """Number of unknowns N**2 n**2."""
        return int(np.prod(self.state_shape))

    @property
    def offsets(self) -> np.ndarray:
        """Interior point offsets from the patch centre, (a + 1 - (n+1)/2) h, shape (n,)."""
        return (np.arange(1, self.interior + 1) - 0.5 * (self.interior + 1)) * self.h

    def micro_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the interior points, x[I, a] and y[J, b], each of shape (N, n)."""
        x = self.centres[:, None] + self.offsets[None, :]
        return x, x.copy()

    @functools.cached_property
    def _conductivities(self) -> tuple[np.ndarray, np.ndarray]:
        """Patch-local kx[l, b] (bond l -> l+1, l = 0..n; interior row b) and ky[a, l]."""
        n = self.interior
        i0, j0 = self.cell_offset
        bond = np.arange(n + 1)
        row = np.arange(1, n + 1)
        kx, _ = lattice2d.coefficients_at(bond[:, None] + i0, row[None, :] + j0, self.convention)
        _, ky = lattice2d.coefficients_at(row[:, None] + i0, bond[None, :] + j0, self.convention)
        return np.ascontiguousarray(kx), np.ascontiguousarray(ky)

    @functools.cached_property
    def _shifts(self) -> tuple[np.ndarray, np.ndarray]:
        """S(+rho) and S(-rho) along a row of patches."""
        return (
            interpolation_matrix(self.patches, self.shift, self.coupling, self.order),
            interpolation_matrix(self.patches, -self.shift, self.coupling, self.order),
        )

    # ------------------------------------------------------------------ dynamics
    def _as_state(self, state) -> np.ndarray:
        u = np.asarray(state, dtype=np.float64)
        if u.size != self.size:
            raise ValueError(f"state must have {self.size} entries {self.state_shape}, got shape {u.shape}")
        return u.reshape(self.state_shape)

    def with_edges(self, state) -> np.ndarray:
        """Patch fields with the coupled edge values filled in.

        Parameters
        ----------
        state : array_like, size N**2 n**2

        Returns
        -------
        ndarray, shape (N, N, n + 2, n + 2)
            Interior values, edge values from the coupling, NaN at the unused corners.
        """
        u = self._as_state(state)
        N, n = self.patches, self.interior
        Sp, Sm = self._shifts
        full = np.full((N, N, n + 2, n + 2), np.nan)
        full[:, :, 1:-1, 1:-1] = u
        # x edges: interpolate along I (axis 0) at fixed (J, row b)
        full[:, :, -1, 1:-1] = np.tensordot(Sp, u[:, :, 0, :], axes=(1, 0))
        full[:, :, 0, 1:-1] = np.tensordot(Sm, u[:, :, -1, :], axes=(1, 0))
        # y edges: interpolate along J (axis 1) at fixed (I, column a)
        full[:, :, 1:-1, -1] = np.einsum("jk,ika->ija", Sp, u[:, :, :, 0])
        full[:, :, 1:-1, 0] = np.einsum("jk,ika->ija", Sm, u[:, :, :, -1])
        return full

    def rhs(self, t: float, state) -> np.ndarray:
        """Time derivative of the interior unknowns (seed eq. (25) in every patch).

        Parameters
        ----------
        t : float
            Time (unused: the system is autonomous).
        state : array_like, size N**2 n**2

        Returns
        -------
        ndarray, shape (N**2 n**2,)
        """
        if self.patch_solver is not None:
            return self._solver_rhs(state)
        full = self.with_edges(state)
        kx, ky = self._conductivities
        fx = kx * (full[:, :, 1:, 1:-1] - full[:, :, :-1, 1:-1])  # (N, N, n+1, n) bond fluxes
        fy = ky * (full[:, :, 1:-1, 1:] - full[:, :, 1:-1, :-1])  # (N, N, n, n+1)
        du = (fx[:, :, 1:, :] - fx[:, :, :-1, :] + fy[:, :, :, 1:] - fy[:, :, :, :-1]) / self.h**2
        return du.ravel()

    def _solver_rhs(self, state) -> np.ndarray:
        """``patch_solver.rhs`` on the coupled patch fields, its result checked (shape, finite)."""
        full = self.with_edges(state)
        x = self.centres[:, None] + (np.arange(self.patch_points) - 0.5 * (self.patch_points - 1))[None, :] * self.h
        du = np.asarray(self.patch_solver.rhs(full, x, x.copy()), dtype=np.float64)
        if du.shape != self.state_shape or not np.all(np.isfinite(du)):
            raise ValueError(f"patch_solver.rhs must return finite values of shape {self.state_shape} (the interior), "
                             f"got shape {du.shape}")
        return du.ravel()

    def jacobian(self) -> sparse.csr_matrix:
        """The (constant) Jacobian d rhs/d state, assembled independently of :meth:`rhs`.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (size, size)
            J = L P: P (sparse) maps the interior unknowns to all patch points
            (identity inside, the coupling rows S(+-rho) on the edges), L applies the
            five-point stencil of eq. (25) at the interior points. Symmetric. Cached;
            do not modify it in place.
        """
        return self._jacobian

    @functools.cached_property
    def _jacobian(self) -> sparse.csr_matrix:
        N, n = self.patches, self.interior
        m = n + 2
        kx, ky = self._conductivities
        Sp, Sm = self._shifts
        full_idx = np.arange(N * N * m * m).reshape(N, N, m, m)
        int_idx = np.arange(self.size).reshape(self.state_shape)
        I, J = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")

        # P: full points <- interior unknowns (identity), edge points <- coupling rows
        rows = [full_idx[:, :, 1:-1, 1:-1].ravel()]
        cols = [int_idx.ravel()]
        vals = [np.ones(self.size)]
        K = np.arange(N)[None, None, None, :]  # source patch along the interpolation line
        r = np.arange(n)[None, None, :, None]  # point along the edge
        shape = (N, N, n, N)  # (I, J, point along edge, source patch K)
        for S, edge, src in ((Sp, m - 1, 0), (Sm, 0, n - 1)):
            # x edges of patch (I, J), row b: sum_K S[I, K] u[K, J, src, b]
            rows.append(np.broadcast_to(full_idx[:, :, edge, 1:-1][..., None], shape).ravel())
            cols.append(np.broadcast_to(int_idx[K, J[:, :, None, None], src, r], shape).ravel())
            vals.append(np.broadcast_to(S[I][:, :, None, :], shape).ravel())
            # y edges of patch (I, J), column a: sum_K S[J, K] u[I, K, a, src]
            rows.append(np.broadcast_to(full_idx[:, :, 1:-1, edge][..., None], shape).ravel())
            cols.append(np.broadcast_to(int_idx[I[:, :, None, None], K, r, src], shape).ravel())
            vals.append(np.broadcast_to(S[J][:, :, None, :], shape).ravel())
        rows, cols, vals = (np.concatenate(v) for v in (rows, cols, vals))
        keep = vals != 0.0
        P = sparse.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(full_idx.size, self.size))

        # L: interior rows <- full points, five-point stencil with the patch-local bonds
        a = np.arange(1, n + 1)
        centre = full_idx[:, :, 1:-1, 1:-1]
        entries = []
        for nb, w in (
            (full_idx[:, :, 2:, 1:-1], kx[a, :]),  # right neighbour, bond a -> a+1
            (full_idx[:, :, :-2, 1:-1], kx[a - 1, :]),  # left neighbour, bond a-1 -> a
            (full_idx[:, :, 1:-1, 2:], ky[:, a]),
            (full_idx[:, :, 1:-1, :-2], ky[:, a - 1]),
        ):
            wb = np.broadcast_to(w, centre.shape)
            entries.append((int_idx.ravel(), nb.ravel(), wb.ravel()))
            entries.append((int_idx.ravel(), centre.ravel(), -wb.ravel()))
        rows, cols, vals = (np.concatenate([e[k] for e in entries]) for k in range(3))
        L = sparse.csr_matrix((vals / self.h**2, (rows, cols)), shape=(self.size, full_idx.size))
        return (L @ P).tocsr()

    # ------------------------------------------------------------------ lifting and restriction
    def restrict(self, state) -> np.ndarray:
        """Patch averages over the interior points (seed eq. (7)), shape (N, N) or (..., N, N).

        Accepts one state (size N**2 n**2) or an array of shape (..., N, N, n, n).
        """
        u = np.asarray(state, dtype=np.float64)
        if u.shape[-4:] != self.state_shape:
            u = self._as_state(u)
        return u.mean(axis=(-2, -1))

    def time_derivative(self, state) -> np.ndarray:
        """Macroscale dU/dt = restriction of the micro right-hand side, shape (N, N)."""
        return self.restrict(self.rhs(0.0, state))

    def lift(self, initial) -> np.ndarray:
        """Interior micro values from a macroscale field or a function.

        Parameters
        ----------
        initial : array_like of shape (N, N), or callable
            * (N, N) patch averages U: trigonometric interpolation of U (periodic,
              zig-zag modes as cosines) to the interior points, then each patch is
              shifted by a constant so that ``restrict(lift(U)) == U``.
            * callable f(x, y) (vectorised, e.g.
              :class:`~cgflow.micro.lattice2d.FourierModes2D`): f evaluated at the
              interior points (as the authors initialise their patches).

        Returns
        -------
        ndarray, shape (N**2 n**2,)
            The state vector.
        """
        N = self.patches
        if callable(initial):
            x, y = self.micro_coordinates()
            vals = np.asarray(initial(x[:, None, :, None], y[None, :, None, :]), dtype=np.float64)
            vals = np.array(np.broadcast_to(vals, self.state_shape))  # own, writable copy
            if not np.all(np.isfinite(vals)):
                raise ValueError("the initial function returned non-finite values")
            return vals.ravel()
        U = np.asarray(initial, dtype=np.float64)
        if U.shape != (N, N) or not np.all(np.isfinite(U)):
            raise ValueError(f"a macroscale field must be a finite ({N}, {N}) array, got shape {U.shape}")
        shifts = self.offsets / self.spacing
        S = np.stack([interpolation_matrix(N, s) for s in shifts])  # (n, N, N)
        u = np.einsum("aik,bjl,kl->ijab", S, S, U)
        u += (U - u.mean(axis=(-2, -1)))[:, :, None, None]
        return u.ravel()

    # ------------------------------------------------------------------ integration and spectra
    @functools.cached_property
    def _blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-decomposition of the scheme in each macroscale wavenumber sector.

        The scheme commutes with translations by whole patches (identical patches,
        circulant coupling), so for y[P] = e^{2 pi i k.P/N} v (P = (I, J)),
        J y = e^{2 pi i k.P/N} B_k v with B_k = sum_d J_{0,d} e^{2 pi i k.d/N}, J_{0,d} the
        n**2 x n**2 block coupling patch 0 to patch d. B_k is Hermitian (J is
        symmetric). Returns eigenvalues mu[k1, k2, :] (ascending, <= 0 up to
        round-off) and eigenvectors V[k1, k2, :, :] (columns), k in FFT order.
        """
        N, n2 = self.patches, self.interior**2
        J0 = self.jacobian()[:n2].toarray().reshape(n2, N, N, n2)  # [a', d1, d2, a]
        B = N * N * np.fft.ifft2(J0.transpose(1, 2, 0, 3), axes=(0, 1))  # [k1, k2, a', a]
        B = 0.5 * (B + np.conj(np.swapaxes(B, -1, -2)))  # symmetric up to round-off
        return np.linalg.eigh(B)

    def mode_rates(self, mode) -> np.ndarray:
        """All decay rates of the scheme in the sector of macroscale wavevector ``mode``.

        Parameters
        ----------
        mode : (int, int)
            Wavevector k on [0, 2 pi)**2 (taken modulo N).

        Returns
        -------
        ndarray, shape (n**2,)
            Ascending rates -mu of B_k (:attr:`_blocks`): the first is the slow
            (macroscale) rate, the others are fast O(1/h**2) sub-patch modes. For
            sin(k.x) the sectors k and -k have the same rates.
        """
        k = np.asarray(mode)
        if k.shape != (2,) or not np.issubdtype(k.dtype, np.integer):
            raise ValueError(f"mode must be a pair of integers, got {mode!r}")
        mu, _ = self._blocks
        return -mu[k[0] % self.patches, k[1] % self.patches][::-1]

    def _initial_state(self, initial) -> np.ndarray:
        if callable(initial):
            return self.lift(initial)
        arr = np.asarray(initial, dtype=np.float64)
        if arr.shape == (self.patches, self.patches):
            return self.lift(arr)
        return self._as_state(arr).ravel().copy()

    def stability_bound(self) -> float:
        """Upper bound rho on the spectral radius of the scheme: max_i sum_j |J_ij| (Gershgorin).

        Rigorous for any matrix, so explicit Euler with dt <= 2/rho and RKC with
        dt rho <= beta(s) are stable (J is symmetric negative semi-definite, its
        eigenvalues lie in [-rho, 0]). Computed from the sparse :meth:`jacobian`
        (for the paper's patches 1.0 to 1.3 x the true radius, which
        ``-min(mode eigenvalues)`` gives).
        """
        return self._stability_bound

    @functools.cached_property
    def _stability_bound(self) -> float:
        J = self.jacobian()
        return float(np.abs(J).sum(axis=1).max())

    def _kernel_args(self):
        kx, ky = self._conductivities
        Sp, Sm = self._shifts
        N, n = self.patches, self.interior
        scratch = (np.empty((8, N, N, n)),)
        return (kx, ky, np.ascontiguousarray(Sp), np.ascontiguousarray(Sm), 1.0 / self.h**2), scratch

    def rhs_compiled(self, state) -> np.ndarray:
        """:meth:`rhs` by the compiled all-patch kernel that the explicit integrators use.

        Parameters
        ----------
        state : array_like, size N**2 n**2

        Returns
        -------
        ndarray, shape (N**2 n**2,)
        """
        u = np.ascontiguousarray(self._as_state(state))
        out = np.empty_like(u)
        consts, scratch = self._kernel_args()
        _patch_rhs(u, *consts, *scratch, out)
        return out.ravel()

    def integrate(
        self,
        initial,
        times,
        rtol: float = 1e-6,
        atol: float = 1e-9,
        method: str = "BDF",
        keep_states: bool = False,
        step: float | None = None,
    ) -> GapToothSolution:
        """Integrate the scheme from ``times[0]`` and report it at ``times``.

        Parameters
        ----------
        initial : state vector, (N, N) macroscale field, or callable f(x, y)
            A state (size N**2 n**2) is used as is; otherwise :meth:`lift`.
        times : array_like, 1-D, strictly increasing, length >= 2
            Output times; integration runs from times[0] to times[-1].
        rtol, atol : float
            Tolerances of ``"BDF"`` and of adaptive ``"rkc"``.
        method : {"BDF", "exact", "euler", "rkc"} (case-insensitive), default "BDF"
            * ``"BDF"``: ``scipy.integrate.solve_ivp(method="BDF")`` on the micro
              unknowns with :meth:`rhs` and the sparse :meth:`jacobian`. The spectral
              coupling links every patch to its whole row and column of patches, so
              the sparse LU of I - c J fills in (~2e6 nonzeros for the paper's 2304
              unknowns): the LU factorisations dominate the cost.
            * ``"exact"``: the exact propagator exp((t - t0) J) y0, applied in the
              macroscale Fourier basis where J is block diagonal (:meth:`mode_rates`);
              no time stepping, exact to round-off, tolerances unused. Linear
              problems only.
            * ``"euler"``: explicit Euler, first order, with equal steps
              dt <= ``step`` in each output interval; ``step`` defaults to
              0.9 x 2/rho, rho = :meth:`stability_bound`, and a ``step`` above the
              stability limit 2/rho is refused. Uses only right-hand-side
              evaluations (compiled kernel over all patches, :meth:`rhs_compiled`).
            * ``"rkc"``: second-order Runge-Kutta-Chebyshev (RKC2, damping
              2/13; Sommeijer, Shampine & Verwer 1997). s stages stretch the
              stability interval to beta(s) ~ 0.65 s**2, so a step dt costs
              s ~ sqrt(dt rho/0.65) evaluations instead of dt rho/2 Euler steps; s
              is the fewest with dt rho <= 0.9 beta(s). Without ``step``: adaptive
              steps under the RKC error estimate (rtol, atol; a few small steps
              resolve the initial sub-patch transient). With ``step``: equal
              steps <= ``step`` in each output interval, no error control
              (global error O(step**2)). Uses only right-hand-side evaluations.
        keep_states : bool, default False
            Also return the interior micro fields.
        step : float, optional
            Time step of ``"euler"`` and fixed-step ``"rkc"``; must be None for
            ``"BDF"`` and ``"exact"``.

        Returns
        -------
        GapToothSolution
            U and dUdt (restriction of J y, i.e. of :meth:`rhs`) at ``times``. For
            ``"exact"`` nfev = njev = nlu = 0 and work = 0 (no micro time steps).

        Raises
        ------
        ValueError
            On a bad method, tolerance or step, in particular a ``"euler"`` step above
            2/rho, or a ``"rkc"`` step that would need more than 10,000 stages.
        """
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or times.size < 2 or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
            raise ValueError("times must be a finite, strictly increasing 1-D array of length >= 2")
        if not (rtol > 0 and atol > 0):
            raise ValueError("rtol and atol must be > 0")
        key = method.lower() if isinstance(method, str) else method
        if key not in INTEGRATORS:
            raise ValueError(f"unknown method {method!r}; expected one of {INTEGRATORS} (case-insensitive)")
        if step is not None:
            if key not in ("euler", "rkc"):
                raise ValueError(f"step is only used by the explicit methods 'euler' and 'rkc', not {method!r}")
            if isinstance(step, bool) or not isinstance(step, Real) or not np.isfinite(step) or step <= 0:
                raise ValueError(f"step must be a finite number > 0, got {step!r}")
        y0 = self._initial_state(initial)
        if self.patch_solver is not None:
            return self._integrate_solver(y0, times, key, rtol, atol, step, keep_states)
        jac = self.jacobian()
        nfev = njev = nlu = steps = rejected = stages = 0
        if key == "bdf":
            sol = solve_ivp(
                self.rhs, (times[0], times[-1]), y0, method="BDF", t_eval=times, jac=jac, rtol=rtol, atol=atol
            )
            if not sol.success:
                raise RuntimeError(f"solve_ivp failed: {sol.message}")
            flat = sol.y.T
            nfev, njev, nlu = int(sol.nfev), int(sol.njev), int(sol.nlu)
        elif key == "exact":
            N, n2 = self.patches, self.interior**2
            mu, V = self._blocks
            c = np.einsum("xyba,xyb->xya", np.conj(V), np.fft.fft2(y0.reshape(N, N, n2), axes=(0, 1)))
            growth = np.exp(mu[None] * (times - times[0])[:, None, None, None])  # (t, k1, k2, mode)
            Yhat = np.einsum("xyab,txyb->txya", V, growth * c[None])
            flat = np.fft.ifft2(Yhat, axes=(1, 2)).real.reshape(times.size, -1)
        else:
            rho = self.stability_bound()
            u = np.ascontiguousarray(y0.reshape(self.state_shape)).copy()
            out = np.empty((times.size,) + self.state_shape)
            consts, scratch = self._kernel_args()
            if key == "euler":
                limit = 2.0 / rho
                if step is not None and step > limit:
                    raise ValueError(
                        f"step = {step:.4g} exceeds the explicit Euler stability limit 2/rho = {limit:.4g} "
                        f"(rho = {rho:.4g}, the Gershgorin bound of the scheme's spectral radius)"
                    )
                dt = EULER_SAFETY * limit if step is None else float(step)
                nfev = int(_euler_run(u, times, dt, *consts, out, np.empty_like(u), *scratch))
                steps, stages = nfev, 1
            else:
                if step is not None and _rkc_stages(float(step), rho, RKC_SAFETY, RKC_DAMPING, RKC_MAX_STAGES) == 0:
                    raise ValueError(
                        f"step = {step:.4g} needs more than {RKC_MAX_STAGES} RKC stages (rho = {rho:.4g}); "
                        "take a smaller step"
                    )
                nfev, steps, rejected, stages = (int(v) for v in _rkc_run(
                    u, times, rho, 0.0 if step is None else float(step), float(rtol), float(atol),
                    RKC_SAFETY, RKC_MAX_STAGES, *consts, out, *scratch,
                ))
                if nfev < 0:  # pragma: no cover - adaptive steps stay far below the stage cap
                    raise RuntimeError(f"an RKC step needed more than {RKC_MAX_STAGES} stages")
            if not np.all(np.isfinite(out)):  # pragma: no cover - the steps are chosen within the stability limit
                raise RuntimeError(f"{method} produced non-finite values")
            flat = out.reshape(times.size, -1)
        states = flat.reshape((times.size,) + self.state_shape)
        dU = (flat @ jac.T).reshape(states.shape).mean(axis=(-2, -1))
        return GapToothSolution(
            times=times,
            U=states.mean(axis=(-2, -1)),
            dUdt=dU,
            X=self.centres,
            Y=self.centres.copy(),
            nfev=nfev,
            njev=njev,
            nlu=nlu,
            work=nfev * self.size,
            states=states if keep_states else None,
            steps=steps,
            rejected=rejected,
            stages=stages,
        )

    def _integrate_solver(self, y0, times, key, rtol, atol, step, keep_states) -> GapToothSolution:
        """:meth:`integrate` with a ``patch_solver``: BDF (finite-difference Jacobian on the coupling's
        sparsity pattern) or explicit Euler with the caller's ``step`` (its stability is the model's)."""
        if key == "bdf":
            pattern = (self.jacobian() != 0).astype(np.int8)
            sol = solve_ivp(self.rhs, (times[0], times[-1]), y0, method="BDF", t_eval=times, jac_sparsity=pattern,
                            rtol=rtol, atol=atol)
            if not sol.success:
                raise RuntimeError(f"solve_ivp failed: {sol.message}")
            flat, nfev, njev, nlu, steps = sol.y.T, int(sol.nfev), int(sol.njev), int(sol.nlu), 0
        elif key == "euler":
            if step is None:
                raise ValueError("euler with a patch_solver needs an explicit step (its stability limit is the model's)")
            flat = np.empty((times.size, self.size))
            flat[0] = y = y0.copy()
            nfev = steps = 0
            for i in range(1, times.size):
                m = max(1, math.ceil((times[i] - times[i - 1]) / step - 1e-9))
                dt = (times[i] - times[i - 1]) / m
                for _ in range(m):
                    y = y + dt * self.rhs(0.0, y)
                nfev += m
                flat[i] = y
            steps, njev, nlu = nfev, 0, 0
        else:
            raise ValueError(f"method {key!r} is specific to the built-in lattice; with a patch_solver use 'bdf' or 'euler'")
        if not np.all(np.isfinite(flat)):
            raise RuntimeError(f"{key} with the patch_solver produced non-finite values")
        states = flat.reshape((times.size,) + self.state_shape)
        dU = np.stack([self.rhs(0.0, y).reshape(self.state_shape) for y in flat]).mean(axis=(-2, -1))
        return GapToothSolution(times=times, U=states.mean(axis=(-2, -1)), dUdt=dU, X=self.centres,
                                Y=self.centres.copy(), nfev=nfev + times.size, njev=njev, nlu=nlu,
                                work=(nfev + times.size) * self.size, states=states if keep_states else None,
                                steps=steps, rejected=0, stages=1)

    def decay_rates(self, modes=((1, 0), (0, 1), (1, 1), (1, -1)), shift: float = 1.0, tol: float = 1e-13):
        """Decay rates of the scheme's slow eigenmodes of macroscopic shape sin(k.x).

        Parameters
        ----------
        modes : sequence of (int, int)
            Wavevectors k, |k_x|, |k_y| < N/2; the defaults are sin x, sin y,
            sin(x + y), sin(x - y).
        shift : float, default 1
            sigma > 0 of the shifted inverse iteration.
        tol : float
            Relative convergence tolerance of the Rayleigh quotient.

        Returns
        -------
        ndarray, shape (len(modes),)
            Rates lambda with du/dt = -lambda u on the mode.

        Notes
        -----
        Shifted inverse iteration v <- (sigma I - J)^{-1} v from v0 = lift(sin(k.X))
        (one sparse LU), rate = Rayleigh quotient -v.J v/v.v. The scheme commutes
        with patch translations and the lift preserves the macroscopic wavenumber,
        so v stays in the +-k sector, where the slow eigenvalue is separated from the
        next by O(1/h**2): a few iterations converge. The mode is identified by its
        shape: the restriction of v must be a combination of sin(k.X) and cos(k.X)
        (checked to 1e-6), never by the ordering of eigenvalues.
        """
        N = self.patches
        ks = []
        for mode in modes:
            k = np.asarray(mode)
            if k.shape != (2,) or not np.issubdtype(k.dtype, np.integer) or np.all(k == 0):
                raise ValueError(f"modes must be non-zero integer pairs, got {mode!r}")
            if np.any(2 * np.abs(k) >= N):
                raise ValueError(f"mode {tuple(k)} is not resolved by {N} patches per direction")
            ks.append(k)
        if not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift!r}")
        J = self.jacobian()
        lu = splu((shift * sparse.identity(self.size, format="csc") - J).tocsc())
        X = self.centres
        rates = []
        for k in ks:
            phase = k[0] * X[:, None] + k[1] * X[None, :]
            v = self.lift(np.sin(phase))
            rate_old = np.inf
            for _ in range(100):
                v = lu.solve(v)
                v /= np.linalg.norm(v)
                rate = -float(v @ (J @ v))
                if abs(rate - rate_old) <= tol * abs(rate):
                    break
                rate_old = rate
            else:  # pragma: no cover - a gap of O(1/h**2) converges in a few steps
                raise RuntimeError(f"inverse iteration did not converge for mode {tuple(k)}")
            U = self.restrict(v)
            basis = np.stack([np.sin(phase).ravel(), np.cos(phase).ravel()], axis=1)
            coef = np.linalg.lstsq(basis, U.ravel(), rcond=None)[0]
            if np.linalg.norm(U.ravel() - basis @ coef) > 1e-6 * np.linalg.norm(U):
                raise RuntimeError(f"slow eigenvector of mode {tuple(k)} is not of macroscopic shape sin(k.X)")
            rates.append(rate)
        return np.array(rates)

    def slow_rates(self, modes) -> np.ndarray:
        """The slow (macroscale) decay rate of each sector ``k`` in ``modes``, for any coupling.

        Parameters
        ----------
        modes : sequence of (int, int)
            Wavevectors k, |k_x|, |k_y| < N/2.

        Returns
        -------
        ndarray, shape (len(modes),)
            Real part of the eigenvalue of B_k (:attr:`_blocks`, built the same way
            but not symmetrised: polynomial coupling is not symmetric) nearest zero.
            Unlike :meth:`decay_rates` there is no iteration, so sectors whose rate
            is far above the slowest (k = 5 when k = 1 decays 25x slower) are exact too.
        """
        N, n2 = self.patches, self.interior**2
        ks = [np.asarray(k) for k in modes]
        for k in ks:
            if k.shape != (2,) or not np.issubdtype(k.dtype, np.integer) or np.any(2 * np.abs(k) >= N):
                raise ValueError(f"modes must be integer pairs resolved by {N} patches, got {tuple(k)!r}")
        J0 = self.jacobian()[:n2].toarray().reshape(n2, N, N, n2)
        B = N * N * np.fft.ifft2(J0.transpose(1, 2, 0, 3), axes=(0, 1))  # [k1, k2, a', a]
        rates = []
        for k in ks:
            mu = np.linalg.eigvals(B[k[0] % N, k[1] % N])
            rates.append(-float(mu[np.argmin(np.abs(mu))].real))
        return np.array(rates)


class PatchRHS(Protocol):
    """The eqfree micro-model contract in 2-D: a detailed model's time derivative on every patch.

    An object (a frozen dataclass, so that stages holding it fingerprint and pickle)
    with one method; :class:`GapTooth2D` calls it with the coupled edge values.
    """

    def rhs(self, full: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d(interior)/dt of every patch.

        Parameters
        ----------
        full : ndarray, shape (N, N, n + 2, n + 2)
            Patch fields [I, J, a, b]: the interior values and, on the edge rows and
            columns, the boundary data from the coupling (NaN at the four corners).
        x, y : ndarray, shape (N, n + 2)
            Positions of the patch points along x (patch I, index a) and y (patch J, index b).

        Returns
        -------
        ndarray, shape (N, N, n, n)
        """


class CouplingWarning(UserWarning):
    """The polynomial patch coupling changes the scheme's slow rates by more than ``gap_tooth.coupling_tolerance``."""


#: Default tolerance of :func:`check_coupling` (relative change of the slow rates).
COUPLING_TOLERANCE = 1e-3


def check_coupling(scheme: GapTooth2D, max_wavenumber: int, tolerance: float = COUPLING_TOLERANCE,
                   warn: bool = True) -> dict:
    """How much the coupling of ``scheme`` biases its slow rates, measured against spectral coupling.

    Spectral coupling interpolates every resolved macroscale mode exactly, so the
    slow rate of each sector under polynomial coupling of degree p, divided by
    the same rate under spectral coupling, is the coupling's error alone (patches,
    lattice and medium are the same). It is measured on every wavevector
    (k_x, +-k_y), 0 <= k <= ``max_wavenumber`` (the largest wavenumber of the
    training data's initial conditions), not only on the slowest modes: the error
    of a degree-p interpolant grows like (k H_gap)**p.

    Returns
    -------
    dict
        ``coupling_error`` (max over the modes of |rate/rate_spectral - 1|; 0 for
        spectral coupling), ``coupling_error_mode`` (where), ``coupling_tolerance``,
        ``coupling_check_passed``, ``coupling_check_max_wavenumber``. With ``warn``,
        a :class:`CouplingWarning` when the error exceeds the tolerance.
    """
    out = {"coupling_tolerance": float(tolerance), "coupling_check_max_wavenumber": int(max_wavenumber)}
    if scheme.coupling == "spectral":
        return {**out, "coupling_error": 0.0, "coupling_error_mode": "none", "coupling_check_passed": True}
    kmax = min(int(max_wavenumber), (scheme.patches - 1) // 2)
    modes = [(kx, ky) for kx in range(kmax + 1) for ky in range(-kmax, kmax + 1) if (kx, ky) > (0, 0)]
    modes = [m for m in modes if m[0] > 0 or m[1] > 0]
    exact = replace(scheme, coupling="spectral").slow_rates(modes)
    error = np.abs(scheme.slow_rates(modes) / exact - 1.0)
    worst = int(np.argmax(error))
    out.update(coupling_error=float(error[worst]), coupling_error_mode=str(modes[worst]),
               coupling_check_passed=bool(error[worst] <= tolerance))
    if warn and not out["coupling_check_passed"]:
        warnings.warn(
            f"gap_tooth.order = {scheme.order}: polynomial coupling changes the scheme's slow decay rates by up to "
            f"{error[worst]:.2g} (relative, mode {modes[worst]}) against spectral coupling, more than "
            f"gap_tooth.coupling_tolerance = {tolerance:g}; raise the order or use coupling: spectral",
            CouplingWarning, stacklevel=2)
    return out
