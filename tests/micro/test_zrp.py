"""Tests of cgflow.micro.zrp: exact facts, sampling and the KMC kernels.

Statistical tests use fixed seeds and tolerances in computed standard errors (or
chi-square p-values), and each checks that it has the power to fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from cgflow.micro import zrp

from ..oracles import chi2_pvalue, make_rng

P_ALL = (0, 1, 2)


def occupation_pvalue(samples: np.ndarray, phi: float, p: int) -> float:
    """Chi-square p-value of pooled occupations against the product-measure marginal P_phi."""
    kmax = int(samples.max()) + 50
    counts = np.bincount(samples.ravel(), minlength=kmax + 1)
    probs = zrp.site_marginal(np.arange(kmax + 1), phi, p)
    return chi2_pvalue(counts, probs)


def reflecting_laplacian(f: np.ndarray) -> np.ndarray:
    """f_{i+1} - 2 f_i + f_{i-1} with the missing neighbour terms dropped at closed ends."""
    lap = np.empty_like(f)
    lap[1:-1] = f[2:] - 2 * f[1:-1] + f[:-2]
    lap[0] = f[1] - f[0]
    lap[-1] = f[-2] - f[-1]
    return lap


# ----------------------------------------------------------------------------- exact facts
# REFERENCE §1 table: rho -> phi = 2m and D = m'(rho)
REFERENCE_P2 = [
    (4, 18.134111, 4.248633),
    (5, 27.632022, 5.249200),
    (6, 39.130722, 6.249472),
    (7, 52.629832, 7.249624),
    (8, 68.129182, 8.249719),
    (9, 85.628687, 9.249782),
    (10, 105.128297, 10.249826),
]


def test_fugacity_matches_reference_table():
    rho = np.array([r for r, _, _ in REFERENCE_P2], dtype=float)
    phi_ref = np.array([f for _, f, _ in REFERENCE_P2])
    d_ref = np.array([d for _, _, d in REFERENCE_P2])
    phi = zrp.fugacity(rho, 2)
    np.testing.assert_allclose(phi, phi_ref, rtol=0, atol=1e-6)
    # D = m'(rho) = phi / (2 chi) (REFERENCE §1), table rounded to 1e-6
    np.testing.assert_allclose(phi / (2 * zrp.compressibility(rho, 2)), d_ref, rtol=0, atol=2e-6)
    assert isinstance(zrp.fugacity(7.0, 2), float)


@pytest.mark.parametrize("p", P_ALL)
def test_density_inverts_fugacity(p):
    rho = np.logspace(-4, 4, 81).reshape(9, 9)  # any shape
    phi = zrp.fugacity(rho, p)
    assert phi.shape == rho.shape
    np.testing.assert_allclose(zrp.density(phi, p), rho, rtol=1e-12, atol=0)
    np.testing.assert_allclose(zrp.fugacity(zrp.density(phi, p), p), phi, rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", P_ALL)
@pytest.mark.parametrize("rho", [0.3, 2.0, 7.0, 40.0])
def test_moments_by_direct_sums(p, rho):
    """Normalisation, E eta = rho, E g(eta) = phi and Var eta = chi from the pmf."""
    phi = zrp.fugacity(rho, p)
    k = np.arange(0, int(rho * 30 + 200))
    pmf = zrp.site_marginal(k, phi, p)
    g = (k > 0).astype(float) if p == 0 else k.astype(float) ** p
    mean = (k * pmf).sum()
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert mean == pytest.approx(rho, rel=1e-11)
    assert (g * pmf).sum() == pytest.approx(phi, rel=1e-11)
    assert ((k - mean) ** 2 * pmf).sum() == pytest.approx(zrp.compressibility(rho, p), rel=1e-10)


def test_site_marginal_is_stable_for_large_fugacity():
    phi = 1.0e8  # I0(2 sqrt(phi)) = exp(2e4) would overflow
    k = np.arange(0, 20000)
    pmf = zrp.site_marginal(k, phi, 2)
    assert np.all(np.isfinite(pmf))
    # log P ~ 2e5 here, so its rounding (~2e5 * 1e-16) limits the relative accuracy to ~1e-11
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    assert (k * pmf).sum() == pytest.approx(zrp.density(phi, 2), rel=1e-9)
    assert zrp.site_marginal(-1, 3.0, 1) == 0.0


def test_site_positions():
    np.testing.assert_array_equal(zrp.site_positions(4), [0.0, 0.25, 0.5, 0.75])


# ----------------------------------------------------------------------------- validation
def test_bad_input_raises():
    rng = make_rng(0)
    eta = np.ones(5, dtype=np.int64)
    with pytest.raises(ValueError):
        zrp.fugacity(0.0, 2)
    with pytest.raises(ValueError):
        zrp.fugacity(np.array([1.0, -1.0]), 1)
    with pytest.raises(ValueError):
        zrp.fugacity(1.0, 3)
    with pytest.raises(ValueError):
        zrp.fugacity(1.0, 1.5)
    with pytest.raises(ValueError):
        zrp.density(1.5, 0)  # geometric needs phi < 1
    with pytest.raises(ValueError):
        zrp.site_marginal(1.5, 2.0, 1)
    with pytest.raises(ValueError):
        zrp.run_zrp(eta.astype(float), 1.0, 2, True, rng)
    with pytest.raises(ValueError):
        zrp.run_zrp(np.array([1, -1, 2], dtype=np.int64), 1.0, 2, True, rng)
    with pytest.raises(ValueError):
        zrp.run_zrp(np.array([3], dtype=np.int64), 1.0, 2, True, rng)  # a lattice needs 2 sites
    with pytest.raises(ValueError):
        zrp.run_zrp(eta, -1.0, 2, True, rng)
    with pytest.raises(ValueError):
        zrp.run_zrp(eta, float("nan"), 2, True, rng)
    with pytest.raises(ValueError):
        zrp.run_zrp(eta, 1.0, 3, True, rng)
    with pytest.raises(ValueError):
        zrp.run_zrp(eta, 1.0, True, True, rng)
    with pytest.raises(ValueError):
        zrp.run_zrp(eta, 1.0, 2, True, np.random.RandomState(0))
    with pytest.raises(ValueError):
        zrp.run_zrp(eta, 1.0, 2, True, rng, bond_jumps=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError):
        zrp.run_zrp_tagged(eta, np.zeros(5, dtype=np.int64), 1.0, 2, True, rng)  # inconsistent sites
    with pytest.raises(ValueError):
        zrp.sample_product_measure(np.array([1.0, -0.5]), 2, rng)
    np.testing.assert_array_equal(eta, 1)  # nothing was touched


# ----------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("p", P_ALL)
def test_product_measure_sampler(p):
    rho = 7.0
    phi = zrp.fugacity(rho, p)
    eta = zrp.sample_product_measure(np.full(100_000, rho), p, make_rng(1, p))
    assert eta.dtype == np.int64
    assert occupation_pvalue(eta, phi, p) > 1e-3
    assert occupation_pvalue(eta, zrp.fugacity(1.05 * rho, p), p) < 1e-6  # power to fail


def test_sampler_large_density_and_empty_sites():
    rho = np.array([0.0, 2000.0] * 5000)
    eta = zrp.sample_product_measure(rho, 2, make_rng(2))
    assert np.all(eta[::2] == 0)
    big = eta[1::2]
    chi = zrp.compressibility(2000.0, 2)
    assert abs(big.mean() - 2000.0) < 4 * np.sqrt(chi / big.size)
    assert abs(big.var() / chi - 1) < 4 * np.sqrt(2 / big.size)


# ----------------------------------------------------------------------------- kernel: exactness
def _compositions(L: int, N: int) -> list[tuple[int, ...]]:
    out = []
    for cut in itertools.combinations(range(N + L - 1), L - 1):
        b = (-1,) + cut + (N + L - 1,)
        out.append(tuple(b[i + 1] - b[i] - 1 for i in range(L)))
    return out


def _generator(states, p: int, periodic: bool) -> np.ndarray:
    """Q matrix of the ZRP on a finite state space (all configurations of N particles)."""
    index = {s: n for n, s in enumerate(states)}
    L = len(states[0])
    Q = np.zeros((len(states), len(states)))
    for s in states:
        for i, k in enumerate(s):
            if k == 0:
                continue
            g = 1.0 if p == 0 else float(k) ** p
            for j in (i - 1, i + 1):
                if not 0 <= j < L:
                    if not periodic:
                        continue  # suppressed: a null event
                    j %= L
                t = list(s)
                t[i] -= 1
                t[j] += 1
                Q[index[s], index[tuple(t)]] += g / 2
                Q[index[s], index[s]] -= g / 2
    return Q


@pytest.mark.parametrize("start", [(0, 5, 0, 0), (1, 1, 1, 1, 1)])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("p", P_ALL)
def test_law_at_fixed_time_is_exact(p, periodic, start):
    """Empirical law of eta(T) from a fixed start vs expm(Q T) on 4-5 sites with 5 particles.

    On so small a lattice the p = 2 kernel restarts often (its bound and class
    list change; from the flat start about 6% of the runs also grow the class
    storage), so the Beta-distributed restart times and the boundary handling are
    checked against the exact finite-state law.
    """
    states = _compositions(len(start), sum(start))
    index = {s: n for n, s in enumerate(states)}
    # times at which the law still changes fast (chi-square noncentrality of a 20% error in
    # time >~ 80 with these replicas; the power check below uses 50%, noncentrality >~ 400)
    duration = (1.5, 0.8, 0.2)[p] if start[0] == 0 else 0.4
    Q = _generator(states, p, periodic)
    exact = expm(Q * duration)[index[start]]
    rng = make_rng(3, p, periodic, *start)
    counts = np.zeros(len(states))
    replicas = 6000
    for r in range(replicas):
        eta = np.array(start, dtype=np.int64)
        if r % 2:
            zrp.run_zrp(eta, duration, p, periodic, rng)
        else:  # the tagged kernel must have the same law
            zrp.run_zrp_tagged(eta, zrp.particle_sites(eta), duration, p, periodic, rng)
        counts[index[tuple(eta)]] += 1
    assert chi2_pvalue(counts, exact) > 1e-3
    # power: the law at a 50% later time is rejected
    wrong = expm(Q * duration * 1.5)[index[start]]
    assert chi2_pvalue(counts, wrong) < 1e-3


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("p", P_ALL)
def test_conservation_and_nonnegativity(p, periodic):
    rng = make_rng(4, p, periodic)
    L = 64
    starts = [
        zrp.sample_product_measure(np.full(L, 3.0), p, rng),
        np.zeros(L, dtype=np.int64),
        np.eye(1, L, L - 1, dtype=np.int64)[0] * 300,  # everything on the last site
        np.eye(1, L, 0, dtype=np.int64)[0] * 300,  # everything on the first site
    ]
    for eta in starts:
        n = eta.sum()
        for duration in (0.0, 0.01, 0.3, 5.0):
            zrp.run_zrp(eta, duration, p, periodic, rng)
            assert eta.sum() == n
            assert eta.min() >= 0


# ----------------------------------------------------------------------------- stationarity
@pytest.mark.parametrize("p", P_ALL)
def test_product_measure_is_preserved(p):
    """Evolving a product-measure sample leaves the pooled site marginal at P_phi."""
    rho, L, replicas = 7.0, 4000, 8  # p = 0 (broad geometric law) needs the samples for power
    phi = zrp.fugacity(rho, p)
    rng = make_rng(5, p)
    out = []
    for _ in range(replicas):
        eta = zrp.sample_product_measure(np.full(L, rho), p, rng)
        zrp.run_zrp(eta, 5.0, p, True, rng)
        out.append(eta)
    out = np.array(out)
    assert occupation_pvalue(out, phi, p) > 1e-3
    assert occupation_pvalue(out, zrp.fugacity(1.05 * rho, p), p) < 1e-6


def test_relaxes_to_canonical_marginal_from_uniform_start():
    """p = 2, periodic ring, N particles dropped uniformly at random: after many
    relaxation times the pooled site marginal is the exact canonical one,
    P(eta_1 = k) = P_phi(k) P_phi(S_{L-1} = N - k) / P_phi(S_L = N),
    computed by convolving the product-measure marginal (any phi gives the same law).
    The slowest ring mode decays at rate D (2 pi / L)^2 ~ 0.28 per unit time, so T = 50 suffices.
    """
    L, N, replicas, duration = 32, 224, 150, 50.0
    phi = zrp.fugacity(N / L, 2)
    pmf = zrp.site_marginal(np.arange(N + 1), phi, 2)
    sums = [np.array([1.0])]
    for _ in range(L):
        sums.append(np.convolve(sums[-1], pmf)[: N + 1])
    canonical = pmf * sums[L - 1][N - np.arange(N + 1)] / sums[L][N]
    assert canonical.sum() == pytest.approx(1.0, abs=1e-12)

    rng = make_rng(6)
    out = []
    for _ in range(replicas):
        eta = np.bincount(rng.integers(0, L, N), minlength=L).astype(np.int64)
        zrp.run_zrp(eta, duration, 2, True, rng)
        out.append(eta)
    counts = np.bincount(np.ravel(out), minlength=N + 1)
    # pooled sites of one ring are exchangeable and, through the fixed N, slightly
    # negatively correlated, which only makes the chi-square statistic smaller
    assert chi2_pvalue(counts, canonical) > 1e-3
    wrong = zrp.site_marginal(np.arange(N + 1), zrp.fugacity(1.05 * N / L, 2), 2)
    assert chi2_pvalue(counts, wrong) < 1e-6
    # the starting (multinomial) law is rejected too: the test sees relaxation
    start = stats.binom.pmf(np.arange(N + 1), N, 1 / L)
    assert chi2_pvalue(counts, start) < 1e-6


# ----------------------------------------------------------------------------- hydrodynamics
def _affine_ensemble(p, rho0, duration, replicas, seed, bins):
    rng = make_rng(seed)
    out = np.empty((replicas, rho0.size))
    for r in range(replicas):
        eta = zrp.sample_product_measure(rho0, p, rng)
        zrp.run_zrp(eta, duration, p, False, rng)
        out[r] = eta
    binned = out.reshape(replicas, bins, -1).mean(axis=2)
    return binned.mean(axis=0), binned.std(axis=0, ddof=1) / np.sqrt(replicas)


def test_affine_profile_mean_p1_exact():
    """p = 1 (independent walkers): d E eta/dt = (1/2) Delta E eta exactly, solved by expm."""
    L, bins, duration = 100, 10, 200.0
    rho0 = 6.0 + 8.0 * (zrp.site_positions(L) - 0.5)  # 2 .. 10
    A = np.diag(np.full(L - 1, 1.0), 1) + np.diag(np.full(L - 1, 1.0), -1) - 2 * np.eye(L)
    A[0, 0] = A[-1, -1] = -1.0  # closed ends: the missing neighbour terms drop
    exact = (expm(0.5 * duration * A) @ rho0).reshape(bins, -1).mean(axis=1)
    mean, se = _affine_ensemble(1, rho0, duration, 400, 7, bins)
    assert np.all(np.abs(mean - exact) <= 4 * se)
    change = exact - rho0.reshape(bins, -1).mean(axis=1)
    assert np.max(np.abs(change) / se) > 20  # the profile did move, measurably


def test_affine_profile_mean_p2_local_equilibrium():
    """p = 2: compare with the discrete hydrodynamic equation d rho_i/dt = (1/2) Delta phi(rho_i).

    The exact mean equation is d E eta_i/dt = (1/2) Delta E g(eta_i); replacing
    E g(eta_i) by phi(E eta_i) (local equilibrium) is exact at t = 0 (product start)
    and its error is driven by the non-harmonicity of the fugacity profile,
    Delta phi ~ phi'' s**2 with the lattice gradient s = 0.06 per site here, i.e.
    second order in the gradient. An offline run of this setting with 2000
    replicas (SE 0.013 per bin) found no discrepancy (largest |mean - prediction|
    0.023, mean over bins -0.003 +- 0.004), so a model-error allowance of 0.03 on
    top of 4 SE is generous but honest.
    """
    L, bins, duration, model_error = 100, 10, 60.0, 0.03
    rho0 = 7.0 + 6.0 * (zrp.site_positions(L) - 0.5)  # 4 .. 10

    def rhs(_, rho):
        return 0.5 * reflecting_laplacian(zrp.fugacity(rho, 2))

    sol = solve_ivp(rhs, (0.0, duration), rho0, method="LSODA", rtol=1e-9, atol=1e-9)
    pred = sol.y[:, -1].reshape(bins, -1).mean(axis=1)
    mean, se = _affine_ensemble(2, rho0, duration, 128, 8, bins)
    assert np.all(np.abs(mean - pred) <= 4 * se + model_error)
    change = pred - rho0.reshape(bins, -1).mean(axis=1)
    assert np.max(np.abs(change) / (4 * se + model_error)) > 4  # the test can see the dynamics


# ----------------------------------------------------------------------------- tagged particles
def test_tagged_msd_p1():
    """Independent walkers jump at rate 1 by +-1: E X^2 = T, Var X^2 = 2 T^2 + T."""
    L, rho, duration = 1000, 5.0, 100.0
    rng = make_rng(9)
    disp = []
    for _ in range(4):
        eta = zrp.sample_product_measure(np.full(L, rho), 1, rng)
        sites = zrp.particle_sites(eta)
        start = sites.copy()
        events, d = zrp.run_zrp_tagged(eta, sites, duration, 1, True, rng)
        np.testing.assert_array_equal(np.bincount(sites, minlength=L), eta)
        np.testing.assert_array_equal((start + d - sites) % L, 0)
        assert np.abs(d).sum() <= events
        disp.append(d)
    d2 = np.concatenate(disp).astype(float) ** 2
    se = d2.std(ddof=1) / np.sqrt(d2.size)
    assert abs(d2.mean() - duration) <= 4 * se
    assert se == pytest.approx(np.sqrt((2 * duration**2 + duration) / d2.size), rel=0.1)
    assert abs(d2.mean() - 1.05 * duration) > 4 * se  # a 5% error would be caught


@pytest.mark.parametrize("p", P_ALL)
def test_tagged_matches_untagged_bitwise(p):
    for periodic in (True, False):
        eta0 = zrp.sample_product_measure(np.linspace(1.0, 6.0, 50), p, make_rng(10))
        a, b = eta0.copy(), eta0.copy()
        ea = zrp.run_zrp(a, 20.0, p, periodic, make_rng(11))
        sites = zrp.particle_sites(b)
        start = sites.copy()
        eb, d = zrp.run_zrp_tagged(b, sites, 20.0, p, periodic, make_rng(11))
        assert ea == eb
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.bincount(sites, minlength=50), b)
        if not periodic:
            np.testing.assert_array_equal(start + d, sites)


# ----------------------------------------------------------------------------- determinism, counts
@pytest.mark.parametrize("p", P_ALL)
def test_determinism(p):
    def run(seed):
        rng = make_rng(seed)
        eta = zrp.sample_product_measure(np.full(200, 4.0), p, rng)
        bonds = np.zeros(200, dtype=np.int64)
        events = zrp.run_zrp(eta, 3.0, p, True, rng, bond_jumps=bonds)
        return eta, bonds, events, rng.random()

    a, b, c = run(12), run(12), run(13)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("p", P_ALL)
def test_event_rate_at_stationarity(p, periodic):
    """E[events] = T sum_i E g(eta_i) = T L phi (minus the suppressed half at closed ends);
    each bond is crossed at mean rate phi. Tolerance: 4 SE over replicas."""
    L, rho, duration, replicas = 200, 7.0, 10.0, 40
    phi = zrp.fugacity(rho, p)
    expected = duration * phi * (L if periodic else L - 1)
    rng = make_rng(14, p, periodic)
    events = np.empty(replicas)
    bonds_total = np.zeros(L, dtype=np.int64)
    for r in range(replicas):
        eta = zrp.sample_product_measure(np.full(L, rho), p, rng)
        bonds = np.zeros(L, dtype=np.int64)
        events[r] = zrp.run_zrp(eta, duration, p, periodic, rng, bond_jumps=bonds)
        assert bonds.sum() == events[r]
        if not periodic:
            assert bonds[-1] == 0
        bonds_total += bonds
    se = events.std(ddof=1) / np.sqrt(replicas)
    assert abs(events.mean() - expected) <= 4 * se
    assert se < 0.01 * expected
    n_bonds = L if periodic else L - 1
    per_bond = bonds_total[:n_bonds] / (replicas * duration)
    assert abs(per_bond.mean() - phi) <= 4 * se / (duration * n_bonds)


@pytest.mark.parametrize("p", P_ALL)
def test_bond_jumps_single_particle(p):
    """One particle on a closed line: bond b is crossed an odd number of times iff it
    separates the start from the end site, and every event crosses one bond."""
    L = 7
    rng = make_rng(15, p)
    for _ in range(50):
        eta = np.zeros(L, dtype=np.int64)
        s0 = int(rng.integers(L))
        eta[s0] = 1
        bonds = np.zeros(L, dtype=np.int64)
        events = zrp.run_zrp(eta, 3.0, p, False, rng, bond_jumps=bonds)
        s1 = int(np.flatnonzero(eta)[0])
        assert bonds.sum() == events
        between = (np.arange(L) >= min(s0, s1)) & (np.arange(L) < max(s0, s1))
        np.testing.assert_array_equal(bonds % 2, between.astype(int))
    eta = np.array([1, 0], dtype=np.int64)
    bonds = np.zeros(2, dtype=np.int64)
    events = zrp.run_zrp(eta, 10.0, p, False, rng, bond_jumps=bonds)
    assert events > 0 and bonds[0] == events and bonds[1] == 0
