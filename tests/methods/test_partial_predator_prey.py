"""Method ``partial`` on the predator–prey SPDE (issue 12; REFERENCE-002 §1a, §2, §3, §6): the same stages as the
spins, run end to end at a small size, and its spec checks."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow import open_run
from cgflow.engine import check_stage
from cgflow.methods.partial.stages import PairSweep, TruthRuns
from cgflow.methods.partial.systems import PredatorPreySystem
from cgflow.micro.predator_prey import PredatorPreyParams

from ..conftest import assert_bad_spec_exits_2, replace_section, run_spec

# n = 40 cells, n_s = 20, K = 5 tiles of 8 cells; one Euler-Maruyama step per pair (the authors')
SPEC = """\
name: pp-test
method: partial
seed: 11
micro: {model: predator_prey, size: 40}
partial: {small_size: 20, tile_size: 8, pairs: 4096, block: 1024, snapshots_per_run: 32, snapshot_interval: 1.0}
loss: {scaling: K, sweep: [1, 5]}
sde: {epochs: 40, batch_size: 256, hidden: [32, 32]}
truth: {m: [0.45, 0.55], k: [0.1], runs: 20, block: 10, t_end: 30.0, save_every: 0.5}
rollout: {paths: 50, dt: 0.01}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return run_spec(SPEC, tmp_path_factory.mktemp("pp"))[0]


def test_layout_and_variants(store):
    tree = open_run(store)
    assert set(tree.children) >= {"pairs", "truth", "sde", "rollout", "evaluation"} and "closure" not in tree.children
    pairs, truth = tree["pairs"], tree["truth"]
    assert list(pairs["n_tiles"].values) == [5] and list(pairs["tiles_per_pair"].values) == [1]
    assert np.all(pairs["dt"].values == 0.01) and list(pairs["obs"].values) == ["u", "v"]
    assert "increment_half" not in pairs  # a one-step run cannot be observed inside
    assert truth["z"].dims == ("start", "replica", "time", "obs")
    assert list(truth["m"].values) == [0.45, 0.55] and list(truth["k"].values) == [0.1, 0.1]
    # the test runs start exactly at u = m + k cos(10 pi x): spatial mean m (cos sums to 0 over whole periods)
    np.testing.assert_allclose(truth["z"].values[:, :, 0, 0], np.broadcast_to([[0.45], [0.55]], (2, 20)), atol=1e-12)
    sde = tree["sde"]
    assert list(sde["variant"].values) == ["method", "baseline", "lambda=1", "lambda=5"]
    np.testing.assert_array_equal(sde["loss_scaling"].values[:, 0], [5.0, 1.0, 1.0, 5.0])
    ev = tree["evaluation"]
    for var in ("relative_error", "mmd2", "mmd2_stationary", "spread_ratio"):
        assert np.all(np.isfinite(ev[var].values)), var
    assert tree["rollout"]["mmd2"].dims == ("variant", "small_size", "start", "time")
    assert ev.attrs["pair_duration_check"].startswith("not available")


def test_lambda_k_recovers_the_large_systems_noise(store):
    """The central claim on the SPDE, exactly: the spatial mean of u over n cells has variance noise**2 dt / n per step
    (independent cell noise), so n sigma_uu**2 = noise**2 = 4e-4 for the large system; lambda = K learns it from
    one-tile pairs, lambda = 1 learns K times more (REFERENCE-002 §0). Tolerance: 4 standard errors of a variance
    estimated from the 4096 pairs (sqrt(2/4096) = 2.2% each) plus 10% for the network's fit."""
    ev = open_run(store)["evaluation"]
    ns2 = ev["n_sigma2_m_at_stationary"].sel(small_size=20)
    exact = PredatorPreyParams().noise ** 2
    tol = 4 * np.sqrt(2 / 4096) + 0.10
    for v in ("method", "lambda=5"):
        assert abs(float(ns2.sel(variant=v)) / exact - 1) < tol, (v, float(ns2.sel(variant=v)))
    for v in ("baseline", "lambda=1"):
        assert abs(float(ns2.sel(variant=v)) / (5 * exact) - 1) < tol, (v, float(ns2.sel(variant=v)))


def test_learned_closure_targets_average_r_evolved_tiles(tmp_path):
    """partial.tiles_per_pair: all with learned closures: the after-state holds all K tiles, each evolved alone from
    x, and the closure target is z0 + (K/r)(e_bar(after) - e_bar(x)) = z0 + the mean of the tiles' encoded changes."""
    from cgflow.methods.partial.closure_stage import load_closure

    spec = SPEC.replace("pairs: 4096, block: 1024", "pairs: 256, block: 256").replace("loss: {scaling: K, sweep: [1, 5]}\n", "")
    spec = spec.replace("snapshot_interval: 1.0}", "snapshot_interval: 1.0, tiles_per_pair: all}")
    spec = spec.replace("t_end: 30.0, save_every: 0.5", "t_end: 1.0, save_every: 0.5")
    spec += "closure: {latent: 2, epochs: 2, snapshots: 256}\n"
    store, _ = run_spec(spec, tmp_path)
    tree = open_run(store)
    pairs = tree["pairs"].to_dataset().sel(small_size=20)
    assert int(pairs["tiles_per_pair"]) == 5
    x, after = pairs["snapshot"].values[:32], pairs["snapshot_after"].values[:32]
    changed = (x != after).reshape(32, 2, 5, 8).any(axis=(1, 3))  # which of the K = 5 tiles changed
    assert changed.all()  # every tile was evolved (and the ghost-cell run changed each)
    clo = tree["closure"].to_dataset().load()
    ae = load_closure(clo, 20)
    mean, sd = clo["latent_mean"].sel(small_size=20).values, clo["latent_sd"].sel(small_size=20).values
    e_x = ae.transform(x)
    per_tile = np.mean([ae.transform(after, tile=np.full(32, j)) - ae.transform(x, tile=np.full(32, j))
                        for j in range(5)], axis=0)
    expect = (e_x + per_tile - mean) / sd
    z1 = clo["z1"].sel(small_size=20).values[:32]
    np.testing.assert_allclose(z1, expect, atol=2e-4 * np.abs(expect).max())
    # the observables' target averages the same r tile runs: z1 - z0 = mean tile-mean change (each tile's own)
    inc = (pairs["z1"] - pairs["z0"]).values[:32]
    tiles_change = (after - x).reshape(32, 2, 5, 8).mean(axis=-1).mean(axis=-1)
    np.testing.assert_allclose(inc, tiles_change, atol=1e-12)


def test_lambda_k_law_holds_away_from_the_papers_parameters(tmp_path):
    """The same exact law at a = 2, b = 0.3 (another fixed point, u* = 0.3, v* = 0.7) and twice the noise:
    n sigma_uu**2 = 0.04**2 = 1.6e-3 for lambda = K, K times it for the baseline (tolerance as above)."""
    spec = SPEC.replace("micro: {model: predator_prey, size: 40}",
                        "micro: {model: predator_prey, size: 40, a: 2.0, b: 0.3, noise: 0.04}")
    spec = spec.replace("loss: {scaling: K, sweep: [1, 5]}\n", "")
    store, _ = run_spec(spec, tmp_path)
    ev = open_run(store)["evaluation"]
    assert abs(float(ev["stationary_truth"].sel(obs="u")) - 0.3) < 0.01  # u* = b
    ns2 = ev["n_sigma2_m_at_stationary"].sel(small_size=20)
    tol = 4 * np.sqrt(2 / 4096) + 0.10
    assert abs(float(ns2.sel(variant="method")) / 0.04**2 - 1) < tol, ns2.values
    assert abs(float(ns2.sel(variant="baseline")) / (5 * 0.04**2) - 1) < tol, ns2.values


def test_sweep_stages_meet_the_contract():
    system = PredatorPreySystem(PredatorPreyParams(), size=40, tile=8, starts=((0.5, 0.1),))
    check_stage(PairSweep(system, seed=3, small_sizes=(20,), pairs=64, block=32, pair_duration=0.01,
                          snapshots_per_run=4, snapshot_interval=0.1, random_fraction=0.25, tiles_per_pair="1"))
    check_stage(TruthRuns(system, seed=3, runs=4, block=2, t_end=0.5, save_every=0.1))


def test_multi_step_pairs_are_observed_inside_for_richardson():
    """pair_duration = 4 steps: the runs are observed after 1 and 2 steps (the Richardson drift and its checks)."""
    system = PredatorPreySystem(PredatorPreyParams(), size=40, tile=8)
    out = PairSweep(system, seed=3, small_sizes=(20,), pairs=32, block=32, pair_duration=0.04, snapshots_per_run=4,
                    snapshot_interval=0.1, tiles_per_pair="1").compute_block(0, 0).arrays
    assert {"increment_half", "increment_quarter", "z_half_small"} <= set(out)
    assert np.all(out["dt"] == 0.04)
    # one step moves a tile mean by about dt |f| + noise sqrt(dt/8): the quarter run moves less than the full one
    assert np.mean(np.abs(out["increment_quarter"])) < np.mean(np.abs(out["z1"] - out["z0"]))


@pytest.mark.parametrize("change, key", [
    ("partial: {small_size: 20, tile_size: 7}", "partial.tile_size"),
    ("partial: {small_size: 30, tile_size: 8}", "partial.small_size"),
    ("sde: {drift_estimator: richardson}", "sde.drift_estimator"),
    ("closure: {latent: 1}", "closure.latent"),  # latent / 2 per species
    ("micro: {model: predator_prey, size: 40, laplacian: continuum}", "micro.dt"),
    ("micro: {model: predator_prey, size: 40, train_m: [0.6, 0.4]}", "micro.train_m"),
    ("truth: {save_every: 0.015}", "truth.save_every"),
    ("partial: {small_size: 20, tile_size: 8, burn_in: 0.015}", "partial.burn_in"),
    ("upsampling: {window: 8}", "upsampling"),
])
def test_bad_specs_exit_2_naming_the_key(tmp_path, change, key):
    assert_bad_spec_exits_2(replace_section(SPEC, change), tmp_path, key)


def test_learned_closure_targets_are_patch_additive(tmp_path):
    """closure.latent: 2 (one latent per species, REFERENCE-002 §5): the closure stage trains the per-species MLP
    autoencoder on the pairs' states; z1 = z0 + e(x_{t+dt, I}) - e(x_{t, I}), the truth latents encode the truth
    states, and the stored autoencoder reloads exactly."""
    from cgflow.methods.partial.closure_stage import load_closure

    spec = SPEC.replace("pairs: 4096, block: 1024", "pairs: 512, block: 256").replace("loss: {scaling: K, sweep: [1, 5]}\n", "")
    spec = spec.replace("t_end: 30.0, save_every: 0.5", "t_end: 2.0, save_every: 0.5")
    spec += "closure: {latent: 2, epochs: 2, snapshots: 256}\n"
    store, _ = run_spec(spec, tmp_path)
    tree = open_run(store)
    assert list(tree["rollout"]["obs"].values) == ["u", "v", "latent_0", "latent_1"]
    clo = tree["closure"].to_dataset().load()
    assert clo.attrs["autoencoder"] == "FieldClosureAutoencoder" and int(clo["tile_size"].values[0]) == 8
    pairs = tree["pairs"].to_dataset().sel(small_size=20)
    ae = load_closure(clo, 20)
    mean, sd = clo["latent_mean"].sel(small_size=20).values, clo["latent_sd"].sel(small_size=20).values
    x, after, tile = pairs["snapshot"].values[:64], pairs["snapshot_after"].values[:64], pairs["tile"].values[:64]
    # float32 encoders evaluated in other batch sizes than the stage's: agreement to 2e-4 of the latents' scale
    z0 = (ae.transform(x) - mean) / sd
    tol = 2e-4 * np.abs(z0).max()
    np.testing.assert_allclose(z0, clo["z0"].sel(small_size=20).values[:64], atol=tol)
    z1 = (ae.transform(x) + ae.transform(after, tile=tile) - ae.transform(x, tile=tile) - mean) / sd
    np.testing.assert_allclose(z1, clo["z1"].sel(small_size=20).values[:64], atol=tol)
    # only tile I changed: the whole-state encoding moved by (e(after_I) - e(before_I)) / K
    change = ae.transform(after, tile=tile) - ae.transform(x, tile=tile)
    np.testing.assert_allclose(ae.transform(after) - ae.transform(x), change / 5, atol=tol * sd.max())
    assert np.abs(change).max() > 100 * tol * sd.max()  # and the tiles did change (the check is not vacuous)
    snap = tree["truth"]["snapshot"].values[1, 0]
    np.testing.assert_allclose((ae.transform(snap) - mean) / sd, clo["truth_latent"].sel(small_size=20).values[1, 0],
                               atol=tol)
