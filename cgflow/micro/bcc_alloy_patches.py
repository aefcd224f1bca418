"""The NbMoTa alloy in the shape of the partial method's numerics (``PatchModel``; REFERENCE-002 §0, §2, §3).

Built on :mod:`cgflow.micro.bcc_alloy` (lattice, stand-in barriers of REFERENCE §9,
SRO of §1c). Configurations are int8 arrays (B, N) of species ids, N = 2 cells**3.

Patch-additive SRO (REFERENCE §0). delta_ab = S_ab / N_a with
S_ab = sum over the a atoms i of (n_b(i) - m(i)/3) (module docstring of
:mod:`~cgflow.micro.bcc_alloy`) is a ratio; the ratio of a tile (its own N_a^J in
the denominator) is NOT additive (the tiles' N_a^J fluctuate). The additive form used
here (``boundary="frozen"``) keeps each tile's own count S_ab^J (its atoms, their real
lattice neighbours, also across the tile's faces) and normalises by the lattice mean
number of a atoms per tile,

    delta_ab^J = K S_ab^J / N_a,      so   (1/K) sum_J delta_ab^J = S_ab / N_a = delta_ab

exactly (S is accumulated in integers, 3 S_ab^J = sum (3 n_b - m); the mean over
tiles equals :func:`~cgflow.micro.bcc_alloy.sro` to rounding, ~1e-16). N_a is
conserved by the dynamics, so the whole-lattice change is a change of counts only.
``boundary="periodic"`` gives the authors' block observable instead: each tile as an
isolated periodic lattice, its own ratio SRO (not additive; REFERENCE §2, §8.5).

Partial evolution (REFERENCE §2 NB). Per configuration one vacancy v is chosen
(uniformly, or the ``tiles[b]``-th vacancy in site order), and a cubic window of
``window_voxels`` voxels per side (default 16: 1024 sites) is centred on it (origin
v - window_voxels/2 per axis, periodic). The chosen vacancy then makes ``n_events``
jumps (default 124, the authors' count; §8.6 notes their loops make 123), or runs for
a fixed ``duration``, rejection-free with the stand-in rates, inside the window:

* ``"frozen"`` (default, physically faithful): the window is part of the real lattice;
  every rate uses the real neighbours (inside and outside the window: a frozen ghost
  shell), and all other vacancies are frozen (only the chosen one moves). With
  ``confine=True`` (REFERENCE §2 read literally) jumps that would take the vacancy out
  of the window are forbidden. ``confine=False`` (the default) lets the chosen vacancy leave the window (the other
  vacancies stay frozen; the window then only defines before/after): MEASURED, the
  confined run under-estimates the drift once the vacancy has explored the window
  (its jumps through the walls are blocked: a third of the window's sites lie on a
  face), by 20-26 % on delta_MoMo at 2000 K after 8e-10 s (about the authors' 124
  jumps) and 2e-9 s - see "Measured" below. The
  increment is

      increment = n_vac * (delta(x after) - delta(x before))    (whole-lattice delta),

  computed exactly from the change of the ordered first-neighbour pair counts
  P[a, b] accumulated jump by jump: delta_ab = (P[a, b] - (8 N_a - P[a, V])/3) / N_a,
  so d delta_ab = (dP[a, b] + dP[a, V]/3) / N_a. n_vac (the number of vacancies)
  is the factor that makes the increment unbiased to first order in the run time:
  every vacancy is equally likely to be the evolved one and, while the vacancies are
  apart, the lattice's drift is the sum of the vacancies' contributions. With one
  vacancy per tile (the authors' setup, §3: vacancies moved to block centres, one per
  block) n_vac = K and this is the glauber convention increment = K x (change of the
  whole-lattice observable); ``increment_scale="tiles"`` uses K whatever n_vac is.
  before/after are the window's additive-form SRO (real neighbours, normalised by
  N_a n_window / N) before and after the run, each with the atoms the window holds at
  that time (with ``confine=False`` the vacancy carries atoms across the window's faces,
  so the window's species counts change: about 0.0078 per atom in delta_ab at 8192
  sites; ``after`` used the counts before the run until the record_times change).
* ``"periodic"`` (the authors' choice, §2, §8.5): the window is cut out as an isolated
  periodic lattice of window_voxels/2 cells and evolved as such (only the chosen
  vacancy moves: a deviation from the authors, whose window KMC moves every vacancy
  in the window; with several vacancies per window theirs over-counts); before/after are that torus's ratio SRO and the increment is their
  difference (the authors' SRO(window after) - SRO(window before)), which equals
  about (N / n_window) d S / N_a, i.e. K times a whole-lattice change when the window
  is a tile's size.

dt is the elapsed KMC time in seconds: the sum of the sampled Exp(1)/R_tot waiting
times of the window's vacancy (the authors sum the mean waiting times 1/R_tot; same
mean), or ``duration``.

Record times (``evolve_tiles(..., duration=tau, record_times=[s_1, ..., s_n])``, both
boundary modes): the same run is also observed at 0 < s_1 < ... < s_n < tau. The state
at s is the one after the last jump at a time <= s (the kernel records before applying
the first jump whose time exceeds s: the test that ends a run of duration s), so a
record is bitwise the end of a run of duration s from the same random stream, and
recording reads no random numbers (the end results are bitwise those without it).
Frozen: the pair-count change and the window's pair and species counts are taken at
each record (about 13 us per record and pair at 8192 sites); periodic: the torus is
copied. MEASURED (tests): after a 2e-9 s pre-run (run_time) the increment at dt/2 is
half that at dt = 3e-10 s within 2 SE (2000 pairs); from random starts the first half
carries more (delta_NbMo at about 5 SE): the vacancy's surroundings relax in its first
jumps (a pair-duration bias of the kind the Richardson estimate 4 Delta(dt/2) - Delta(dt)
targets).

Upsampling (REFERENCE §3 NB): :func:`upsample` tiles K = factor**3 small
configurations (drawn from a pool, each cyclically shifted by an even voxel offset),
relaxes windows of 16 voxels offset by 8 voxels from the block grid (so that each
straddles the seams around a block corner; every vacancy in the window makes a few
jumps with frozen surroundings), then moves one vacancy to each block centre (the
atom there takes the old vacancy site) and relabels as few random atoms as needed to
reach the exact equimolar composition.

Shapes: configurations are flat (B, N) site arrays, not (B, L, L, L) grids (the
generic :func:`cgflow.methods.partial.evolution.partial_evolution_pairs` accepts them;
pass ``n_events`` or ``duration``, its default n_events is tile_size**(ndim - 1)).

Measured (tests/micro/test_bcc_alloy_patches.py; 2000 K, lambda 0.5, 8192 sites,
8 vacancies, K = 8, random snapshots, every vacancy's window averaged per snapshot,
against whole-lattice ``run_time`` of the same duration on the same snapshots;
max |z| over the six SRO, z = difference / SE):

    tau      confined frozen   confine=False   periodic torus
    3e-10 s  1.6               0.5             1.2
    2e-9  s  8.2 (MoMo -26 %)  0.7             0.5

Cost (2 shared cores, B = 2000 batch, 8192 sites): about 85-105 us per frozen pair
of 124 jumps, of which ~35 us are the jumps (250-300 ns each; the fields G are
cached lazily per site and updated on each exchange) and the rest the copy, the
species counts and the window's pair counts before and after; the whole-lattice
kernel of :mod:`~cgflow.micro.bcc_alloy` does ~120 ns per jump. periodic: about
135 us per run of 1 unit at 2000 K (benchmarks/bench_partial_cost.py, tile windows: 8192
runs in 1.1 CPU s; the torus SRO by the numba tile kernel; with the numpy reference the
same runs took 6.2 s).

All random numbers come from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
import math
from numbers import Real

import numba
import numpy as np

from . import bcc_alloy as ba

__all__ = ["BOUNDARIES", "BccAlloyPatchModel", "pair_counts", "upsample"]

#: Window/tile boundary modes (module docstring).
BOUNDARIES = ("frozen", "periodic")
_SCALES = ("vacancies", "tiles")


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _field_at(c, nb, D1, D2, i, X):
    """G[i, X] of :mod:`cgflow.micro.bcc_alloy` computed on the fly (energy quanta)."""
    g = 0
    for d in range(8):
        g += D1[X, c[nb[i, d]]]
    for d in range(8, 14):
        g += D2[X, c[nb[i, d]]]
    return g


@numba.njit(cache=True, inline="always")
def _cached_field(c, nb, D1, D2, G, stamp, ep, i):
    """Row i of the field cache G (valid for the current configuration when stamp[i] == ep; filled on demand)."""
    if stamp[i] != ep:
        g1 = 0
        g2 = 0
        g3 = 0
        for d in range(8):
            y = c[nb[i, d]]
            g1 += D1[1, y]
            g2 += D1[2, y]
            g3 += D1[3, y]
        for d in range(8, 14):
            y = c[nb[i, d]]
            g1 += D2[1, y]
            g2 += D2[2, y]
            g3 += D2[3, y]
        G[i, 1] = g1
        G[i, 2] = g2
        G[i, 3] = g3
        stamp[i] = ep


@numba.njit(cache=True)
def _window_rates(v, c, nb, vox, ins, W, n, D1, D2, corr, rt, G, stamp, ep, out):
    """Rates (1/s) of the 8 exchanges of the vacancy at v into the window box (ins[y, x]: voxel coordinate x of
    axis y is inside; every site is inside if W >= n). Fields G[i, X] (module :mod:`cgflow.micro.bcc_alloy`)
    come from the lazily filled cache (G, stamp, ep)."""
    hi, lo, logA, bhq, off = rt
    table = lo.shape[0] > 0
    _cached_field(c, nb, D1, D2, G, stamp, ep, v)
    tot = 0.0
    for d in range(8):
        s = nb[v, d]
        X = c[s]
        out[d] = 0.0
        if X == 0:
            continue
        if W < n:
            if not (ins[0, vox[s, 0]] and ins[1, vox[s, 1]] and ins[2, vox[s, 2]]):
                continue
        _cached_field(c, nb, D1, D2, G, stamp, ep, s)
        dE = np.int64(G[v, X]) - np.int64(G[s, X]) + corr[X]
        r = ba._rate(dE, X, table, off, hi, lo, logA, bhq)
        out[d] = r
        tot += r
    return tot


@numba.njit(cache=True)
def _window_runs(C, vac, nb, vox, org, W, n, D1, D2, U1, U2, corr, rt, n_jumps, duration, dP, dt, nj, G, stamp, ep0,
                 rng, rec, rec_dP, rec_idx, rec_P, rec_na, rec_cfg):
    """Run the vacancy vac[b] of C[b] (in place) inside its window box; accumulate pair-count changes.

    n_jumps jumps if duration < 0, else exactly ``duration`` seconds (pending event
    dropped). dP[b, a, x] += change of the ordered 1st-neighbour pair counts. dt[b]:
    elapsed seconds (inf if stuck in the jump mode); nj[b]: jumps made. G (N, 4) int32
    and stamp (N,) int64 are a field cache (epoch ep0 + b for configuration b: the
    caller keeps the epochs distinct for the same stamp array); cached rows are
    updated on every exchange with U1/U2 as in the whole-lattice kernel.

    Record times (duration mode; ``rec`` increasing in (0, duration), empty: none).
    The state at time s is the one after the last event with time <= s (the same test
    ``t + tau > s`` that ends a run of duration s, so a record equals the end of that
    shorter run exactly); recording reads no random numbers. At rec[k]:
    rec_dP[b, k] = the pair-count change so far (as dP), and, if rec_idx has sites,
    rec_P[b, k, a, x] += ordered pair counts of those sites and rec_na[b, k, a] += their
    species counts (as :func:`_add_site_pairs`); if rec_cfg has rows, rec_cfg[b, k] = C[b].
    """
    rates = np.zeros(8)
    ins = np.zeros((3, n), np.bool_)
    hv = np.zeros(4, np.int64)
    acc = np.zeros((4, 4), np.int64)
    n_rec = rec.shape[0]
    for b in range(C.shape[0]):
        c = C[b]
        v = vac[b]
        ep = ep0 + b
        acc[:, :] = 0
        kr = 0
        ins[:, :] = False
        for y in range(3):
            for k in range(min(W, n)):
                ins[y, (org[b, y] + k) % n] = True
        t = 0.0
        jumps = 0
        while True:
            if duration < 0.0 and jumps >= n_jumps:
                break
            R = _window_rates(v, c, nb, vox, ins, W, n, D1, D2, corr, rt, G, stamp, ep, rates)
            if not R > 0.0:
                t = math.inf if duration < 0.0 else duration
                break
            tau = rng.standard_exponential() / R
            if duration >= 0.0 and t + tau > duration:
                t = duration
                break
            while kr < n_rec and t + tau > rec[kr]:  # the pending event comes after rec[kr]: record now
                _record(c, nb, acc, rec_dP[b, kr], rec_idx, rec_P[b, kr], rec_na[b, kr], rec_cfg, b, kr)
                kr += 1
            t += tau
            u = rng.random() * R
            dsel = -1
            for d in range(8):
                r = rates[d]
                if r > 0.0:
                    dsel = d
                    if u < r:
                        break
                    u -= r
            s = nb[v, dsel]
            X = c[s]
            # neighbour-species histograms of v (without s) and of s (without v): the pair counts change by
            # (V, y) -> (X, y) around v and (X, y) -> (V, y) around s, both orders
            for y in range(4):
                hv[y] = 0
            for d in range(8):
                k = nb[v, d]
                if k != s:
                    hv[c[k]] += 1
                k = nb[s, d]
                if k != v:
                    hv[c[k]] -= 1
            for y in range(4):
                h = hv[y]
                acc[0, y] -= h
                acc[y, 0] -= h
                acc[X, y] += h
                acc[y, X] += h
            for d in range(8):
                k = nb[v, d]
                if stamp[k] == ep:
                    for y in range(1, 4):
                        G[k, y] += U1[X, y]
                k = nb[s, d]
                if stamp[k] == ep:
                    for y in range(1, 4):
                        G[k, y] -= U1[X, y]
            for d in range(8, 14):
                k = nb[v, d]
                if stamp[k] == ep:
                    for y in range(1, 4):
                        G[k, y] += U2[X, y]
                k = nb[s, d]
                if stamp[k] == ep:
                    for y in range(1, 4):
                        G[k, y] -= U2[X, y]
            c[v] = X
            c[s] = 0
            v = s
            jumps += 1
        while kr < n_rec:  # after the end (or stuck): the state is final
            _record(c, nb, acc, rec_dP[b, kr], rec_idx, rec_P[b, kr], rec_na[b, kr], rec_cfg, b, kr)
            kr += 1
        dt[b] = t
        nj[b] = jumps
        for a in range(4):
            for y in range(4):
                dP[b, a, y] += acc[a, y]


@numba.njit(cache=True)
def _record(c, nb, acc, dP_k, idx, P_k, na_k, cfg, b, k):
    """One record of :func:`_window_runs`: dP_k = acc; pair and species counts of the sites idx; cfg[b, k] = c."""
    for a in range(4):
        for y in range(4):
            dP_k[a, y] = acc[a, y]
    for q in range(idx.shape[0]):
        i = idx[q]
        a = c[i]
        na_k[a] += 1
        for d in range(8):
            P_k[a, c[nb[i, d]]] += 1
    if cfg.shape[0] > 0:
        for i in range(c.shape[0]):
            cfg[b, k, i] = c[i]


@numba.njit(cache=True, inline="always")
def _add_site_pairs(c, nb, i, a, P, b):
    """P[b, a, x] += number of 1st neighbours of site i holding species x (counted in registers first)."""
    n0 = 0
    n1 = 0
    n2 = 0
    n3 = 0
    for d in range(8):
        y = c[nb[i, d]]
        n0 += y == 0
        n1 += y == 1
        n2 += y == 2
        n3 += y == 3
    P[b, a, 0] += n0
    P[b, a, 1] += n1
    P[b, a, 2] += n2
    P[b, a, 3] += n3


@numba.njit(cache=True)
def _frozen_batch(C, pick, wvox, grid, nb, vox, W, Wbox, D1, D2, U1, U2, corr, rt, n_jumps, duration, n_atoms, win_atoms,
                  Pb, Pa, dP, dt, nj, vac_site, windows, rng, win_after, rec, rec_dP, rec_P, rec_na):
    """The frozen-mode pipeline per configuration (C is not modified).

    Species counts, the pick[b]-th vacancy (site order), the window box centred on it
    (origin vacancy voxel - W/2), the window's pair counts before (Pb) and after (Pa) a
    run of :func:`_window_runs` (confined to the box of side Wbox, the window if Wbox = W, unconfined if Wbox is
    the lattice side) on a private copy, the whole-lattice pair-count change dP,
    the window's species counts before (win_atoms) and after (win_after: they change when
    the vacancy crosses the window's faces), and (if ``windows`` has rows) the evolved
    window. At the record times ``rec`` (may be empty) of the same run: rec_dP (as dP),
    and the window's pair counts rec_P (as Pa) and species counts rec_na (as win_after).
    """
    B, N = C.shape
    n = grid.shape[0]
    nw = wvox.shape[0]
    work = np.empty(N, np.int8)
    G = np.empty((N, 4), np.int32)
    stamp = np.zeros(N, np.int64)
    idx = np.empty(nw, np.int64)
    org = np.empty((1, 3), np.int64)
    ax = np.empty((3, W), np.int64)
    one_dP = np.zeros((1, 4, 4), np.int64)
    one_dt = np.zeros(1)
    one_nj = np.zeros(1, np.int64)
    one_v = np.zeros(1, np.int64)
    no_cfg = np.zeros((0, 0, 0), np.int8)
    for b in range(B):
        c = C[b]
        q = 0
        v = -1
        for i in range(N):
            x = c[i]
            work[i] = x
            n_atoms[b, x] += 1
            if x == 0:
                if q == pick[b]:
                    v = i
                q += 1
        vac_site[b] = v
        for y in range(3):
            org[0, y] = (vox[v, y] - W // 2 + n) % n
        for y in range(3):
            for k in range(W):
                ax[y, k] = (org[0, y] + k) % n
        for w in range(nw):
            idx[w] = grid[ax[0, wvox[w, 0]], ax[1, wvox[w, 1]], ax[2, wvox[w, 2]]]
            i = idx[w]
            a = work[i]
            win_atoms[b, a] += 1
            _add_site_pairs(work, nb, i, a, Pb, b)
        one_v[0] = v
        for a in range(4):
            for y in range(4):
                one_dP[0, a, y] = 0
        _window_runs(work.reshape(1, N), one_v, nb, vox, org, Wbox, n, D1, D2, U1, U2, corr, rt, n_jumps,
                     duration, one_dP, one_dt, one_nj, G, stamp, b + 1, rng, rec, rec_dP[b:b + 1], idx,
                     rec_P[b:b + 1], rec_na[b:b + 1], no_cfg)
        for a in range(4):
            for y in range(4):
                dP[b, a, y] = one_dP[0, a, y]
        dt[b] = one_dt[0]
        nj[b] = one_nj[0]
        for w in range(nw):
            i = idx[w]
            a = work[i]
            win_after[b, a] += 1
            _add_site_pairs(work, nb, i, a, Pa, b)
            if windows.shape[0] > 0:
                windows[b, w] = a


@numba.njit(cache=True)
def _pair_counts_kernel(C, nb, sites, P):
    """P[b, a, x] = number of ordered 1st-neighbour pairs (i, j), i in sites[b] (or all if empty), c_i = a, c_j = x."""
    for b in range(C.shape[0]):
        c = C[b]
        m = sites.shape[1] if sites.shape[0] > 0 else c.shape[0]
        for q in range(m):
            i = sites[b, q] if sites.shape[0] > 0 else q
            a = c[i]
            for d in range(8):
                P[b, a, c[nb[i, d]]] += 1


@numba.njit(cache=True, inline="always")
def _packed_neighbour_counts(c, nb, i):
    """The species counts of the 8 first neighbours nb[i, 0:8] of site i packed in 16-bit fields: sum 1 << 16 c_j
    (field y holds the number of neighbours of species y; one shift and add per neighbour, no branches)."""
    acc = np.int64(0)
    for d in range(8):
        acc += np.int64(1) << (16 * c[nb[i, d]])
    return acc


@numba.njit(cache=True)
def _tile_sro_frozen_kernel(C, nn1, site_tile, K, out):
    """out[b, J, col] = K S^J_ab / N_a (the additive form of :meth:`BccAlloyPatchModel.tile_observables`).

    3 S^J_ab = sum over the a atoms i of tile J of (3 n_b(i) - m(i)), accumulated in
    integers (exact, in any order; S[J, a, b] for every a, b: no branch on the species);
    then float(K * 3 S) / (3.0 * N_a) with N_a the lattice's count, the operations of
    the numpy reference :meth:`BccAlloyPatchModel._tile_observables_reference` in the
    same order on the same exact integers, so bitwise equal. NaN where the lattice has
    no a atom.
    """
    B, N = C.shape
    S = np.zeros((K, 4, 4), np.int64)
    na = np.zeros(4, np.int64)
    for b in range(B):
        c = C[b]
        S[:, :, :] = 0
        na[:] = 0
        for i in range(N):
            a = c[i]
            na[a] += 1
            if a == 0:
                continue
            acc = _packed_neighbour_counts(c, nn1, i)
            m = 8 - (acc & 0xFFFF)
            J = site_tile[i]
            S[J, a, 1] += 3 * ((acc >> 16) & 0xFFFF) - m
            S[J, a, 2] += 3 * ((acc >> 32) & 0xFFFF) - m
            S[J, a, 3] += 3 * (acc >> 48) - m
        col = 0
        for a in range(1, 4):
            for x in range(a, 4):
                if na[a] > 0:
                    den = 3.0 * np.float64(na[a])
                    for J in range(K):
                        out[b, J, col] = np.float64(K * S[J, a, x]) / den
                else:
                    for J in range(K):
                        out[b, J, col] = np.nan
                col += 1


@numba.njit(cache=True)
def _tile_sro_periodic_kernel(C, sites, pnb, out):
    """out[b, J] = the ratio SRO of tile J as an isolated periodic lattice (:func:`cgflow.micro.bcc_alloy.sro`).

    sites[J, w]: the lattice site of tile J's site w (tile-lattice order); pnb[i, d]: the
    d-th 1st neighbour of site i in its tile's own periodic lattice. Per tile and pair
    (a, b) the float sum of n_b - (8 - n_0)/3 over the a atoms runs over w in order, as
    the reference's ``np.bincount`` does, and every value is computed with the
    reference's operations (:func:`cgflow.micro.bcc_alloy.tile_sro`), so the result is
    bitwise equal. The reference also adds 0.0 for every non-a site; skipping those adds
    changes nothing (s + 0.0 == s bitwise unless s is -0.0, and a sum started at +0.0
    never is). s[a, b] is accumulated for every a (no branch on the species).
    """
    B = C.shape[0]
    K, Nt = sites.shape
    s = np.zeros((4, 4))
    na = np.zeros(4)
    for b in range(B):
        c = C[b]
        for J in range(K):
            s[:, :] = 0.0
            na[:] = 0.0
            for w in range(Nt):
                i = sites[J, w]
                a = c[i]
                if a == 0:
                    continue
                na[a] += 1.0
                acc = _packed_neighbour_counts(c, pnb, i)
                m3 = (8.0 - np.float64(acc & 0xFFFF)) / 3.0
                s[a, 1] += np.float64((acc >> 16) & 0xFFFF) - m3
                s[a, 2] += np.float64((acc >> 32) & 0xFFFF) - m3
                s[a, 3] += np.float64(acc >> 48) - m3
            col = 0
            for a in range(1, 4):
                for x in range(a, 4):
                    out[b, J, col] = s[a, x] / na[a] if na[a] > 0 else np.nan
                    col += 1


def _torus_sro(configs, cells: int) -> np.ndarray:
    """:func:`~cgflow.micro.bcc_alloy.sro` of (B, N) configurations of a ``cells`` lattice, bitwise, by the numba
    kernel (one tile = the whole torus; measured at 1024 sites, 24 calls of 128: 0.15 s against the numpy
    reference's 2.40 s)."""
    sites, pnb = _periodic_tile_tables(cells, cells)
    out = np.empty((configs.shape[0], 1, 6))
    _tile_sro_periodic_kernel(np.ascontiguousarray(configs, dtype=np.int8), sites, pnb, out)
    return out[:, 0]


@functools.lru_cache(maxsize=16)
def _periodic_tile_tables(cells: int, tile_cells: int):
    """(sites (K, N_t) int64, pnb (N, 8) int32) of :func:`_tile_sro_periodic_kernel` (cached, read-only).

    Tile J = (ti * nt + tj) * nt + tk has origin 2 tile_cells (ti, tj, tk) voxels and its sites in the
    order of :func:`~cgflow.micro.bcc_alloy.window_sites`; pnb maps a site's tile-periodic neighbours.
    """
    nt = cells // tile_cells
    K = nt ** 3
    small = ba.lattice_tables(tile_cells).nn1
    sites = np.empty((K, small.shape[0]), np.int64)
    pnb = np.empty((2 * cells ** 3, 8), np.int32)
    for J in range(K):
        ti, tj, tk = J // (nt * nt), (J // nt) % nt, J % nt
        idx = ba.window_sites(cells, tile_cells, (2 * tile_cells * ti, 2 * tile_cells * tj, 2 * tile_cells * tk))
        sites[J] = idx
        pnb[idx] = idx[small]
    sites.setflags(write=False)
    pnb.setflags(write=False)
    return sites, pnb


def pair_counts(configs, cells: int, sites=None) -> np.ndarray:
    """Ordered 1st-neighbour pair counts P[b, a, x] (species ids 0-3), int64 (B, 4, 4).

    ``sites`` (B, m) restricts the first site of the pair (a window); default all sites.
    The SRO of :func:`cgflow.micro.bcc_alloy.sro` is
    delta_ab = (P[a, b] - (8 N_a - P[a, 0]) / 3) / N_a.
    """
    c = ba.check_configuration(configs, cells, batch=True, name="configs")
    tab = ba.lattice_tables(cells)
    s = np.zeros((0, 0), np.int64) if sites is None else np.ascontiguousarray(sites, dtype=np.int64)
    P = np.zeros((c.shape[0], 4, 4), np.int64)
    _pair_counts_kernel(c, tab.neighbours, s, P)
    return P


_AB = np.array(((1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)))

#: The record arguments of :func:`_window_runs` when nothing is recorded.
_NO_RECORD = (np.zeros(0), np.zeros((0, 0, 4, 4), np.int64), np.zeros(0, np.int64), np.zeros((0, 0, 4, 4), np.int64),
              np.zeros((0, 0, 4), np.int64), np.zeros((0, 0, 0), np.int8))


def _sro_from_counts(P, n_atoms_in, norm) -> np.ndarray:
    """(B, 6): (P[a, b] - (8 n_a - P[a, 0]) / 3) / norm[a] (NaN where norm is 0)."""
    a, b = _AB[:, 0], _AB[:, 1]
    num = P[:, a, b] - (8.0 * n_atoms_in[:, a] - P[:, a, 0]) / 3.0
    den = norm[:, a]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _counts(c) -> np.ndarray:
    """Species counts (B, 4)."""
    return np.stack([(c == x).sum(axis=1) for x in range(4)], axis=1).astype(np.float64)


# ----------------------------------------------------------------------------- validation
def _check_boundary(boundary) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return boundary


def _check_duration(duration):
    if duration is None:
        return None
    d = float(duration) if isinstance(duration, Real) and not isinstance(duration, bool) else float("nan")
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    return d


def _check_record_times(record_times, duration) -> np.ndarray:
    """record_times as a float array (n,), n >= 1, strictly increasing within (0, duration); duration mode only."""
    if duration is None:
        raise ValueError("record_times needs a fixed duration (not the n_events mode)")
    try:
        rec = np.asarray(record_times, dtype=np.float64)
    except (TypeError, ValueError):
        rec = np.full(1, np.nan)
    if rec.ndim != 1 or rec.size == 0 or not np.all(np.isfinite(rec)) or np.any(np.diff(rec) <= 0) \
            or rec[0] <= 0 or rec[-1] >= duration:
        raise ValueError(f"record_times must be a non-empty sequence of times increasing strictly within "
                         f"(0, duration = {duration:g}), got {record_times!r}")
    return np.ascontiguousarray(rec)


def _check_window(window_voxels, cells: int, name: str = "window_voxels") -> int:
    w = ba.check_count(window_voxels, name, 4)
    if w % 2 or w > 2 * cells:
        raise ValueError(f"{name} = {w} must be even, >= 4 and at most the lattice side 2 * cells = {2 * cells}")
    return w


# ----------------------------------------------------------------------------- the model
class BccAlloyPatchModel:
    """The NbMoTa vacancy KMC (stand-in barriers, REFERENCE-002 §9) as a ``PatchModel`` (§0, §2, §3).

    Parameters
    ----------
    params : BccAlloyParams
        Temperature, lattice size (``params.cells`` is the large lattice the configurations
        must have) and barrier scaling lambda.
    window_voxels : int
        Side of the partial-evolution window in voxels (even, >= 4, <= 2 cells); default
        16 = 8 cells = 1024 sites (REFERENCE §2).
    increment_scale : {"vacancies", "tiles"}
        Factor of the ``frozen`` increment: the configuration's number of vacancies
        (default; unbiased, module docstring) or K (the glauber convention); equal when
        there is one vacancy per tile.
    confine : bool
        ``frozen`` mode only. False (default): the chosen vacancy moves freely through
        the real lattice (all other vacancies still frozen); the window then only
        defines before/after. True (REFERENCE §2 NB read literally: jumps inside the
        window): jumps out of the window are forbidden. The default is False because,
        MEASURED (tests/micro/test_bcc_alloy_patches.py,
        2000 K, 8192 sites, 8 vacancies): confinement biases the drift low once the
        vacancy has explored the window (blocked jumps at the walls lower its rate):
        unbiased at 3e-10 s, about -20 % on delta_MoMo at 8e-10 s (the duration of the
        authors' 124 jumps) and 2e-9 s, while ``confine=False`` and ``"periodic"`` stay
        within 4 SE of the whole-lattice drift.
    tile_windows : bool
        ``periodic`` mode only: cut out the aligned tile that holds the chosen vacancy
        (``window_voxels`` must be twice the tile size) instead of the window centred on it.
        For large states that are K independent small systems side by side (:func:`upsample`
        with ``independent=True``): each tile is then exactly its small system, evolved as such.

    Attributes
    ----------
    observable_names : tuple
        The six SRO parameters (NbNb, NbMo, NbTa, MoMo, MoTa, TaTa) (§1c).
    """

    observable_names = ba.SRO_PAIRS

    def __init__(self, params: ba.BccAlloyParams, window_voxels: int = 16, increment_scale: str = "vacancies",
                 confine: bool = False, tile_windows: bool = False):
        if not isinstance(params, ba.BccAlloyParams):
            raise ValueError(f"params must be a BccAlloyParams, got {type(params).__name__}")
        self.params = params
        self.window_voxels = _check_window(window_voxels, params.cells)
        if increment_scale not in _SCALES:
            raise ValueError(f"increment_scale must be one of {_SCALES}, got {increment_scale!r}")
        self.increment_scale = increment_scale
        if not isinstance(confine, (bool, np.bool_)):
            raise ValueError(f"confine must be a bool, got {confine!r}")
        self.confine = bool(confine)
        if not isinstance(tile_windows, (bool, np.bool_)):
            raise ValueError(f"tile_windows must be a bool, got {tile_windows!r}")
        self.tile_windows = bool(tile_windows)

    def __repr__(self):
        return (f"BccAlloyPatchModel({self.params!r}, window_voxels={self.window_voxels}, "
                f"increment_scale={self.increment_scale!r}, confine={self.confine}, tile_windows={self.tile_windows})")

    @property
    def cells(self) -> int:
        return self.params.cells

    def _configs(self, configs, name="configs"):
        c = ba.check_configuration(configs, self.cells, batch=True, name=name)
        if c.shape[0] < 1:
            raise ValueError(f"{name} must hold at least one configuration")
        return c

    def _checked_configs(self, configs):
        """:meth:`_configs` with a fast path: a C-contiguous int8 (B, N) array with ids in 0-3 is returned as is
        (what :func:`~cgflow.micro.bcc_alloy.check_configuration` returns for it, at ~1/50 of its cost); anything
        else goes through :meth:`_configs` (its conversions and error messages)."""
        arr = configs
        if isinstance(arr, np.ndarray) and arr.dtype == np.int8 and arr.ndim == 2 and arr.shape[0] >= 1 \
                and arr.shape[1] == 2 * self.cells ** 3 and arr.flags.c_contiguous and arr.min() >= 0 \
                and arr.max() <= 3:
            return arr
        return self._configs(configs)

    def _tiles(self, tile_size) -> int:
        tc = ba.check_count(tile_size, "tile_size", 2)
        if self.cells % tc:
            raise ValueError(f"tile_size = {tc} cells must divide cells = {self.cells} "
                             "(the lattice is not divisible into tiles)")
        return (self.cells // tc) ** 3

    # -- PatchModel ---------------------------------------------------------------------
    def tile_observables(self, configs, tile_size: int, boundary: str = "frozen") -> np.ndarray:
        """SRO of every aligned cubic tile of ``tile_size`` cells per side, (B, K, 6) (REFERENCE §0, §2).

        ``frozen``: the additive form delta^J_ab = K S^J_ab / N_a (module docstring);
        the mean over the K tiles is exactly the lattice's :func:`~cgflow.micro.bcc_alloy.sro`.
        ``periodic``: each tile's own ratio SRO as an isolated periodic lattice (the
        authors' block SRO, not additive). NaN where a species is absent.

        Numba kernels (:func:`_tile_sro_frozen_kernel`, :func:`_tile_sro_periodic_kernel`),
        bitwise equal to the numpy reference :meth:`_tile_observables_reference` (tested);
        MEASURED (2 shared cores, 1024 states of 8192 sites): 70-100 us per state, about the
        whole-lattice :func:`cgflow.micro.bcc_alloy.sro` kernel's cost (the reference: 1.2-1.7 ms).
        """
        boundary = _check_boundary(boundary)
        c = self._checked_configs(configs)
        K = self._tiles(tile_size)
        tc = int(tile_size)
        cells = self.cells
        out = np.empty((c.shape[0], K, 6))
        if boundary == "periodic":
            sites, pnb = _periodic_tile_tables(cells, tc)
            _tile_sro_periodic_kernel(c, sites, pnb, out)
        else:
            _tile_sro_frozen_kernel(c, ba.lattice_tables(cells).nn1, ba.site_tiles(cells, tc), K, out)
        return out

    def _tile_observables_reference(self, configs, tile_size: int, boundary: str = "frozen") -> np.ndarray:
        """The numpy implementation of :meth:`tile_observables` (reference for the kernels' tests)."""
        boundary = _check_boundary(boundary)
        c = self._configs(configs)
        K = self._tiles(tile_size)
        tc = int(tile_size)
        cells = self.cells
        B = c.shape[0]
        nt = cells // tc
        if boundary == "periodic":
            out = np.empty((B, K, 6))
            for J in range(K):
                ti, tj, tk = J // (nt * nt), (J // nt) % nt, J % nt
                idx = ba.window_sites(cells, tc, (2 * tc * ti, 2 * tc * tj, 2 * tc * tk))
                out[:, J] = ba.sro(c[:, idx], tc)
            return out
        tab = ba.lattice_tables(cells)
        nbr = c[:, tab.nn1]  # (B, N, 8)
        n_at = (nbr != 0).sum(-1)  # m(i)
        key = (np.arange(B)[:, None] * K + ba.site_tiles(cells, tc)[None, :]).ravel()
        N_a = _counts(c)
        out = np.empty((B, K, 6))
        for col, (a, b) in enumerate(_AB):
            w3 = np.where(c == a, 3 * (nbr == b).sum(-1) - n_at, 0).ravel()  # 3 (n_b - m/3), integer
            s3 = np.bincount(key, weights=w3, minlength=B * K).reshape(B, K)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[..., col] = np.where(N_a[:, a:a + 1] > 0, K * s3 / (3.0 * N_a[:, a:a + 1]), np.nan)
        return out

    def _pick(self, n_vac, tiles, K, rng):
        """Ordinal (in site order) of the evolved vacancy per configuration."""
        B = n_vac.shape[0]
        if np.any(n_vac == 0):
            raise ValueError("configs: every configuration needs at least one vacancy (species id 0)")
        if tiles is None:
            return np.minimum(np.floor(rng.random(B) * n_vac), n_vac - 1).astype(np.int64)
        pick = np.asarray(tiles)
        if pick.shape != (B,) or not np.issubdtype(pick.dtype, np.integer) or np.any(pick < 0) \
                or np.any(pick >= K):
            raise ValueError(f"tiles must hold one index in [0, K = {K}) per configuration, got {tiles!r}")
        if np.any(n_vac != K):
            raise ValueError(f"tiles: a given tile index selects the tile-th vacancy, which is a uniform choice "
                             f"only with one vacancy per tile (n_vac = K = {K}); got n_vac in "
                             f"[{n_vac.min()}, {n_vac.max()}] - pass tiles=None to draw a vacancy uniformly")
        return pick.astype(np.int64)

    def evolve_tiles(self, configs, tile_size: int, tiles, n_events: int | None = 124, boundary: str = "frozen",
                     rng=None, duration: float | None = None, return_tiles: bool = False, record_times=None):
        """Partial evolution in a window around one vacancy per configuration (REFERENCE §2 NB).

        Parameters
        ----------
        configs : array (B, N) of species ids
            Not modified.
        tile_size : int
            Tile side in cells (defines K = (cells / tile_size)**3 for ``tiles`` and the
            ``"tiles"`` increment scale).
        tiles : array (B,) of int or None
            None: the evolved vacancy is drawn uniformly per configuration. Otherwise
            tiles[b] in [0, K) selects the tiles[b]-th vacancy in site order (needs
            n_vac = K, one vacancy per tile, so that a uniform tile is a uniform vacancy).
        n_events : int
            Jumps of the window's vacancy (default 124); ignored with ``duration``.
        boundary : {"frozen", "periodic"}
            Module docstring (``frozen`` honours the model's ``confine``).
        rng : numpy.random.Generator
        duration : float, optional
            Run every window for exactly this many seconds (dt = duration).
        return_tiles : bool
            Also return the evolved windows (B, 2 (window_voxels/2)**3), sites in the order
            of ``bcc_alloy.window_sites(cells, window_voxels // 2, origin)`` with
            origin = vacancy voxel - window_voxels/2.
        record_times : sequence of float, optional
            n >= 1 times in seconds, strictly increasing within (0, duration) (only with
            ``duration``; ValueError in the ``n_events`` mode), at which the *same* run is
            also observed: the state at time s is the one after the last jump at a time
            <= s (rejection-free KMC is piecewise constant), i.e. exactly the end state
            of a run of duration s from the same random stream. Recording reads no
            random numbers: before, after, increment, dt (and windows) are bitwise those
            of the run without ``record_times``.

        Returns
        -------
        before, after : ndarray (B, 6)
            Window SRO before and after (frozen: additive form; periodic: torus ratio).
        increment : ndarray (B, 6)
            frozen: scale x (change of the whole-lattice SRO), scale = n_vac or K;
            periodic: after - before.
        dt : ndarray (B,)
            Elapsed seconds (inf if a window's vacancy could not move in the jump mode).
        windows : ndarray of int8 (B, n_window)
            Only with ``return_tiles``.
        increment_at, after_at : ndarray (B, n, 6)
            Only with ``record_times`` (after ``windows`` if that is returned; the
            convention of :mod:`cgflow.micro.glauber`): the increment and the window SRO
            (same form as before/after) at each record time of the same run.
        """
        boundary = _check_boundary(boundary)
        c0 = self._configs(configs)
        K = self._tiles(tile_size)
        if self.tile_windows and (boundary != "periodic" or self.window_voxels != 2 * int(tile_size)):
            raise ValueError(f"tile_windows needs boundary='periodic' and window_voxels = 2 tile_size = "
                             f"{2 * int(tile_size)}, got {boundary!r} and {self.window_voxels}")
        rng = ba.check_rng(rng)
        dur = _check_duration(duration)
        rec = _NO_RECORD[0] if record_times is None else _check_record_times(record_times, dur)
        n_rec = rec.shape[0]
        nj = -1 if dur is not None else ba.check_count(n_events, "n_events")
        cells = self.cells
        n = 2 * cells
        W = self.window_voxels
        wc = W // 2
        B = c0.shape[0]
        n_vac = (c0 == 0).sum(axis=1)
        pick = self._pick(n_vac, tiles, K, rng)
        tab = ba.lattice_tables(cells)
        wv = ba.lattice_tables(wc).voxels
        dP = np.zeros((B, 4, 4), np.int64)
        dt = np.zeros(B)
        njumps = np.zeros(B, np.int64)
        rt = self.params.kernel_constants()
        if boundary == "frozen":
            n_atoms = np.zeros((B, 4), np.int64)
            win_atoms = np.zeros((B, 4), np.int64)
            P_before = np.zeros((B, 4, 4), np.int64)
            P_after = np.zeros((B, 4, 4), np.int64)
            vac = np.zeros(B, np.int64)
            windows = np.zeros((B if return_tiles else 0, wv.shape[0]), np.int8)
            win_after = np.zeros((B, 4), np.int64)
            rec_dP = np.zeros((B, n_rec, 4, 4), np.int64)
            rec_P = np.zeros((B, n_rec, 4, 4), np.int64)
            rec_na = np.zeros((B, n_rec, 4), np.int64)
            _frozen_batch(c0, pick, wv.astype(np.int64), ba.voxel_sites(cells), tab.neighbours, tab.voxels, W,
                          W if self.confine else n,
                          ba._D1Q, ba._D2Q, ba._U1, ba._U2, ba._CORR, rt, nj, -1.0 if dur is None else dur, n_atoms,
                          win_atoms,
                          P_before, P_after, dP, dt, njumps, vac, windows, rng, win_after, rec, rec_dP, rec_P, rec_na)
            N_a = n_atoms.astype(np.float64)
            norm = N_a * (wv.shape[0] / c0.shape[1])
            before = _sro_from_counts(P_before, win_atoms, norm)
            after = _sro_from_counts(P_after, win_after, norm)  # the window's own atoms after the run
            a, b = _AB[:, 0], _AB[:, 1]
            scale = n_vac.astype(float) if self.increment_scale == "vacancies" else np.full(B, float(K))
            with np.errstate(invalid="ignore", divide="ignore"):
                d_sro = (dP[:, a, b] + dP[:, a, 0] / 3.0) / N_a[:, a]
                # the same elementwise operations per record: bitwise the end of a run of that duration
                d_sro_at = (rec_dP[:, :, a, b] + rec_dP[:, :, a, 0] / 3.0) / N_a[:, None, a]
            incr = scale[:, None] * d_sro
            incr_at = scale[:, None, None] * d_sro_at
            after_at = _sro_from_counts(rec_P.reshape(B * n_rec, 4, 4), rec_na.reshape(B * n_rec, 4),
                                        np.repeat(norm, n_rec, axis=0)).reshape(B, n_rec, 6)
        else:
            small = ba.lattice_tables(wc)
            cols = np.nonzero(c0 == 0)[1]  # row-major: every row's vacancies in site order, rows in turn
            vac = cols[np.concatenate([[0], np.cumsum(n_vac)[:-1]]) + pick].astype(np.int64)
            if self.tile_windows:  # the vacancy's own aligned tile
                org = (tab.voxels[vac] // W) * W
                loc = tab.voxels[vac] - org
                v_loc = ba.voxel_sites(wc)[loc[:, 0], loc[:, 1], loc[:, 2]].astype(np.int64)
            else:  # the window centred on the vacancy
                org = (tab.voxels[vac] - W // 2) % n
                centre = int(ba.voxel_sites(wc)[W // 2 % W, W // 2 % W, W // 2 % W])
                v_loc = np.full(B, centre, np.int64)
            x = (wv[None, :, :] + org[:, None, :]) % n
            idx = ba.voxel_sites(cells)[x[..., 0], x[..., 1], x[..., 2]].astype(np.int64)
            win = np.ascontiguousarray(c0[np.arange(B)[:, None], idx])
            before = _torus_sro(win, wc)
            rec_cfg = np.zeros((B if n_rec else 0, n_rec, win.shape[1]), np.int8)  # the torus at the record times
            _window_runs(win, v_loc, small.neighbours, small.voxels, np.zeros((B, 3), np.int64), W, W, ba._D1Q,
                         ba._D2Q, ba._U1, ba._U2, ba._CORR, rt, nj, -1.0 if dur is None else dur, dP, dt, njumps,
                         np.empty((win.shape[1], 4), np.int32), np.zeros(win.shape[1], np.int64), 1, rng,
                         rec, np.zeros((B, n_rec, 4, 4), np.int64), _NO_RECORD[2], _NO_RECORD[3], _NO_RECORD[4],
                         rec_cfg)
            after = _torus_sro(win, wc)
            incr = after - before
            windows = win
            if n_rec:
                after_at = _torus_sro(rec_cfg.reshape(B * n_rec, -1), wc).reshape(B, n_rec, 6)
                incr_at = after_at - before[:, None, :]
        out = (before, after, incr, dt) + ((windows,) if return_tiles else ())
        return out + ((incr_at, after_at) if n_rec else ())

    def evolve_full(self, configs, n_events: int | None, rng, duration: float | None = None):
        """Whole-lattice runs (all vacancies move, REFERENCE §1c): (z0 (B, 6), z1 (B, 6), dt (B,)).

        ``n_events`` jumps per configuration, or exactly ``duration`` seconds.
        """
        c = self._configs(configs)
        rng = ba.check_rng(rng)
        dur = _check_duration(duration)
        if dur is None:
            n_events = ba.check_count(n_events, "n_events")
        out = np.empty_like(c)
        dt = np.empty(c.shape[0])
        for b in range(c.shape[0]):
            if dur is None:
                out[b], dt[b], _ = ba.run_jumps(c[b], n_events, self.params, rng)
            else:
                out[b], dt[b], _ = ba.run_time(c[b], dur, self.params, rng)
        return ba.sro(c, self.cells), ba.sro(out, self.cells), dt

    def refine(self, configs, rng=None) -> np.ndarray:
        """Twice the linear size by tiling 2 x 2 x 2 blocks (REFERENCE §3; no relaxation, no relabelling).

        Without ``rng`` every block is the configuration itself (the same periodic
        configuration on a larger torus: SRO unchanged, 8 times the vacancies); with
        ``rng`` the blocks are drawn from the batch and randomly shifted as in
        :func:`upsample` (vacancies moved to block centres, exact composition). The
        input may have any size cs >= 2 cells per side; the output has 2 cs.
        """
        arr = np.asarray(configs)
        if arr.ndim != 2:
            raise ValueError(f"configs must have shape (B, N), got {arr.shape}")
        cs = _cells_of(arr.shape[1], "configs")
        c = ba.check_configuration(arr, cs, batch=True, name="configs")
        if rng is None:  # every block the configuration itself, unshifted
            B = c.shape[0]
            return _tile_blocks(c, np.repeat(np.arange(B)[:, None], 8, axis=1), np.zeros((B, 8, 3), np.int64), 2 * cs)
        return upsample(c, 2, rng, n_configs=c.shape[0], params=None)

    def relax_windows(self, configs, window: int, stride: int, n_events: int, boundary: str, rng,
                      duration: float | None = None, offset: int = 0):
        """Sequential local relaxation (REFERENCE §3): ``window``-voxel windows at origins offset + stride (i, j, k).

        Windows are processed in row-major order; in each window every vacancy it holds
        (in site order at the window's start) makes ``n_events`` jumps (or runs ``duration``
        seconds) confined to the window with frozen surroundings. Only ``boundary="frozen"``.

        Returns (configs (B, N) new array, elapsed seconds summed over all runs (B,)).
        """
        if boundary != "frozen":
            raise ValueError(f"relax_windows implements boundary='frozen' only, got {boundary!r}")
        c = self._configs(configs).copy()
        return _relax(c, self.params, window, stride, n_events, rng, duration, offset)


def _cells_of(N: int, name: str) -> int:
    cs = round((N / 2) ** (1 / 3))
    if cs < 2 or 2 * cs**3 != N:
        raise ValueError(f"{name} must have 2 cells**3 sites per configuration (cells >= 2), got {N}")
    return cs


def _relax(c, params, window, stride, n_events, rng, duration, offset):
    cells = params.cells
    n = 2 * cells
    W = _check_window(window, cells, "window")
    st = ba.check_count(stride, "stride", 1)
    if n % st:
        raise ValueError(f"stride = {st} voxels must divide the lattice side 2 * cells = {n}")
    off = ba.check_count(offset, "offset")
    rng = ba.check_rng(rng)
    dur = _check_duration(duration)
    nj = -1 if dur is not None else ba.check_count(n_events, "n_events")
    tab = ba.lattice_tables(cells)
    rt = params.kernel_constants()
    m = n // st
    elapsed = np.zeros(c.shape[0])
    G = np.empty((c.shape[1], 4), np.int32)
    stamp = np.zeros(c.shape[1], np.int64)
    ep = 0
    for b in range(c.shape[0]):
        row = c[b:b + 1]
        for a in range(m ** 3):
            o = np.array([off + st * (a // (m * m)), off + st * ((a // m) % m), off + st * (a % m)]) % n
            vs = np.flatnonzero(row[0] == 0)
            rel = (tab.voxels[vs] - o) % n
            inside = vs[(rel < W).all(axis=1)]
            for v in inside:
                dP = np.zeros((1, 4, 4), np.int64)
                dt = np.zeros(1)
                njs = np.zeros(1, np.int64)
                ep += 1
                _window_runs(row, np.array([v], np.int64), tab.neighbours, tab.voxels, o[None, :].astype(np.int64),
                             W, n, ba._D1Q, ba._D2Q, ba._U1, ba._U2, ba._CORR, rt, nj, -1.0 if dur is None else dur,
                             dP, dt, njs, G, stamp, ep, rng, *_NO_RECORD)
                if math.isfinite(dt[0]):
                    elapsed[b] += dt[0]
    return c, elapsed


def dress_vacancies(configs, params: ba.BccAlloyParams, block_cells: int, jumps: int, rng) -> np.ndarray:
    """Let every vacancy settle into its neighbourhood: about ``jumps`` jumps of each vacancy inside its block.

    :func:`upsample` (mixed tiling) puts one vacancy at each block centre *after* the seam
    relaxation, so its neighbours are whatever atoms were there: the first jumps of a window
    run then reorder them (vacancy-solute binding, e.g. V-Mo +0.15 eV in the stand-in model),
    an offset of the SRO increment that is no drift of the alloy but a window run counts it
    K times. Each vacancy runs for the fixed time ``jumps / mean_random_rate(params)``, not
    for a fixed number of jumps: a fixed number of jumps samples the jump chain, whose law
    weights a state by the vacancy's total rate, and leaves an offset of its own (measured
    at 800 K on exact replicas, 8-unit windows: mean delta_MoMo increment -0.0010 +- 0.0003
    after 64 jumps, +0.0000 +- 0.0003 after a fixed 8 units, +0.0001 undressed). Windows
    aligned with the blocks (side 2 ``block_cells`` voxels, the vacancy frozen-boundary runs
    of :func:`_relax`); composition and vacancy count are unchanged.

    Parameters
    ----------
    configs : array (B, N) of species ids
        Modified in place and returned.
    params : BccAlloyParams
        Temperature, lambda and lattice (``cells``) of the runs.
    block_cells : int
        Side of the blocks in cells (the small systems': one vacancy each).
    jumps : int
        About this many jumps per vacancy, as a duration (0: nothing is done).
    rng : numpy.random.Generator
    """
    c = np.asarray(configs)
    if ba.check_count(jumps, "jumps") == 0:
        return c
    side = 2 * ba.check_count(block_cells, "block_cells", 1)
    out, _ = _relax(c, params, side, side, None, rng, jumps / ba.mean_random_rate(params), 0)
    return out


# ----------------------------------------------------------------------------- upsampling
def _equimolar_targets(n_atoms: int) -> np.ndarray:
    """Counts of Nb, Mo, Ta as in :func:`cgflow.micro.bcc_alloy.random_configuration` (remainder Nb, then Mo)."""
    return np.array([n_atoms // 3 + (1 if x < n_atoms % 3 else 0) for x in range(3)])


def _place_vacancies_and_relabel(c, centres, rng):
    """In place: one vacancy at each centre site (its atom takes an old vacancy site), then exact equimolar."""
    N = c.shape[0]
    old = np.flatnonzero(c == 0)
    is_centre = np.zeros(N, bool)
    is_centre[centres] = True
    free = old[~is_centre[old]]  # old vacancy sites that need an atom
    moved = centres[c[centres] != 0]  # centre atoms that must leave
    species = rng.permutation(c[moved])
    c[centres] = 0
    k = min(free.size, species.size)
    free = rng.permutation(free)
    c[free[:k]] = species[:k]
    unassigned = list(free[k:])  # more old vacancies than displaced atoms: filled from the deficits
    target = _equimolar_targets(N - centres.size)
    have = np.array([(c == x).sum() for x in (1, 2, 3)])
    deficit = []
    for x in range(3):
        extra = have[x] - target[x]
        if extra > 0:
            sites = np.flatnonzero(c == x + 1)
            unassigned.extend(rng.choice(sites, size=extra, replace=False).tolist())
        elif extra < 0:
            deficit.extend([x + 1] * (-extra))
    if len(deficit) != len(unassigned):  # pragma: no cover - bookkeeping invariant
        raise RuntimeError("relabelling bookkeeping failed")
    if unassigned:
        c[np.asarray(unassigned, dtype=np.int64)] = rng.permutation(np.asarray(deficit, dtype=np.int8))


def _tile_blocks(small, src, shifts, cells: int) -> np.ndarray:
    """(B, N) lattices of ``cells`` cells whose aligned block J of output b is small[src[b, J]] shifted cyclically by
    shifts[b, J] voxels: large voxel V holds small voxel (V + shift) mod 2 cs (one gather per output)."""
    cs = _cells_of(small.shape[1], "small_configs")
    vox = ba.lattice_tables(cells).voxels.astype(np.int64)
    block_of = ba.site_tiles(cells, cs)  # block J = (ti * f + tj) * f + tk, as the blocks of upsample
    grid = ba.voxel_sites(cs)
    big = np.empty((src.shape[0], 2 * cells**3), np.int8)
    for b in range(src.shape[0]):
        q = (vox + shifts[b][block_of]) % (2 * cs)
        big[b] = small[src[b][block_of], grid[q[:, 0], q[:, 1], q[:, 2]]]
    return big


def upsample(small_configs, factor: int, rng, n_configs: int | None = None, params=None, relax_jumps: int = 7,
             relax_window: int = 16, relax_offset: int = 8, shift: bool = True, replicate: bool = False,
             independent: bool = False) -> np.ndarray:
    """Hierarchical upsampling of the alloy by tiling (REFERENCE-002 §3 NB).

    Parameters
    ----------
    small_configs : array (M, N_s) of species ids
        The pool of small configurations (N_s = 2 cs**3 sites); blocks are drawn from it
        uniformly with replacement (the authors draw from 10 seeds x +-10 snapshots around
        a shared random time: pass such a pool).
    factor : int
        >= 2; the output has cells = factor * cs, K = factor**3 blocks.
    rng : numpy.random.Generator
    n_configs : int, optional
        Number of large configurations (default M).
    params : BccAlloyParams, optional
        Temperature and lambda of the relaxation, its ``cells`` must be factor * cs.
        None: no relaxation (the authors' L = 32, 64 runs, §3).
    relax_jumps : int
        Jumps per vacancy per relaxation window (the authors' 7; §8.6: their loop makes 6).
    relax_window, relax_offset : int
        Window side in voxels (16) and the offset of the window grid from the block grid
        (8: windows centred on block corners, straddling the seams); the stride is the
        block side 2 cs voxels.
    shift : bool
        Shift every block cyclically by a random even voxel offset (default True).
    replicate : bool
        All K blocks of an output are one small configuration with one shift: an exact
        periodic replica (the periodic small lattice tiled K times) instead of K independent
        draws.
        Below the ordering temperature independently ordered blocks meet at antiphase seams
        that no short relaxation heals (measured at 1200 K: small snapshots delta_MoMo -0.51,
        mixed tilings -0.43); a replica keeps the small system's order. A replica has no
        seams, so it is not relaxed, and it keeps the small system's vacancies where they
        are, in the surroundings they have settled into, with the small system's composition
        K times: moving a vacancy to the block centre (its atom to the old vacancy site) and
        relabelling atoms put defects into an ordered replica whose healing in the first
        jumps of every window run is an offset of the increment, not a drift (measured at
        800 K: the mean delta_MoMo increment of an 8-unit window at dt/4 equalled the one at
        dt in ordered states, -0.0014). Default False (the authors').
    independent : bool
        Mixed tiling, each block kept whole as its small system: no relaxation, no vacancy
        moved, no relabelling (every block keeps its vacancies and composition). With
        tile-aligned periodic windows (``BccAlloyPatchModel(tile_windows=True)``) the large
        state is K independent small systems side by side, each evolved as itself; nothing
        reads the seams. Why (measured at 800 K on 64 outputs of same-time pools): the seams of
        relaxed mixed tilings join unrelated blocks, and their first-neighbour bonds lower the
        order of the upsampled states (delta_MoMo +0.17 above the pool's mean after 2000
        units, +0.26 after 16 000) -- defects whose healing in the window runs is an ordering
        offset, not the large system's drift. Default False.

    Returns
    -------
    ndarray of int8 (n_configs, 2 (factor cs)**3)
        Mixed tiling: exactly K vacancies, one at each block centre (voxel 2 cs b + cs per
        axis), and the exact equimolar split of the N - K atoms (remainder to Nb, then Mo).
        Replica: the small configuration K times (its vacancies in every block).
        Independent: K small configurations side by side, each whole.

    Steps (mixed): tile and shift; relax (vacancies where the blocks had them); move one
    vacancy to each block centre (the centre atom takes an old vacancy site, chosen at
    random); relabel the fewest random atoms to reach the exact composition. Replica: tile
    and shift only.
    """
    arr = np.asarray(small_configs)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"small_configs must have shape (M, N_s) with M >= 1, got {arr.shape}")
    cs = _cells_of(arr.shape[1], "small_configs")
    small = ba.check_configuration(arr, cs, batch=True, name="small_configs")
    f = ba.check_count(factor, "factor", 2)
    rng = ba.check_rng(rng)
    B = small.shape[0] if n_configs is None else ba.check_count(n_configs, "n_configs", 1)
    cells = f * cs
    K = f ** 3
    if params is not None:
        if not isinstance(params, ba.BccAlloyParams) or params.cells != cells:
            raise ValueError(f"params must be a BccAlloyParams with cells = factor * cs = {cells}, got {params!r}")
        ba.check_count(relax_jumps, "relax_jumps")
        _check_window(relax_window, cells, "relax_window")
    if replicate:  # one source and one shift per output, the same for all its blocks
        src = np.repeat(rng.integers(0, small.shape[0], size=B)[:, None], K, axis=1)
        one = 2 * rng.integers(0, cs, size=(B, 3)) if shift else np.zeros((B, 3), np.int64)
        return _tile_blocks(small, src, np.repeat(one[:, None, :], K, axis=1), cells)
    src = rng.integers(0, small.shape[0], size=(B, K))
    shifts = 2 * rng.integers(0, cs, size=(B, K, 3)) if shift else np.zeros((B, K, 3), np.int64)
    big = _tile_blocks(small, src, shifts, cells)
    if independent:
        return big
    if params is not None and relax_jumps > 0:
        big, _ = _relax(big, params, relax_window, 2 * cs, relax_jumps, rng, None, relax_offset)
    blocks = [ba.window_sites(cells, cs, (2 * cs * (J // (f * f)), 2 * cs * ((J // f) % f), 2 * cs * (J % f)))
              for J in range(K)]
    centres = np.array([b_[int(np.flatnonzero((ba.lattice_tables(cs).voxels == cs).all(axis=1))[0])]
                        for b_ in blocks], dtype=np.int64)
    for b in range(B):
        _place_vacancies_and_relabel(big[b], centres, rng)
    return big
