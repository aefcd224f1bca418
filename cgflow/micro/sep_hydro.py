"""Exact hydrodynamic facts of the symmetric simple exclusion process, used as test oracles.

Model and conventions as in :mod:`cgflow.micro.sep` (and :mod:`cgflow.micro.zrp_hydro`):
at most one particle per site, each particle jumps to each empty neighbour at rate
1/2 (an active bond is crossed at rate 1/2); Bernoulli product measures are the
local-equilibrium states; sites at x_i = i/L; macroscopic time t = lattice time / L**2.

Hydrodynamics
-------------
Mean dynamics (exact). The rate of i -> i+1 is (1/2) eta_i (1 - eta_{i+1}), of
i+1 -> i (1/2) eta_{i+1} (1 - eta_i); their difference is (1/2)(eta_i - eta_{i+1}): the
exclusion terms eta_i eta_{i+1} cancel. Hence, with no closure whatsoever,

    d E[eta_i]/dt = (1/2) (E eta_{i+1} - 2 E eta_i + E eta_{i-1})       (lattice time),

the discrete heat equation (closed ends: the missing neighbour term is dropped,
no flux through the walls). :func:`lattice_mean_field` solves it exactly. In
macroscopic time and space (x = i/L, t = lattice time/L**2) this is
d rho/dt = (1/2) Laplacian rho: diffusivity D = 1/2 at every density.

Gradient-flow form, in the conventions of :mod:`cgflow.micro.zrp_hydro`
(d rho/dt = -div(m grad F), F = dS/drho the derivative of the entropy density,
m the mobility). The Bernoulli measure of density rho has entropy density
s(rho) = -rho log rho - (1 - rho) log(1 - rho) (the large-deviation rate of the
occupation, up to terms linear in rho, irrelevant under mass conservation), so

    F(rho) = s'(rho) = -log(rho/(1 - rho)) = log((1 - rho)/rho),

which is the ZRP's F = -log phi with the SEP "fugacity" phi = rho/(1 - rho) (the
Bernoulli measure is P(eta = 1) = phi/(1 + phi)): same sign, same role. Then
F' = -1/(rho (1 - rho)) = -1/chi, chi = rho (1 - rho) the compressibility, and
-div(m grad F) = div((m/chi) grad rho). It equals (1/2) Laplacian rho iff

    m(rho) = chi(rho)/2 = rho (1 - rho)/2,

the Einstein relation D = m/chi = 1/2. This m is also what the fluctuation-
dissipation relation measures (below): the bond current's noise is
(1/2) E[crossing rate] = rho (1 - rho)/2 per unit gradient of the hats. The ZRP
normalisation is the same: there m = phi/2, with E[crossing rate of a bond] =
phi, and D = m/chi = phi/(2 chi). (For the ZRP, D also equals m' = phi'/2; for the
SEP D = 1/2 while m' = (1 - 2 rho)/2, so D = m' is a ZRP coincidence, not a rule.)

Discrete operator
-----------------
With linear hats gamma_a of spacing Delta = 1/N, <K gamma_a, gamma_b> =
integral m(rho) gamma_a' gamma_b' dx. m is a quadratic polynomial, so the stencil
frozen at an affine profile is exact in closed form (:func:`exact_stencil`), and
its second-order expansion in the slope (:func:`stencil_expansion`, seed eq. (9))
is exact too (m''' = 0).

On the lattice, a crossing of bond i moves <rho_eps, gamma> by dgamma_i/L,
dgamma_i = gamma(x_{i+1}) - gamma(x_i), and happens at rate r_i = (1/2)|eta_i - eta_{i+1}|
per lattice time (L**2 r_i per macroscopic time). With Y = sqrt(L) <rho_eps - rho, gamma>,
(1/2h) E[dY_a dY_b] -> (L/2) sum_i E[r_i] dgamma_a,i dgamma_b,i. Under the Bernoulli
product measure with site densities rho_i,

    E[r_i] = (1/2) [rho_i (1 - rho_{i+1}) + rho_{i+1} (1 - rho_i)]          (:func:`mean_bond_rates`)

and K_ab = (L/2) sum_i E[r_i] dgamma_a,i dgamma_b,i (:func:`lattice_operator`). For a
flat profile E[r_i] = rho (1 - rho) = 2 m and, with L = nN (every bond inside one
element, dgamma = -+1/n), K_{a,a+1} = -(L/2) n (2 m)/n**2 = -m N = -m/Delta: the
continuum stencil exactly, as for the ZRP. The per-bond rates -> stencil map is
model-agnostic and shared with the ZRP (:func:`cgflow.micro.zrp_hydro.carre_du_champ_stencil`).

For a flat stationary state the whole increment covariance is exact at every h
(:func:`flat_increment_covariance`), because the conditional mean dynamics is linear.

Everything here is vectorised numpy/scipy; no I/O, no numba.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy import fft

from cgflow.micro.zrp_hydro import carre_du_champ_stencil, carre_du_champ_weights

__all__ = [
    "carre_du_champ_stencil",
    "diffusivity",
    "exact_stencil",
    "flat_increment_covariance",
    "hat_values",
    "heat_semigroup",
    "lattice_mean_field",
    "lattice_operator",
    "lattice_stencils",
    "mean_bond_rates",
    "mobility",
    "mobility_derivatives",
    "stencil_expansion",
    "thermodynamic_force",
]


# ----------------------------------------------------------------------------- validation
def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_density(rho, open_interval: bool = False) -> np.ndarray:
    rho_arr = np.asarray(rho, dtype=np.float64)
    if open_interval:
        bad = ~np.isfinite(rho_arr) | (rho_arr <= 0) | (rho_arr >= 1)
        what = "in (0, 1)"
    else:
        bad = ~np.isfinite(rho_arr) | (rho_arr < 0) | (rho_arr > 1)
        what = "in [0, 1]"
    if np.any(bad):
        raise ValueError(f"rho must be finite and {what}, got {rho_arr[bad].ravel()[0]!r}")
    return rho_arr


def _check_profile(rho_sites) -> np.ndarray:
    rho = _check_density(rho_sites)
    if rho.ndim != 1 or rho.size < 2:
        raise ValueError(f"rho_sites must be 1-D with at least 2 sites, got shape {rho.shape}")
    return rho


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim else float(x)


# ----------------------------------------------------------------------------- transport coefficients
def mobility(rho):
    """Mobility m(rho) = rho (1 - rho)/2 (module docstring: m = chi/2, D = m/chi = 1/2).

    Parameters
    ----------
    rho : float or array_like
        Density in [0, 1]; any shape.
    """
    rho_arr = _check_density(rho)
    return _out(0.5 * rho_arr * (1.0 - rho_arr))


def mobility_derivatives(rho):
    """(m, m', m'') = (rho (1 - rho)/2, (1 - 2 rho)/2, -1); m''' = 0."""
    rho_arr = _check_density(rho)
    return (
        _out(0.5 * rho_arr * (1.0 - rho_arr)),
        _out(0.5 - rho_arr),
        _out(np.full_like(rho_arr, -1.0)),
    )


def thermodynamic_force(rho, tabulated=False):
    """Thermodynamic force F(rho) = dS/drho = -log(rho/(1 - rho)) = log((1 - rho)/rho).

    Parameters
    ----------
    rho : float or array_like
        Density in (0, 1).
    tabulated : bool, default False
        Accepted for parity with :func:`cgflow.micro.zrp_hydro.thermodynamic_force`;
        the closed form needs no table, so it has no effect.

    Notes
    -----
    The sign convention is the ZRP's F = -log phi (module docstring), with
    phi = rho/(1 - rho): F decreases with rho, and d rho/dt = -div(m grad F) with
    m = rho (1 - rho)/2 is the heat equation with D = 1/2. Computed as
    log1p(-rho) - log(rho) (accurate near rho = 1).
    """
    del tabulated
    rho_arr = _check_density(rho, open_interval=True)
    return _out(np.log1p(-rho_arr) - np.log(rho_arr))


def diffusivity(rho):
    """Diffusivity D(rho) = m/chi = -m F' = 1/2 at every density in [0, 1]."""
    rho_arr = _check_density(rho)
    return _out(np.full_like(rho_arr, 0.5))


# ----------------------------------------------------------------------------- continuum stencils
def exact_stencil(rho_a, slope, elements, tabulated=False):
    """Continuum operator row at node a, frozen at the affine profile through (x_a, rho_a); closed form.

    Parameters
    ----------
    rho_a : float or array_like
        Density at the node, broadcast against ``slope``.
    slope : float or array_like
        s = d rho/dx in macroscopic units.
    elements : int
        Number of elements N; Delta = 1/N.
    tabulated : bool, default False
        Accepted for parity with :func:`cgflow.micro.zrp_hydro.exact_stencil`; no effect.

    Returns
    -------
    ndarray, shape broadcast(rho_a, slope).shape + (3,)
        (K_{a,a-1}, K_aa, K_{a,a+1}).

    Raises
    ------
    ValueError
        If the affine profile leaves [0, 1] on [x_a - Delta, x_a + Delta]
        (m < 0 there: not a physical state), i.e. unless
        0 <= rho_a -+ |s| Delta <= 1.

    Notes
    -----
    As for the ZRP, K_{a,a+-1} = -(1/Delta**2) integral_0^Delta m(rho_a +- s u) du and
    K_aa = -(K_{a,a-1} + K_{a,a+1}). For m(rho) = rho (1 - rho)/2 the integral is
    exact: (1/Delta) integral_0^Delta m(rho_a + s u) du = m + m' s Delta/2 + m'' s**2 Delta**2/6
    with m' = (1 - 2 rho_a)/2, m'' = -1, so

        K_{a,a+-1} = -(1/Delta) [rho_a (1 - rho_a)/2 +- (1 - 2 rho_a) s Delta/4 - s**2 Delta**2/6].
    """
    del tabulated
    n_el = _check_positive_int(elements, "elements")
    rho_a, slope = np.broadcast_arrays(np.asarray(rho_a, dtype=np.float64), np.asarray(slope, dtype=np.float64))
    if not (np.all(np.isfinite(rho_a)) and np.all(np.isfinite(slope))):
        raise ValueError("rho_a and slope must be finite")
    delta = 1.0 / n_el
    reach = np.abs(slope) * delta
    bad = (rho_a - reach < 0) | (rho_a + reach > 1)
    if np.any(bad):
        idx = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
        raise ValueError(
            f"affine profile leaves [0, 1] on the two elements: rho_a={rho_a[idx]!r}, slope={slope[idx]!r}"
        )
    m = 0.5 * rho_a * (1.0 - rho_a)
    grad = 0.25 * (1.0 - 2.0 * rho_a) * slope * delta
    curv = slope**2 * delta**2 / 6.0
    k_right = -(m + grad - curv) / delta
    k_left = -(m - grad - curv) / delta
    return np.stack([k_left, -(k_left + k_right), k_right], axis=-1)


def stencil_expansion(rho_a, slope, elements):
    """K(1), K(2) of seed eq. (9) for the SEP; their sum equals :func:`exact_stencil` (m''' = 0).

    K1 = (m/Delta + m'' s**2 Delta/6)(-1, 2, -1), K2 = (m' s/2)(1, 0, -1), as
    :func:`cgflow.micro.zrp_hydro.stencil_expansion`, with m'' = -1.
    """
    n_el = _check_positive_int(elements, "elements")
    rho_a, slope = np.broadcast_arrays(np.asarray(rho_a, dtype=np.float64), np.asarray(slope, dtype=np.float64))
    if not np.all(np.isfinite(slope)):
        raise ValueError("slope must be finite")
    m, m1, m2 = (np.asarray(v) for v in mobility_derivatives(rho_a))
    delta = 1.0 / n_el
    lap = m / delta + m2 * slope**2 * delta / 6.0
    grad = 0.5 * m1 * slope
    k1 = lap[..., None] * np.array([-1.0, 2.0, -1.0])
    k2 = grad[..., None] * np.array([1.0, 0.0, -1.0])
    k2[..., 1] = 0.0
    return k1, k2


# ----------------------------------------------------------------------------- lattice facts
def mean_bond_rates(rho_sites, periodic):
    """E[r_i] = (1/2)[rho_i (1 - rho_{i+1}) + rho_{i+1} (1 - rho_i)] under the Bernoulli product measure.

    Parameters
    ----------
    rho_sites : array_like, shape (..., L)
        Site densities in [0, 1]; any leading batch shape.
    periodic : bool
        Bond order of :func:`cgflow.micro.zrp_hydro.carre_du_champ_weights`:
        i -> i+1, plus L-1 -> 0 on a ring.

    Returns
    -------
    ndarray, shape (..., n_bonds)
        The expectation of :func:`cgflow.micro.sep.bond_rates` (independent sites).
        The SEP's counterpart of the ZRP's (phi_i + phi_{i+1})/2.
    """
    rho = _check_density(rho_sites)
    if rho.ndim < 1 or rho.shape[-1] < 2:
        raise ValueError(f"rho_sites must have at least 2 sites on its last axis, got shape {rho.shape}")
    a = rho if periodic else rho[..., :-1]
    b = np.roll(rho, -1, axis=-1) if periodic else rho[..., 1:]
    return 0.5 * (a * (1.0 - b) + b * (1.0 - a))


def lattice_operator(rho_sites, elements, periodic):
    """The SEP's operator K_ab under local equilibrium with site densities ``rho_sites``.

    K_ab = (L/2) sum_i E[r_i] dgamma_a,i dgamma_b,i with E[r_i] from :func:`mean_bond_rates`
    (module docstring); hats and bonds as in :func:`cgflow.micro.zrp_hydro.carre_du_champ_weights`.
    Returns the dense (n_nodes, n_nodes) matrix, exactly symmetric, zero row sums,
    tridiagonal (cyclically) when L is a multiple of N.
    """
    rho = _check_profile(rho_sites)
    if not isinstance(periodic, (bool, np.bool_)):
        raise ValueError(f"periodic must be a bool, got {periodic!r}")
    L = rho.size
    dg = carre_du_champ_weights(L, elements, bool(periodic))
    rates = mean_bond_rates(rho, bool(periodic))
    k = (0.5 * L) * ((dg * rates) @ dg.T)
    return 0.5 * (k + k.T)


def lattice_stencils(rho_sites, elements, periodic):
    """Band (K_b,b-1, K_bb, K_b,b+1) of :func:`lattice_operator`, shape (n_nodes, 3), O(L).

    The reference stencils of the fdr operator stage for the SEP:
    :func:`cgflow.micro.zrp_hydro.carre_du_champ_stencil` of :func:`mean_bond_rates`.
    """
    rho = _check_profile(rho_sites)
    return carre_du_champ_stencil(mean_bond_rates(rho, bool(periodic)), rho.size, elements, bool(periodic))


def heat_semigroup(f, duration, periodic):
    """exp(duration A) f for A = (1/2) x the lattice Laplacian, exactly (spectral), along the last axis.

    Periodic: A is diagonal in the discrete Fourier basis with eigenvalues
    cos(2 pi k/L) - 1. Closed (missing neighbour dropped, A_00 = A_{L-1,L-1} = -1/2):
    A is diagonal in the DCT-II basis cos(pi k (i + 1/2)/L) with eigenvalues
    cos(pi k/L) - 1. Cost O(L log L) per vector at any duration; error a few ulp.
    """
    f = np.asarray(f, dtype=np.float64)
    L = f.shape[-1]
    if periodic:
        lam = np.cos(2.0 * np.pi * np.arange(L // 2 + 1) / L) - 1.0
        return fft.irfft(fft.rfft(f, axis=-1) * np.exp(duration * lam), n=L, axis=-1)
    lam = np.cos(np.pi * np.arange(L) / L) - 1.0
    return fft.idct(fft.dct(f, type=2, norm="ortho", axis=-1) * np.exp(duration * lam), type=2, norm="ortho", axis=-1)


def lattice_mean_field(rho_sites, duration, periodic):
    """Mean occupations E[eta_i] after ``duration`` lattice time units, exactly.

    For the SEP the mean obeys the closed, linear discrete heat equation
    d rho_i/dt = (1/2)(rho_{i+1} - 2 rho_i + rho_{i-1}) (closed ends: the missing
    neighbour term is dropped), with no local-equilibrium closure: the
    exclusion terms cancel exactly (module docstring). It holds for any initial
    law with means ``rho_sites`` (product or not). Solved spectrally
    (:func:`heat_semigroup`). Signature as
    :func:`cgflow.micro.zrp_hydro.lattice_mean_field` without the rate exponent.

    Parameters
    ----------
    rho_sites : array_like, shape (L,)
        Initial mean occupations in [0, 1].
    duration : float
        Lattice time (macroscopic time x L**2), >= 0.
    periodic : bool
        Ring or closed segment.
    """
    rho0 = _check_profile(rho_sites)
    if not duration >= 0 or not np.isfinite(duration):
        raise ValueError(f"duration must be finite and >= 0, got {duration!r}")
    if duration == 0:
        return rho0.copy()
    return heat_semigroup(rho0, float(duration), bool(periodic))


def hat_values(sites, elements, periodic) -> np.ndarray:
    """gamma_a(x_i) = max(0, 1 - N |x_i - a/N|) at x_i = i/L, shape (n_nodes, L) (periodic distance on a ring).

    Nodes a = 0..N-1 on a ring, 0..N (half hats at the ends) on a closed segment, as
    in :mod:`cgflow.methods.fdr.ensemble`.
    """
    L = _check_positive_int(sites, "sites", 2)
    N = _check_positive_int(elements, "elements")
    n_nodes = N if periodic else N + 1
    d = np.arange(L)[None, :] / L - np.arange(n_nodes)[:, None] / N
    if periodic:
        d = d - np.round(d)
    return np.maximum(0.0, 1.0 - N * np.abs(d))


def flat_increment_covariance(rho, sites, elements, periodic, duration):
    """Exact Cov(dP_a, dP_b) over ``duration`` lattice time at the flat stationary Bernoulli state.

    P_a = L**-1/2 sum_i gamma_a(x_i) eta_i (the fdr ensemble's projection), dP its
    increment. Stationary covariance chi I (product measure, chi = rho (1 - rho)) and
    E[eta(h) | eta(0)] = exp(h A) eta(0) (exact, linear) give
    Cov(eta(h) - eta(0)) = 2 chi (I - exp(h A)), so

        Cov(dP) = (2 chi/L) Gamma (I - exp(h A)) Gamma^T,   Gamma_ai = gamma_a(x_i).

    As h -> 0 it is (h/L**2) x 2 x :func:`lattice_operator` (h in lattice time), i.e.
    Cov(dP)/(2 h_macro) -> K; the O(h) remainder is the relaxation of the modes
    during the increment.
    """
    r = _check_density(rho)
    if r.ndim:
        raise ValueError("rho must be a scalar (flat profile)")
    chi = float(r * (1.0 - r))
    gam = hat_values(sites, elements, periodic)
    L = gam.shape[1]
    relaxed = heat_semigroup(gam, float(duration), bool(periodic))
    return (2.0 * chi / L) * (gam @ (gam - relaxed).T)
