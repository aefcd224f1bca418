"""Tests of cgflow.micro.glauber: exact facts, stationary laws and jump moments of the kernels.

Statistical tests use fixed seeds; tolerances are chi-square p-values or 4 computed
standard errors, and each test also checks that it can fail (a wrong temperature is
rejected by the same data).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, stats

from cgflow.micro import glauber as g

from ..oracles import chi2_pvalue, make_rng


# ----------------------------------------------------------------------------- exact facts
def test_reference_constants():
    cw = g.cw_fixed_point(1.1, 0.1)
    for key, ref in g.CW_T1P1_H0P1.items():
        assert cw[key] == pytest.approx(ref, abs=2e-3 if key != "m_star" else 1e-7)
    assert g.cw_drift(cw["m_star"], 1.1, 0.1) == pytest.approx(0.0, abs=1e-12)
    assert g.ISING_TC == pytest.approx(2.269185, abs=1e-6)
    assert g.onsager_energy(2.5) == pytest.approx(-1.106079, abs=1e-6)
    # high-T limit u -> -2 tanh(beta) ... and low-T u -> -2
    assert g.onsager_energy(0.5) == pytest.approx(-2.0, abs=1e-3)
    assert g.onsager_magnetisation(2.5) == 0.0
    assert g.onsager_magnetisation(1.0) == pytest.approx(0.9992757, abs=1e-6)


def test_cw_jump_moments_limits_and_generator():
    m = np.linspace(-0.9, 0.9, 7)
    drift, second = g.cw_jump_moments(m, 1.1, 0.1, 10**7)
    np.testing.assert_allclose(drift, g.cw_drift(m, 1.1, 0.1), atol=1e-6)
    np.testing.assert_allclose(second * 10**7, g.cw_diffusion(m, 1.1, 0.1, 1), rtol=1e-5)
    # finite N differs at O(1/N)
    d16, _ = g.cw_jump_moments(0.25, 1.1, 0.1, 16)
    assert abs(d16 - g.cw_drift(0.25, 1.1, 0.1)) > 1e-3
    # the generator reproduces the jump moments, and the Gibbs law is its stationary law
    N = 16
    Q = g.cw_generator(N, 1.1, 0.1)
    mm, p = g.cw_stationary_law(N, 1.1, 0.1)
    np.testing.assert_allclose(Q @ mm, g.cw_jump_moments(mm, 1.1, 0.1, N)[0], atol=1e-12)
    np.testing.assert_allclose(p @ Q, 0.0, atol=1e-14)
    # detailed balance: pi_k Q_k,k+1 = pi_k+1 Q_k+1,k
    np.testing.assert_allclose(p[:-1] * np.diag(Q, 1), p[1:] * np.diag(Q, -1), rtol=1e-10)


def test_ising_exact_law_sanity():
    M, B, p = g.ising_exact_law(3, 2.5, 0.0)
    assert p.sum() == pytest.approx(1.0)
    assert (p * M).sum() == pytest.approx(0.0, abs=1e-12)  # h = 0 symmetry
    M4, B4, p4 = g.ising_exact_law(4, 1e6, 0.1)  # T -> infinity: binomial M, B independent of M mean
    assert (p4 * M4).sum() == pytest.approx(0.0, abs=1e-4)
    assert (p4 * M4**2).sum() == pytest.approx(16.0, rel=1e-4)
    with pytest.raises(ValueError, match="size"):
        g.ising_exact_law(5, 2.5, 0.1)


# ----------------------------------------------------------------------------- stationary laws
def test_curie_weiss_stationary_law():
    """N = 16 CW: m sampled every 20 time units (>> relaxation) matches the exact law; T = 1.3 rejected."""
    N, T, h, gap, n = 16, 1.1, 0.1, 20.0, 4000
    Q = g.cw_generator(N, T, h)
    lam2 = np.sort(np.linalg.eigvals(Q).real)[-2]
    assert math.exp(lam2 * gap) < 0.02  # samples are nearly independent (exact spectral gap)
    p = g.GlauberParams("curie_weiss", T, h, 4)
    rng = make_rng(2, 1)
    s = g.random_spins(1, 4, rng, m0=0.0)[0]
    _, obs = g.run_time(s, gap * np.arange(1, n + 1), p, rng)
    k = np.rint((obs[:, 0] + 1) * N / 2).astype(int)
    counts = np.bincount(k, minlength=N + 1)
    _, law = g.cw_stationary_law(N, T, h)
    assert chi2_pvalue(counts, law) > 1e-3
    _, wrong = g.cw_stationary_law(N, 1.3, h)
    assert chi2_pvalue(counts, wrong) < 1e-6


def test_ising_torus_stationary_law():
    """4x4 Ising torus, T = 2.5, h = 0.1: joint (M, bond sum) histogram vs enumeration; T = 3 rejected."""
    L, T, h, gap, n = 4, 2.5, 0.1, 8.0, 5000
    p = g.GlauberParams("ising2d", T, h, L)
    rng = make_rng(2, 2)
    s = g.random_spins(1, L, rng, m0=0.0)[0]
    _, obs = g.run_time(s, gap * np.arange(1, n + 1), p, rng)
    N = L * L
    M = np.rint(obs[:, 0] * N).astype(int)
    B = np.rint(2 * N * (1 - 2 * obs[:, 1])).astype(int)
    # the observables are those of a lattice state: parity and range
    assert np.all((M + N) % 2 == 0) and np.all(np.abs(B) <= 2 * N)
    Me, Be, pe = g.ising_exact_law(L, T, h)
    index = {(a, b): i for i, (a, b) in enumerate(zip(Me, Be))}
    idx = np.array([index[(a, b)] for a, b in zip(M, B)])
    counts = np.bincount(idx, minlength=pe.size)
    assert chi2_pvalue(counts, pe) > 1e-3
    _, _, wrong = g.ising_exact_law(L, 3.0, h)
    assert chi2_pvalue(counts, wrong) < 1e-6


def _window_gibbs_law(frozen, origin, w, T, h):
    """Exact law of the w*w window spins (state index sum_i 2**i [s_i = +1], row-major) given the rest frozen."""
    L = frozen.shape[0]
    rows = (origin[0] + np.arange(w)) % L
    cols = (origin[1] + np.arange(w)) % L
    states = np.arange(2 ** (w * w))
    bits = (states[:, None] >> np.arange(w * w)) & 1
    lat = np.repeat(frozen[None].astype(np.int64), states.size, axis=0)
    lat[:, rows[:, None], cols[None, :]] = (2 * bits - 1).reshape(-1, w, w)
    bonds = (lat * np.roll(lat, -1, axis=1) + lat * np.roll(lat, -1, axis=2)).sum(axis=(1, 2))
    energy = -bonds - h * lat.sum(axis=(1, 2))
    logw = -energy / T
    p = np.exp(logw - logw.max())
    return p / p.sum()


def test_ising_frozen_window_exact_law():
    """3x3 frozen window wrapping around a 6x6 lattice's corner: the window's 512-state law given its frozen
    ghost ring matches enumeration (the padded-lattice neighbour offsets and ghost cells); T = 3.5 rejected."""
    L, w, origin, T, h, gap, n = 6, 3, (4, 5), 2.5, 0.1, 3.0, 6000
    p = g.GlauberParams("ising2d", T, h, L)
    rng = make_rng(2, 4)
    s = g.random_spins(1, L, rng, m0=0.2)[0]
    rows, cols = np.r_[4:6, 0:1], np.r_[5:6, 0:2]
    s_start = s.copy()
    idx = np.empty(n, np.int64)
    weights = 2 ** np.arange(w * w)
    for i in range(n):
        s, _ = g.evolve_window(s, origin, w, 1, p, rng, "frozen", duration=gap)
        idx[i] = (((s[np.ix_(rows, cols)].ravel() + 1) // 2) * weights).sum()
    counts = np.bincount(idx, minlength=2 ** (w * w))
    outside = np.ones((L, L), bool)
    outside[np.ix_(rows, cols)] = False
    assert np.array_equal(s[outside], s_start[outside])
    frozen = s.copy()  # the outside never changed, so any state carries the frozen ring
    assert chi2_pvalue(counts, _window_gibbs_law(frozen, origin, w, T, h)) > 1e-3
    assert chi2_pvalue(counts, _window_gibbs_law(frozen, origin, w, 3.5, h)) < 1e-6


def test_ising_periodic_window_torus_law():
    """A 4x4 periodic window wrapping inside an 8x8 lattice is an isolated torus: (M, bond sum) law by enumeration."""
    L, w, origin, T, h, gap, n = 8, 4, (6, 3), 2.5, 0.1, 8.0, 4000
    p = g.GlauberParams("ising2d", T, h, L)
    rng = make_rng(2, 5)
    s = g.random_spins(1, L, rng, m0=0.0)[0]
    rows, cols = (origin[0] + np.arange(w)) % L, (origin[1] + np.arange(w)) % L
    outside = np.ones((L, L), bool)
    outside[np.ix_(rows, cols)] = False
    s_out = s[outside].copy()
    Me, Be, pe = g.ising_exact_law(w, T, h)
    index = {(a, b): i for i, (a, b) in enumerate(zip(Me, Be))}
    idx = np.empty(n, np.int64)
    for i in range(n):
        s, _ = g.evolve_window(s, origin, w, 1, p, rng, "periodic", duration=gap)
        win = s[np.ix_(rows, cols)].astype(np.int64)
        bonds = (win * np.roll(win, -1, axis=0) + win * np.roll(win, -1, axis=1)).sum()
        idx[i] = index[(int(win.sum()), int(bonds))]
    assert np.array_equal(s[outside], s_out)
    counts = np.bincount(idx, minlength=pe.size)
    assert chi2_pvalue(counts, pe) > 1e-3
    _, _, wrong = g.ising_exact_law(w, 3.0, h)
    assert chi2_pvalue(counts, wrong) < 1e-6


@pytest.mark.parametrize("model", g.MODELS)
def test_large_lattice_wide_index_path(model):
    """L = 182 (more than 32767 padded sites: the int32 index kernels): recorded observables are the final state's,
    the run is deterministic, and the event clock flips exactly n_events spins' worth of changes."""
    L = 182
    p = g.GlauberParams(model, 2.5 if model == "ising2d" else 1.1, 0.1, L)
    s = g.random_spins(1, L, make_rng(3), m0=0.3)[0]
    final, obs = g.run_time(s, [0.01, 0.02], p, make_rng(4))
    np.testing.assert_allclose(obs[-1], g.observables(final, p), atol=1e-12)
    a1, t1 = g.run_events(s, 3000, p, make_rng(5))
    a2, t2 = g.run_events(s, 3000, p, make_rng(5))
    assert np.array_equal(a1, a2) and t1 == t2 and 0 < t1 < 1
    changed = (a1 != s).sum()
    assert 0 < changed <= 3000 and (3000 - changed) % 2 == 0  # a spin flipped twice is unchanged


# ----------------------------------------------------------------------------- jump moments
def test_curie_weiss_short_time_moments():
    """N = 256, m0 = 0.25, delta = 0.05: mean and variance of dm within 4 SE of expm(Q delta)."""
    L, T, h, m0, delta, n = 16, 1.1, 0.1, 0.25, 0.05, 20000
    N = L * L
    p = g.GlauberParams("curie_weiss", T, h, L)
    rng = make_rng(2, 3)
    s0 = g.random_spins(1, L, rng, m0=m0)[0]
    dm = np.array([g.run_time(s0, [delta], p, rng)[1][0, 0] for _ in range(n)]) - m0

    def exact(temp):
        Q = g.cw_generator(N, temp, h)
        k0 = int((1 + m0) * N / 2)
        row = linalg.expm(Q * delta)[k0]
        jumps = 2 * (np.arange(N + 1) - k0) / N
        mu = row @ jumps
        var = row @ (jumps - mu) ** 2
        mu4 = row @ (jumps - mu) ** 4
        return mu, var, mu4

    mu, var, mu4 = exact(T)
    se_mu = math.sqrt(var / n)
    se_var = math.sqrt((mu4 - var**2) / n)
    assert abs(dm.mean() - mu) < 4 * se_mu
    assert abs(dm.var() - var) < 4 * se_var
    # the finite-time moments are close to the infinitesimal ones (O(delta) corrections)
    a, s2 = g.cw_jump_moments(m0, T, h, N)
    assert mu / delta == pytest.approx(a, rel=0.05)
    assert var / delta == pytest.approx(s2, rel=0.05)
    assert s2 == pytest.approx(g.cw_diffusion(m0, T, h, N), rel=0.01)
    # power: a 10% different temperature is many SE away
    mu_w, var_w, _ = exact(1.2)
    assert abs(mu_w - mu) > 8 * se_mu


# ----------------------------------------------------------------------------- kernel contracts
@pytest.mark.parametrize("model", g.MODELS)
def test_determinism_and_time_units(model):
    p = g.GlauberParams(model, 2.5 if model == "ising2d" else 1.1, 0.1, 16)
    s = g.random_spins(1, 16, make_rng(0), m0=0.2)[0]
    a1, t1 = g.run_events(s, 5000, p, make_rng(7))
    a2, t2 = g.run_events(s, 5000, p, make_rng(7))
    assert np.array_equal(a1, a2) and t1 == t2
    assert (a1 != s).sum() > 0
    # a window covering the whole lattice is the periodic system, both boundary modes
    for bd in g.BOUNDARIES:
        w, tw = g.evolve_window(s, (0, 0), 16, 5000, p, make_rng(7), bd)
        assert np.array_equal(w, a1) and tw == t1
    # spins outside a window never change
    w, _ = g.evolve_window(s, (12, 12), 8, 500, p, make_rng(8), "frozen")
    outside = np.ones((16, 16), bool)
    outside[np.ix_(np.r_[12:16, 0:4], np.r_[12:16, 0:4])] = False
    assert np.array_equal(w[outside], s[outside]) and not np.array_equal(w, s)


def test_run_time_records_observables_of_final_state():
    p = g.GlauberParams("ising2d", 2.5, 0.1, 8)
    s = g.random_spins(1, 8, make_rng(1))[0]
    final, obs = g.run_time(s, [0.5, 1.0, 3.0], p, make_rng(3))
    np.testing.assert_allclose(obs[-1], g.observables(final, p), atol=1e-12)


def test_bad_input_names_parameter():
    with pytest.raises(ValueError, match="model"):
        g.GlauberParams("potts", 1.0, 0.0, 8)
    with pytest.raises(ValueError, match="temperature"):
        g.GlauberParams("ising2d", -1.0, 0.0, 8)
    with pytest.raises(ValueError, match="field"):
        g.GlauberParams("ising2d", 1.0, float("nan"), 8)
    with pytest.raises(ValueError, match="size"):
        g.GlauberParams("ising2d", 1.0, 0.0, 1)
    p = g.GlauberParams("ising2d", 2.5, 0.0, 8)
    s = np.ones((8, 8), np.int8)
    with pytest.raises(ValueError, match="size"):
        g.run_events(np.ones((4, 4), np.int8), 1, p, make_rng(0))
    with pytest.raises(ValueError, match="n_events"):
        g.run_events(s, -1, p, make_rng(0))
    with pytest.raises(ValueError, match="rng"):
        g.run_events(s, 1, p, 0)
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        g.run_events(np.zeros((8, 8), np.int8), 1, p, make_rng(0))
    with pytest.raises(ValueError, match="window"):
        g.evolve_window(s, (0, 0), 9, 1, p, make_rng(0))
    with pytest.raises(ValueError, match="boundary"):
        g.evolve_window(s, (0, 0), 4, 1, p, make_rng(0), "open")
    with pytest.raises(ValueError, match="times"):
        g.run_time(s, [1.0, 0.5], p, make_rng(0))
