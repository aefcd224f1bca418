"""Exact hydrodynamic facts of the symmetric zero-range process, used as test oracles.

Model and conventions as in :mod:`cgflow.micro.zrp` (seed 000 §4; REFERENCE §1):
rate g(k) = k**p, p in {0, 1, 2}, each firing sends a particle left or right with
probability 1/2; stationary product measures of fugacity phi = E[g(eta)];
sites at x_i = i/L; macroscopic time t = (lattice time)/L**2.

Hydrodynamics (seed eq. (7); REFERENCE §1 "Link to the paper"). The hydrodynamic
limit is d rho/dt = (1/2) Laplacian phi(rho). With the mobility m = phi/2 and the
thermodynamic force F = dS/drho = -log phi this is the gradient flow
d rho/dt = -div(m grad F), because m grad F = (phi/2)(-grad phi/phi) = -(1/2) grad phi.
This holds for every p; for p = 2 it is seed eq. (7) (F = -log 2m,
rho(m) = sqrt(2m) I1(2 sqrt(2m))/I0(2 sqrt(2m))).

Discrete operator (seed eqs. (4)-(6), (8), (9), Appendix C). With linear hats
gamma_a of spacing Delta = 1/N the continuum operator is
<K gamma_a, gamma_b> = integral of m(rho) gamma_a' gamma_b' dx. Frozen at the affine
profile rho(x) = rho_a + s (x - x_a) (seed eq. (6)/(8)) it is a three-point row
stencil (:func:`exact_stencil`) whose small-s expansion is :func:`stencil_expansion`.
On the lattice, under local equilibrium, the fluctuation-dissipation relation
(seed eq. (5)) gives K_ab = (L/2) sum_i (1/2)(phi_i + phi_{i+1}) dgamma_a,i dgamma_b,i
(:func:`lattice_operator`, :func:`carre_du_champ_stencil`), dgamma_i =
gamma(x_{i+1}) - gamma(x_i): a jump across bond i moves <rho_eps, gamma> by dgamma_i/L,
bond i is crossed at rate (g(eta_i) + g(eta_{i+1}))/2 per lattice time, i.e. times L**2
per macroscopic time, and Y = <rho_eps - rho, gamma> sqrt(L), so
(1/2h) E[dY_a dY_b] -> (L/2) sum_i (1/2)(g_i + g_{i+1}) dgamma_a,i dgamma_b,i.

Lattice versus continuum. With sites at x_i = i/L (the paper's x_i = X_i/L) and
nodes at a/N, L = nN, every node sits on a site and every bond lies inside one
element, where the two hats change by -1/n and +1/n: the lattice operator is
tridiagonal and, for a flat profile, equal to the continuum stencil. (With
half-integer positions x_i = (i + 1/2)/L every node would sit at a bond midpoint,
that bond would change the two neighbouring hats by -+1/(2n), and the operator
would become pentadiagonal with K_{b,b+-2} = -N phi/(8n) and O(N/L) = 0.8 %
offsets at L = 5000, N = 40; this is why cgflow uses x_i = i/L.)

Everything here is vectorised numpy/scipy, plus one numba kernel (the look-up of
:func:`tabulated_fugacity`, the cheap exact fugacity behind the macro stage's
reference operator); no I/O.
"""

from __future__ import annotations

import functools
from numbers import Integral

import numba
import numpy as np
from scipy import sparse, special

from cgflow.micro.zrp import check_rate_exponent, compressibility, fugacity

__all__ = [
    "carre_du_champ_stencil",
    "carre_du_champ_weights",
    "diffusivity",
    "exact_stencil",
    "lattice_mean_field",
    "lattice_operator",
    "zero_range_mean_field",
    "mobility",
    "mobility_derivatives",
    "stencil_expansion",
    "tabulated_fugacity",
    "thermodynamic_force",
    "FUGACITY_TABLE_RANGE",
    "FUGACITY_TABLE_STEP",
    "FUGACITY_TABLE_ERROR",
]

#: Density range of the p = 2 fugacity table (:func:`tabulated_fugacity`); outside it, Newton.
FUGACITY_TABLE_RANGE = (0.125, 64.0)
#: Node spacing of the table (a power of 2, so that the node positions are exact).
FUGACITY_TABLE_STEP = 2.0**-10
#: Bound on the table's interpolation remainder (absolute), h**4/384 max|phi^(4)| (see tabulated_fugacity).
FUGACITY_TABLE_ERROR = 3e-15


# ----------------------------------------------------------------------------- validation
def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_rho(rho) -> np.ndarray:
    rho_arr = np.asarray(rho, dtype=np.float64)
    bad = ~np.isfinite(rho_arr) | (rho_arr <= 0)
    if np.any(bad):
        raise ValueError(f"rho must be finite and > 0, got {rho_arr[bad].ravel()[0]!r}")
    return rho_arr


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim else float(x)


# ----------------------------------------------------------------------------- transport coefficients
def mobility(rho, rate_exponent):
    """Mobility m(rho) = phi(rho)/2 of the hydrodynamic equation.

    Parameters
    ----------
    rho : float or array_like
        Density, ``> 0``; any shape.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        m = phi/2: p = 0: rho/(2(1 + rho)); p = 1: rho/2; p = 2: phi/2 with
        rho = sqrt(phi) I1(2 sqrt(phi))/I0(2 sqrt(phi)).

    Notes
    -----
    The hydrodynamic limit is d rho/dt = (1/2) Laplacian phi(rho) for every p. With
    F = -log phi (:func:`thermodynamic_force`), -div(m grad F) = div((m/phi) grad phi),
    which equals (1/2) Laplacian phi iff m = phi/2. This is seed eq. (7) (the paper's m
    is phi/2) and REFERENCE §1.
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = _check_rho(rho)
    return _out(0.5 * np.asarray(fugacity(rho_arr, p)))


def thermodynamic_force(rho, rate_exponent, tabulated=False):
    """Thermodynamic force F(rho) = dS/drho = -log phi(rho) = -log(2 m(rho)).

    Parameters
    ----------
    rho : float or array_like
        Density, ``> 0``.
    rate_exponent : int
        p in {0, 1, 2}.
    tabulated : bool, default False
        Take phi from :func:`tabulated_fugacity` (p = 2: a cubic Hermite table,
        absolute error <= FUGACITY_TABLE_ERROR, ~50x cheaper than Newton) instead
        of :func:`cgflow.micro.zrp.fugacity`.

    Returns
    -------
    float or ndarray
        -log phi(rho).

    Notes
    -----
    The entropy density of the local product measure (minus the large-deviation
    rate function of the site occupation) is s(rho) = -[rho log phi - log Z_p(phi)]
    at phi = phi(rho), up to a term linear in rho, which is irrelevant under mass
    conservation. Since phi Z_p'(phi)/Z_p = rho, s'(rho) = -log phi - phi'(rho/phi) +
    phi' Z_p'/Z_p = -log phi. This is F of seed eq. (7) (F = -log 2m, m = phi/2;
    REFERENCE §1).
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = _check_rho(rho)
    phi = _tabulated(rho_arr, p) if tabulated else fugacity(rho_arr, p)
    return _out(-np.log(np.asarray(phi)))


def diffusivity(rho, rate_exponent):
    """Diffusivity D(rho) = m'(rho) = phi/(2 chi), chi the compressibility.

    Parameters
    ----------
    rho : float or array_like
        Density, ``> 0``.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        p = 0: 1/(2(1 + rho)**2); p = 1: 1/2; p = 2: phi/(2 chi) with
        chi = phi - rho**2 (:func:`cgflow.micro.zrp.compressibility`).

    Notes
    -----
    d rho/dt = (1/2) Laplacian phi = div(m'(rho) grad rho), so D = m' = phi'/2. For the
    product measure rho is the first cumulant in theta = log phi and
    chi = Var eta = d rho/d theta = phi d rho/d phi, so phi' = phi/chi and
    D = phi/(2 chi) (REFERENCE §1).
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = _check_rho(rho)
    if p == 0:
        out = 0.5 / (1.0 + rho_arr) ** 2
    elif p == 1:
        out = np.full_like(rho_arr, 0.5)
    else:
        phi = np.asarray(fugacity(rho_arr, p))
        out = phi / (2.0 * np.asarray(compressibility(rho_arr, p)))
    return _out(out)


def mobility_derivatives(rho, rate_exponent):
    """Mobility and its first two density derivatives (m, m', m'').

    Parameters
    ----------
    rho : float or array_like
        Density, ``> 0``.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    tuple of three floats or ndarrays
        (m, m', m'').

    Notes
    -----
    m = phi/2 and m' = phi/(2 chi) (:func:`diffusivity`). Differentiating once more,
    with phi' = phi/chi,

        m'' = (phi' chi - phi chi')/(2 chi**2) = phi (1 - chi')/(2 chi**2) = m' (1 - chi')/chi.

    chi' = d chi/d rho = kappa3/chi, kappa3 the third cumulant (cumulants are the
    theta-derivatives of log Z_p, theta = log phi, and d rho/d theta = chi). Closed forms:

    * p = 0: chi = rho(1 + rho), chi' = 1 + 2 rho; m = rho/(2(1 + rho)),
      m' = 1/(2(1 + rho)**2), m'' = -1/(1 + rho)**3;
    * p = 1: chi = rho, chi' = 1; m = rho/2, m' = 1/2, m'' = 0;
    * p = 2: chi = phi - rho**2, so chi' = phi' - 2 rho = 2 m' - 2 rho and
      m'' = m' (1 + 2 rho - 2 m')/chi. For large rho, m' ~ rho + 1/4 and the bracket
      tends to 1/2; the cancellation in chi = phi - rho**2 and in 1 + 2 rho - 2 m' costs
      about log10(rho**2) digits (relative error ~1e-13 at rho = 10).

    m'' multiplies the s**2 term of the stencil expansion (REFERENCE §1; seed
    Appendix C, d^2m/dx^2 = m'' s**2 for an affine profile).
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = _check_rho(rho)
    if p == 0:
        m = 0.5 * rho_arr / (1.0 + rho_arr)
        m1 = 0.5 / (1.0 + rho_arr) ** 2
        m2 = -1.0 / (1.0 + rho_arr) ** 3
    elif p == 1:
        m = 0.5 * rho_arr
        m1 = np.full_like(rho_arr, 0.5)
        m2 = np.zeros_like(rho_arr)
    else:
        phi = np.asarray(fugacity(rho_arr, p))
        chi = phi - rho_arr**2
        m = 0.5 * phi
        m1 = phi / (2.0 * chi)
        m2 = m1 * (1.0 + 2.0 * rho_arr - 2.0 * m1) / chi
    return _out(m), _out(m1), _out(m2)


# ----------------------------------------------------------------------------- tabulated fugacity
@functools.lru_cache(maxsize=1)
def _fugacity_table_p2() -> tuple[np.ndarray, np.ndarray]:
    """Nodes' values phi_k and derivatives phi'_k of the p = 2 table (built once per process, ~0.1 s).

    phi_k by Newton (:func:`cgflow.micro.zrp.fugacity`, 1e-14 relative), phi'_k =
    1/(d rho/d phi) = 1/(1 - r**2), r = I1/I0 at 2 sqrt(phi_k) (the derivative used by
    that Newton iteration; no cancellation as in phi/chi with chi = phi - rho**2).
    """
    lo, hi = FUGACITY_TABLE_RANGE
    k = np.arange(int(round((hi - lo) / FUGACITY_TABLE_STEP)) + 1)
    rho = lo + k * FUGACITY_TABLE_STEP  # exact: lo and the step are powers of 2
    phi = np.asarray(fugacity(rho, 2))
    x = 2.0 * np.sqrt(phi)
    r = special.ive(1, x) / special.ive(0, x)
    for arr in (phi, r):
        arr.flags.writeable = False
    return phi, np.asarray(1.0 / (1.0 - r * r))


@numba.njit(cache=True)
def _hermite_table(rho, lo, step, values, slopes, out, inside):
    """Cubic Hermite interpolation of the table at every rho; ``inside[i]`` False outside [lo, hi] or NaN."""
    last = values.shape[0] - 1
    inv = 1.0 / step
    for i in range(rho.shape[0]):
        x = (rho[i] - lo) * inv
        if not (x >= 0.0 and x <= last):  # also catches NaN
            inside[i] = False
            continue
        k = min(int(x), last - 1)
        t = x - k
        u = 1.0 - t
        h00 = (1.0 + 2.0 * t) * u * u
        h10 = t * u * u
        h01 = t * t * (3.0 - 2.0 * t)
        h11 = -t * t * u
        out[i] = h00 * values[k] + h01 * values[k + 1] + step * (h10 * slopes[k] + h11 * slopes[k + 1])
        inside[i] = True


def tabulated_fugacity(rho, rate_exponent):
    """Fugacity phi(rho) from a precomputed table: the cheap exact operator of the macro reference.

    Parameters
    ----------
    rho : float or array_like
        Density, ``> 0``; any shape.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        p = 0, 1: the closed forms of :func:`cgflow.micro.zrp.fugacity`. p = 2:
        piecewise cubic Hermite interpolation of the Newton inverse of
        rho(phi) = sqrt(phi) I1(2 sqrt(phi))/I0(2 sqrt(phi)) (seed eq. (7)) on the
        uniform grid FUGACITY_TABLE_RANGE = [1/8, 64] of step h = 2**-10, with the
        exact values and derivatives phi' = 1/(1 - (I1/I0)**2) at the nodes; Newton
        itself (``fugacity``) outside the range.

    Raises
    ------
    ValueError
        If any ``rho <= 0`` or not finite, or ``rate_exponent`` is unsupported.

    Notes
    -----
    The Hermite remainder on a cell is |phi - P| <= h**4/384 max|phi^(4)|. On
    [1/8, 64] max|phi^(4)| = 1.15 (at rho ~ 0.83, from 4th differences on a 1/64
    grid; below 0.05 for rho >= 2), so the interpolation error is <= 3e-15 absolute
    (FUGACITY_TABLE_ERROR), i.e. 2e-14 relative at rho = 1/8 (phi ~ 0.13) and
    ~1e-16 relative for rho >= 2, below the 1e-14 of the Newton values
    themselves; rounding adds a few ulp of phi. Measured against Newton at 2e5
    random densities in the table range: 5e-15 relative at most (tested in
    tests/micro/test_zrp_hydro.py). The cost is one table look-up instead
    of four or five Newton steps with two scaled Bessel functions each.
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = np.asarray(rho, dtype=np.float64)
    if not np.all(np.isfinite(rho_arr)) or np.any(rho_arr <= 0):
        raise ValueError("rho must be finite and > 0")
    return _tabulated(rho_arr, p)


def _tabulated(rho_arr: np.ndarray, p: int):
    """:func:`tabulated_fugacity` of a validated float64 array (rho finite and > 0)."""
    if p != 2:
        return fugacity(rho_arr, p)
    values, slopes = _fugacity_table_p2()
    flat = np.ascontiguousarray(rho_arr.ravel())
    out = np.empty_like(flat)
    inside = np.empty(flat.shape, dtype=np.bool_)
    _hermite_table(flat, FUGACITY_TABLE_RANGE[0], FUGACITY_TABLE_STEP, values, slopes, out, inside)
    if not inside.all():
        outside = ~inside
        out[outside] = fugacity(flat[outside], 2)
    out = out.reshape(rho_arr.shape)
    return out if out.ndim else float(out)


@functools.lru_cache(maxsize=8)
def _gauss_legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre points and weights on [-1, 1] (cached, read-only)."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    t.flags.writeable = False
    w.flags.writeable = False
    return t, w


# ----------------------------------------------------------------------------- continuum stencils
def exact_stencil(rho_a, slope, elements, rate_exponent, nodes=10, tabulated=False):
    """Continuum operator row at node a, frozen at the affine profile through (x_a, rho_a).

    Parameters
    ----------
    rho_a : float or array_like
        Density at the node, broadcast against ``slope``.
    slope : float or array_like
        s = d rho/dx in macroscopic units (x in [0, 1]).
    elements : int
        Number of elements N; the hat spacing is Delta = 1/N.
    rate_exponent : int
        p in {0, 1, 2}.
    nodes : int, default 10
        Gauss-Legendre points per element.
    tabulated : bool, default False
        Evaluate m = phi/2 at the quadrature points with :func:`tabulated_fugacity`
        (interpolation error <= FUGACITY_TABLE_ERROR absolute, plus rounding: below
        1e-14 relative, as Newton's own tolerance) instead of Newton: the fast path of the macro
        reference (:class:`cgflow.methods.fdr.macro.MacroSimulation`).

    Returns
    -------
    ndarray, shape broadcast(rho_a, slope).shape + (3,)
        (K_{a,a-1}, K_aa, K_{a,a+1}) along the last axis.

    Raises
    ------
    ValueError
        If rho(x) <= 0 somewhere on [x_a - Delta, x_a + Delta] (i.e. if
        rho_a - |s| Delta <= 0), or the exponent is unsupported.

    Notes
    -----
    <K gamma_a, gamma_b> = integral of m(rho(x)) gamma_a' gamma_b' dx (seed Appendix C,
    eq. (C.1), with K_rho frozen at rho_a + s (x - x_a), seed eqs. (6), (8)). On the
    element [x_a - Delta, x_a] the slopes are gamma_{a-1}' = -1/Delta, gamma_a' = 1/Delta,
    so K_{a,a-1} = -(1/Delta**2) integral_{x_a-Delta}^{x_a} m dx; likewise on the right.
    K_aa = (1/Delta**2) integral over both elements = -(K_{a,a-1} + K_{a,a+1}), so the
    row sums vanish (REFERENCE §1 "Exact operator for an affine profile"). With
    Gauss-Legendre points t_k, weights w_k on [-1, 1]:
    K_{a,a+-1} = -(1/(2 Delta)) sum_k w_k m(rho_a +- s Delta (1 + t_k)/2), so
    K_{a,a-1}(s) = K_{a,a+1}(-s) exactly. m is analytic, so 10 points give machine
    precision.
    """
    p = check_rate_exponent(rate_exponent)
    n_el = _check_positive_int(elements, "elements")
    n_q = _check_positive_int(nodes, "nodes")
    rho_a, slope = np.broadcast_arrays(np.asarray(rho_a, dtype=np.float64), np.asarray(slope, dtype=np.float64))
    if not (np.all(np.isfinite(rho_a)) and np.all(np.isfinite(slope))):
        raise ValueError("rho_a and slope must be finite")
    delta = 1.0 / n_el
    rho_min = rho_a - np.abs(slope) * delta
    bad = rho_min <= 0
    if np.any(bad):
        idx = np.argwhere(bad)[0] if bad.ndim else ()
        raise ValueError(
            f"affine profile reaches rho <= 0 on the two elements: rho_a={rho_a[tuple(idx)]!r}, "
            f"slope={slope[tuple(idx)]!r}, minimum rho={rho_min[tuple(idx)]!r}"
        )
    t, w = _gauss_legendre(n_q)
    u = 0.5 * delta * (1.0 + t)  # distance from x_a, shape (n_q,)
    shift = slope[..., None] * u  # (..., n_q)
    phi = _tabulated if tabulated else fugacity  # every point is >= rho_min > 0 (checked above)
    m_right = 0.5 * np.asarray(phi(rho_a[..., None] + shift, p))
    m_left = 0.5 * np.asarray(phi(rho_a[..., None] - shift, p))
    k_right = -(m_right @ w) / (2.0 * delta)
    k_left = -(m_left @ w) / (2.0 * delta)
    return np.stack([k_left, -(k_left + k_right), k_right], axis=-1)


def stencil_expansion(rho_a, slope, elements, rate_exponent):
    """Small-slope expansion of :func:`exact_stencil`: the stencils K(1) and K(2) of seed eq. (9).

    Parameters
    ----------
    rho_a, slope : float or array_like
        As in :func:`exact_stencil` (broadcast together).
    elements : int
        Number of elements N, Delta = 1/N.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    K1, K2 : ndarray, shape broadcast + (3,)
        K1 = (m/Delta + m'' s**2 Delta/6) (-1, 2, -1), the Laplacian-shaped stencil
        (its s = 0 part is K(1)(rho_a) of seed eq. (9)); K2 = (m' s/2) (1, 0, -1), the
        gradient stencil K(2), whose middle entry is exactly 0.

    Notes
    -----
    Expanding m(rho_a + s u) = m + m' s u + m'' s**2 u**2/2 + m''' s**3 u**3/6 + ... in
    the element integrals of :func:`exact_stencil`:
    integral_0^Delta = m Delta + m' s Delta**2/2 + m'' s**2 Delta**3/6 + m''' s**3 Delta**4/24,
    and the left element is the same with s -> -s. Hence
    K_{a,a+-1} = -m/Delta -+ m' s/2 - m'' s**2 Delta/6 -+ m''' s**3 Delta**2/24 + O(s**4 Delta**3),
    K_aa = 2 m/Delta + m'' s**2 Delta/3 + O(s**4 Delta**3)
    (REFERENCE §1; seed Appendix C eqs. (C.2)-(C.4) with dm/dx = m' s,
    d^2m/dx^2 = m'' s**2). The neglected off-diagonal term is m''' s**3 Delta**2/24.
    """
    p = check_rate_exponent(rate_exponent)
    n_el = _check_positive_int(elements, "elements")
    rho_a, slope = np.broadcast_arrays(np.asarray(rho_a, dtype=np.float64), np.asarray(slope, dtype=np.float64))
    if not np.all(np.isfinite(slope)):
        raise ValueError("slope must be finite")
    m, m1, m2 = (np.asarray(v) for v in mobility_derivatives(rho_a, p))
    delta = 1.0 / n_el
    lap = m / delta + m2 * slope**2 * delta / 6.0
    grad = 0.5 * m1 * slope
    k1 = lap[..., None] * np.array([-1.0, 2.0, -1.0])
    k2 = grad[..., None] * np.array([1.0, 0.0, -1.0])
    k2[..., 1] = 0.0  # exactly 0 (not -0.0 or a product with nan)
    return k1, k2


# ----------------------------------------------------------------------------- lattice operator
def _hat_numerators(site_index: np.ndarray, node_index: np.ndarray, L: int, N: int, periodic: bool) -> np.ndarray:
    """Integer 2L gamma_a(x_i) for x_i = i/L and nodes a/N (exact, int64).

    gamma_a(x_i) = max(0, 1 - N |x_i - a/N|) = max(0, 2L - |2Ni - 2aL|)/(2L); for a
    periodic lattice the distance is taken modulo 1, i.e. the integer modulo 2LN.
    """
    d = 2 * N * site_index - 2 * L * node_index
    if periodic:
        d = np.mod(d, 2 * L * N)
        d = np.minimum(d, 2 * L * N - d)
    else:
        d = np.abs(d)
    return np.maximum(0, 2 * L - d)


def _check_lattice(sites, elements, periodic) -> tuple[int, int, bool]:
    L = _check_positive_int(sites, "sites", 2)
    if not isinstance(periodic, (bool, np.bool_)):
        raise ValueError(f"periodic must be a bool, got {periodic!r}")
    N = _check_positive_int(elements, "elements", 2 if periodic else 1)
    if N > L:
        raise ValueError(f"elements ({N}) must not exceed sites ({L})")
    return L, N, bool(periodic)


def carre_du_champ_weights(sites, elements, periodic):
    """Hat increments dgamma_a,i = gamma_a(x_{i+1}) - gamma_a(x_i) over every bond.

    Parameters
    ----------
    sites : int
        Lattice size L (sites x_i = i/L, as :func:`cgflow.micro.zrp.site_positions`).
    elements : int
        Number of elements N <= L; hats gamma_a(x) = max(0, 1 - N|x - a/N|) at nodes a/N.
    periodic : bool
        Closed: nodes a = 0..N (half hats at the ends), bonds i -> i+1, i = 0..L-2.
        Periodic: nodes a = 0..N-1 (N >= 2) with hats wrapping around [0, 1), bonds
        i -> (i+1) mod L, i = 0..L-1 (bond L-1 -> 0 included).

    Returns
    -------
    ndarray, shape (n_nodes, n_bonds)
        dgamma, computed exactly as integers/(2L) (one rounding).

    Notes
    -----
    For L = nN every bond lies inside one element e and has dgamma = -1/n for hat e
    and +1/n for hat e+1 (nodes sit on sites). Dense: O(L N) memory.
    """
    L, N, periodic = _check_lattice(sites, elements, periodic)
    n_nodes = N if periodic else N + 1
    n_bonds = L if periodic else L - 1
    a = np.arange(n_nodes, dtype=np.int64)[:, None]
    i = np.arange(n_bonds + 1, dtype=np.int64)[None, :]  # site L (periodic) is site 0 shifted by 1
    g = _hat_numerators(i, a, L, N, periodic)
    return np.diff(g, axis=1) / (2.0 * L)


def lattice_operator(rho_sites, elements, periodic, rate_exponent):
    """The particle system's operator K_ab under local equilibrium with site densities ``rho_sites``.

    Parameters
    ----------
    rho_sites : array_like, shape (L,)
        Site densities, ``>= 0`` (phi = 0 at an empty site).
    elements : int
        Number of elements N (<= L).
    periodic : bool
        Lattice and hat geometry, as in :func:`carre_du_champ_weights`.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    ndarray, shape (n_nodes, n_nodes)
        K_ab = (L/2) sum_i (1/2)(phi_i + phi_{i+1}) dgamma_a,i dgamma_b,i; exactly
        symmetric; entries with |a - b| >= 3 (cyclically for periodic) are exactly 0.

    Notes
    -----
    The expectation of the carré du champ estimator (REFERENCE §1 estimator 3;
    derivation in the module docstring) under the product measure with site fugacities
    phi_i, since E[g(eta_i)] = phi_i. Row sums vanish because the hats form a partition
    of unity at every site, so sum_b dgamma_b,i = 0 for every bond. With L a multiple
    of N, K is tridiagonal (module docstring).
    Computed as a dense product, O(L) per node pair.
    """
    p = check_rate_exponent(rate_exponent)
    rho = np.asarray(rho_sites, dtype=np.float64)
    if rho.ndim != 1:
        raise ValueError(f"rho_sites must be 1-D, got shape {rho.shape}")
    L, N, periodic = _check_lattice(rho.size, elements, periodic)
    bad = ~np.isfinite(rho) | (rho < 0)
    if np.any(bad):
        raise ValueError(f"rho_sites must be finite and >= 0, got {rho[bad][0]!r}")
    phi = np.zeros_like(rho)
    pos = rho > 0
    if pos.any():
        phi[pos] = fugacity(rho[pos], p)
    if periodic:
        rates = 0.5 * (phi + np.roll(phi, -1))
    else:
        rates = 0.5 * (phi[:-1] + phi[1:])
    dg = carre_du_champ_weights(L, N, periodic)
    k = (0.5 * L) * ((dg * rates) @ dg.T)
    return 0.5 * (k + k.T)


@functools.lru_cache(maxsize=32)
def _stencil_map(L: int, N: int, periodic: bool, half_width: int) -> sparse.csr_matrix:
    """Sparse (n_stencil_entries, n_bonds) map from bond rates to row stencils.

    Bond i (midpoint y = (i + 1/2)/L) can change only the hats c-1, c, c+1, c the node
    nearest to y: a hat a changes on bond i only if |a - N y| < 1 + N/(2L) <= 3/2, while
    |c +- 2 - N y| >= 3/2. Their increments are evaluated exactly from the integer
    hat numerators; every product dgamma_b dgamma_{b+d} (|d| <= half_width) is one
    entry (L/2) * num_b num_{b+d}/(2L)**2 of the map. O(L) entries in all.
    """
    n_nodes = N if periodic else N + 1
    n_bonds = L if periodic else L - 1
    width = 2 * half_width + 1
    i = np.arange(n_bonds, dtype=np.int64)
    c = (N * (2 * i + 1) + L) // (2 * L)  # nearest node to the bond midpoint (i + 1/2)/L
    cand = c[:, None] + np.arange(-1, 2, dtype=np.int64)[None, :]  # (n_bonds, 3), unwrapped
    num = _hat_numerators(i[:, None] + 1, cand, L, N, periodic) - _hat_numerators(i[:, None], cand, L, N, periodic)
    rows, cols, vals = [], [], []
    for k in range(3):
        for l in range(3):
            d = l - k
            if abs(d) > half_width:
                continue
            b = cand[:, k]
            v = num[:, k] * num[:, l]  # exact integers
            keep = v != 0
            if periodic:
                b = np.mod(b, N)
            else:
                keep &= (b >= 0) & (b <= N)  # then b + d is a real node too, else num would be 0
            rows.append(b[keep] * width + (d + half_width))
            cols.append(i[keep])
            vals.append(v[keep] / (8.0 * L))  # (L/2)/(2L)**2
    m = sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_nodes * width, n_bonds)
    )
    return m.tocsr()


def carre_du_champ_stencil(g_bonds_mean, sites, elements, periodic, half_width=1):
    """Row stencils of K_ab = (L/2) sum_i r_i dgamma_a,i dgamma_b,i from per-bond rates r_i.

    Parameters
    ----------
    g_bonds_mean : array_like, shape (..., n_bonds)
        r_i = (g(eta_i) + g(eta_{i+1}))/2 per bond (bond order of
        :func:`carre_du_champ_weights`: i -> i+1, plus L-1 -> 0 if periodic); any leading
        batch shape (e.g. sampled configurations).
    sites : int
        Lattice size L.
    elements : int
        Number of elements N (<= L; N >= 5 if periodic, so that the stencil entries are
        distinct matrix entries).
    periodic : bool
        Lattice and hat geometry.
    half_width : {1, 2}, default 1
        1: entries (K_{b,b-1}, K_bb, K_{b,b+1}); 2: (K_{b,b-2}, ..., K_{b,b+2}), whose
        outer entries vanish when L is a multiple of N (they do not otherwise).

    Returns
    -------
    ndarray, shape (..., n_nodes, 2 * half_width + 1)
        Per node b the band entries of K; zero towards nodes that do not exist at
        closed ends. With r_i = (phi_i + phi_{i+1})/2 this is the band of
        :func:`lattice_operator`.

    Notes
    -----
    REFERENCE §1 estimator 3 (carré du champ). Each bond touches at most three
    consecutive hats; for L = nN the increments are -1/n, +1/n for the two hats of
    the element containing the bond. The map from bond rates to stencil entries is a
    cached sparse matrix with at most 9 entries per bond, so the cost is O(L) per
    configuration; L need not be a multiple of N.
    """
    L, N, periodic = _check_lattice(sites, elements, periodic)
    if half_width not in (1, 2) or isinstance(half_width, bool):
        raise ValueError(f"half_width must be 1 or 2, got {half_width!r}")
    if periodic and N < 5:
        raise ValueError(f"periodic stencils need elements >= 5 (distinct, unaliased band entries), got {N}")
    r = np.asarray(g_bonds_mean, dtype=np.float64)
    n_bonds = L if periodic else L - 1
    if r.ndim < 1 or r.shape[-1] != n_bonds:
        raise ValueError(f"g_bonds_mean must have last axis of length n_bonds = {n_bonds}, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("g_bonds_mean must be finite")
    batch = r.shape[:-1]
    if L % N == 0 and half_width == 1:
        return _element_stencil(r, L, N, periodic)
    w = _stencil_map(L, N, periodic, int(half_width))
    flat = r.reshape(-1, n_bonds)
    out = np.asarray(w @ flat.T).T  # (B, n_nodes * width)
    n_nodes = N if periodic else N + 1
    return out.reshape(batch + (n_nodes, 2 * half_width + 1))


# ----------------------------------------------------------------------------- mean-field lattice dynamics
def lattice_mean_field(rho_sites, duration, rate_exponent, periodic):
    """Mean occupations after ``duration`` lattice time units, under local equilibrium.

    The exact mean dynamics d E[eta_i]/dt = (1/2)(E g_{i+1} - 2 E g_i + E g_{i-1}) closes
    with E g_i = phi(E eta_i) under local equilibrium (REFERENCE §1, hydrodynamic limit
    on the lattice; the closure error is O(1/L**2) per unit macroscopic time for smooth
    profiles). Closed ends drop the missing neighbour (no flux through the walls).
    Integrated with BDF and the exact sparse Jacobian (1/2) Lap diag(phi'(rho)),
    phi' = phi/chi.

    Parameters
    ----------
    rho_sites : array_like, shape (L,)
        Initial mean occupations, > 0.
    duration : float
        Lattice time (macroscopic time x L**2).
    rate_exponent : int
        p in {0, 1, 2}.
    periodic : bool
        Ring or closed segment.

    Returns
    -------
    ndarray, shape (L,)
    """
    p = check_rate_exponent(rate_exponent)
    return zero_range_mean_field(_check_rho(rho_sites), duration, periodic, lambda r: fugacity(r, p),
                                 lambda r: fugacity(r, p) / compressibility(r, p))


def zero_range_mean_field(rho0, duration, periodic, phi, phi_derivative):
    """The local-equilibrium mean dynamics of any zero-range process, given its fugacity phi(rho).

    d rho_i/dt = (1/2)(phi(rho_{i+1}) - 2 phi(rho_i) + phi(rho_{i-1})) on a ring or a closed
    segment (the missing neighbour dropped), BDF with the exact sparse Jacobian
    (1/2) Lap diag(phi'(rho)). :func:`lattice_mean_field` is the case g(k) = k**p; a
    plugin model with another rate function passes its own ``phi`` and ``phi_derivative``
    (vectorised callables of the densities).

    Parameters
    ----------
    rho0 : ndarray, shape (L,)
        Initial mean occupations, >= 0 (validated by the caller).
    duration : float
        Lattice time, >= 0.
    periodic : bool
    phi, phi_derivative : callable

    Returns
    -------
    ndarray, shape (L,)
    """
    from scipy.integrate import solve_ivp

    rho0 = np.asarray(rho0, dtype=np.float64)
    if rho0.ndim != 1 or rho0.size < 2:
        raise ValueError(f"rho_sites must be 1-D with at least 2 sites, got shape {rho0.shape}")
    if not duration >= 0:
        raise ValueError(f"duration must be >= 0, got {duration!r}")
    if duration == 0:
        return rho0.copy()
    L = rho0.size
    ones = np.ones(L)
    lap = sparse.diags([ones[:-1], -2 * ones, ones[:-1]], [-1, 0, 1], format="lil")
    if periodic:
        lap[0, L - 1] = lap[L - 1, 0] = 1.0
    else:
        lap[0, 0] = lap[L - 1, L - 1] = -1.0
    lap = 0.5 * lap.tocsr()

    def rhs(_t, rho):
        return lap @ phi(np.maximum(rho, 1e-300))

    def jac(_t, rho):
        return lap @ sparse.diags(phi_derivative(np.maximum(rho, 1e-300)))

    sol = solve_ivp(rhs, (0.0, float(duration)), rho0, method="BDF", jac=jac, rtol=1e-8, atol=1e-10 * rho0.max())
    if not sol.success:  # pragma: no cover - guards a silent failure
        raise RuntimeError(f"lattice_mean_field: integration failed: {sol.message}")
    return sol.y[:, -1]


def _element_stencil(r: np.ndarray, L: int, N: int, periodic: bool) -> np.ndarray:
    """Fast path of :func:`carre_du_champ_stencil` for L = nN (nodes on sites).

    Every bond of element e changes hat e by -1/n and hat e+1 by +1/n, so with
    R_e the summed rates of the element's bonds: K_b,b-1 = -(L/2) R_b-1/n**2,
    K_b,b+1 = -(L/2) R_b/n**2, K_bb = (L/2)(R_b-1 + R_b)/n**2.
    """
    n = L // N
    batch = r.shape[:-1]
    if periodic:
        per_element = r.reshape(batch + (N, n)).sum(axis=-1)
        left, right = np.roll(per_element, 1, axis=-1), per_element  # elements b-1 and b of node b
    else:  # the last element has n - 1 bonds (no bond beyond site L - 1)
        padded = np.concatenate([r, np.zeros(batch + (1,))], axis=-1)
        per_element = padded.reshape(batch + (N, n)).sum(axis=-1)
        zero = np.zeros(batch + (1,))
        left = np.concatenate([zero, per_element], axis=-1)
        right = np.concatenate([per_element, zero], axis=-1)
    scale = 0.5 * L / n**2
    return np.stack([-scale * left, scale * (left + right), -scale * right], axis=-1)
