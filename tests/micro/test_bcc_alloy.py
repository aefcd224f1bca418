"""Tests of cgflow.micro.bcc_alloy: geometry, stand-in energy and barriers, KMC contracts, equilibrium SRO.

Statistical tests use fixed seeds; tolerances are 4 computed standard errors (or
binomial SEs), and each test also checks that it can fail (a wrong temperature is
rejected by the same data). The equilibrium reference is an independent Metropolis
atom-swap Monte Carlo written here (own bond sums, own SRO loop) for the same
lam-scaled energy (REFERENCE-002 §9).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from cgflow.micro import bcc_alloy as ba

from ..oracles import chi2_pvalue, make_rng


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("cells", [2, 3, 4, 5, 8])
def test_neighbour_tables(cells):
    tab = ba.lattice_tables(cells)
    N = 2 * cells**3
    n = 2 * cells
    assert tab.nn1.shape == (N, 8) and tab.nn2.shape == (N, 6)
    assert tab.nn1.dtype == np.int32 and tab.nn2.dtype == np.int32
    assert np.array_equal(tab.neighbours[:, :8], tab.nn1) and np.array_equal(tab.neighbours[:, 8:14], tab.nn2)
    assert tab.neighbours.ctypes.data % 64 == 0 and tab.neighbours.flags.c_contiguous
    v = tab.voxels
    # sites are the voxels with all-even or all-odd coordinates, each once
    assert np.all((v % 2 == v[:, :1] % 2).all(axis=1))
    assert len({tuple(x) for x in v}) == N
    grid = ba.voxel_sites(cells)
    assert (grid >= 0).sum() == N and np.array_equal(grid[v[:, 0], v[:, 1], v[:, 2]], np.arange(N))
    # offsets, distinctness, symmetry
    for table, offs, opp in ((tab.nn1, ba.NN1_OFFSETS, lambda d: 7 - d), (tab.nn2, ba.NN2_OFFSETS, lambda d: d ^ 1)):
        for d, o in enumerate(offs):
            assert np.array_equal((v[table[:, d]] - v) % n, np.broadcast_to(o % n, v.shape))
            assert np.array_equal(table[table[:, d], opp(d)], np.arange(N))
    assert all(len(set(row)) == 8 for row in tab.nn1.tolist())
    assert not np.any(tab.nn1 == np.arange(N)[:, None]) and not np.any(tab.nn2 == np.arange(N)[:, None])
    distinct2 = {len(set(row)) for row in tab.nn2.tolist()}
    # cells = 2: +2 and -2 are the same periodic image (3 distinct 2nd neighbours, listed twice)
    assert distinct2 == ({3} if cells == 2 else {6})
    # 1st and 2nd shells are disjoint; distances sqrt(3) a/2 and a (minimum image)
    assert not any(set(a) & set(b) for a, b in zip(tab.nn1.tolist(), tab.nn2.tolist()))
    if cells >= 3:
        d1 = (v[tab.nn1] - v[:, None, :] + cells) % n - cells
        d2 = (v[tab.nn2] - v[:, None, :] + cells) % n - cells
        h = ba.A_ANGSTROM / 2
        np.testing.assert_allclose(np.linalg.norm(d1 * h, axis=-1), math.sqrt(3) * ba.A_ANGSTROM / 2)
        np.testing.assert_allclose(np.linalg.norm(d2 * h, axis=-1), ba.A_ANGSTROM)


def test_sizes_of_the_paper():
    assert [ba.lattice_tables(c).sites for c in (8, 16, 32)] == [1024, 8192, 65536]
    assert ba.lattice_tables(8) is ba.lattice_tables(8)  # built once per size
    assert not ba.lattice_tables(8).nn1.flags.writeable


def test_window_sites_translate_the_lattice():
    cells = 6
    tab = ba.lattice_tables(cells)
    assert np.array_equal(ba.window_sites(cells, cells, (0, 0, 0)), np.arange(tab.sites))
    for origin in ((2, 4, 10), (1, 3, 11), (-1, -3, 5)):
        idx = ba.window_sites(cells, cells, origin)  # a whole-lattice translation: a permutation ...
        assert np.array_equal(np.sort(idx), np.arange(tab.sites))
        np.testing.assert_array_equal(idx[tab.nn1], tab.nn1[idx])  # ... that commutes with the neighbours
        np.testing.assert_array_equal(idx[tab.nn2], tab.nn2[idx])
        np.testing.assert_array_equal((tab.voxels[idx] - tab.voxels - origin) % (2 * cells), 0)
    small = ba.lattice_tables(3)
    idx = ba.window_sites(cells, 3, (5, 1, 3))
    assert idx.size == 54 and np.unique(idx).size == 54
    np.testing.assert_array_equal((tab.voxels[idx] - small.voxels - (5, 1, 3)) % 12, 0)
    # an SRO-preserving translation; writing a window back
    c = ba.random_configuration(cells, 2, make_rng(25))
    np.testing.assert_allclose(ba.sro(c[ba.window_sites(cells, cells, (3, 3, 7))], cells), ba.sro(c, cells))
    big = c.copy()
    big[idx] = 3
    assert (big != c).sum() == (c[idx] != 3).sum()
    for bad in ((1, 0, 0), (0.0, 0, 0), (0, 0)):
        with pytest.raises(ValueError, match="origin"):
            ba.window_sites(cells, 3, np.array(bad))
    with pytest.raises(ValueError, match="window_cells"):
        ba.window_sites(cells, 7, (0, 0, 0))


# ----------------------------------------------------------------------------- configurations
def test_random_configuration_equimolar_and_reproducible():
    c = ba.random_configuration(8, 1, make_rng(12, 1))
    assert c.dtype == np.int8 and c.shape == (1024,)
    assert np.bincount(c, minlength=4).tolist() == [1, 341, 341, 341]
    c8 = ba.random_configuration(16, 8, make_rng(12, 2), n_configs=3)
    assert c8.shape == (3, 8192)
    for row in c8:
        assert np.bincount(row, minlength=4).tolist() == [8, 2728, 2728, 2728]
    assert not np.array_equal(c8[0], c8[1])
    odd = ba.random_configuration(4, 1, make_rng(0))  # 127 atoms: remainder to Nb
    assert np.bincount(odd, minlength=4).tolist() == [1, 43, 42, 42]
    assert np.array_equal(ba.random_configuration(8, 3, make_rng(5)), ba.random_configuration(8, 3, make_rng(5)))


def test_bad_input_names_the_problem():
    rng = make_rng(0)
    with pytest.raises(ValueError, match="cells"):
        ba.lattice_tables(1)
    with pytest.raises(ValueError, match="cells"):
        ba.BccAlloyParams(1000.0, 1)
    with pytest.raises(ValueError, match="temperature"):
        ba.BccAlloyParams(0.0, 4)
    with pytest.raises(ValueError, match="temperature"):
        ba.BccAlloyParams(float("nan"), 4)
    with pytest.raises(ValueError, match="lam"):
        ba.BccAlloyParams(1000.0, 4, lam=-0.5)
    with pytest.raises(ValueError, match="n_vacancies"):
        ba.random_configuration(4, 0, rng)
    with pytest.raises(ValueError, match="n_vacancies"):
        ba.random_configuration(4, 129, rng)
    with pytest.raises(ValueError, match="rng"):
        ba.random_configuration(4, 1, 0)
    p = ba.BccAlloyParams(1000.0, 4)
    c = ba.random_configuration(4, 1, rng)
    bad = c.copy()
    bad[3] = 5
    with pytest.raises(ValueError, match="unknown species id 5"):
        ba.run_jumps(bad, 10, p, rng)
    with pytest.raises(ValueError, match="unknown species id -1"):
        ba.sro(np.where(c == 1, -1, c), 4)
    with pytest.raises(ValueError, match="no vacancy"):
        ba.run_jumps(np.where(c == 0, 1, c), 10, p, rng)
    with pytest.raises(ValueError, match="shape"):
        ba.run_jumps(c[:-1], 10, p, rng)
    with pytest.raises(ValueError, match="dtype"):
        ba.run_jumps(c.astype(float), 10, p, rng)
    with pytest.raises(ValueError, match="n_jumps"):
        ba.run_jumps(c, -1, p, rng)
    with pytest.raises(ValueError, match="duration"):
        ba.run_time(c, 0.0, p, rng)
    with pytest.raises(ValueError, match="record_times"):
        ba.run_time(c, 1e-9, p, rng, record_times=[2e-9])
    with pytest.raises(ValueError, match="tile_cells"):
        ba.tile_sro(c, 4, 3)
    with pytest.raises(ValueError, match="params"):
        ba.run_jumps(c, 1, "hot", rng)
    v = int(np.flatnonzero(c == 0)[0])
    with pytest.raises(ValueError, match="vacancy"):
        ba.jump_rates(c, p, (v + 1) % c.size)


def test_stand_in_is_named_and_energies_are_the_reference_table():
    for text in (ba.DESCRIPTION, ba.BccAlloyParams(2000.0, 8).description, ba.__doc__):
        assert "STAND-IN" in text.upper() and "Xing" in text
    assert "lambda = 0.5" in ba.BccAlloyParams(2000.0, 8).description
    V, Nb, Mo, Ta = range(4)
    assert ba.EPS1[Nb, Mo] == ba.EPS1[Mo, Nb] == -0.0324 and ba.EPS1[V, Mo] == 0.1528
    assert ba.EPS2[Mo, Ta] == 0.0452 and ba.EPS2[V, Mo] == -0.0973 and ba.EPS2[V, Ta] == 0.0228
    assert np.all(np.diag(ba.EPS1) == 0) and np.all(np.diag(ba.EPS2) == 0) and ba.EPS1[V, Nb] == ba.EPS2[V, Nb] == 0
    assert ba.E0[1:].tolist() == [0.954, 1.291, 1.104]


# ----------------------------------------------------------------------------- energy and rates
def _random_jumps(cells, n_vac, seed, n):
    """(config, vacancy, direction) triples with an atom as the neighbour."""
    rng = make_rng(12, seed)
    tab = ba.lattice_tables(cells)
    out = []
    while len(out) < n:
        c = ba.random_configuration(cells, n_vac, rng)
        v = int(rng.choice(np.flatnonzero(c == 0)))
        d = int(rng.integers(8))
        if c[tab.nn1[v, d]]:
            out.append((c, v, d))
    return out


def _swap(c, v, s):
    c = c.copy()
    c[v], c[s] = c[s], c[v]
    return c


@pytest.mark.parametrize("cells,n_vac", [(2, 1), (2, 5), (3, 4), (4, 12), (6, 1)])
def test_local_energy_change_equals_total_energy_difference(cells, n_vac):
    tab = ba.lattice_tables(cells)
    worst = 0.0
    for c, v, d in _random_jumps(cells, n_vac, cells * 100 + n_vac, 40):
        s = tab.nn1[v, d]
        dE = ba.exchange_energy(c, cells, v, d)
        full = ba.total_energy(_swap(c, v, s), cells) - ba.total_energy(c, cells)
        assert dE == pytest.approx(full, abs=1e-12)
        worst = max(worst, abs(full))
    assert worst > 0.05  # the check is not vacuous
    # the total energy is a real bond sum: a pure Nb-Mo B2 crystal has 8 Nb-Mo bonds per site pair
    b2 = np.where(tab.voxels[:, 0] % 2 == 0, 1, 2).astype(np.int8)
    assert ba.total_energy(b2, cells) == pytest.approx(cells**3 * 8 * ba.EPS1[1, 2])


@pytest.mark.parametrize("lam,T", [(0.5, 3000.0), (0.5, 800.0), (1.0, 1200.0), (0.5, 40.0)])
def test_detailed_balance_of_the_barrier_model(lam, T):
    """rate(forward)/rate(backward) = exp(-lam dE/kT) to 1e-12, dE from total energies; rates as §9.

    Rates come from look-up tables, except at extreme temperatures (40 K here) where exp is called.
    """
    cells = 4
    p = ba.BccAlloyParams(T, cells, lam=lam)
    assert (p.kernel_constants()[1].size == 0) == (T < 100)
    tab = ba.lattice_tables(cells)
    for c, v, d in _random_jumps(cells, 3, int(T), 30):
        s = int(tab.nn1[v, d])
        after = _swap(c, v, s)
        dE = ba.total_energy(after, cells) - ba.total_energy(c, cells)
        fwd = ba.jump_rates(c, p, v)[0][d]
        bwd = ba.jump_rates(after, p, s)[0][7 - d]
        assert fwd / bwd == pytest.approx(math.exp(-lam * dE / p.kT), rel=1e-12)
        X = c[s]
        assert fwd == pytest.approx(ba.NU0 * math.exp(-(ba.E0[X] + lam * dE / 2) / p.kT), rel=1e-12)
    # jumps towards a vacancy have rate 0
    c = ba.random_configuration(cells, 1, make_rng(3))
    v = int(np.flatnonzero(c == 0)[0])
    c[tab.nn1[v, 2]] = 0
    r, dE, tg = ba.jump_rates(c, p, v)
    assert r[2] == 0 and np.isnan(dE[2]) and np.all(r[[0, 1, 3, 4, 5, 6, 7]] > 0)


# ----------------------------------------------------------------------------- kernel contracts
def test_species_conserved_and_reproducible():
    p = ba.BccAlloyParams(1500.0, 8)
    c0 = ba.random_configuration(8, 4, make_rng(7))
    a1, t1, j1 = ba.run_jumps(c0, 20000, p, make_rng(8))
    a2, t2, j2 = ba.run_jumps(c0, 20000, p, make_rng(8))
    assert np.array_equal(a1, a2) and t1 == t2 and j1 == j2 == 20000
    assert np.array_equal(np.bincount(a1, minlength=4), np.bincount(c0, minlength=4))
    assert (a1 != c0).sum() > 100 and t1 > 0
    a3, t3, _ = ba.run_jumps(c0, 20000, p, make_rng(9))
    assert not np.array_equal(a1, a3) and t3 != t1
    # continuing a run from its end state: the time clock is additive
    b1, s1, _ = ba.run_jumps(a1, 100, p, make_rng(10))
    assert s1 > 0 and np.array_equal(np.bincount(b1, minlength=4), np.bincount(c0, minlength=4))
    assert np.array_equal(ba.run_jumps(c0, 0, p, make_rng(8))[0], c0)


@pytest.mark.parametrize("cells,n_vac,clustered", [(4, 6, False), (8, 20, True), (16, 40, True), (16, 3, False)])
def test_local_rate_update_gives_the_full_recompute_trajectory(cells, n_vac, clustered):
    """Updating only vacancies within range is exact: bitwise the trajectory of recomputing all of them."""
    p = ba.BccAlloyParams(1200.0, cells)
    rng = make_rng(13, cells, n_vac)
    c0 = ba.random_configuration(cells, n_vac, rng)
    if clustered:  # vacancies packed in a corner, so that they interact often
        grid = ba.voxel_sites(cells)
        corner = grid[:6, :6, :6].ravel()
        corner = corner[corner >= 0][: n_vac]
        rest = np.setdiff1d(np.arange(c0.size), corner)
        atoms = c0[c0 != 0]
        c0 = np.empty_like(c0)
        c0[corner] = 0
        c0[rest] = atoms
        assert (c0 == 0).sum() == n_vac
    n = 3000
    a, ta, ja = ba.run_jumps(c0, n, p, make_rng(14))
    b, tb, jb = ba.run_jumps(c0, n, p, make_rng(14), full_update=True)
    assert ja == jb == n and ta == tb and np.array_equal(a, b)


def test_event_selection_law_with_several_vacancies():
    """One jump from a state with 4 vacancies: (vacancy, direction) ~ rate/R_tot (chi-square); time ~ Exp(R_tot)."""
    cells = 4
    p = ba.BccAlloyParams(1500.0, cells)
    tab = ba.lattice_tables(cells)
    c0 = ba.random_configuration(cells, 3, make_rng(23))
    vacs = np.flatnonzero(c0 == 0)
    c0[tab.nn1[vacs[0], 3]] = 0  # a vacancy pair: its mutual exchange has rate 0
    vacs = np.flatnonzero(c0 == 0)
    rates = np.array([ba.jump_rates(c0, p, int(v))[0] for v in vacs])  # (4, 8)
    R = rates.sum()
    prob = (rates / R).ravel()
    rng = make_rng(24)
    n = 20000
    counts = np.zeros(rates.size)
    times = np.empty(n)
    index = {(int(v), int(tab.nn1[v, d])): k * 8 + d for k, v in enumerate(vacs) for d in range(8)}
    for r in range(n):
        c, t, j = ba.run_jumps(c0, 1, p, rng)
        changed = np.flatnonzero(c != c0)
        assert j == 1 and changed.size == 2
        v = int(changed[c0[changed] == 0][0])
        s = int(changed[c0[changed] != 0][0])
        counts[index[(v, s)]] += 1
        times[r] = t
    assert counts[prob == 0].sum() == 0
    keep = prob > 0
    assert chi2_pvalue(counts[keep], prob[keep]) > 1e-3
    assert chi2_pvalue(counts[keep], np.full(keep.sum(), 1.0 / keep.sum())) < 1e-6  # power
    assert abs(times.mean() * R - 1.0) < 4 / math.sqrt(n)


def test_time_limited_runs_stop_exactly_and_sample_the_first_jump_law():
    """elapsed == duration; P(no jump by t) = exp(-R t) within 4 binomial SE (and not exp(-2 R t))."""
    p = ba.BccAlloyParams(2000.0, 4)
    c0 = ba.random_configuration(4, 1, make_rng(15))
    v = int(np.flatnonzero(c0 == 0)[0])
    R = ba.jump_rates(c0, p, v)[0].sum()
    t = math.log(2.0) / R  # P(no jump) = 1/2
    rng = make_rng(16)
    n = 4000
    zero = 0
    jumps = []
    for _ in range(n):
        c, el, j = ba.run_time(c0, t, p, rng)
        assert el == t
        zero += j == 0
        jumps.append(j)
        if j == 0:
            assert np.array_equal(c, c0)
    se = math.sqrt(0.25 / n)
    assert abs(zero / n - 0.5) < 4 * se
    assert abs(zero / n - 0.25) > 10 * se
    # a longer run: the records at 0 and at the duration are the SRO of the initial and final states
    c, el, j, rec = ba.run_time(c0, 2e-9, p, make_rng(17), record_times=[0.0, 1e-9, 2e-9])
    assert el == 2e-9 and j > 100
    np.testing.assert_allclose(rec[0], ba.sro(c0, 4), atol=1e-12)
    np.testing.assert_allclose(rec[2], ba.sro(c, 4), atol=1e-12)
    # determinism of the time clock
    c2, _, j2, rec2 = ba.run_time(c0, 2e-9, p, make_rng(17), record_times=[0.0, 1e-9, 2e-9])
    assert np.array_equal(c, c2) and j == j2 and np.array_equal(rec, rec2)


# ----------------------------------------------------------------------------- SRO
def _sro_brute(c, cells):
    tab = ba.lattice_tables(cells)
    out = []
    for a, b in ((1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)):
        vals = []
        for i in np.flatnonzero(c == a):
            nb = c[tab.nn1[i]]
            m = (nb != 0).sum()
            vals.append((nb == b).sum() - m / 3)
        out.append(np.mean(vals) if vals else np.nan)
    return np.array(out)


def test_sro_definition_tiles_and_vacancy_convention():
    tab = ba.lattice_tables(4)
    # B2 Nb (corners) / Mo (centres): every Nb has 8 Mo neighbours
    b2 = np.where(tab.voxels[:, 0] % 2 == 0, 1, 2).astype(np.int8)
    s = ba.sro(b2, 4)
    np.testing.assert_allclose(s[:5], [-8 / 3, 16 / 3, -8 / 3, -8 / 3, -8 / 3])
    assert np.isnan(s[5])  # no Ta
    # vacancy neighbours: m/3 instead of 8/3 (sum_b delta_ab = 0 exactly)
    c = ba.random_configuration(4, 9, make_rng(18))
    np.testing.assert_allclose(ba.sro(c, 4), _sro_brute(c, 4), atol=1e-12)
    tab4 = ba.lattice_tables(4)
    full = np.array([[np.mean([(c[tab4.nn1[i]] == b).sum() - (c[tab4.nn1[i]] != 0).sum() / 3
                               for i in np.flatnonzero(c == a)]) for b in (1, 2, 3)] for a in (1, 2, 3)])
    np.testing.assert_allclose(full[np.triu_indices(3)], ba.sro(c, 4), atol=1e-12)
    np.testing.assert_allclose(full.sum(axis=1), 0.0, atol=1e-12)
    # the authors' fixed 8/3 would not sum to zero here (atoms next to the 9 vacancies)
    fixed = np.array([np.mean([(c[tab4.nn1[i]] == b).sum() - 8 / 3 for i in np.flatnonzero(c == a)])
                      for a in (1, 2, 3) for b in (1, 2, 3)]).reshape(3, 3)
    assert np.all(fixed.sum(axis=1) < -0.05)
    # tiles: shape, per-tile brute force, atom-weighted mean = whole lattice
    cells, tc = 8, 4
    cs = ba.random_configuration(cells, 3, make_rng(19), n_configs=2)
    t = ba.tile_sro(cs, cells, tc)
    assert t.shape == (2, 8, 6)
    tiles = ba.site_tiles(cells, tc)
    assert np.bincount(tiles).tolist() == [2 * tc**3] * 8
    whole = ba.sro(cs, cells)
    for bidx in range(2):
        c = cs[bidx]
        for col, a in enumerate((1, 1, 1, 2, 2, 3)):
            w = np.array([(c[tiles == k] == a).sum() for k in range(8)])
            assert np.sum(w * t[bidx, :, col]) / w.sum() == pytest.approx(whole[bidx, col], abs=1e-12)
        k = 5
        tab8 = ba.lattice_tables(cells)
        for col, (a, b) in enumerate(((1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))):
            vals = [(c[tab8.nn1[i]] == b).sum() - (c[tab8.nn1[i]] != 0).sum() / 3
                    for i in np.flatnonzero((c == a) & (tiles == k))]
            assert t[bidx, k, col] == pytest.approx(np.mean(vals), abs=1e-12)
    # a random configuration has delta near 0 (SE about 0.04 at 1024 sites)
    assert np.all(np.abs(ba.sro(ba.random_configuration(16, 1, make_rng(20)), 16)) < 0.1)


# ----------------------------------------------------------------------------- equilibrium
@numba.njit(cache=True)
def _site_energy(i, c, nn1, nn2, e1, e2):
    e = 0.0
    for k in range(8):
        e += e1[c[i], c[nn1[i, k]]]
    for k in range(6):
        e += e2[c[i], c[nn2[i, k]]]
    return e


@numba.njit(cache=True)
def _pair_energy(i, j, c, nn1, nn2, e1, e2):
    """Energy of every bond touching i or j (the i-j bond once)."""
    e = _site_energy(i, c, nn1, nn2, e1, e2) + _site_energy(j, c, nn1, nn2, e1, e2)
    for k in range(8):
        if nn1[i, k] == j:
            e -= e1[c[i], c[j]]
    for k in range(6):
        if nn2[i, k] == j:
            e -= e2[c[i], c[j]]
    return e


@numba.njit(cache=True)
def _metropolis_sro(c, nn1, nn2, e1, e2, beta_lam, n_burn, n_samples, every, seed):
    """Metropolis swaps of two uniform sites (any species, vacancy included) on the lam-scaled energy."""
    np.random.seed(seed)
    N = c.shape[0]
    out = np.zeros((n_samples, 6))
    total = n_burn + n_samples * every
    for step in range(total):
        i = np.random.randint(N)
        j = np.random.randint(N)
        if c[i] != c[j]:
            before = _pair_energy(i, j, c, nn1, nn2, e1, e2)
            ci = c[i]
            c[i] = c[j]
            c[j] = ci
            dE = _pair_energy(i, j, c, nn1, nn2, e1, e2) - before
            if dE > 0 and np.random.random() >= math.exp(-beta_lam * dE):
                c[j] = c[i]
                c[i] = ci
        if step >= n_burn and (step - n_burn) % every == every - 1:
            r = (step - n_burn) // every
            na = np.zeros(4)
            nb = np.zeros((4, 4))
            for a_site in range(N):
                a = c[a_site]
                if a == 0:
                    continue
                na[a] += 1
                m = 0
                for k in range(8):
                    b = c[nn1[a_site, k]]
                    if b != 0:
                        m += 1
                        nb[a, b] += 1
                for b in range(1, 4):
                    nb[a, b] -= m / 3.0
            col = 0
            for a in range(1, 4):
                for b in range(a, 4):
                    out[r, col] = nb[a, b] / na[a]
                    col += 1
    return out


def _metropolis_means(cells, T, lam, chains, seed):
    tab = ba.lattice_tables(cells)
    N = tab.sites
    means = []
    for k in range(chains):
        c = ba.random_configuration(cells, 1, make_rng(21, seed, k)).copy()
        s = _metropolis_sro(c, tab.nn1, tab.nn2, ba.EPS1, ba.EPS2, lam / (ba.KB * T), 50 * N, 1000, N, seed * 100 + k)
        means.append(s.mean(axis=0))
    return np.array(means)


def _kmc_means(cells, T, lam, runs, seed):
    p = ba.BccAlloyParams(T, cells, lam=lam)
    N = p.sites
    means = []
    for k in range(runs):
        rng = make_rng(22, seed, k)
        c = ba.random_configuration(cells, 1, rng)
        c, t_burn, _ = ba.run_jumps(c, 100 * N, p, rng)  # burn-in: ~25 SRO correlation times
        dt = t_burn / 100 * 0.5  # records every ~N/2 jumps (time clock: unbiased time averages)
        n_rec = 2000
        _, _, _, rec = ba.run_time(c, dt * n_rec, p, rng, record_times=dt * np.arange(1, n_rec + 1))
        means.append(rec.mean(axis=0))
    return np.array(means)


def _mean_se(x):
    return x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])


def test_equilibrium_sro_at_3000K_matches_metropolis_reference_and_table():
    """cells = 8 (1024 sites, the paper's small system, 1 vacancy), T = 3000 K, lam = 0.5.

    KMC time averages vs Metropolis swaps: both sample exp(-lam E / kT) (detailed balance
    of the KRA barriers). Agreement within 4 combined SE (SE from 16 independent runs of
    each, every run ~25 SRO correlation times of burn-in and ~250 of sampling);
    Metropolis (50 sweeps of burn-in, 1000 sweeps sampled per chain; a sweep = N attempted
    swaps) at 2000 K, 4000 K and with the lam = 1 energy are rejected by the same KMC
    data. The §9 table row (given to 2 decimals) must hold within 4 SE + 0.005 (its
    rounding). 1024 sites rather than 432 (cells = 6): at 432 sites the finite-size shift
    from the table reaches 0.018 (TaTa); the cost is about the same (the SE falls with N).
    """
    cells, T, lam = 8, 3000.0, 0.5
    km, ks = _mean_se(_kmc_means(cells, T, lam, 16, 1))
    mm, ms = _mean_se(_metropolis_means(cells, T, lam, 16, 2))
    z = (km - mm) / np.sqrt(ks**2 + ms**2)
    table = np.array(ba.EQUILIBRIUM_SRO_TABLE[3000])
    print(f"\nSRO at 3000 K, cells = {cells}:", ba.SRO_PAIRS)
    print("KMC       ", np.round(km, 4), "+-", np.round(ks, 4))
    print("Metropolis", np.round(mm, 4), "+-", np.round(ms, 4))
    print("z         ", np.round(z, 2))
    print("§9 table  ", table, " KMC - table:", np.round(km - table, 4))
    assert np.all(np.abs(z) < 4), z
    assert np.all(ks < 0.005) and np.all(ms < 0.005)  # the test has resolution
    for wrong_T, wrong_lam in ((2000.0, lam), (4000.0, lam), (T, 1.0)):
        wm, ws = _mean_se(_metropolis_means(cells, wrong_T, wrong_lam, 4, 3))
        zw = (km - wm) / np.sqrt(ks**2 + ws**2)
        assert np.max(np.abs(zw)) > 8, (wrong_T, wrong_lam, zw)
        assert np.max(np.abs(wm - table)) > 4 * ks.max() + 0.005  # the table check has power too
    assert np.all(np.abs(km - table) < 4 * ks + 0.005), km - table


# ----------------------------------------------------------------------------- direct reference runs
def test_sro_trajectory_conserves_species_and_matches_the_kernels():
    """sro_trajectory is run_time from a random equimolar start: same generator -> bitwise the same path."""
    cells, nv = 4, 3
    p = ba.BccAlloyParams(2000.0, cells)
    times = np.array([0.0, 0.0, 1e-9, 5e-9, 5e-9, 2e-8])
    s, c, jumps = ba.sro_trajectory(p, nv, times, make_rng(31, 1))
    assert s.shape == (times.size, 6) and c.dtype == np.int8 and jumps > 0
    # conservation: the start's counts (equimolar atoms, nv vacancies)
    start = ba.random_configuration(cells, nv, make_rng(31, 1))
    assert np.array_equal(np.bincount(c, minlength=4), np.bincount(start, minlength=4))
    assert np.bincount(c, minlength=4)[0] == nv
    # the end state's SRO is the existing SRO function of the returned state; t = 0 is the start
    np.testing.assert_allclose(s[-1], ba.sro(c, cells), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s[0], ba.sro(start, cells), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(s[0], s[1])
    np.testing.assert_array_equal(s[3], s[4])
    # the same as run_time from the same generator state (after drawing the start)
    rng = make_rng(31, 1)
    c0 = ba.random_configuration(cells, nv, rng)
    c2, _, j2, rec = ba.run_time(c0, times[-1], p, rng, record_times=times)
    assert np.array_equal(c2, c) and j2 == jumps
    np.testing.assert_array_equal(rec, s)
    # reproducible, and from a given start (not modified)
    s3, c3, j3 = ba.sro_trajectory(p, None, times, make_rng(5), start=start)
    s4, c4, j4 = ba.sro_trajectory(p, nv, times, make_rng(5), start=start)
    assert j3 == j4 and np.array_equal(c3, c4) and np.array_equal(s3, s4)
    np.testing.assert_array_equal(start, ba.random_configuration(cells, nv, make_rng(31, 1)))
    np.testing.assert_allclose(s3[-1], ba.sro(c3, cells), rtol=0, atol=1e-12)
    # times all zero: the start, no jumps
    s5, c5, j5 = ba.sro_trajectory(p, None, [0.0, 0.0], make_rng(5), start=start)
    assert j5 == 0 and np.array_equal(c5, start) and np.allclose(s5, ba.sro(start, cells))
    # ensemble
    e, js = ba.sro_ensemble(p, nv, times, 3, make_rng(7))
    assert e.shape == (3, times.size, 6) and js.shape == (3,) and np.all(js > 0)
    assert not np.array_equal(e[0], e[1])
    for bad in ([1e-9, 0.0], [-1.0, 1.0], [], [[0.0, 1.0]], [np.nan]):
        with pytest.raises(ValueError, match="times"):
            ba.sro_trajectory(p, nv, bad, make_rng(1))
    with pytest.raises(ValueError, match="n_vacancies"):
        ba.sro_trajectory(p, nv + 1, times, make_rng(1), start=start)
    with pytest.raises(ValueError, match="n_vacancies"):
        ba.sro_trajectory(p, None, times, make_rng(1))
    with pytest.raises(ValueError, match="vacancy"):
        ba.sro_trajectory(p, None, times, make_rng(1), start=np.where(start == 0, 1, start))


def test_sro_trajectory_at_time_zero_of_random_states_is_random_mixing():
    """SRO of random equimolar starts: the exact finite-N expectation (about 0) within 4 SE, and 0 within 4 SE + 0.006.

    For N sites, n_v vacancies and n_a = (N - n_v)/3 atoms of each species, an a atom has
    on average 8 (n_a - 1)/(N - 1) a neighbours, 8 n_b/(N - 1) b neighbours and
    m = 8 (N - 1 - n_v)/(N - 1) atom neighbours, so E delta_aa = 8(n_a - 1)/(N - 1) - m/3,
    E delta_ab = 8 n_b/(N - 1) - m/3 (about -0.0052 and +0.0026 at N = 1024, n_v = 1).
    """
    cells, nv, runs = 8, 1, 400
    p = ba.BccAlloyParams(800.0, cells)
    rng = make_rng(32)
    s0 = np.array([ba.sro_trajectory(p, nv, [0.0], rng)[0][0] for _ in range(runs)])
    mean, se = s0.mean(0), s0.std(0, ddof=1) / math.sqrt(runs)
    N = p.sites
    na = (N - nv) // 3
    m3 = 8 * (N - 1 - nv) / (N - 1) / 3
    exact = np.array([8 * (na - 1) / (N - 1) - m3 if a == b else 8 * na / (N - 1) - m3 for a, b in ba._SRO_AB])
    print("\nt = 0 SRO:", np.round(mean, 4), "+-", np.round(se, 4), "exact", np.round(exact, 4))
    assert np.all(se < 0.006)
    assert np.all(np.abs(mean - exact) < 4 * se), (mean - exact) / se
    assert np.all(np.abs(mean) < 4 * se + 0.006)
    # power: a short run at 800 K already orders (MoMo far below the random value)
    s1, _, _ = ba.sro_trajectory(p, nv, [0.0, 0.02], make_rng(33))
    assert s1[1, 3] < exact[3] - 8 * se[3] * math.sqrt(runs)


def test_equilibration_time_of_a_synthetic_exponential():
    t = np.linspace(0.0, 100.0, 10001)  # 25 slowest relaxation times: the second-half mean is the asymptote
    tau = 2.0
    up = 0.3 + (1.5 - 0.3) * -np.expm1(-t / tau)  # increasing
    down = -1.7 * -np.expm1(-t / (2 * tau))  # decreasing (like delta_MoMo), from 0
    assert ba.equilibration_time(t, up) == pytest.approx(tau, rel=1e-4)
    both = ba.equilibration_time(t, np.c_[up, down])
    np.testing.assert_allclose(both, [tau, 2 * tau], rtol=1e-4)
    np.testing.assert_allclose(ba.equilibration_time(t, np.c_[up, down], fraction=0.9),
                               [tau * math.log(10), 2 * tau * math.log(10)], rtol=1e-4)
    # explicit end values; coarse grids interpolate linearly between samples
    tc = np.linspace(0.0, 40.0, 81)
    vc = 1.5 - 1.2 * np.exp(-tc / tau)
    assert ba.equilibration_time(tc, vc, initial=0.3, stationary=1.5) == pytest.approx(tau, rel=2e-2)
    # noise on the plateau does not move it much; an unfinished curve is NaN or later
    rng = make_rng(34)
    noisy = down + 0.01 * rng.standard_normal(t.size)
    assert ba.equilibration_time(t, noisy) == pytest.approx(2 * tau, rel=0.05)
    assert math.isnan(ba.equilibration_time(t, np.zeros(t.size)))
    assert math.isnan(ba.equilibration_time(t, up, stationary=10.0))
    assert ba.equilibration_time(t, up, fraction=0.5) < ba.equilibration_time(t, up)
    with pytest.raises(ValueError, match="fraction"):
        ba.equilibration_time(t, up, fraction=1.0)
    with pytest.raises(ValueError):
        ba.equilibration_time(t[::-1], up)


def test_stationary_estimate_means_errors_and_plateau_check():
    rng = make_rng(35)
    R, n = 40, 401
    t = np.linspace(0.0, 4.0, n)
    flat = 0.7 + 0.1 * rng.standard_normal((R, n, 2))
    st = ba.stationary_estimate(t, flat)
    assert st["mean"].shape == (2,) and np.all(st["plateau"])
    # iid samples: path means over ~201 samples, SE about 0.1 / sqrt(R * 201)
    np.testing.assert_allclose(st["se"], 0.1 / math.sqrt(R * 201), rtol=0.3)
    np.testing.assert_allclose(st["se_blocks"], 0.1 / math.sqrt(R * 201), rtol=0.3)
    assert np.all(np.abs(st["mean"] - 0.7) < 4 * st["se"])
    # a still drifting ensemble fails the plateau check
    drift = flat + 0.05 * t[None, :, None]
    assert not np.any(ba.stationary_estimate(t, drift)["plateau"])
    # 2-D input gives scalars; one path has only the block SE
    one = ba.stationary_estimate(t, flat[:1, :, 0])
    assert np.ndim(one["mean"]) == 0 and math.isnan(one["se"]) and one["se_blocks"] > 0
    # trapezoid time weights: a non-uniform grid of a step function averages by time
    tt = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0])
    vv = np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    assert ba.stationary_estimate(tt, vv)["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ba.stationary_estimate(t, flat[:, :-1])


@pytest.mark.parametrize("temperature", [800.0, 2000.0])
def test_mean_random_rate_is_the_mean_total_rate_of_a_vacancy_in_a_random_alloy(temperature):
    """mean_random_rate (a fixed-seed constant of the model) against an independent average of jump_rates over random
    configurations: within 4 standard errors of that average (the SE computed from its spread)."""
    p = ba.BccAlloyParams(temperature, 4)
    rng = make_rng(31, int(temperature))
    totals = np.array([ba.jump_rates(c, p, int(np.flatnonzero(c == 0)[0]))[0].sum()
                       for c in ba.random_configuration(4, 1, rng, n_configs=600)])
    se = totals.std(ddof=1) / np.sqrt(totals.size)
    value = ba.mean_random_rate(p)
    assert value == ba.mean_random_rate(ba.BccAlloyParams(temperature, 16))  # a function of T and lambda only
    assert abs(value - totals.mean()) < 4 * se, (value, totals.mean(), se)
    assert se < 0.1 * totals.mean()  # the check has power
