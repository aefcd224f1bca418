"""Symmetric zero-range process on a 1-D lattice: exact facts and numba KMC kernels.

Model (seed 000, §4; REFERENCE §1). A lattice of ``L`` sites, periodic or closed
(reflecting). A site holding ``k`` particles fires at total rate

    g(k) = k**p,   p in {0, 1, 2}   (p = 0 means g(k) = 1 for k > 0, g(0) = 0),

and sends one particle to the left or the right neighbour with probability 1/2
each. On a closed lattice a jump that would leave the lattice is suppressed (a
null event: nothing moves, time still runs). The paper's case is p = 2; p = 1 is
independent random walkers, each jumping at rate 1.

Stationary measures are product measures with site marginal

    P_phi(eta = k) = phi**k / (k!)**p / Z_p(phi),

Z_0 = 1/(1 - phi) (geometric, phi < 1), Z_1 = exp(phi) (Poisson),
Z_2 = I0(2 sqrt(phi)). For every p, E[g(eta)] = phi. For p = 2 the density is
rho(phi) = sqrt(phi) I1(2 sqrt(phi)) / I0(2 sqrt(phi)), which is seed 000
eq. (7) with the paper's m = phi/2. The hydrodynamic limit in macroscopic time
t (lattice time t L**2, site positions x_i = (i + 1/2)/L) is
d rho/dt = (1/2) Laplacian phi(rho).

Kinetic Monte Carlo (:func:`run_zrp`) is exact continuous-time simulation by
uniformization: proposals arrive as a Poisson process of constant rate Lambda
that dominates the total rate R(eta) = sum_i g(eta_i), so the number of
proposals in an interval is one Poisson draw and no per-event exponential is
needed; each proposal is an actual event with probability R/Lambda, and the
event is drawn from the correct law. Only the sequence of proposals matters for
the state at the final time.

* p = 1: a uniform particle jumps (Lambda = N, no rejection);
* p = 0: a uniform site fires, empty sites give null events (Lambda = L);
* p = 2: sites are grouped by occupation class; a class is found by a short scan
  over classes with weights n_k k**2, then a uniform site of the class
  (Lambda a few per cent above R; ~1 proposal per event).

For p = 2, Lambda and the class list must follow R and the largest occupation.
They change only at "restarts": the run is stopped at the proposal that
triggers one (a stopping time of the proposal sequence), that proposal's time is
drawn from its exact conditional law given the number of proposals in the
stretch (the j-th of M uniform order statistics: a Beta(j, M - j + 1) fraction),
and simulation restarts from there; the strong Markov property makes this exact.
Random numbers: one uniform per proposal, split into the index, the direction
and (tagged runs) the mover, so the discretisation is at the 2**-53 resolution of
the uniform variate and the scheme is otherwise exact. Its laws at fixed times
are tested against expm(Q t) on small lattices.

Particles are indistinguishable in :func:`run_zrp`; :func:`run_zrp_tagged` labels
them (the mover is uniform among the particles of the firing site) and returns
their displacements, with bitwise the same occupations.
"""

from __future__ import annotations

import math
from numbers import Integral

import numba
import numpy as np
from scipy import special

__all__ = [
    "SUPPORTED_RATE_EXPONENTS",
    "compressibility",
    "density",
    "fugacity",
    "particle_sites",
    "run_zrp",
    "run_zrp_tagged",
    "sample_product_measure",
    "site_marginal",
    "site_positions",
    "warmup",
]

SUPPORTED_RATE_EXPONENTS = (0, 1, 2)

#: Largest expected number of proposals drawn at once (keeps Poisson means and counts small).
_MAX_PROPOSALS_PER_DRAW = 2.0**40


# ----------------------------------------------------------------------------- validation
def check_rate_exponent(rate_exponent) -> int:
    """The rate exponent p as an int; ValueError unless p is one of :data:`SUPPORTED_RATE_EXPONENTS`."""
    if isinstance(rate_exponent, bool) or not isinstance(rate_exponent, Integral):
        raise ValueError(f"rate_exponent must be an integer in {SUPPORTED_RATE_EXPONENTS}, got {rate_exponent!r}")
    p = int(rate_exponent)
    if p not in SUPPORTED_RATE_EXPONENTS:
        raise ValueError(f"unsupported rate_exponent {p}; supported: {SUPPORTED_RATE_EXPONENTS}")
    return p


def _check_eta(eta, min_sites: int = 2) -> np.ndarray:
    """eta must be a writeable int64 vector of >= min_sites non-negative occupations."""
    if not isinstance(eta, np.ndarray):
        raise ValueError(f"eta must be a numpy int64 array (it is evolved in place), got {type(eta).__name__}")
    if eta.dtype != np.int64:
        raise ValueError(f"eta must have dtype int64 (it is evolved in place), got {eta.dtype}")
    if eta.ndim != 1 or eta.size < min_sites:
        raise ValueError(f"eta must be a 1-D array of at least {min_sites} sites, got shape {eta.shape}")
    if not (eta.flags.c_contiguous and eta.flags.writeable):
        raise ValueError("eta must be C-contiguous and writeable (it is evolved in place)")
    if (eta < 0).any():
        raise ValueError("eta must be non-negative")
    return eta


def _check_duration(duration) -> float:
    d = float(duration)
    if not math.isfinite(d) or d < 0:
        raise ValueError(f"duration must be finite and >= 0, got {duration!r}")
    return d


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_counter(arr, size: int, name: str) -> np.ndarray:
    if arr is None:
        return np.empty(0, dtype=np.int64)  # size 0 switches the feature off in the kernel
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.shape != (size,):
        raise ValueError(f"{name} must be an int64 array of shape ({size},)")
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return arr


# ----------------------------------------------------------------------------- exact facts
def _ratio_i1_i0(x):
    """I1(x)/I0(x), overflow-free through the exponentially scaled Bessel functions."""
    return special.ive(1, x) / special.ive(0, x)


def density(phi, rate_exponent):
    """Density rho(phi) of the stationary product measure with fugacity ``phi``.

    Parameters
    ----------
    phi : float or array_like
        Fugacity, ``phi > 0`` (and ``phi < 1`` for p = 0). Any shape.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        p = 0: phi/(1 - phi); p = 1: phi; p = 2: sqrt(phi) I1(2 sqrt(phi))/I0(2 sqrt(phi))
        (seed 000 eq. (7) with m = phi/2; REFERENCE §1).
    """
    p = check_rate_exponent(rate_exponent)
    phi_arr = np.asarray(phi, dtype=np.float64)
    if not np.all(np.isfinite(phi_arr)) or np.any(phi_arr <= 0):
        raise ValueError("phi must be finite and > 0")
    if p == 0:
        if np.any(phi_arr >= 1):
            raise ValueError("phi must be < 1 for rate_exponent 0 (geometric marginal)")
        out = phi_arr / (1.0 - phi_arr)
    elif p == 1:
        out = phi_arr.copy()
    else:
        sq = np.sqrt(phi_arr)
        out = sq * _ratio_i1_i0(2.0 * sq)
    return out if out.ndim else float(out)


def fugacity(rho, rate_exponent):
    """Fugacity phi(rho) = E[g(eta)] of the product measure with density ``rho``.

    Parameters
    ----------
    rho : float or array_like
        Density, ``rho > 0``. Any shape; the result has the same shape.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        p = 0: rho/(1 + rho); p = 1: rho; p = 2: the inverse of
        rho(phi) = sqrt(phi) I1(2 sqrt(phi))/I0(2 sqrt(phi)) (seed 000 eq. (7), with the
        paper's m = phi/2; REFERENCE §1), by Newton's method from
        phi0 = (rho + 1/4)**2 + 1/16 with d rho/d phi = 1 - r**2, r = I1/I0, to 1e-14
        relative (three to five iterations for rho >= 0.1).

    Raises
    ------
    ValueError
        If any ``rho <= 0`` or not finite, or ``rate_exponent`` is unsupported.
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = np.asarray(rho, dtype=np.float64)
    if not np.all(np.isfinite(rho_arr)) or np.any(rho_arr <= 0):
        raise ValueError("rho must be finite and > 0")
    if p == 0:
        out = rho_arr / (1.0 + rho_arr)
    elif p == 1:
        out = rho_arr.copy()
    else:
        out = _fugacity_p2(rho_arr)
    return out if out.ndim else float(out)


def _fugacity_p2(rho: np.ndarray) -> np.ndarray:
    # rho(phi) is increasing and concave, so after the first step Newton approaches the root
    # monotonically from below; the first step can overshoot below 0 only for tiny rho,
    # where halving is a safe fallback.
    phi = (rho + 0.25) ** 2 + 1.0 / 16.0
    for _ in range(100):
        sq = np.sqrt(phi)
        r = _ratio_i1_i0(2.0 * sq)
        step = (sq * r - rho) / (1.0 - r * r)
        new = phi - step
        new = np.where(new > 0, new, 0.5 * phi)
        done = np.abs(new - phi) <= 8 * np.finfo(float).eps * new  # a few ulp: tighter never settles
        phi = new
        if np.all(done):
            break
    resid = np.abs(density(phi, 2) - rho)
    if np.any(resid > 1e-12 * rho):  # pragma: no cover - guards against a silent failure
        raise RuntimeError("fugacity: Newton iteration did not converge")
    return phi


def compressibility(rho, rate_exponent):
    """Static compressibility chi(rho) = Var(eta) under the product measure of density ``rho``.

    Parameters
    ----------
    rho : float or array_like
        Density, ``rho > 0``.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        p = 0: rho (1 + rho); p = 1: rho; p = 2: phi - rho**2 (REFERENCE §1; from
        E[eta**2] = E[g(eta)] = phi). Equivalently chi = phi d rho/d phi for every p.
    """
    p = check_rate_exponent(rate_exponent)
    rho_arr = np.asarray(rho, dtype=np.float64)
    phi = np.asarray(fugacity(rho_arr, p))
    if p == 0:
        out = rho_arr * (1.0 + rho_arr)
    elif p == 1:
        out = rho_arr.copy()
    else:
        out = phi - rho_arr**2
    return out if np.ndim(out) else float(out)


def _log_partition(phi: np.ndarray, p: int) -> np.ndarray:
    if p == 0:
        return -np.log1p(-phi)
    if p == 1:
        return phi.copy()
    x = 2.0 * np.sqrt(phi)
    return np.log(special.ive(0, x)) + x  # log I0(x), no overflow for large phi


def site_marginal(k, phi, rate_exponent):
    """Stationary site marginal P_phi(eta = k) = phi**k / (k!)**p / Z_p(phi).

    Parameters
    ----------
    k : int or array_like of int
        Occupations (negative values have probability 0).
    phi : float or array_like
        Fugacity (> 0; < 1 for p = 0); broadcast against ``k``.
    rate_exponent : int
        p in {0, 1, 2}.

    Returns
    -------
    float or ndarray
        The normalised pmf, evaluated in log space so that large ``phi`` neither
        overflows nor underflows (REFERENCE §1).
    """
    p = check_rate_exponent(rate_exponent)
    density(phi, p)  # validates phi
    k_arr = np.asarray(k)
    if not np.issubdtype(k_arr.dtype, np.integer):
        raise ValueError("k must be integer")
    phi_arr = np.asarray(phi, dtype=np.float64)
    kk = np.maximum(k_arr, 0).astype(np.float64)
    logp = kk * np.log(phi_arr) - p * special.gammaln(kk + 1.0) - _log_partition(phi_arr, p)
    out = np.where(k_arr >= 0, np.exp(logp), 0.0)
    return out if out.ndim else float(out)


def site_positions(L: int) -> np.ndarray:
    """Macroscopic site positions x_i = i/L, i = 0..L-1 (seed 000, Algorithm 1 line 1).

    With L a multiple of the number of elements N, the finite-element nodes a/N sit
    on sites, each bond lies inside one element, and the lattice operator is exactly
    tridiagonal (half-integer positions would put nodes on bond midpoints and couple
    next-nearest hats at O(N/L); see :mod:`cgflow.micro.zrp_hydro`).
    """
    if isinstance(L, bool) or not isinstance(L, Integral) or L < 1:
        raise ValueError(f"L must be a positive integer, got {L!r}")
    return np.arange(L) / L


def particle_sites(eta) -> np.ndarray:
    """Site of every particle of configuration ``eta``, in site order (int64[N]).

    The labelling used by :func:`run_zrp_tagged`: particle n sits on
    ``particle_sites(eta)[n]``.
    """
    eta = np.asarray(eta)
    if eta.ndim != 1 or not np.issubdtype(eta.dtype, np.integer) or (eta < 0).any():
        raise ValueError("eta must be a 1-D array of non-negative integers")
    return np.repeat(np.arange(eta.size, dtype=np.int64), eta)


# ----------------------------------------------------------------------------- sampling
@numba.njit(cache=True)
def _sample_marginals(phi, p, rng, out):
    """Inversion sampling of site i from P_phi[i], one uniform per site.

    p = 0 inverts the geometric law in closed form. p >= 1 works with weights
    relative to the mode (weight 1), reached by the ratios P(k)/P(k-1) = phi/k**p,
    so nothing over- or underflows; terms below 1e-20 of the mode are dropped
    (their total mass is far below the 2**-53 resolution of the uniform).
    """
    for i in range(phi.shape[0]):
        u = rng.random()
        f = phi[i]
        if f <= 0.0:
            out[i] = 0
            continue
        if p == 0:
            out[i] = int(math.floor(math.log1p(-u) / math.log(f)))
            continue
        mode = int(math.floor(f ** (1.0 / p)))
        # total weight S and the lowest retained occupation lo, with its weight
        s = 1.0
        w = 1.0
        k = mode
        while k > 0:
            w *= (float(k) ** p) / f  # P(k-1)/P(k)
            k -= 1
            if w < 1e-20:
                k += 1
                w *= f / (float(k) ** p)
                break
            s += w
        lo, w_lo = k, w
        w = 1.0
        k = mode
        while True:
            k += 1
            w *= f / (float(k) ** p)
            if w < 1e-20:
                break
            s += w
        hi = k - 1
        target = u * s
        k = lo
        w = w_lo
        c = w
        while c <= target and k < hi:
            k += 1
            w *= f / (float(k) ** p)
            c += w
        out[i] = k


def sample_product_measure(rho_sites, rate_exponent, rng) -> np.ndarray:
    """Exact iid draw from the product measure with site densities ``rho_sites``.

    Parameters
    ----------
    rho_sites : array_like of float, shape (L,)
        Density of every site, ``>= 0``; a zero-density site is empty.
    rate_exponent : int
        p in {0, 1, 2}.
    rng : numpy.random.Generator
        Source of randomness; exactly one uniform is drawn per site.

    Returns
    -------
    ndarray of int64, shape (L,)
        Site i is distributed as ``site_marginal(., fugacity(rho_sites[i], p), p)``
        (the local-equilibrium product measure of seed 000 §4; REFERENCE §1).
    """
    p = check_rate_exponent(rate_exponent)
    rng = _check_rng(rng)
    rho = np.asarray(rho_sites, dtype=np.float64)
    if rho.ndim != 1 or rho.size == 0:
        raise ValueError(f"rho_sites must be a non-empty 1-D array, got shape {rho.shape}")
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise ValueError("rho_sites must be finite and >= 0")
    phi = np.zeros_like(rho)
    pos = rho > 0
    if pos.any():
        phi[pos] = fugacity(rho[pos], p)
    out = np.empty(rho.size, dtype=np.int64)
    _sample_marginals(phi, p, rng, out)
    return out


# ----------------------------------------------------------------------------- KMC
@numba.njit(cache=True)
def _final_sites(eta, start, perm, psite):
    """psite[particle] = its site, from the slot layout (tagged runs only)."""
    n = perm.shape[0]
    for i in range(eta.shape[0]):
        q = start[i]
        for _ in range(eta[i]):
            psite[perm[q]] = i
            q += 1
            if q == n:
                q = 0


@numba.njit(cache=True)
def _kmc_pick(eta, duration, p, periodic, rng, bonds, perm, disp, psite):
    """Uniformized KMC for p = 0 (uniform site pick) and p = 1 (uniform particle pick).

    Proposal rate: p = 1, N (every particle jumps at rate 1, nothing is rejected);
    p = 0, L (every site fires at rate 1 if occupied; empty sites give null events).
    Both rates are constant, so the number of proposals in the run is one Poisson draw.

    Data structure: the particles are laid out in site order on N slots, circularly
    (so that the periodic wrap L-1 <-> 0 is also a move between adjacent blocks):
    site i owns slots start[i], ..., start[i] + eta[i] - 1 (mod N), and
    slot_site[q] is the site owning slot q, so a uniform slot is a uniform
    particle. A jump i -> i+1 hands the last slot of block i to block i+1, a jump
    i -> i-1 the first slot of block i to block i-1: O(1).

    ``bonds`` (size L, or 0 to skip) counts jumps across bond (i, i+1).
    ``perm``/``disp``/``psite`` (size N, or 0 to skip) tag particles: perm[q] is the
    particle on slot q (the mover is swapped onto the slot that changes hands),
    disp its net displacement, psite its final site.
    """
    L = eta.shape[0]
    N = 0
    for i in range(L):
        N += eta[i]
    if N == 0 or duration <= 0.0:
        return 0
    track = perm.shape[0] > 0
    count_bonds = bonds.shape[0] > 0
    slots = track or p == 1  # untagged p = 0 picks sites and needs no slot layout
    slot_site = np.empty(N if slots else 0, np.int64)
    start = np.empty(L if slots else 0, np.int64)
    if slots:
        c = 0
        for i in range(L):
            start[i] = c if c < N else 0  # slots are circular: start values live in [0, N)
            for _ in range(eta[i]):
                slot_site[c] = i
                c += 1

    nf = float(N)
    lf = float(L)
    lam = lf if p == 0 else nf
    t = 0.0
    events = 0
    while True:
        tau = duration - t
        if tau <= 0.0:  # rounding of the accumulated time
            break
        last = True
        if lam * tau > _MAX_PROPOSALS_PER_DRAW:
            tau = _MAX_PROPOSALS_PER_DRAW / lam
            last = False
        m_prop = rng.poisson(lam * tau)
        for _ in range(m_prop):
            # one uniform: index (site or slot), then direction, then (p = 0, tagged) the mover
            if p == 0:
                x = rng.random() * lf
                s = int(x)
                if s >= L:  # guard against rounding up
                    s = L - 1
                frac = x - s
                k = eta[s]
                if k == 0:
                    continue
                q = 0
            else:
                x = rng.random() * nf
                q = int(x)
                if q >= N:
                    q = N - 1
                frac = x - q
                s = slot_site[q]
                k = eta[s]
            frac *= 2.0
            right = frac >= 1.0
            if right:
                frac -= 1.0
                tgt = s + 1
                if tgt == L:
                    if not periodic:
                        continue
                    tgt = 0
                b = s  # bond (b, b + 1) crossed
            else:
                tgt = s - 1
                if tgt < 0:
                    if not periodic:
                        continue
                    tgt = L - 1
                b = tgt
            if slots:
                # the last (right jump) or first (left jump) slot of block s changes hands
                e = start[s] + k - 1 if right else start[s]
                if e >= N:
                    e -= N
                if track:
                    if p == 0:  # uniform particle of site s
                        q = start[s] + int(frac * k)
                        if q >= N:
                            q -= N
                    a = perm[q]  # the mover takes the slot that changes hands
                    perm[q] = perm[e]
                    perm[e] = a
                    disp[a] += 1 if right else -1
                slot_site[e] = tgt
                if right:
                    start[tgt] = e
                else:
                    start[s] = e + 1 if e + 1 < N else 0
            if count_bonds:
                bonds[b] += 1
            eta[s] = k - 1
            eta[tgt] += 1
            events += 1
        if last:
            break
        t += tau
    if track:
        _final_sites(eta, start, perm, psite)
    return events


@numba.njit(cache=True)
def _kmc_square(eta, duration, periodic, rng, bonds, perm, disp, psite):
    """Uniformized KMC for p = 2 with sites grouped by occupation class.

    ``order`` lists the sites grouped by occupation: class k is
    order[cstart[k]:cstart[k+1]] and pos[i] is site i's index in ``order``; a site
    changes class k -> k +- 1 by a swap with the first/last member of its class and
    a shift of the class boundary, O(1). Class k carries weight w[k] = n_k k**2 and
    R = sum_k w[k] is the total rate. A proposal draws an integer r uniform in
    [0, Lambda): r >= R is a null event, otherwise scanning the classes (in order
    of decreasing weight, fixed per stretch) finds class k with probability w[k]/R
    and the remainder r // k**2 a uniform site of the class. So every proposal
    with r < R is an event, and Lambda is kept a few per cent above R.

    The bound Lambda and the scan order change only at restarts: when a site
    exceeds the largest class ``top`` in the scan list, when R > Lambda, or when R
    falls well below Lambda. The restart time is the exact conditional time of the
    proposal that triggered it (Beta order statistic), see the module docstring.
    Arguments as for :func:`_kmc_pick`; when tagging, the slot layout of
    :func:`_kmc_pick` (start, perm) is maintained as well.
    """
    L = eta.shape[0]
    N = 0
    top = 0
    for i in range(L):
        N += eta[i]
        if eta[i] > top:
            top = eta[i]
    if N == 0 or duration <= 0.0:
        return 0
    track = perm.shape[0] > 0
    count_bonds = bonds.shape[0] > 0

    # class arrays cover occupations 0..cap-1; a stretch needs cap >= top + 3 (a site may
    # reach top + 1, and the restart looks one class further), so they are grown at restarts.
    # Sized by the largest occupation, not by N: short runs stay cheap.
    cap = top + 4
    cstart = np.zeros(cap + 1, np.int64)
    for i in range(L):
        cstart[eta[i] + 1] += 1
    for k in range(1, cap + 1):
        cstart[k] += cstart[k - 1]
    order = np.empty(L, np.int64)
    pos = np.empty(L, np.int64)
    fill = cstart[:cap].copy()
    for i in range(L):
        k = eta[i]
        order[fill[k]] = i
        pos[i] = fill[k]
        fill[k] += 1
    w = np.zeros(cap, np.int64)
    R = 0
    for k in range(top + 1):
        w[k] = (cstart[k + 1] - cstart[k]) * k * k
        R += w[k]
    start = np.empty(L if track else 0, np.int64)
    c = 0
    for i in range(start.shape[0]):
        start[i] = c if c < N else 0  # circular slots, as in _kmc_pick
        c += eta[i]
    scan = np.empty(cap, np.int64)

    t = 0.0
    events = 0
    while True:
        # bound a few per cent (and a few largest jumps of R) above R, with hysteresis
        margin = int(0.02 * R) + 4 * top * top
        lam = R + margin
        low = R - 2 * margin
        by_weight = np.argsort(-w[1 : top + 1])
        for i in range(top):
            scan[i] = by_weight[i] + 1
        lamf = float(lam)
        lam2 = 2.0 * lamf
        tau = duration - t
        if tau <= 0.0:  # rounding of the accumulated restart times
            break
        last = True
        if lamf * tau > _MAX_PROPOSALS_PER_DRAW:
            tau = _MAX_PROPOSALS_PER_DRAW / lamf
            last = False
        m_prop = rng.poisson(lamf * tau)
        j = 0
        restart = False
        while j < m_prop:
            j += 1
            # one uniform -> integer in [0, 2 Lambda): lowest bit the direction, the rest r;
            # the fractional part is left over for choosing the mover when tagging
            x = rng.random() * lam2
            r = int(x)
            d = r & 1
            r >>= 1
            if r >= R:  # null proposal (also absorbs rounding up to 2 lam)
                continue
            i = 0
            k = scan[0]
            while r >= w[k]:
                r -= w[k]
                i += 1
                k = scan[i]
            k2 = k * k
            s = order[cstart[k] + r // k2]
            tgt = s + 2 * d - 1  # branch-free: the direction is unpredictable
            if tgt == L or tgt < 0:
                if not periodic:
                    continue
                tgt = 0 if tgt == L else L - 1
            if count_bonds:
                b = s + d - 1  # bond (b, b + 1) crossed
                bonds[b if b >= 0 else L - 1] += 1
            if track:
                q = start[s] + int((x - int(x)) * k)  # uniform particle of site s
                if q >= N:
                    q -= N
                if d == 1:
                    e = start[s] + k - 1
                    if e >= N:
                        e -= N
                    start[tgt] = e
                else:
                    e = start[s]
                    start[s] = e + 1 if e + 1 < N else 0
                a = perm[q]
                perm[q] = perm[e]
                perm[e] = a
                disp[a] += 2 * d - 1
            # s: class k -> k - 1 (becomes the first member of class k, then the boundary moves)
            a = cstart[k]
            ps = pos[s]
            o = order[a]
            order[a] = s
            order[ps] = o
            pos[o] = ps
            pos[s] = a
            cstart[k] = a + 1
            # tgt: class m -> m + 1 (becomes the last member of class m, then the boundary moves)
            m = eta[tgt]
            a = cstart[m + 1] - 1
            ps = pos[tgt]
            o = order[a]
            order[a] = tgt
            order[ps] = o
            pos[o] = ps
            pos[tgt] = a
            cstart[m + 1] = a
            eta[s] = k - 1
            eta[tgt] = m + 1
            w[k] -= k2
            w[k - 1] += (k - 1) * (k - 1)
            w[m] -= m * m
            w[m + 1] += (m + 1) * (m + 1)
            R += 2 * (m - k + 1)
            events += 1
            if m + 1 > top or R > lam or R < low:
                restart = True
                break
        if restart:
            # the j-th of m_prop proposals, uniform on [t, t + tau], is at a Beta(j, m - j + 1) fraction
            t += tau * rng.beta(float(j), float(m_prop - j + 1))
            top += 1
            while cstart[top + 1] == cstart[top]:
                top -= 1
            if top + 3 > cap:
                new_cap = 2 * top + 16
                grown = np.full(new_cap + 1, L, np.int64)  # empty classes above: boundary at L
                grown[: cap + 1] = cstart
                cstart = grown
                grown_w = np.zeros(new_cap, np.int64)
                grown_w[:cap] = w
                w = grown_w
                scan = np.empty(new_cap, np.int64)
                cap = new_cap
        elif last:
            break
        else:
            t += tau
    if track:
        _final_sites(eta, start, perm, psite)
    return events


def _run(eta, duration, p, periodic, rng, bonds, perm, disp, psite) -> int:
    if p == 2:
        return int(_kmc_square(eta, duration, periodic, rng, bonds, perm, disp, psite))
    return int(_kmc_pick(eta, duration, p, periodic, rng, bonds, perm, disp, psite))


def run_zrp(eta, duration, rate_exponent, periodic, rng, bond_jumps=None) -> int:
    """Evolve a ZRP configuration in place for ``duration`` lattice-time units.

    Exact continuous-time kinetic Monte Carlo (uniformization, see the module
    docstring) of the dynamics of seed 000 §4 / REFERENCE §1: a site with k
    particles fires at rate g(k) = k**p and sends one particle left or right with
    probability 1/2.

    Parameters
    ----------
    eta : ndarray of int64, shape (L,)
        Occupations, ``>= 0``; overwritten with the state at time ``duration``.
    duration : float
        Lattice time to evolve (macroscopic time times L**2), ``>= 0``.
    rate_exponent : int
        p in {0, 1, 2}.
    periodic : bool
        Periodic lattice if true; closed (reflecting: jumps off the lattice are
        suppressed null events) if false.
    rng : numpy.random.Generator
        Any bit generator. Same ``eta`` and generator state give bitwise the same result.
    bond_jumps : ndarray of int64, shape (L,), optional
        If given, ``bond_jumps[i]`` is incremented for every jump across the bond
        between sites i and i+1, in either direction (periodic: bond L-1 joins
        sites L-1 and 0; closed: bond L-1 never sees a jump).

    Returns
    -------
    int
        Number of particle moves (suppressed boundary jumps are not counted).

    Raises
    ------
    ValueError
        If ``eta`` is not a writeable int64 vector of at least 2 non-negative
        entries, ``duration`` is negative or not finite, ``rate_exponent`` is
        unsupported, ``rng`` is not a Generator or ``bond_jumps`` has the wrong
        dtype or shape.
    """
    eta = _check_eta(eta)
    duration = _check_duration(duration)
    p = check_rate_exponent(rate_exponent)
    rng = _check_rng(rng)
    bonds = _check_counter(bond_jumps, eta.size, "bond_jumps")
    none = np.empty(0, dtype=np.int64)
    return _run(eta, duration, p, bool(periodic), rng, bonds, none, none, none)


def run_zrp_tagged(eta, sites, duration, rate_exponent, periodic, rng, bond_jumps=None):
    """:func:`run_zrp` with labelled particles: also returns every particle's displacement.

    Labelled dynamics: each of the k particles at a site jumps at rate g(k)/k, so
    the site fires at rate g(k) and the mover is uniform among its particles. The
    occupations evolve exactly as in :func:`run_zrp` (for the same generator
    state, bitwise the same ``eta``).

    Parameters
    ----------
    eta : ndarray of int64, shape (L,)
        Occupations, evolved in place.
    sites : ndarray of int64, shape (N,)
        Site of each particle, consistent with ``eta`` (e.g. from
        :func:`particle_sites`); overwritten with the final sites.
    duration, rate_exponent, periodic, rng, bond_jumps
        As for :func:`run_zrp`.

    Returns
    -------
    events : int
        Number of particle moves.
    displacement : ndarray of int64, shape (N,)
        Net displacement of each particle in lattice units, not wrapped on a
        periodic lattice (so ``displacement**2`` is the squared displacement).
    """
    eta = _check_eta(eta)
    duration = _check_duration(duration)
    p = check_rate_exponent(rate_exponent)
    rng = _check_rng(rng)
    bonds = _check_counter(bond_jumps, eta.size, "bond_jumps")
    n = int(eta.sum())
    if not isinstance(sites, np.ndarray) or sites.dtype != np.int64 or sites.shape != (n,):
        raise ValueError(f"sites must be an int64 array of shape ({n},), one entry per particle")
    if not (sites.flags.c_contiguous and sites.flags.writeable):
        raise ValueError("sites must be C-contiguous and writeable")
    if n and (sites.min() < 0 or sites.max() >= eta.size):
        raise ValueError("sites must lie in 0..L-1")
    if n and not np.array_equal(np.bincount(sites, minlength=eta.size), eta):
        raise ValueError("sites is inconsistent with eta")
    disp = np.zeros(n, dtype=np.int64)
    if n == 0:
        return 0, disp
    perm = np.argsort(sites, kind="stable").astype(np.int64)  # slot order = site order
    events = _run(eta, duration, p, bool(periodic), rng, bonds, perm, disp, sites)
    return events, disp


def warmup() -> None:
    """Compile every kernel for every rate exponent and boundary (numba caches them on disk).

    Called on each Dask worker before a sweep's clock starts, and at image build
    time (deploy/docker/Dockerfile) so containers start with a warm cache.
    """
    rng = np.random.default_rng(0)
    for p in SUPPORTED_RATE_EXPONENTS:
        for periodic in (False, True):
            eta = sample_product_measure(np.full(8, 0.5), p, rng)
            run_zrp(eta, 1.0, p, periodic, rng, bond_jumps=np.zeros(8, dtype=np.int64))
            run_zrp_tagged(eta, particle_sites(eta), 1.0, p, periodic, rng)
