"""The predator-prey SPDE integrator of seed 002 (REFERENCE-002 §1a, §2, §3; issue 12 tests)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cgflow.micro.predator_prey import PredatorPreyParams, PredatorPreyPatchModel, grid, initial_state, tile_means, upsample


def reference_rhs(a, b, coupling):
    """The SPDE's deterministic part written independently: np.pad(mode='edge') is the zero-flux end."""

    def rhs(_t, y):
        u, v = y.reshape(2, -1)
        vp = np.pad(v, 1, mode="edge")
        return np.concatenate([u * (1 - u - v), a * v * (u - b) + coupling * (vp[2:] - 2 * v + vp[:-2])])

    return rhs


@pytest.mark.parametrize("a, b", [(3.0, 0.4), (2.0, 0.3)])  # the paper's and another predator law
def test_deterministic_part_converges_to_the_reference_ode_at_first_order(a, b):
    n, t_end = 20, 4.0
    x0 = initial_state(n, 0.5, 0.1)
    ode = solve_ivp(reference_rhs(a, b, 1.0), (0, t_end), x0[0].ravel(), method="DOP853", rtol=1e-11, atol=1e-12)
    exact = ode.y[:, -1].reshape(2, n)
    errors = []
    for dt in (0.01, 0.005):
        p = PredatorPreyParams(a=a, b=b, noise=0.0, dt=dt)
        path = p.simulate(x0, int(round(t_end / dt)), np.random.default_rng(0), save_every=int(round(t_end / dt)))
        errors.append(np.abs(path[0, -1] - exact).max())
    assert errors[0] < 5e-3  # Euler at the authors' dt = 0.01
    assert 1.8 < errors[0] / errors[1] < 2.2  # first order: the drift is the ODE's


def test_noise_per_step_has_variance_sigma2_dt():
    p = PredatorPreyParams()
    x0 = initial_state(100, np.linspace(0.45, 0.55, 64), 0.1)
    x1 = p.step(x0, np.random.default_rng(1))
    r = (x1 - x0 - p.dt * p.drift(x0)).ravel()
    var, N = p.noise**2 * p.dt, r.size
    assert abs(r.mean()) < 4 * np.sqrt(var / N)
    assert abs(r.var(ddof=1) - var) < 4 * var * np.sqrt(2 / (N - 1))
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1]) < 4 / np.sqrt(N)  # independent across cells and species


def test_zero_flux_ends_conserve_the_predators_without_reaction():
    p = PredatorPreyParams(a=0.0, noise=0.0)
    x0 = initial_state(50, 0.5, 0.15)
    path = p.simulate(x0, 500, np.random.default_rng(2), save_every=100)
    total = path[0, :, 1].sum(axis=-1)
    np.testing.assert_allclose(total, total[0], rtol=0, atol=1e-11)
    assert np.ptp(path[0, -1, 1]) < np.ptp(path[0, 0, 1])  # and it diffuses


def test_partial_step_is_the_full_step_on_the_tile():
    p = PredatorPreyParams(noise=0.0)
    rng = np.random.default_rng(3)
    x = initial_state(200, rng.uniform(0.45, 0.55, 7), rng.uniform(0.05, 0.15, 7)) + 0.01 * rng.standard_normal((7, 2, 200))
    full = p.step(x, rng)
    chosen = np.array([0, 4, 2, 1, 3, 0, 4])  # both domain ends and interior tiles
    tile = p.partial_step(x, 5, chosen, rng)
    for b, c in enumerate(chosen):
        np.testing.assert_array_equal(tile[b], full[b, :, 40 * c:40 * (c + 1)])
    continuum = PredatorPreyParams(noise=0.0, laplacian="continuum", diffusion=1e-6)
    np.testing.assert_array_equal(continuum.partial_step(x, 5, chosen, rng)[1], continuum.step(x, rng)[1, :, 160:200])


def test_partial_step_noise_and_validation():
    p = PredatorPreyParams()
    x = initial_state(200, np.full(2000, 0.5), 0.1)
    chosen = np.random.default_rng(4).integers(0, 5, 2000)
    det = PredatorPreyParams(noise=0.0).partial_step(x, 5, chosen, np.random.default_rng(5))
    r = (p.partial_step(x, 5, chosen, np.random.default_rng(5)) - det).ravel()
    var = p.noise**2 * p.dt
    assert abs(r.var(ddof=1) - var) < 4 * var * np.sqrt(2 / (r.size - 1))
    with pytest.raises(ValueError, match="tiles = 3 must divide the grid size n = 200"):
        p.partial_step(x, 3, chosen, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"one tile index in \[0, 5\)"):
        p.partial_step(x, 5, chosen + 5, np.random.default_rng(0))


def test_tile_means_are_patch_additive():
    x = np.random.default_rng(6).uniform(0, 1, (3, 2, 200))
    z = tile_means(x, 5)
    assert z.shape == (3, 5, 2)
    np.testing.assert_allclose(z.mean(axis=1), x.mean(axis=-1), atol=1e-15)


def test_upsample_interpolates_linearly_and_keeps_the_mean():
    x = initial_state(100, 0.5, 0.1)
    fine = upsample(x)
    assert fine.shape == (1, 2, 200)
    line = np.stack([grid(100), 1 - grid(100)])[None]
    up = upsample(line)
    new = grid(200)
    inside = (new > grid(100)[0]) & (new < grid(100)[-1])
    np.testing.assert_allclose(up[0, 0, inside], new[inside], atol=1e-14)
    assert up[0, 0, 0] == line[0, 0, 0] and up[0, 0, -1] == line[0, 0, -1]  # constant beyond the end centres
    # the means move only by the interpolation error, O(k**2 dx**2) of the cos(10 pi x) amplitude
    assert np.abs(fine.mean(axis=-1) - x.mean(axis=-1)).max() < 0.1 * (10 * np.pi / 100) ** 2


def test_stability_and_bad_input():
    PredatorPreyParams().check_stability(200)  # the authors' lattice Laplacian: D dt = 0.01
    with pytest.raises(ValueError, match=r"unstable .* D dt/s = 100 > 1/2 .* use dt <= 5e-05"):
        PredatorPreyParams(laplacian="continuum").check_stability(100)
    PredatorPreyParams(laplacian="continuum", diffusion=1e-4).check_stability(200)
    with pytest.raises(ValueError, match="laplacian must be one of"):
        PredatorPreyParams(laplacian="spectral")
    with pytest.raises(ValueError, match="noise and diffusion must be >= 0"):
        PredatorPreyParams(noise=-0.1)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        PredatorPreyParams(dt=0)
    with pytest.raises(ValueError, match=r"state must have shape \(B, 2, n\)"):
        PredatorPreyParams().simulate(np.zeros((2, 10)), 1, np.random.default_rng(0))


def test_patch_model_pairs_are_unbiased_and_k_times_noisier():
    """Partial-evolution pairs (one tile, one step): E[z1_hat - z0] = the full step's drift of the means,
    Cov = K x the full step's (independent cell noise): the lambda = K of REFERENCE-002 §0, shown exactly."""
    model = PredatorPreyPatchModel()
    B, K = 4000, 5
    x = np.repeat(initial_state(200, 0.5, 0.1), B, axis=0)
    rng = np.random.default_rng(8)
    tiles = rng.integers(0, K, B)
    before, after, inc, dt = model.evolve_tiles(x, 40, tiles, rng=rng)
    np.testing.assert_allclose(before, model.tile_observables(x, 40)[np.arange(B), tiles])
    drift = PredatorPreyParams().drift(x[:1]).mean(axis=-1)[0] * dt[0]  # full-step change of the means
    z0, z1, _ = model.evolve_full(x, rng=rng)
    full_var = (z1 - z0).var(axis=0, ddof=1)
    # E[increment] = drift of the means, up to the tile-to-tile spread of the deterministic part (sampled tiles)
    det = np.stack([PredatorPreyParams().drift(x[:1])[0][:, 40 * c:40 * (c + 1)].mean(-1) * dt[0] for c in range(K)])
    se = np.sqrt((inc.var(axis=0, ddof=1)) / B)
    assert np.all(np.abs(inc.mean(axis=0) - drift) < 4 * se), (inc.mean(axis=0), drift, se)
    noise_var = (PredatorPreyParams().noise**2 * dt[0]) / 200  # per-step variance of a spatial mean of 200 cells
    np.testing.assert_allclose(full_var, noise_var, rtol=4 * np.sqrt(2 / (B - 1)))
    tile_var = (inc - det[tiles]).var(axis=0, ddof=1)
    np.testing.assert_allclose(tile_var, K * noise_var, rtol=4 * np.sqrt(2 / (B - 1)))
    with pytest.raises(ValueError, match="whole number >= 1 of Euler-Maruyama steps of dt = 0.01"):
        model.evolve_tiles(x[:2], 40, tiles[:2], rng=rng, duration=0.015)
    with pytest.raises(ValueError, match="boundary must be 'frozen'"):
        model.tile_observables(x[:2], 40, "periodic")
    assert model.refine(x[:1]).shape == (1, 2, 400)


def test_partial_run_holds_the_ghosts_over_several_steps():
    """steps > 1: every step of the tile sees the frozen neighbours' values at t; recorded steps are the run's own."""
    p = PredatorPreyParams()
    x = initial_state(200, np.array([0.47, 0.52]), np.array([0.1, 0.06]))
    chosen = np.array([0, 3])
    tile, seen = p.partial_run(x, 5, chosen, np.random.default_rng(4), steps=3, record=(1, 2))
    rng = np.random.default_rng(4)
    manual = np.stack([x[b, :, 40 * c:40 * (c + 1)] for b, c in enumerate(chosen)])
    ghosts = (np.stack([x[0, :, 0], x[1, :, 119]]), np.stack([x[0, :, 40], x[1, :, 160]]))
    steps = []
    for _ in range(3):
        manual = p.step(manual, rng, ghosts=ghosts, n_grid=200)
        steps.append(manual)
    np.testing.assert_array_equal(seen[0], steps[0])
    np.testing.assert_array_equal(seen[1], steps[1])
    np.testing.assert_array_equal(tile, steps[2])
    np.testing.assert_array_equal(p.partial_step(x, 5, chosen, np.random.default_rng(4)), steps[0])
    out = PredatorPreyPatchModel(p).evolve_tiles(x, 40, chosen, rng=np.random.default_rng(4), duration=0.03,
                                                 record_times=[0.01, 0.02])
    np.testing.assert_allclose(out[3], 0.03)
    np.testing.assert_allclose(out[5][:, 1], steps[1].mean(-1))
    np.testing.assert_allclose(out[4][:, 0], steps[0].mean(-1) - out[0])
