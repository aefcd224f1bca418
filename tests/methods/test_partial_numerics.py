"""Tests of the partial-evolution and upsampling numerics (cgflow.methods.partial, seed 002).

Oracles: the exact law of a Curie–Weiss tile run (a birth–death jump chain of the
tile's up-spin count, rates from the frozen global mean field), the exact
finite-N jump moments, and direct equilibrium samples of the large system.
Fixed seeds; tolerances of 4 computed standard errors; each test checks its power.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cgflow.methods import partial as pm
from cgflow.micro import glauber as g

T_CW, T_IS, H = 1.1, 2.5, 0.1


def make_rng(*seed) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(seed))))


def tile_chain(n_eff, ns, S_out, k0, n_events, temperature=T_CW, field=H):
    """Exact (mean, variance) of the tile's m change and E[dt] after ``n_events`` flips.

    The tile's up-spin count k is a birth–death chain; a spin of the tile feels
    R = (S_out + 2k - ns - s)/n_eff. The embedded jump chain P gives the law after n
    flips; E[dt] = sum_j E[1/R(k_j)].
    """
    k = np.arange(ns + 1)
    S = S_out + 2 * k - ns
    beta = 1.0 / temperature
    up = (ns - k) / (1 + np.exp(-2 * beta * ((S + 1.0) / n_eff + field)))
    dn = k / (1 + np.exp(2 * beta * ((S - 1.0) / n_eff + field)))
    R = up + dn
    P = np.diag(up[:-1] / R[:-1], 1) + np.diag(dn[1:] / R[1:], -1)
    dist = np.zeros(ns + 1)
    dist[k0] = 1.0
    e_dt = 0.0
    for _ in range(n_events):
        e_dt += dist @ (1.0 / R)
        dist = dist @ P
    jump = 2.0 * (k - k0) / ns
    mu = dist @ jump
    return mu, dist @ (jump - mu) ** 2, e_dt


def balanced_snapshot(L, ls, up_per_tile, rng):
    """An L x L lattice whose every ls x ls tile holds exactly ``up_per_tile`` up spins."""
    nt = L // ls
    tiles = np.where(np.arange(ls * ls)[None, :] < up_per_tile, 1, -1).repeat(nt * nt, axis=0)
    tiles = rng.permuted(tiles, axis=1).reshape(nt, nt, ls, ls)
    return tiles.transpose(0, 2, 1, 3).reshape(L, L).astype(np.int8)


# ----------------------------------------------------------------------------- Curie–Weiss pairs
@pytest.mark.parametrize("boundary", ["frozen", "periodic"])
def test_cw_partial_pairs_match_exact_tile_chain(boundary):
    """L = 32, L_s = 8 (K = 16), n_s = 64 events, every tile at m = 0.25: moments of (z1_hat - z0, dt)."""
    L, ls, B = 32, 8, 12000
    rng = make_rng(2, 10)
    snap = balanced_snapshot(L, ls, 40, rng)
    p = g.GlauberParams("curie_weiss", T_CW, H, L)
    pr = pm.partial_evolution_pairs(np.repeat(snap[None], B, 0), ls, p, rng, boundary=boundary)
    assert pr.n_tiles == 16 and pr.z0.shape == (B, 1) and np.all(pr.dt > 0)
    np.testing.assert_allclose(pr.z0, 0.25)
    d = (pr.z1_hat - pr.z0)[:, 0]
    # for m the baseline increment is the same tile change
    np.testing.assert_allclose(pr.z1_tile - pr.z0_tile, pr.z1_hat - pr.z0)
    if boundary == "frozen":
        n_eff, S_out = L * L, int(snap.sum()) - 16
    else:
        n_eff, S_out = ls * ls, 0
    mu, var, e_dt = tile_chain(n_eff, ls * ls, S_out, 40, ls * ls)
    assert abs(d.mean() - mu) < 4 * math.sqrt(var / B)
    assert abs(d.var() - var) < 4 * var * math.sqrt(2.0 / B) * 1.2  # near-Gaussian 4th moment, 20% slack
    assert abs(pr.dt.mean() - e_dt) < 4 * pr.dt.std() / math.sqrt(B)
    # power: the other boundary's exact mean is far outside the tolerance
    other = tile_chain(ls * ls, ls * ls, 0, 40, ls * ls) if boundary == "frozen" else \
        tile_chain(L * L, ls * ls, int(snap.sum()) - 16, 40, ls * ls)
    assert abs(other[0] - mu) > 8 * math.sqrt(var / B)


def test_cw_partial_pairs_short_time_drift_and_k_variance():
    """Short runs (4 events on a 64-spin tile, dt ~ 0.13): E[z1_hat - z0] = a_N(m) E[dt] within SE, and
    Var(z1_hat - z0) ~ K x the large system's variance over the same time (the reason for lambda = K)."""
    L, ls, B, n_ev = 32, 8, 20000, 4
    N, K = L * L, (L // ls) ** 2
    rng = make_rng(2, 11)
    snap = balanced_snapshot(L, ls, 40, rng)
    p = g.GlauberParams("curie_weiss", T_CW, H, L)
    snaps = np.repeat(snap[None], B, 0)
    pr = pm.partial_evolution_pairs(snaps, ls, p, rng, n_events=n_ev)
    d = (pr.z1_hat - pr.z0)[:, 0]
    a, s2 = g.cw_jump_moments(0.25, T_CW, H, N)
    se = d.std() / math.sqrt(B)
    assert abs(d.mean() - a * pr.dt.mean()) < 4 * se
    assert a * pr.dt.mean() > 12 * se  # a zero drift would be rejected
    # second moment per unit time: K sigma^2 to leading order; a fixed event count anticorrelates
    # successive flips of a small tile by O(1/n_s), exact value from the tile chain
    ratio = d.var() / (K * s2 * pr.dt.mean())
    mu, var, e_dt = tile_chain(N, ls * ls, int(snap.sum()) - 16, 40, n_ev)
    assert ratio == pytest.approx(var / (K * s2 * e_dt), rel=4 * math.sqrt(2.0 / B) * 1.2)
    assert 0.85 < ratio < 1.0
    # the whole system over the same time: K times smaller variance (same number of events per spin)
    z0, z1, dt = pm.full_pairs(snaps[:4000], p, rng, n_events=n_ev * K)
    ratio_full = (z1 - z0)[:, 0].var() / (s2 * dt.mean())
    assert ratio_full == pytest.approx(1.0, abs=4 * math.sqrt(2.0 / 4000) * 1.2)
    assert d.var() / (z1 - z0)[:, 0].var() * dt.mean() / pr.dt.mean() == pytest.approx(K, rel=0.2)


# ----------------------------------------------------------------------------- Ising pairs
@pytest.mark.parametrize("boundary", ["frozen", "periodic"])
def test_ising_pair_bookkeeping(boundary):
    """z1_hat - z0 is K x the whole-lattice change (frozen) or the torus tile's change (periodic),
    reproduced bit for bit by evolving the same tile with the same random stream."""
    L, ls = 32, 8
    p = g.GlauberParams("ising2d", T_IS, H, L)
    snaps = g.random_spins(6, L, make_rng(3))
    pr = pm.partial_evolution_pairs(snaps, ls, p, make_rng(4), boundary=boundary)
    r = make_rng(4)
    tiles = r.integers(0, 16, size=6)
    np.testing.assert_array_equal(tiles, pr.tile)
    tile_obs = p.tile_observables(snaps, ls, boundary)
    np.testing.assert_allclose(pr.z0, tile_obs.mean(axis=1))
    if boundary == "frozen":
        np.testing.assert_allclose(pr.z0, g.observables(snaps, p), atol=1e-12)  # exact patch additivity
    for b in range(6):
        origin = ((tiles[b] // 4) * ls, (tiles[b] % 4) * ls)
        after, dt = g.evolve_window(snaps[b], origin, ls, ls * ls, p, r, boundary)
        assert dt == pr.dt[b]
        np.testing.assert_allclose(pr.z0_tile[b], tile_obs[b, tiles[b]])
        np.testing.assert_allclose(pr.z1_tile[b], p.tile_observables(after[None], ls, boundary)[0, tiles[b]])
        if boundary == "frozen":
            expect = 16 * (g.observables(after, p) - g.observables(snaps[b], p))
        else:
            expect = pr.z1_tile[b] - pr.z0_tile[b]
        np.testing.assert_allclose(pr.z1_hat[b] - pr.z0[b], expect, atol=1e-12)
    assert np.any(pr.z1_hat[:, 1] != pr.z0[:, 1])


def test_determinism():
    p = g.GlauberParams("ising2d", T_IS, H, 16)
    snaps = g.random_spins(4, 16, make_rng(5))
    a = pm.partial_evolution_pairs(snaps, 8, p, make_rng(6))
    b = pm.partial_evolution_pairs(snaps, 8, p, make_rng(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    u1 = pm.hierarchical_upsample(snaps, 32, p, make_rng(7), window=8, stride=4)
    u2 = pm.hierarchical_upsample(snaps, 32, p, make_rng(7), window=8, stride=4)
    np.testing.assert_array_equal(u1, u2)


# ----------------------------------------------------------------------------- upsampling
def _equilibrium(L, n, gap, seed):
    """n configurations of the L x L Ising model (T = 2.5, h = 0.1), ``gap`` time units apart."""
    p = g.GlauberParams("ising2d", T_IS, H, L)
    rng = make_rng(2, seed)
    s = g.random_spins(1, L, rng, m0=0.7)[0]
    out = np.empty((n, L, L), np.int8)
    s, _ = g.run_events(s, 200 * L * L, p, rng)
    for i in range(n):
        s, _ = g.run_time(s, [gap], p, rng)
        out[i] = s
    return out


def test_ising_upsampling_preserves_equilibrium_means(big_equilibrium):
    """Upsampled L = 16 -> 32 snapshots (default: frozen windows, 16 time units each) vs direct L = 32
    equilibrium: <m> and <rho_dw> within 4 SE;
    bare pixel replication (no relaxation) has too few domain walls and is rejected."""
    n = 300
    small = _equilibrium(16, n, 150.0, 20)
    big = big_equilibrium
    p = g.GlauberParams("ising2d", T_IS, H, 32)
    up = pm.hierarchical_upsample(small, 32, p, make_rng(2, 22), resample=False)
    assert up.shape == (n, 32, 32)
    o_up, o_big = g.observables(up, p), g.observables(big, p)
    o_rep = g.observables(p.refine(small), p)
    se = np.sqrt(o_up.var(0) / n + o_big.var(0) / n)
    assert np.all(np.abs(o_up.mean(0) - o_big.mean(0)) < 4 * se)
    assert abs(o_rep[:, 1].mean() - o_big[:, 1].mean()) > 8 * se[1]
    # the authors' clock (256 flips per window) leaves m too low
    ev = g.observables(pm.hierarchical_upsample(small, 32, p, make_rng(2, 22), resample=False, clock="events"), p)
    assert abs(ev[:, 0].mean() - o_big[:, 0].mean()) > 4 * se[0]
    assert o_big[:, 0].mean() == pytest.approx(g.ISING_T2P5_H0P1["m"], abs=4 * se[0] + 0.01)


@pytest.fixture(scope="module")
def big_equilibrium():
    return _equilibrium(32, 300, 150.0, 21)


def test_frozen_window_relaxation_clock(big_equilibrium):
    """Relaxing equilibrium L = 32 snapshots in frozen windows: the fixed-time clock leaves <m>, <rho_dw>
    unchanged (paired differences within 4 SE); the authors' fixed-event clock is biased (jump-chain law)."""
    p = g.GlauberParams("ising2d", T_IS, H, 32)
    o0 = g.observables(big_equilibrium, p)
    n = o0.shape[0]
    timed, _ = p.relax_windows(big_equilibrium, 16, 8, 256, "frozen", make_rng(2, 40), duration=6.0)
    d = g.observables(timed, p) - o0
    assert np.all(np.abs(d.mean(0)) < 4 * d.std(0) / math.sqrt(n))
    counted, _ = p.relax_windows(big_equilibrium, 16, 8, 256, "frozen", make_rng(2, 41))
    d = g.observables(counted, p) - o0
    assert d[:, 1].mean() > 4 * d[:, 1].std() / math.sqrt(n)  # too many domain walls
    assert d[:, 0].mean() < -4 * d[:, 0].std() / math.sqrt(n)


def test_cw_upsampling_keeps_magnetisation_law():
    """CW (frozen global field): upsampling 8 -> 32 keeps <m> within SE of the pool's."""
    p = g.GlauberParams("curie_weiss", T_CW, H, 32)
    rng = make_rng(2, 30)
    pool = g.random_spins(400, 8, rng, m0=0.49)
    up = pm.hierarchical_upsample(pool, 32, p, rng, window=8, stride=8, events_per_window=64)
    m_pool, m_up = pool.mean(axis=(1, 2)), up.mean(axis=(1, 2))
    # windows relax toward the fixed point 0.49, so the mean stays; spread is that of the pool
    se = math.sqrt(m_pool.var() / 400 + m_up.var() / 400)
    assert abs(m_up.mean() - m_pool.mean()) < 4 * se + 0.01


# ----------------------------------------------------------------------------- validation
def test_bad_input_names_parameter():
    p = g.GlauberParams("ising2d", T_IS, H, 32)
    snaps = g.random_spins(2, 32, make_rng(0))
    rng = make_rng(1)
    with pytest.raises(ValueError, match="tile_size"):
        pm.partial_evolution_pairs(snaps, 12, p, rng)
    with pytest.raises(ValueError, match="boundary"):
        pm.partial_evolution_pairs(snaps, 8, p, rng, boundary="open")
    with pytest.raises(ValueError, match="model"):
        pm.partial_evolution_pairs(snaps, 8, object(), rng)
    with pytest.raises(ValueError, match="rng"):
        pm.partial_evolution_pairs(snaps, 8, p, 3)
    with pytest.raises(ValueError, match="n_events"):
        pm.partial_evolution_pairs(snaps, 8, p, rng, n_events=-2)
    small = g.random_spins(2, 8, make_rng(0))
    with pytest.raises(ValueError, match="window"):
        pm.hierarchical_upsample(small, 32, p, rng, window=32)
    with pytest.raises(ValueError, match="small_size"):
        pm.hierarchical_upsample(g.random_spins(2, 12, make_rng(0)), 32, p, rng)
    with pytest.raises(ValueError, match="power of two"):
        pm.hierarchical_upsample(small, 24, p, rng)
    with pytest.raises(ValueError, match="stride"):
        pm.hierarchical_upsample(small, 32, p, rng, window=16, stride=6)
    with pytest.raises(ValueError, match="window"):
        p.relax_windows(small, 16, 8, 10, "frozen", rng)


@pytest.mark.parametrize("boundary", ["frozen", "periodic"])
def test_evolved_tiles_are_returned_and_match_the_tile_observables(boundary):
    p = g.GlauberParams("ising2d", 2.5, 0.1, 16)
    rng = np.random.default_rng(5)
    x = g.random_spins(32, 16, rng)
    pp = pm.partial_evolution_pairs(x, 8, p, rng, boundary, duration=0.5, return_tiles=True)
    assert pp.tile_after.shape == (32, 8, 8) and pp.tile_after.dtype == np.int8
    m_after = pp.tile_after.astype(float).mean(axis=(1, 2))
    np.testing.assert_allclose(m_after, pp.z1_tile[:, 0])
    assert np.any(m_after != x.reshape(32, 2, 8, 2, 8).mean(axis=(2, 4)).reshape(32, 4)[np.arange(32), pp.tile])
    if boundary == "periodic":  # torus bonds of the tile alone
        np.testing.assert_allclose(g.observables(pp.tile_after, p)[:, 1], pp.z1_tile[:, 1])
    # the same draws with and without the tiles
    again = pm.partial_evolution_pairs(x, 8, p, np.random.default_rng(5), boundary, duration=0.5)
    ref = pm.partial_evolution_pairs(x, 8, p, np.random.default_rng(5), boundary, duration=0.5, return_tiles=True)
    np.testing.assert_array_equal(again.z1_hat, ref.z1_hat)


def test_cw_richardson_increment_removes_the_finite_duration_bias():
    """One run observed at dt/2 and dt (``record_times``): 4 Delta(dt/2) - Delta(dt) has mean a_N(m) dt to O(dt**3).

    L = 32, L_s = 8 (K = 16), every tile at m = 0.25, dt = 0.4. Oracle: the exact
    continuous-time birth–death chain of the tile's up-spin count (frozen rest),
    E[Delta(t)] = p0 exp(Q t) jump. The Euler increment Delta(dt)/dt is 0.82 a_N (the
    tile relaxes at rate ~1 against the frozen field), the Richardson one 0.99 a_N.
    """
    from scipy.linalg import expm

    L, ls, B, dt = 32, 8, 40000, 0.4
    N, ns = L * L, ls * ls
    rng = make_rng(2, 12)
    snap = balanced_snapshot(L, ls, 40, rng)
    p = g.GlauberParams("curie_weiss", T_CW, H, L)
    pr = pm.partial_evolution_pairs(np.repeat(snap[None], B, 0), ls, p, rng, duration=dt, record_times=[dt / 2])
    assert pr.increment_at.shape == (B, 1, 1) and np.all(pr.dt == dt)
    # the recorded tile observable is the same run's: its change is the m increment at dt/2
    np.testing.assert_allclose(pr.z_tile_at[:, 0] - pr.z0_tile, pr.increment_at[:, 0])
    half, full = pr.increment_at[:, 0, 0], (pr.z1_hat - pr.z0)[:, 0]
    rich = 4.0 * half - full
    # exact chain: rates of the tile's up count k against the frozen field S_out
    k = np.arange(ns + 1)
    S = int(snap.sum()) - 16 + 2 * k - ns
    beta = 1.0 / T_CW
    up = (ns - k) / (1 + np.exp(-2 * beta * ((S + 1.0) / N + H)))
    dn = k / (1 + np.exp(2 * beta * ((S - 1.0) / N + H)))
    Q = np.diag(up[:-1], 1) + np.diag(dn[1:], -1) - np.diag(up + dn)
    p0 = (k == 40).astype(float)
    jump = 2.0 * (k - 40) / ns
    mean = {t: p0 @ expm(Q * t) @ jump for t in (dt / 2, dt)}
    a_N = float(p0 @ Q @ jump)  # the generator: d/dt E[Delta] at t = 0
    assert a_N == pytest.approx(g.cw_jump_moments(0.25, T_CW, H, N)[0], rel=1e-9)
    se_e, se_r = full.std() / math.sqrt(B), rich.std() / math.sqrt(B)
    assert abs(full.mean() - mean[dt]) < 4 * se_e
    assert abs(rich.mean() - (4 * mean[dt / 2] - mean[dt])) < 4 * se_r
    # the point: Richardson is a_N dt within its standard error, Euler is many of its own below
    assert abs(rich.mean() - a_N * dt) < 4 * se_r
    assert a_N * dt - full.mean() > 6 * se_e
    assert abs(4 * mean[dt / 2] - mean[dt] - a_N * dt) < 0.02 * a_N * dt < a_N * dt - mean[dt]
    # noise of the Richardson target, exact from the chain: E[R^2] = 16 E[A^2] - 8 E[A (A+B)] + E[(A+B)^2]
    Ph, Pf = expm(Q * dt / 2), expm(Q * dt)
    second = 16 * (p0 @ Ph @ jump**2) - 8 * (p0 @ Ph @ np.diag(jump) @ Ph @ jump) + p0 @ Pf @ jump**2
    var_r = second - (4 * mean[dt / 2] - mean[dt]) ** 2
    assert abs(rich.var() - var_r) < 4 * var_r * math.sqrt(2.0 / B) * 1.2
    # sigma^2 read from it with the factor 5 of FitSDE (half increments as independent Euler steps) is the
    # generator's variance rate v0 within 10% (exact here: 0.93); the Euler pair's Var(Delta(dt))/dt is further off
    v0 = float(p0 @ Q @ jump**2)
    var_e = p0 @ Pf @ jump**2 - mean[dt] ** 2
    assert 0.9 < var_r / (5 * dt * v0) <= 1.0 and var_e / (dt * v0) < var_r / (5 * dt * v0)
