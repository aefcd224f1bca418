"""The two-server zero-range process: a cgflow fdr micro model living outside cgflow.

Model
-----
L sites, periodic or closed, any number of particles per site. A site holding k
particles fires at rate g(k) = min(k, 2) (two "servers": one particle leaves at
rate 1, two or more at rate 2) and sends one particle to the left or right
neighbour with probability 1/2 each. On a closed segment a jump off the lattice
is a suppressed null event (no flux through the walls), as in
:func:`cgflow.micro.zrp.run_zrp`. Lattice time; macroscopic time = lattice time / L**2.

Exact facts (conventions of :mod:`cgflow.micro.zrp_hydro`)
------------------------------------------------------------
* Stationary product measures, marginal P(k) = phi**k / (Z prod_{j<=k} g(j)):
  prod_{j<=k} g(j) = 1, 1, 2, 4, ..., 2**(k-1), so
  Z(phi) = 1 + phi sum_{n>=0} (phi/2)**n = (2 + phi)/(2 - phi), 0 <= phi < 2;
  P(0) = (2 - phi)/(2 + phi) and, given k >= 1, k - 1 is geometric with ratio phi/2.
* Density rho(phi) = phi d log Z/d phi = 4 phi/(4 - phi**2); inverted in closed form
  phi(rho) = 2 (sqrt(1 + rho**2) - 1)/rho = 2 rho/(1 + sqrt(1 + rho**2)) in [0, 2).
  E[g(eta_i)] = phi (the fugacity is the mean firing rate).
* Compressibility chi = phi d rho/d phi = 4 phi (4 + phi**2)/(4 - phi**2)**2.
* Mobility m = phi/2; force F = -log phi; hydrodynamic limit
  d rho/dt = (1/2) Laplacian phi(rho), i.e. D(rho) = phi'(rho)/2 = m/chi
  (phi' = (4 - phi**2)**2 / (4 (4 + phi**2))). D runs from 1/2 at rho -> 0 to ~1/rho**2
  at large rho: a strongly nonlinear diffusion, unlike g(k) = k (D = 1/2 everywhere).
* Continuum operator row frozen at an affine profile:
  K_{a,a+-1} = -(1/Delta**2) int_0^Delta m(rho_a +- s u) du, K_aa = -(K_{a,a-1} + K_{a,a+1});
  the integral has the closed form int phi d rho = 2 [sqrt(1 + rho**2) - log(1 + sqrt(1 + rho**2))]
  (:func:`phi_antiderivative`, used to test the Gauss-Legendre quadrature of :func:`exact_stencil`).

Kinetic Monte Carlo
-------------------
Rejection-free (Gillespie) with two rate classes: sites with one particle (rate 1)
and sites with two or more (rate 2), each kept in an index list with its inverse
map, so the total rate is R = n1 + 2 n2 and an event is O(1): pick the class with
probability n1/R, a uniform site in it, a direction; move the particle and move the
two touched sites between lists if their class changed. No loop over sites per
event; the lists are built once per call (O(L)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np

__all__ = [
    "TwoServerZRP",
    "compressibility",
    "density",
    "exact_stencil",
    "fugacity",
    "fugacity_derivative",
    "lattice_mean_field",
    "mobility",
    "phi_antiderivative",
    "run",
    "sample_product_measure",
    "thermodynamic_force",
]


# ----------------------------------------------------------------------------- exact facts
def _rho(rho, open_low=False) -> np.ndarray:
    arr = np.asarray(rho, dtype=np.float64)
    bad = ~np.isfinite(arr) | ((arr <= 0) if open_low else (arr < 0))
    if np.any(bad):
        raise ValueError(f"densities must be finite and {'> 0' if open_low else '>= 0'}, got {arr[bad].ravel()[0]!r}")
    return arr


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim else float(x)


def fugacity(rho):
    """phi(rho) = 2 rho/(1 + sqrt(1 + rho**2)), the inverse of rho = 4 phi/(4 - phi**2)."""
    r = _rho(rho)
    return _out(2.0 * r / (1.0 + np.sqrt(1.0 + r * r)))


def density(phi):
    """rho(phi) = phi d log Z/d phi = 4 phi/(4 - phi**2), 0 <= phi < 2."""
    p = np.asarray(phi, dtype=np.float64)
    if np.any(~np.isfinite(p) | (p < 0) | (p >= 2)):
        raise ValueError("phi must be in [0, 2)")
    return _out(4.0 * p / (4.0 - p * p))


def fugacity_derivative(rho):
    """phi'(rho) = (4 - phi**2)**2 / (4 (4 + phi**2)) = phi/chi."""
    p = np.asarray(fugacity(rho))
    return _out((4.0 - p * p) ** 2 / (4.0 * (4.0 + p * p)))


def compressibility(rho):
    """chi = Var(eta_i) = phi d rho/d phi = 4 phi (4 + phi**2)/(4 - phi**2)**2."""
    p = np.asarray(fugacity(rho))
    return _out(4.0 * p * (4.0 + p * p) / (4.0 - p * p) ** 2)


def mobility(rho):
    """m(rho) = phi(rho)/2."""
    return _out(0.5 * np.asarray(fugacity(rho)))


def thermodynamic_force(rho, tabulated=False):
    """F(rho) = -log phi(rho) (the sign convention of cgflow.micro.zrp_hydro); ``tabulated`` has no effect."""
    del tabulated
    return _out(-np.log(np.asarray(fugacity(_rho(rho, open_low=True)))))


def phi_antiderivative(rho):
    """int_0^rho phi = 2 [sqrt(1 + rho**2) - log(1 + sqrt(1 + rho**2))] - 2 (1 - log 2)."""
    r = _rho(rho)
    s = np.sqrt(1.0 + r * r)
    return _out(2.0 * (s - np.log1p(s)) - 2.0 * (1.0 - math.log(2.0)))


def exact_stencil(rho_a, slope, elements, tabulated=False, nodes=16):
    """(K_{a,a-1}, K_aa, K_{a,a+1}) of m = phi/2 frozen at the affine profile through (x_a, rho_a).

    Gauss-Legendre quadrature (``nodes`` points) of K_{a,a+-1} = -(1/Delta**2) int_0^Delta m(rho_a +- s u) du;
    raises ``ValueError`` if the profile leaves rho > 0 on the two elements.
    """
    del tabulated
    n_el = int(elements)
    if n_el < 1:
        raise ValueError(f"elements must be >= 1, got {elements!r}")
    rho_a, slope = np.broadcast_arrays(np.asarray(rho_a, dtype=np.float64), np.asarray(slope, dtype=np.float64))
    delta = 1.0 / n_el
    if np.any(~np.isfinite(rho_a) | ~np.isfinite(slope)) or np.any(rho_a - np.abs(slope) * delta <= 0):
        raise ValueError("the affine profile must stay > 0 on the two elements of node a")
    x, w = np.polynomial.legendre.leggauss(nodes)
    u = 0.5 * (x + 1.0)  # nodes on [0, 1], weights sum to 1
    w = 0.5 * w
    reach = slope[..., None] * delta * u
    right = -(np.asarray(mobility(rho_a[..., None] + reach)) * w).sum(-1) / delta
    left = -(np.asarray(mobility(rho_a[..., None] - reach)) * w).sum(-1) / delta
    return np.stack([left, -(left + right), right], axis=-1)


def lattice_mean_field(rho_sites, duration, periodic):
    """Mean occupations after ``duration`` lattice time under local equilibrium.

    d E eta_i/dt = (1/2)(E g_{i+1} - 2 E g_i + E g_{i-1}) (exact), closed by E g_i = phi(E eta_i);
    closed ends drop the missing neighbour. BDF with the exact sparse Jacobian. Flat profiles are
    stationary and returned unchanged.
    """
    from cgflow.micro.zrp_hydro import zero_range_mean_field  # cgflow's zero-range mean dynamics, our phi

    rho0 = _rho(rho_sites, open_low=True)
    if rho0.ndim == 1 and rho0.size >= 2 and np.all(rho0 == rho0[0]):
        return rho0.copy()
    return zero_range_mean_field(rho0, duration, periodic, fugacity, fugacity_derivative)


# ----------------------------------------------------------------------------- sampling
def sample_product_measure(rho_sites, rng) -> np.ndarray:
    """Exact draw of the product measure: k = 0 w.p. (2 - phi)/(2 + phi), else 1 + Geometric failures (ratio phi/2).

    Draws exactly L uniforms and L geometric variates (deterministic given the generator state).
    """
    rho = _rho(rho_sites)
    if rho.ndim != 1 or rho.size == 0:
        raise ValueError("rho_sites must be a non-empty 1-D array")
    phi = np.asarray(fugacity(rho), dtype=np.float64).reshape(-1)
    p0 = (2.0 - phi) / (2.0 + phi)
    occupied = rng.random(rho.size) >= p0
    k = rng.geometric(1.0 - 0.5 * phi)  # support 1, 2, ...: P(k) = (phi/2)**(k-1) (1 - phi/2)
    return np.where(occupied, k, 0).astype(np.int64)


# ----------------------------------------------------------------------------- KMC
@numba.njit(cache=True)
def _cls(k):
    return 0 if k == 0 else (1 if k == 1 else 2)


@numba.njit(cache=True)
def _move(site, old, new, lst1, lst2, pos, n):
    """Move ``site`` from class ``old`` to class ``new`` (lists of classes 1 and 2; n = [n1, n2])."""
    if old == new:
        return
    if old == 1 or old == 2:  # swap-remove
        lst = lst1 if old == 1 else lst2
        j = pos[site]
        n[old - 1] -= 1
        last = lst[n[old - 1]]
        lst[j] = last
        pos[last] = j
        pos[site] = -1
    if new == 1 or new == 2:  # append
        lst = lst1 if new == 1 else lst2
        lst[n[new - 1]] = site
        pos[site] = n[new - 1]
        n[new - 1] += 1


@numba.njit(cache=True)
def _kmc(eta, duration, periodic, rng, bonds):
    L = eta.shape[0]
    count = bonds.shape[0] > 0
    lst1 = np.empty(L, np.int64)
    lst2 = np.empty(L, np.int64)
    pos = np.full(L, -1, np.int64)
    n = np.zeros(2, np.int64)
    for i in range(L):
        _move(i, 0, _cls(eta[i]), lst1, lst2, pos, n)
    R = n[0] + 2 * n[1]
    if R == 0 or duration <= 0.0:
        return 0
    t = 0.0
    moves = 0
    while True:
        R = n[0] + 2 * n[1]
        t += rng.standard_exponential() / R
        if t > duration:
            break
        u = rng.random() * R
        if u < n[0]:
            j = int(u)
            if j >= n[0]:
                j = n[0] - 1
            s = lst1[j]
        else:
            j = int((u - n[0]) * 0.5)
            if j >= n[1]:
                j = n[1] - 1
            s = lst2[j]
        right = rng.random() < 0.5
        d = s + 1 if right else s - 1
        if d < 0 or d >= L:
            if not periodic:
                continue  # suppressed jump off the lattice: a null event
            d = 0 if d >= L else L - 1
        ks, kd = eta[s], eta[d]
        eta[s] = ks - 1
        eta[d] = kd + 1
        _move(s, _cls(ks), _cls(ks - 1), lst1, lst2, pos, n)
        _move(d, _cls(kd), _cls(kd + 1), lst1, lst2, pos, n)
        if count:
            b = s if right else d  # bond b joins b and b+1 (L-1 joins L-1 and 0)
            bonds[b] += 1
        moves += 1
    return moves


def run(eta, duration, periodic, rng, bond_jumps=None) -> int:
    """Evolve ``eta`` (int64, in place) for ``duration`` lattice time; return the number of moves."""
    if not (isinstance(eta, np.ndarray) and eta.dtype == np.int64 and eta.ndim == 1 and eta.size >= 2
            and eta.flags.c_contiguous and eta.flags.writeable):
        raise ValueError("eta must be a writeable C-contiguous int64 vector of >= 2 sites")
    if np.any(eta < 0):
        raise ValueError("occupations must be >= 0")
    d = float(duration)
    if not (math.isfinite(d) and d >= 0):
        raise ValueError(f"duration must be finite and >= 0, got {duration!r}")
    if bond_jumps is None:
        bonds = np.empty(0, np.int64)
    else:
        if not (isinstance(bond_jumps, np.ndarray) and bond_jumps.dtype == np.int64 and bond_jumps.shape == eta.shape):
            raise ValueError(f"bond_jumps must be int64 of shape {eta.shape}")
        bonds = bond_jumps
    return int(_kmc(eta, d, bool(periodic), rng, bonds))


# ----------------------------------------------------------------------------- macro test profiles
def periodic_cosine(x):
    """rho0(x) = 3/2 + (1/2) cos(2 pi x): rho in [1, 2]."""
    return 1.5 + 0.5 * np.cos(2.0 * np.pi * np.asarray(x, dtype=np.float64))


def dirichlet_asymmetric(x):
    """rho0(x) = 0.75 + 1.5 x + 0.25 sin(pi x): monotone, ends 0.75 and 2.25, not symmetric about 1/2."""
    x = np.asarray(x, dtype=np.float64)
    return 0.75 + 1.5 * x + 0.25 * np.sin(np.pi * x)


# ----------------------------------------------------------------------------- the model object
@dataclass(frozen=True)
class TwoServerZRP:
    """Zero-range process with g(k) = min(k, 2): the fdr contract of cgflow.micro.contract (no parameter)."""

    name: ClassVar[str] = "zrp2server"
    description: ClassVar[str] = "zero-range process with two servers, g(k) = min(k, 2)"
    parameters: ClassVar[tuple[str, ...]] = ()
    density_domain: ClassVar[tuple[float, float]] = (0.0, math.inf)
    has_bond_rates: ClassVar[bool] = True
    has_exact_facts: ClassVar[bool] = True
    reference_operator: ClassVar[str] = (
        "exact stencil of m = phi/2, phi(rho) = 2 rho/(1 + sqrt(1 + rho^2)), by 16-point Gauss-Legendre "
        "quadrature per element; the force -log phi (cgflow_example_plugin.model)"
    )

    # required
    def site_positions(self, sites):
        return np.arange(int(sites), dtype=np.float64) / int(sites)

    def check_density(self, rho):
        arr = np.asarray(rho, dtype=np.float64)
        bad = ~np.isfinite(arr) | (arr <= 0)
        if np.any(bad):
            raise ValueError(f"densities must be > 0, got {arr[bad].ravel()[0]!r}")

    def sample_product_measure(self, rho_sites, rng):
        return sample_product_measure(rho_sites, rng)

    def run(self, eta, duration, periodic, rng, bond_jumps=None):
        return run(eta, duration, periodic, rng, bond_jumps=bond_jumps)

    def event_rate(self, rho_sites, periodic):
        """sum_i phi(rho_i): the mean firing rate (null boundary events included on a closed segment)."""
        return float(np.sum(fugacity(rho_sites)))

    def warmup(self):
        eta = np.array([2, 0, 1, 3], dtype=np.int64)
        run(eta, 1.0, True, np.random.default_rng(0), bond_jumps=np.zeros(4, np.int64))

    def conventions(self):
        return {
            "model": "two-server zero-range process",
            "rate": "g(k) = min(k, 2); jump left/right with probability 1/2 each",
            "plugin": "cgflow-example-plugin",
        }

    def macro_cases(self):
        """Test profiles inside the band the example workflow probes (rho in [0.5, 3]), not the method's 3-12."""
        return {
            "periodic-cosine": ("periodic", periodic_cosine,
                                "rho0 = 3/2 + (1/2) cos(2 pi x), periodic; rho in [1, 2], |grad rho| <= pi"),
            "dirichlet-asymmetric": ("dirichlet", dirichlet_asymmetric,
                                     "rho0 = 0.75 + 1.5 x + 0.25 sin(pi x), Dirichlet ends fixed at 0.75 and 2.25; "
                                     "slopes in [0.71, 2.29]"),
        }

    # optional: bond rates
    def bond_rates(self, eta, periodic):
        """(g(eta_i) + g(eta_i+1))/2 per bond: the rate at which it is crossed."""
        g = np.minimum(np.asarray(eta), 2).astype(np.float64)
        if periodic:
            return 0.5 * (g + np.roll(g, -1, axis=-1))
        return 0.5 * (g[..., :-1] + g[..., 1:])

    # optional: exact facts
    def mean_bond_rates(self, rho_sites, periodic):
        phi = np.asarray(fugacity(rho_sites), dtype=np.float64)
        return 0.5 * (phi + np.roll(phi, -1)) if periodic else 0.5 * (phi[:-1] + phi[1:])

    def lattice_mean_field(self, rho_sites, duration, periodic):
        return lattice_mean_field(rho_sites, duration, periodic)

    def thermodynamic_force(self, rho, tabulated=False):
        return thermodynamic_force(rho, tabulated)

    def exact_stencil(self, rho_a, slope, elements, tabulated=False):
        return exact_stencil(rho_a, slope, elements)
