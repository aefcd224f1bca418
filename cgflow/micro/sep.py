"""Symmetric simple exclusion process on a 1-D lattice: product measures and a numba KMC kernel.

Model (issue 11; the second particle system of the ``fdr`` pipeline). A lattice of
``L`` sites, periodic (a ring) or closed, with at most one particle per site.
Every particle jumps to each of its two neighbours at rate 1/2 if that site is
empty. Equivalently: every bond whose two sites hold exactly one particle (an
*active* bond) is crossed at rate 1/2 per lattice time, and crossing it swaps
the two occupations; all other bonds are inert.

Conventions are those of :mod:`cgflow.micro.zrp`, so that the two models are
interchangeable behind one interface:

* configurations are C-contiguous writeable ``int64`` vectors (0 or 1 here),
  evolved in place;
* bond i joins sites i and i+1; periodic: bond L-1 joins sites L-1 and 0;
  closed: bonds 0..L-2 only, i.e. a jump that would leave the lattice does not
  exist. This is the law of :func:`cgflow.micro.zrp.run_zrp` with
  ``periodic=False`` ("jumps off the lattice are suppressed", no flux through
  the walls); the ZRP realises it with null events, here the off-lattice bonds
  are simply never active. ``bond_jumps`` has length L either way, and its entry
  L-1 stays 0 on a closed lattice;
* sites x_i = i/L (:func:`site_positions`, the same function), macroscopic time
  t = lattice time / L**2;
* the ``fdr`` ensemble uses ``periodic=False`` for ``micro.boundary: closed``,
  with the hats' end nodes a = 0 and a = N on the first and last site.

Stationary measures. The dynamics is reversible with respect to every Bernoulli
product measure of constant density rho in [0, 1] (detailed balance: a swap
across a bond does not change the number of particles or holes), so these are
the local-equilibrium states, with site marginal P(eta_i = 1) = rho_i
(:func:`sample_product_measure`) and compressibility chi = Var(eta_i) =
rho (1 - rho) (:func:`compressibility`). The hydrodynamic limit is
d rho/dt = (1/2) Laplacian rho; see :mod:`cgflow.micro.sep_hydro`.

Kinetic Monte Carlo (:func:`run_sep`) is rejection-free (Gillespie / n-fold
way): the active bonds are kept in an index list ``act[0:n_act]`` with the
inverse map ``where[b]`` (position of bond b in the list, or -1), so the total
rate is R = n_act/2 and an event is a uniform entry of the list, O(1). A
crossing of bond b swaps sites b and b+1; bond b stays active and its two
neighbouring bonds b-1 and b+1 flip between active and inert (one of their two
sites changed, the other did not), which is an O(1) append or swap-remove each.
Waiting times are exact exponentials of rate R; the run stops at the first event
past ``duration`` (memoryless, so the state at ``duration`` is exact). Two
random numbers per event: one standard exponential, one uniform for the bond.
Its law at fixed times is tested against expm(Q t) on small lattices.
"""

from __future__ import annotations

import numba
import numpy as np

from cgflow.micro import zrp as _zrp
from cgflow.micro.zrp import site_positions

__all__ = [
    "bond_rates",
    "compressibility",
    "expected_event_rate",
    "n_bonds",
    "run_sep",
    "sample_product_measure",
    "site_positions",
    "warmup",
]

#: Crossing rate of an active bond (1/2 per lattice time: each direction of the zero-range convention).
JUMP_RATE = 0.5


# ----------------------------------------------------------------------------- validation
def _check_eta(eta, min_sites: int = 2) -> np.ndarray:
    """eta must be a writeable int64 vector of >= min_sites occupations in {0, 1}."""
    eta = _zrp._check_eta(eta, min_sites)  # the ZRP's layout rules; then exclusion
    if (eta > 1).any():
        raise ValueError("eta must hold occupations 0 or 1 (exclusion)")
    return eta


# the argument checks are the ZRP kernels' (same conventions)
_check_duration, _check_rng, _check_counter = _zrp._check_duration, _zrp._check_rng, _zrp._check_counter


def _check_rho_sites(rho_sites) -> np.ndarray:
    rho = np.asarray(rho_sites, dtype=np.float64)
    if rho.ndim != 1 or rho.size == 0:
        raise ValueError(f"rho_sites must be a non-empty 1-D array, got shape {rho.shape}")
    if not np.all(np.isfinite(rho)) or np.any(rho < 0) or np.any(rho > 1):
        raise ValueError("rho_sites must be finite and in [0, 1] (exclusion)")
    return rho


# ----------------------------------------------------------------------------- exact facts
def n_bonds(sites: int, periodic: bool) -> int:
    """Number of bonds: L on a ring (bond L-1 joins L-1 and 0), L - 1 on a closed segment."""
    return int(sites) if periodic else int(sites) - 1


def compressibility(rho):
    """Static compressibility chi(rho) = Var(eta_i) = rho (1 - rho) of the Bernoulli measure."""
    rho_arr = np.asarray(rho, dtype=np.float64)
    if not np.all(np.isfinite(rho_arr)) or np.any(rho_arr < 0) or np.any(rho_arr > 1):
        raise ValueError("rho must be finite and in [0, 1]")
    out = rho_arr * (1.0 - rho_arr)
    return out if out.ndim else float(out)


def bond_rates(eta, periodic) -> np.ndarray:
    """Crossing rate of every bond in configuration ``eta``: 1/2 if active (exactly one particle), else 0.

    Parameters
    ----------
    eta : array_like of int, shape (..., L)
        Occupations in {0, 1}; any leading batch shape.
    periodic : bool
        Ring (L bonds, bond L-1 joins sites L-1 and 0) or closed segment (L - 1 bonds).

    Returns
    -------
    ndarray of float64, shape (..., n_bonds)
        r_i = (1/2) [eta_i (1 - eta_{i+1}) + eta_{i+1} (1 - eta_i)] = (1/2) |eta_i - eta_{i+1}|,
        the total rate (both directions) at which bond i is crossed, in the bond order
        of :func:`cgflow.micro.zrp_hydro.carre_du_champ_weights`. It is the SEP
        counterpart of the ZRP's (g(eta_i) + g(eta_{i+1}))/2
        (``ZRPEnsemble._bond_rates``), the input of the carré du champ estimator
        :func:`cgflow.micro.zrp_hydro.carre_du_champ_stencil`.
    """
    eta = np.asarray(eta)
    if eta.ndim < 1 or eta.shape[-1] < 2:
        raise ValueError(f"eta must have at least 2 sites on its last axis, got shape {eta.shape}")
    right = np.roll(eta, -1, axis=-1) if periodic else eta[..., 1:]
    left = eta if periodic else eta[..., :-1]
    return JUMP_RATE * (left != right).astype(np.float64)


def expected_event_rate(rho_sites, periodic) -> float:
    """Expected KMC events per unit lattice time under the product measure with site densities ``rho_sites``.

    sum over bonds of (1/2) [rho_i (1 - rho_{i+1}) + rho_{i+1} (1 - rho_i)]; for a flat
    ring of density rho this is L rho (1 - rho). The SEP counterpart of the ZRP's
    sum_i phi(rho_i) (used for cost estimates; exact at t = 0, and at all times
    for flat profiles, which are stationary).
    """
    rho = _check_rho_sites(rho_sites)
    if rho.size < 2:
        raise ValueError("rho_sites must have at least 2 sites")
    a = rho
    b = np.roll(rho, -1)
    r = JUMP_RATE * (a * (1.0 - b) + b * (1.0 - a))
    return float(r.sum() if periodic else r[:-1].sum())


# ----------------------------------------------------------------------------- sampling
def sample_product_measure(rho_sites, rng) -> np.ndarray:
    """Exact draw from the Bernoulli product measure with site densities ``rho_sites``.

    Parameters
    ----------
    rho_sites : array_like of float, shape (L,)
        P(eta_i = 1), each in [0, 1].
    rng : numpy.random.Generator
        Exactly one uniform is drawn per site (as :func:`cgflow.micro.zrp.sample_product_measure`).

    Returns
    -------
    ndarray of int64, shape (L,)
        eta_i = 1 if u_i < rho_i else 0 (the local-equilibrium state; int64 as the ZRP's,
        so that :func:`run_sep` evolves it in place and the fdr projections treat both alike).
    """
    rho = _check_rho_sites(rho_sites)
    rng = _check_rng(rng)
    return (rng.random(rho.size) < rho).astype(np.int64)


# ----------------------------------------------------------------------------- KMC
@numba.njit(cache=True)
def _toggle(c, act, where, n_act):
    """Flip bond c between active and inert in the list act[0:n_act]; returns the new n_act."""
    k = where[c]
    if k >= 0:  # swap-remove
        n_act -= 1
        last = act[n_act]
        act[k] = last
        where[last] = k
        where[c] = -1
    else:  # append
        act[n_act] = c
        where[c] = n_act
        n_act += 1
    return n_act


@numba.njit(cache=True)
def _kmc(eta, duration, periodic, rng, bonds):
    """Rejection-free KMC over the active bonds (module docstring). Returns the number of moves."""
    L = eta.shape[0]
    nb = L if periodic else L - 1
    count_bonds = bonds.shape[0] > 0
    act = np.empty(nb, np.int64)
    where = np.full(nb, -1, np.int64)
    n_act = 0
    for b in range(nb):
        c = b + 1
        if c == L:
            c = 0
        if eta[b] != eta[c]:
            act[n_act] = b
            where[b] = n_act
            n_act += 1
    if n_act == 0 or duration <= 0.0:
        return 0
    t = 0.0
    events = 0
    while True:
        # total rate n_act/2: the waiting time is Exp(1) * 2 / n_act
        t += 2.0 * rng.standard_exponential() / n_act
        if t > duration:
            break
        k = int(rng.random() * n_act)
        if k >= n_act:  # guard against rounding up
            k = n_act - 1
        b = act[k]
        c = b + 1
        if c == L:
            c = 0
        # exactly one of the two sites is occupied: the crossing swaps them
        x = eta[b]
        eta[b] = eta[c]
        eta[c] = x
        if count_bonds:
            bonds[b] += 1
        events += 1
        # bond b stays active; its neighbours b-1 and b+1 each had one site changed
        if periodic:
            n_act = _toggle(b - 1 if b > 0 else nb - 1, act, where, n_act)
            n_act = _toggle(b + 1 if b + 1 < nb else 0, act, where, n_act)
        else:
            if b > 0:
                n_act = _toggle(b - 1, act, where, n_act)
            if b + 1 < nb:
                n_act = _toggle(b + 1, act, where, n_act)
        # n_act >= 1 always: bond b is active
    return events


def run_sep(eta, duration, periodic, rng, bond_jumps=None) -> int:
    """Evolve an exclusion configuration in place for ``duration`` lattice-time units.

    Exact continuous-time, rejection-free kinetic Monte Carlo (module docstring):
    every particle jumps to each empty neighbour at rate 1/2.

    Parameters
    ----------
    eta : ndarray of int64, shape (L,), L >= 2
        Occupations in {0, 1}; overwritten with the state at time ``duration``.
    duration : float
        Lattice time to evolve (macroscopic time times L**2), ``>= 0``.
    periodic : bool
        Ring if true; closed segment (no bond between sites L-1 and 0) if false.
    rng : numpy.random.Generator
        Any bit generator. Same ``eta`` and generator state give bitwise the same result.
    bond_jumps : ndarray of int64, shape (L,), optional
        If given, ``bond_jumps[i]`` is incremented for every crossing of the bond
        between sites i and i+1, in either direction (periodic: bond L-1 joins
        sites L-1 and 0; closed: bond L-1 never sees a jump). As in
        :func:`cgflow.micro.zrp.run_zrp`.

    Returns
    -------
    int
        Number of particle moves.

    Raises
    ------
    ValueError
        If ``eta`` is not a writeable int64 vector of at least 2 entries in {0, 1},
        ``duration`` is negative or not finite, ``rng`` is not a Generator or
        ``bond_jumps`` has the wrong dtype or shape.
    """
    eta = _check_eta(eta)
    duration = _check_duration(duration)
    rng = _check_rng(rng)
    bonds = _check_counter(bond_jumps, eta.size, "bond_jumps")
    return int(_kmc(eta, duration, bool(periodic), rng, bonds))


def warmup() -> None:
    """Compile the kernel for both boundaries (numba caches it on disk)."""
    rng = np.random.default_rng(0)
    for periodic in (False, True):
        eta = sample_product_measure(np.full(8, 0.5), rng)
        run_sep(eta, 1.0, periodic, rng, bond_jumps=np.zeros(8, dtype=np.int64))
        run_sep(eta, 1.0, periodic, rng)
