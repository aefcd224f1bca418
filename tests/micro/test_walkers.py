"""Tests of cgflow.micro.walkers: exact facts, the p_cf lift and the walker kernels (seed 003).

Statistical tests use fixed seeds and tolerances in computed standard errors or
chi-square p-values; each power check shows that a plausible wrong model is rejected.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from cgflow.micro import walkers as wk

from ..oracles import chi2_pvalue, make_rng

PAPER = wk.WalkerParams()  # n_f 2400, p_r .205, p_l .195, delta_y 3.875e-3, delta_t 2.5e-3, 400 steps


def two_sample_pvalue(a, b, min_expected: float = 5.0) -> float:
    """Chi-square test of homogeneity of two integer samples (sparse cells pooled)."""
    lo = min(a.min(), b.min())
    hi = max(a.max(), b.max())
    ca = np.bincount(a - lo, minlength=hi - lo + 1).astype(float)
    cb = np.bincount(b - lo, minlength=hi - lo + 1).astype(float)
    tot = ca + cb
    exp_small = np.minimum(tot * ca.sum() / tot.sum(), tot * cb.sum() / tot.sum())
    big = exp_small >= min_expected
    table = np.array([np.append(ca[big], ca[~big].sum()), np.append(cb[big], cb[~big].sum())])
    table = table[:, table.sum(0) > 0]
    return float(stats.chi2_contingency(table, correction=False)[1])


def uniform_in_bin(bin_index: int, n_bins: int, walkers: int, rng) -> np.ndarray:
    counts = np.zeros(n_bins, dtype=np.int64)
    counts[bin_index] = walkers
    return wk.sample_positions(counts, rng)


def jump_counts(x0, x1, step) -> np.ndarray:
    """Net jump count k with x1 = x0 + k step (mod 2), recovered exactly (|k step| < 1)."""
    d = x1 - x0
    d = d - 2.0 * np.round(d / 2.0)
    k = np.round(d / step)
    assert np.allclose(k * step, d, atol=1e-9)
    return k.astype(np.int64)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "changes, key",
    [
        ({"walkers": 0}, "walkers"),
        ({"walkers": 2.5}, "walkers"),
        ({"jump_right": -0.1}, "jump_right"),
        ({"jump_left": 1.2}, "jump_left"),
        ({"jump_right": 0.6, "jump_left": 0.5}, "jump_right \\+ jump_left"),
        ({"jump_right": float("nan")}, "jump_right"),
        ({"step": 0.0}, "step"),
        ({"step": -1e-3}, "step"),
        ({"dt": 0.0}, "dt"),
        ({"fine_steps_per_coarse": 0}, "fine_steps_per_coarse"),
        ({"fine_steps_per_coarse": 400.0}, "fine_steps_per_coarse"),
        ({"density_scale": 0.0}, "density_scale"),
        ({"cell_width": 0.3}, "cell_width"),
        ({"cell_width": -0.1}, "cell_width"),
    ],
)
def test_params_reject_bad_values(changes, key):
    with pytest.raises(ValueError, match=key):
        wk.WalkerParams(**changes)


def test_params_derived_values():
    assert PAPER.kappa == pytest.approx(0.16129, abs=1e-5)  # delta_t/(4 delta_y), REFERENCE §1c
    assert PAPER.cells == 24 and PAPER.coarse_dt == pytest.approx(1.0)
    assert PAPER.jump_stay == pytest.approx(0.6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.walkers = 3  # frozen


def test_bad_inputs_name_the_parameter():
    rng = make_rng(0)
    x = wk.sample_fine_state(np.zeros(24), PAPER.walkers, rng)
    with pytest.raises(ValueError, match="law"):
        wk.simulate("heat", x, 1, PAPER, rng)
    with pytest.raises(ValueError, match="synthetic"):
        wk.simulate("synthetic", x, 1, PAPER, rng)
    with pytest.raises(ValueError, match="method"):
        wk.simulate("burgers", x, 1, PAPER, rng, method="exact")
    with pytest.raises(ValueError, match="method"):
        wk.simulate("advection_diffusion", x, 1, PAPER, rng, method="fast")
    with pytest.raises(ValueError, match="n_coarse_steps"):
        wk.simulate("advection_diffusion", x, -1, PAPER, rng)
    with pytest.raises(ValueError, match="positions"):
        wk.simulate("advection_diffusion", x[:-1], 1, PAPER, rng)
    bad = x.copy()
    bad[0] = 1.0
    with pytest.raises(ValueError, match="positions"):
        wk.simulate("burgers", bad, 1, PAPER, rng)
    with pytest.raises(ValueError, match="rng"):
        wk.simulate("advection_diffusion", x, 1, PAPER, np.random.RandomState(0))
    with pytest.raises(ValueError, match="params"):
        wk.simulate("advection_diffusion", x, 1, {"walkers": 2400}, rng)
    with pytest.raises(ValueError, match="n_bins"):
        wk.bin_counts(x, 0)
    with pytest.raises(ValueError, match="counts"):
        wk.sample_positions(np.array([3, -1, 2]), rng)
    with pytest.raises(ValueError, match="counts"):
        wk.sample_positions(np.array([0.5, 1.0]), rng)
    with pytest.raises(ValueError, match="walkers"):
        wk.sample_counts(np.zeros(24), 0, rng)
    with pytest.raises(ValueError, match="X"):
        wk.sample_counts(np.array([0.0, np.inf]), 10, rng)
    with pytest.raises(ValueError, match="modes"):
        wk.sample_initial_states(4, 24, 13, 0.5, rng)
    with pytest.raises(ValueError, match="amplitude"):
        wk.sample_initial_states(4, 24, 3, -0.5, rng)
    with pytest.raises(ValueError, match="n_fine_steps"):
        wk.burgers_mean_field(np.ones(8), -2, 0.1)
    with pytest.raises(ValueError, match="amplitude"):
        wk.burgers_shock_time(0.5, 0.0, 0.5)


# ----------------------------------------------------------------------------- exact facts
def test_ad_kernel_matches_reference_values():
    # REFERENCE §6, 24 bins m = -2..3 and 96 bins m = -8..10 (4 decimals)
    K24 = wk.ad_bin_kernel(24, 1, PAPER)
    np.testing.assert_allclose(
        K24[np.arange(-2, 4)], [0.0048, 0.1436, 0.5348, 0.2946, 0.0220, 0.0002], rtol=0, atol=5e-5
    )
    assert K24.sum() == pytest.approx(1.0, abs=1e-12)
    m = np.arange(24)
    m = np.where(m > 12, m - 24, m)
    mean = (m * K24).sum()
    assert mean == pytest.approx(0.186, abs=5e-4)  # = 4 delta_y / w
    assert ((m - mean) ** 2 * K24).sum() == pytest.approx(0.3458 + 1 / 6, abs=2e-4)
    ref96 = [.0002, .0009, .0031, .0093, .0231, .0490, .0864, .1272, .1604, .1653,
             .1455, .1073, .0656, .0343, .0148, .0054, .0017, .0004, .0001]  # fmt: skip
    K96 = wk.ad_bin_kernel(96, 1, PAPER)
    np.testing.assert_allclose(K96[np.arange(-8, 11)], ref96, rtol=0, atol=5e-5)


def test_ad_displacement_law_and_moments():
    k, p = wk.ad_displacement_pmf(400, PAPER.jump_right, PAPER.jump_left)
    mean, var = wk.ad_displacement_moments(PAPER)
    dy = PAPER.step
    assert mean == pytest.approx(4 * dy, rel=1e-12)  # REFERENCE §6
    assert var == pytest.approx(159.96 * dy**2, rel=1e-12)
    assert var / (2 * PAPER.coarse_dt) == pytest.approx(1.20095e-3, abs=1e-8)  # D_exact
    assert (k * p).sum() * dy == pytest.approx(mean, rel=1e-10)
    assert ((k * dy - mean) ** 2 * p).sum() == pytest.approx(var, rel=1e-10)
    # the pmf against a direct 400-fold convolution of (p_l, p_stay, p_r)
    step = np.array([PAPER.jump_left, PAPER.jump_stay, PAPER.jump_right])
    conv = np.array([1.0])
    for _ in range(400):
        conv = np.convolve(conv, step)
    np.testing.assert_allclose(p, conv, rtol=0, atol=1e-14)
    m50, v50 = wk.ad_displacement_moments(PAPER, 50)
    assert m50 == pytest.approx(0.775, abs=1e-12) and math.sqrt(v50) == pytest.approx(0.347, abs=5e-4)


def test_ad_multistep_kernel_is_not_a_matrix_power():
    K1 = wk.ad_bin_kernel(24, 1, PAPER)
    K5 = wk.ad_bin_kernel(24, 5, PAPER)
    K1_5 = np.real(np.fft.ifft(np.fft.fft(K1) ** 5))  # circulant K**5
    assert K5.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.abs(K5 - K1_5).max() > 5e-3  # walkers are no longer uniform inside bins
    # mean of K^(n) equals n times the per-step mean (in bins), up to wrap-around
    m = np.arange(24)
    m = np.where(m > 12, m - 24, m)
    assert (m * K5).sum() == pytest.approx(5 * 0.186, abs=2e-3)
    # propagating a delta density reproduces the kernel, rotated
    rho0 = np.zeros(24)
    rho0[7] = 1.0
    np.testing.assert_allclose(wk.ad_propagate_density(rho0, 5, PAPER), np.roll(K5, 7), atol=1e-14)


def test_burgers_mean_field_is_lax_friedrichs():
    rng = make_rng(11)
    rho = rng.uniform(0.1, 1.2, size=64)
    kappa = 0.3  # kappa rho <= 0.36: no clipping
    out = wk.burgers_mean_field(rho, 3, kappa)
    r = rho
    for s in range(3):
        rm, rp = np.roll(r, 1), np.roll(r, -1)
        r = 0.5 * (rm + rp) + kappa * (rm**2 - rp**2)
        np.testing.assert_allclose(out[s + 1], r, rtol=1e-13)
    assert out[-1].sum() == pytest.approx(rho.sum(), rel=1e-13)
    # with clipping: the right-moving share saturates at the whole cell
    big = wk.burgers_mean_field(np.array([0.0, 10.0, 0.0, 0.0]), 1, 0.3)[1]
    np.testing.assert_allclose(big, [0.0, 0.0, 10.0, 0.0])


def test_burgers_shock_facts():
    # REFERENCE §6 check at c = .5, A = .5, rho_bar = .5: t* = 2.55, s = .25, jump at t = 12 ~ 0.273
    assert wk.burgers_shock_time(0.5, 0.5, 0.5) == pytest.approx(2.546, abs=1e-3)
    assert wk.burgers_shock_position(4.0, 0.5, 0.5) == pytest.approx(0.0)
    assert wk.burgers_shock_position(12.0, 0.5, 0.5) == pytest.approx(0.0)  # wrapped: -1 + 3 = 2 = 0
    assert wk.burgers_shock_position(2.0, 0.5, 0.5) == pytest.approx(-0.5)
    rl, rr = wk.burgers_shock_states(12.0, 0.5, 0.5, 0.5)
    assert rl - rr == pytest.approx(0.273, abs=1.5e-3)
    assert (rl + rr) / 2 == pytest.approx(0.5)
    assert wk.burgers_shock_states(2.0, 0.5, 0.5, 0.5) == (0.5, 0.5)  # before t*
    # the shock states are the initial densities carried along the characteristics that meet there
    t, c, rb, A = 12.0, 0.5, 0.5, 0.5
    a = (rl - rb) * c * t
    assert a == pytest.approx(c * rb * A * t * math.sin(math.pi * a), abs=1e-12)


# ----------------------------------------------------------------------------- synthetic law: p_cf and lifting
def test_sample_positions_roundtrip_and_uniform_within_bins():
    rng = make_rng(21)
    counts = rng.multinomial(48000, np.full(24, 1 / 24))
    counts[3] = 0
    x = wk.sample_positions(counts, rng)
    assert x.shape == (counts.sum(),) and x.min() >= -1.0 and x.max() < 1.0
    np.testing.assert_array_equal(wk.bin_counts(x, 24), counts)
    # at 96 bins each 24-bin count splits uniformly over its 4 sub-bins
    c96 = wk.bin_counts(x, 96).reshape(24, 4)
    np.testing.assert_array_equal(c96.sum(1), counts)
    stat = (((c96 - counts[:, None] / 4) ** 2) / np.maximum(counts[:, None] / 4, 1e-300))[counts > 0].sum()
    assert stats.chi2.sf(stat, 3 * (counts > 0).sum()) > 1e-3
    # power: positions at the left half of each bin fail the same test
    c96_bad = wk.bin_counts(-1.0 + (np.floor((x + 1) * 12) + 0.5 * ((x + 1) * 12 % 1)) / 12, 96).reshape(24, 4)
    stat_bad = (((c96_bad - counts[:, None] / 4) ** 2) / np.maximum(counts[:, None] / 4, 1e-300))[counts > 0].sum()
    assert stats.chi2.sf(stat_bad, 3 * (counts > 0).sum()) < 1e-6


def test_sample_counts_follow_softmax_multinomial():
    rng = make_rng(22)
    X = np.sin(np.pi * wk.bin_centres(24)) + 1000.0  # gauge shift and large values: no overflow
    rho = wk.softmax(X)
    np.testing.assert_allclose(rho, wk.softmax(X - 1000.0), rtol=1e-12)
    m = wk.sample_counts(np.broadcast_to(X, (200, 24)), 4800, rng)
    assert m.shape == (200, 24) and (m.sum(1) == 4800).all()
    assert chi2_pvalue(m.sum(0), rho) > 1e-3
    assert chi2_pvalue(m.sum(0), wk.softmax(0.9 * X)) < 1e-6  # power


def test_initial_states_moments():
    rng = make_rng(23)
    A, K, n = 0.4, 5, 4000
    X = wk.sample_initial_states(n, 24, K, A, rng)
    assert X.shape == (n, 24)
    np.testing.assert_allclose(X.sum(1), 0.0, atol=1e-12)  # zero mean per sample
    y = wk.bin_centres(24)
    k = np.arange(1, K + 1)
    cov = A**2 * (np.cos(np.pi * np.outer(y, k)[:, None, :] - np.pi * np.outer(y, k)[None, :, :]) / k**2).sum(-1)
    # each X0_j is exactly Gaussian with variance cov[j, j]: n s_j**2 / cov_jj ~ chi2(n)
    for j in (0, 7, 23):
        s = (X[:, j] ** 2).sum() / cov[j, j]
        assert 1e-3 < stats.chi2.cdf(s, n) < 1 - 1e-3
    # a covariance: mean of X_i X_j within 4 SE (SE from the Gaussian fourth moment)
    i, j = 2, 5
    prod = X[:, i] * X[:, j]
    se = math.sqrt((cov[i, i] * cov[j, j] + cov[i, j] ** 2) / n)
    assert abs(prod.mean() - cov[i, j]) < 4 * se
    assert abs(cov[i, j]) > 8 * se  # the covariance is resolved (the test has power)


# ----------------------------------------------------------------------------- advection-diffusion
N_KERNEL = 200_000


@pytest.fixture(scope="module")
def ad_exact_run():
    params = PAPER.replace(walkers=N_KERNEL)
    rng = make_rng(31)
    x0 = uniform_in_bin(5, 24, N_KERNEL, rng)
    out = wk.simulate("advection_diffusion", x0, 1, params, rng, method="exact")
    return params, out


def test_ad_bin_to_bin_kernel_chi_square(ad_exact_run):
    params, out = ad_exact_run
    target = (wk.bin_counts(out[1], 24))
    offsets = np.roll(target, -5)  # offsets[m mod 24] = walkers that moved m bins
    K = wk.ad_bin_kernel(24, 1, params)
    assert chi2_pvalue(offsets, K) > 1e-3
    # power: the kernel with p_r and p_l swapped (leftward drift) is rejected
    swapped = params.replace(jump_right=params.jump_left, jump_left=params.jump_right)
    assert chi2_pvalue(offsets, wk.ad_bin_kernel(24, 1, swapped)) < 1e-10
    # and so is the kernel with both jump probabilities halved (half the diffusion)
    narrow = params.replace(jump_right=0.1025, jump_left=0.0975)
    assert chi2_pvalue(offsets, wk.ad_bin_kernel(24, 1, narrow)) < 1e-10


def test_ad_displacement_mean_and_variance(ad_exact_run):
    params, out = ad_exact_run
    d = jump_counts(out[0], out[1], params.step) * params.step
    mean, var = wk.ad_displacement_moments(params)
    k, p = wk.ad_displacement_pmf(400, params.jump_right, params.jump_left)
    mu4 = ((k * params.step - mean) ** 4 * p).sum()
    n = d.size
    assert abs(d.mean() - mean) < 4 * math.sqrt(var / n)
    assert abs(d.var(ddof=1) - var) < 4 * math.sqrt((mu4 - var**2) / n)
    # power: 4 SE of the mean is well below the drift itself
    assert 4 * math.sqrt(var / n) < 0.05 * mean


def test_ad_exact_and_step_paths_agree():
    n = 40_000
    params = PAPER.replace(walkers=n)
    rng = make_rng(32)
    x0 = uniform_in_bin(11, 24, n, rng)
    k_exact = jump_counts(x0, wk.simulate("advection_diffusion", x0, 1, params, rng, method="exact")[1], params.step)
    k_steps = jump_counts(x0, wk.simulate("advection_diffusion", x0, 1, params, rng, method="steps")[1], params.step)
    kk, p = wk.ad_displacement_pmf(400, params.jump_right, params.jump_left)
    assert two_sample_pvalue(k_exact, k_steps) > 1e-3
    for ks in (k_exact, k_steps):
        assert chi2_pvalue(np.bincount(ks + 400, minlength=801), p) > 1e-3
    # power: the step path of a wrong law is told apart from the exact path
    wrong = params.replace(jump_right=0.21, jump_left=0.19)
    k_wrong = jump_counts(x0, wk.simulate("advection_diffusion", x0, 1, wrong, rng, method="steps")[1], params.step)
    assert two_sample_pvalue(k_exact, k_wrong) < 1e-6


def test_ad_single_fine_step_law():
    n = 60_000
    params = PAPER.replace(walkers=n, fine_steps_per_coarse=1)
    rng = make_rng(33)
    x0 = rng.uniform(-1, 1, n)
    k = jump_counts(x0, wk.simulate("advection_diffusion", x0, 1, params, rng, method="steps")[1], params.step)
    assert set(np.unique(k)) <= {-1, 0, 1}
    assert chi2_pvalue(np.bincount(k + 1, minlength=3), [0.195, 0.6, 0.205]) > 1e-3


def test_ad_multistep_counts_match_propagated_density():
    # 3 coarse steps from walkers uniform in their bins: E[m_3] = n_f rho0 * K^(3) (not K**3)
    rng = make_rng(34)
    reps, n_f = 60, PAPER.walkers
    counts0 = np.zeros(24, dtype=np.int64)
    counts0[[4, 5, 6]] = [600, 1200, 600]
    rho3 = wk.ad_propagate_density(counts0 / n_f, 3, PAPER)
    tot = np.zeros(24)
    for _ in range(reps):
        x0 = wk.sample_positions(counts0, rng)
        tot += wk.simulate_counts("advection_diffusion", x0, 3, PAPER, rng)[3]
    assert chi2_pvalue(tot, rho3) > 1e-3
    K1 = wk.ad_bin_kernel(24, 1, PAPER)
    wrong = np.real(np.fft.ifft(np.fft.fft(counts0 / n_f) * np.fft.fft(K1) ** 3))
    assert chi2_pvalue(tot, np.clip(wrong, 0, None) / np.clip(wrong, 0, None).sum()) < 1e-6


# ----------------------------------------------------------------------------- all laws
LAW_METHODS = [("advection_diffusion", "exact"), ("advection_diffusion", "steps"), ("burgers", None)]


@pytest.mark.parametrize("law, method", LAW_METHODS)
def test_walkers_conserved_and_inside_domain(law, method):
    params = PAPER.replace(walkers=600, fine_steps_per_coarse=50)
    rng = make_rng(41)
    x0 = wk.sample_fine_state(np.zeros(24), 600, rng)
    x0[:3] = [-1.0, np.nextafter(1.0, 0.0), 1.0 - params.step / 2]  # walkers on the edges
    out = wk.simulate(law, x0, 6, params, rng, method=method)
    assert out.shape == (7, 600) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0], x0)
    assert (out >= -1.0).all() and (out < 1.0).all()
    c = wk.bin_counts(out, 24)
    assert (c.sum(-1) == 600).all()
    assert (wk.bin_counts(out, 96).sum(-1) == 600).all()
    # walkers actually moved, by whole multiples of delta_y
    jumps = jump_counts(out[0], out[-1], params.step)
    assert (jumps != 0).mean() > 0.5


@pytest.mark.parametrize("law, method", LAW_METHODS)
def test_same_generator_state_gives_identical_output(law, method):
    params = PAPER.replace(fine_steps_per_coarse=20)
    x0 = wk.sample_fine_state(np.zeros(24), params.walkers, make_rng(42))
    a = wk.simulate(law, x0, 3, params, make_rng(43), method=method)
    b = wk.simulate(law, x0, 3, params, make_rng(43), method=method)
    c = wk.simulate(law, x0, 3, params, make_rng(44), method=method)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


# ----------------------------------------------------------------------------- Burgers
def test_burgers_one_step_follows_the_rule_including_clipping():
    # default 24 cells, c = 1: 40 % of the walkers share one cell, so kappa rho_loc > 1/2 there (p_r clipped to 1)
    n_f, reps = 1000, 400
    params = PAPER.replace(walkers=n_f, fine_steps_per_coarse=1, density_scale=1.0)
    rng = make_rng(51)
    counts0 = np.full(24, 26)
    counts0[10] = 400
    counts0[0] += n_f - counts0.sum()
    x0 = wk.sample_positions(counts0, rng)
    cell = wk.bin_counts(x0[:, None], 24).argmax(-1)
    rho_loc = params.density_scale * counts0[cell] / (n_f * params.cell_width)
    p_r = np.clip(0.5 + params.kappa * rho_loc, 0.0, 1.0)
    assert (p_r == 1.0).sum() == 400 and (p_r < 1.0).all(where=cell != 10)
    right = np.zeros(n_f)
    for _ in range(reps):
        k = jump_counts(x0, wk.simulate("burgers", x0, 1, params, rng)[1], params.step)
        assert set(np.unique(k)) <= {-1, 1}  # always jumps
        right += k == 1
    free = p_r < 1.0
    np.testing.assert_array_equal(right[~free], reps)
    stat = ((right[free] - reps * p_r[free]) ** 2 / (reps * p_r[free] * (1 - p_r[free]))).sum()
    assert stats.chi2.sf(stat, free.sum()) > 1e-3
    # power: ignoring the density (p_r = 1/2) is rejected
    stat0 = ((right[free] - reps * 0.5) ** 2 / (reps * 0.25)).sum()
    assert stats.chi2.sf(stat0, free.sum()) < 1e-10


def test_burgers_mean_field_matches_lax_friedrichs():
    # Walkers on the lattice of fine cells: delta_y = 2**-7 (256 cells, exact binary arithmetic),
    # density cells = fine cells, c = 1, kappa = 1/4 (delta_t = delta_y). 50 walkers per cell.
    n_cells, per_cell, reps, steps = 256, 50, 64, 30
    dy = 2.0 / n_cells
    params = wk.WalkerParams(walkers=n_cells * per_cell, step=dy, dt=dy, fine_steps_per_coarse=steps,
                             density_scale=1.0, cell_width=dy)  # fmt: skip
    y = wk.bin_centres(n_cells)
    n0 = np.round(per_cell * (1 + 0.5 * np.sin(np.pi * y))).astype(np.int64)
    n0[0] += params.walkers - n0.sum()
    x0 = np.repeat(y, n0)  # every walker at its cell centre
    scale = params.density_scale / (params.walkers * params.cell_width)  # rho_loc per walker
    assert params.kappa * scale * n0.max() < 0.5  # no clipping: the mean field is exactly LF
    finals = np.array([wk.bin_counts(wk.simulate("burgers", x0, 1, params, make_rng(52, r))[1], n_cells)
                       for r in range(reps)])  # fmt: skip
    mean = finals.mean(0)
    se = finals.std(0, ddof=1) / math.sqrt(reps)
    lf = wk.burgers_mean_field(n0 * scale, steps, params.kappa)[-1] / scale
    # premise: the closure error of LF (E n**2 = E[n]**2 + Var n, Var n ~ n) is far below the SE
    closure = n0.astype(float)
    for _ in range(steps):
        nm, npl = np.roll(closure, 1), np.roll(closure, -1)
        closure = 0.5 * (nm + npl) + params.kappa * scale * (nm**2 + nm - npl**2 - npl)
    assert (np.abs(closure - lf) / se).max() < 0.3
    z = (mean - lf) / se
    crit = stats.t.ppf(1 - 1e-3 / (2 * n_cells), reps - 1)  # Bonferroni over the cells
    assert np.abs(z).max() < crit
    # power: pure diffusion (kappa = 0) and the reversed drift are both rejected
    for kappa in (0.0, -params.kappa):
        wrong = wk.burgers_mean_field(n0 * scale, steps, kappa)[-1] / scale
        assert np.abs((mean - wrong) / se).max() > 2 * crit


# ----------------------------------------------------------------------------- smooth (relaxed) lifting
def test_smooth_lifting_counts_and_within_bin_profile():
    """Walkers i.i.d. from exp(z) on sub-cells: 24-bin counts are Mult(n_f, softmax(smooth_bin_state(z)))
    (p_cf holds exactly) and inside each bin the walkers follow the field, not a uniform split."""
    s = wk.smooth_subcells(24, PAPER.step)
    assert 2.0 / (24 * s) <= PAPER.step / 4 < 2.0 / (24 * (s - 1))  # the coarsest sub-cells of width <= step/4
    s = 4 * math.ceil(s / 4)  # so that the sub-cells also tile the 96 observation bins
    z = 1.5 * np.sin(np.pi * wk.bin_centres(24 * s)) + 7.0  # a steep field, gauge-shifted
    X = wk.smooth_bin_state(z, 24)
    assert abs(X.mean()) < 1e-12
    mass = np.exp(z - z.max()).reshape(24, s).sum(1)
    np.testing.assert_allclose(wk.softmax(X), mass / mass.sum(), rtol=1e-12)
    rng = make_rng(41)
    c24, c96 = np.zeros(24), np.zeros(96)
    for _ in range(40):
        x = wk.sample_smooth_state(z, PAPER.walkers, rng)
        assert x.shape == (PAPER.walkers,) and x.min() >= -1.0 and x.max() < 1.0
        c24 += wk.bin_counts(x, 24)
        c96 += wk.bin_counts(x, 96)
    assert chi2_pvalue(c24, wk.softmax(X)) > 1e-3
    assert chi2_pvalue(c96, wk.softmax(wk.smooth_bin_state(z, 96))) > 1e-3
    # power: the uniform lifting's 96-bin profile (each bin split in 4 equal parts) is rejected
    assert chi2_pvalue(c96, np.repeat(wk.softmax(X) / 4, 4)) < 1e-6



def test_burgers_mean_field_binned_against_the_exact_inviscid_solution():
    """Finite volumes for the continuum mean field: mass conserved; after t* the inviscid solution
    has the exact shock states and Rankine-Hugoniot position of REFERENCE §6; viscosity lowers the
    binned drop (a shock as wide as a bin); before t* the steepest slope obeys the Riccati law
    1/|rho_y|max = (t* - t)/(t* rho_bar A pi), so the gradient blows up at t*."""
    c, A, rb = 0.5, 0.5, 0.5
    t = np.array([0.0, 0.5, 1.0, 12.0])
    cells = wk.burgers_mean_field_binned(t, rb, A, c, 2400, cells=2400)  # one cell per "bin": the cell averages
    np.testing.assert_allclose(cells.sum(1), 2 * rb, rtol=1e-12)
    rho = cells[-1] / (2.0 / 2400)
    rl, rr = wk.burgers_shock_states(12.0, rb, A, c)
    assert abs(rho.max() - rl) < 0.005 and abs(rho.min() - rr) < 0.005, (rho.max(), rho.min(), rl, rr)
    edge = -1.0 + (np.argmax(rho - np.roll(rho, -1)) + 1) * (2.0 / 2400)
    pos = wk.burgers_shock_position(12.0, rb, c)
    assert abs((edge - pos + 1) % 2 - 1) < 0.01, (edge, pos)
    tstar = wk.burgers_shock_time(rb, A, c)
    slope = np.abs(np.diff(cells[:3], axis=1)).max(1) / (2.0 / 2400) ** 2  # max |rho_y| at t = 0, 0.2 t*, 0.4 t* (first-order upwind blunts it by 3 % at 0.8 t*)
    np.testing.assert_allclose(1.0 / slope, (tstar - t[:3]) / (tstar * rb * A * np.pi), rtol=0.01)
    D = PAPER.step**2 / (2 * PAPER.dt)
    binned = {d: wk.burgers_mean_field_binned([6.0], rb, A, c, 24, viscosity=d)[0] for d in (0.0, D)}
    drop = {d: (b - np.roll(b, -1)).max() for d, b in binned.items()}
    assert drop[D] < 0.8 * drop[0.0]
    with pytest.raises(ValueError, match="multiple"):
        wk.burgers_mean_field_binned([1.0], rb, A, c, 24, cells=1000)
