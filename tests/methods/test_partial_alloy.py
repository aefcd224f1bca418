"""Method ``partial`` on the NbMoTa vacancy KMC (issue 12; REFERENCE-002 §1c, §2, §3, §9): the alloy system on the
same stages (one temperature per run), its stage contract and its spec checks."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow.engine import check_stage
from cgflow.methods.partial.stages import PairSweep, TruthRuns
from cgflow.methods.partial.systems import AlloySystem
from cgflow.micro import bcc_alloy as ba

from ..conftest import assert_bad_spec_exits_2, replace_section, run_spec

SPEC = """\
name: alloy-test
method: partial
seed: 5
micro: {model: bcc_alloy, temperature: 2000.0, cells: 8, vacancies: 1}
partial: {small_size: 4, pairs: 64, block: 32, pair_duration: 1.0, snapshots_per_run: 4, snapshot_interval: 4.0}
sde: {epochs: 5, hidden: [16]}
truth: {runs: 4, block: 2, t_end: 20.0, save_every: 5.0}
rollout: {paths: 8, dt: 0.5}
"""

SYSTEM = AlloySystem(2000.0, cells=8, small_cells=4, snapshots_per_run=4)


def test_pairs_are_in_stage_time_and_upsampled_states_hold_one_vacancy_per_block():
    out = PairSweep(SYSTEM, seed=2, small_sizes=(4,), pairs=16, block=16, pair_duration=1.0, snapshots_per_run=4,
                    snapshot_interval=4.0, random_fraction=0.0, tiles_per_pair="1").compute_block(0, 0).arrays
    assert np.all(out["dt"] == 1.0)  # 1 unit = micro.time_scale seconds, exactly (fixed-duration window runs)
    assert out["z0"].shape == (16, 6) and np.all(np.isfinite(out["z0"]))
    # z0 is the SRO of the upsampled 1024-site state: recompute it from a fresh upsampling of the same pool
    assert SYSTEM.large_vacancies == 8
    x = SYSTEM.random_states(3, np.random.default_rng(0))
    assert x.shape == (3, 1024) and np.all((x == 0).sum(axis=1) == 8)
    np.testing.assert_allclose(SYSTEM.observables(x), ba.sro(x, 8))


def test_replicated_upsampling_keeps_the_small_snapshot_and_its_vacancy_undressed():
    """tiling: replicate -- every block is the same shifted small snapshot, vacancy included, with no seam relaxation,
    no vacancy moved and no dressing (dress_jumps is for mixed tiling; dressing by jumps biases the increments)."""
    system = AlloySystem(800.0, cells=8, small_cells=4, snapshots_per_run=1, tiling="replicate", dress_jumps=64)
    pool = system.small_snapshots(3, 1, 1.0, 4, np.random.default_rng(3), burn_in=50.0)
    big = system.upsample(pool, np.random.default_rng(4))
    block = (ba.site_voxels(8) // 8) @ np.array([4, 2, 1])  # blocks of 4 cells = 8 voxels
    for x in big:
        parts = [x[block == J] for J in range(8)]
        assert all(np.array_equal(parts[0], q) for q in parts[1:]) and (parts[0] == 0).sum() == 1
    same = np.isclose(ba.sro(big, 8)[:, None, :], ba.sro(pool, 4)[None], rtol=0, atol=1e-12).all(axis=-1)
    assert same.any(axis=1).all()  # each large state has the SRO of one of the snapshots, exactly


def test_sweep_stages_meet_the_contract():
    check_stage(PairSweep(SYSTEM, seed=3, small_sizes=(4,), pairs=8, block=4, pair_duration=1.0,
                          snapshots_per_run=4, snapshot_interval=4.0, random_fraction=0.0, tiles_per_pair="1"))
    check_stage(TruthRuns(SYSTEM, seed=3, runs=2, block=1, t_end=10.0, save_every=5.0))


def test_truth_runs_are_direct_kmc_in_stage_time():
    """The truth stage's SRO at t (stage units) is sro_trajectory at t x time_scale seconds with the same stream."""
    times = np.array([0.0, 5.0, 10.0])
    z, _ = SYSTEM.test_runs(0, 1, times, np.random.default_rng(9), keep_states=False)
    ref = ba.sro_trajectory(SYSTEM.params(), 8, times * SYSTEM.time_scale, np.random.default_rng(9))[0]
    np.testing.assert_array_equal(z[0], ref)


@pytest.mark.parametrize("change, key", [
    ("micro: {model: bcc_alloy, temperature: 2000.0, cells: 8, species: [Nb, Mo, W]}", "micro.species"),
    ("micro: {model: bcc_alloy, temperature: 2000.0, cells: 8, vacancies: 0}", "micro.vacancies"),
    ("micro: {model: bcc_alloy, temperature: 2000.0, cells: 10}", "partial.small_size"),
    ("closure: {latent: 2}", "closure.latent"),
    ("sde: {drift_estimator: milstein}", "sde.drift_estimator"),
])
def test_bad_specs_exit_2_naming_the_key(tmp_path, change, key):
    assert_bad_spec_exits_2(replace_section(SPEC, change), tmp_path, key)


@pytest.mark.parametrize("tiling", ["independent", "replicate, tiles_per_pair: all"])
def test_one_vacancy_per_small_system_for_independent_and_replicated_tiles(tmp_path, tiling):
    """A tile run of independent tiling is its small system with its one vacancy, and several replicated tiles per
    pair pick one vacancy per tile: more vacancies per small system exit 2 naming micro.vacancies, nothing written."""
    spec = replace_section(SPEC, "micro: {model: bcc_alloy, temperature: 2000.0, cells: 8, vacancies: 2}")
    part = "partial: {small_size: 4, pairs: 64, block: 32, pair_duration: 1.0, snapshots_per_run: 4, " \
           "snapshot_interval: 4.0, tiling: " + tiling + "}"
    assert_bad_spec_exits_2(replace_section(spec, part), tmp_path, "micro.vacancies")


def test_a_small_run_goes_end_to_end(tmp_path):
    from cgflow import open_run

    store, _ = run_spec(SPEC, tmp_path)
    tree = open_run(store)
    assert list(tree["pairs"]["obs"].values) == list(ba.SRO_PAIRS)
    assert tree["truth"].attrs["barrier_model"].startswith("stand-in")
    assert np.all(np.isfinite(tree["evaluation"]["relative_error"].values))
    # the window runs are observed at dt/4 and dt/2: the pair-duration self-check runs on the alloy too
    assert np.all(np.isfinite(tree["evaluation"]["dt_halving_ratio"].values))
    assert not tree["evaluation"].attrs["pair_duration_check"].startswith("not available")
    # the alloy's figures: the first variable's rollouts and all six SRO against time (issue 12)
    from cgflow.plots import plot_store

    written = sorted(p.name for p in plot_store(store, tmp_path / "fig"))
    assert written == ["partial_rollouts.png", "partial_sro_trajectories.png"]
    assert all((tmp_path / "fig" / n).stat().st_size > 10_000 for n in written)


# ----------------------------------------------------------------------------- temperature-conditioned SDE
CONDITIONED = AlloySystem(2000.0, cells=8, small_cells=4, snapshots_per_run=4, temperatures=(2000.0, 1200.0),
                          truth_temperatures=(1200.0, 1600.0, 2000.0))


def test_arrhenius_clock_keeps_the_jumps_per_unit_and_is_exactly_one_at_the_first_temperature():
    from cgflow.methods.partial.schema import ARRHENIUS_ENERGY

    assert CONDITIONED.time_scale_at(2000.0) == CONDITIONED.time_scale  # the reference temperature: unchanged
    ratio = CONDITIONED.time_scale_at(1200.0) / CONDITIONED.time_scale
    assert ratio == pytest.approx(np.exp(ARRHENIUS_ENERGY / ba.KB * (1 / 1200 - 1 / 2000)), rel=1e-12)
    # a unit holds about as many jumps at every T: the mean rate of a jump of barrier E_a scales out
    rate = lambda T: np.exp(-ARRHENIUS_ENERGY / (ba.KB * T))  # noqa: E731
    assert rate(1200.0) * CONDITIONED.time_scale_at(1200.0) == pytest.approx(rate(2000.0) * CONDITIONED.time_scale)
    assert CONDITIONED.at_condition(1) == CONDITIONED.at_temperature(1200.0)
    assert CONDITIONED.at_condition(1).condition_names == ()  # one temperature: unconditioned
    assert CONDITIONED.condition_names == ("temperature",) and CONDITIONED.starts == (1200.0, 1600.0, 2000.0)


def test_conditioned_pair_blocks_take_the_temperatures_in_turn_and_are_the_single_temperature_blocks():
    kw = dict(seed=4, small_sizes=(4,), pairs=16, block=8, pair_duration=1.0, snapshots_per_run=4,
              snapshot_interval=4.0, random_fraction=0.0, tiles_per_pair="1")
    stage = PairSweep(CONDITIONED, **kw)
    assert "conditions" in stage.template()
    for block, T in ((0, 2000.0), (1, 1200.0)):
        out = stage.compute_block(0, block).arrays
        np.testing.assert_array_equal(out.pop("conditions"), np.full((8, 1), T))
        single = PairSweep(CONDITIONED.at_temperature(T), **kw)
        assert "conditions" not in single.template()
        ref = single.compute_block(0, block).arrays
        assert sorted(out) == sorted(ref)
        for name in ref:  # same stream, same physics: bitwise the single-temperature block
            np.testing.assert_array_equal(out[name], ref[name], err_msg=name)


def test_conditioned_truth_runs_one_start_per_temperature_on_its_clock():
    times = np.array([0.0, 5.0])
    z, _ = CONDITIONED.test_runs(0, 1, times, np.random.default_rng(3), keep_states=False)
    cold = CONDITIONED.at_temperature(1200.0)
    ref = ba.sro_trajectory(cold.params(), 8, times * cold.time_scale, np.random.default_rng(3))[0]
    np.testing.assert_array_equal(z[0], ref)
    coords = CONDITIONED.start_coords()
    np.testing.assert_array_equal(coords["temperature"][1], [1200.0, 1600.0, 2000.0])


@pytest.mark.parametrize("change, key", [
    ("truth: {temperature: [1500.0], runs: 4, block: 2, t_end: 20.0, save_every: 5.0}", "truth.temperature"),
    ("micro: {model: bcc_alloy, temperature: [2000.0, 1200.0, 3000.0], cells: 8}", "partial.pairs"),
    ("micro: {model: bcc_alloy, temperature: [2000.0, 2000.0], cells: 8}", "micro.temperature"),
])
def test_bad_conditioning_specs_exit_2_naming_the_key(tmp_path, change, key):
    assert_bad_spec_exits_2(replace_section(SPEC, change), tmp_path, key)


def test_a_conditioned_run_goes_end_to_end_with_per_temperature_results(tmp_path):
    from cgflow import open_run

    spec = replace_section(SPEC, "micro: {model: bcc_alloy, temperature: [2000.0, 1200.0], cells: 8, vacancies: 1}")
    spec = replace_section(spec, "truth: {temperature: [1200.0, 1600.0, 2000.0], runs: 4, block: 2, t_end: 20.0, "
                                 "save_every: 5.0}")
    store, _ = run_spec(spec, tmp_path)
    tree = open_run(store)
    assert tree["sde"].attrs["conditions"] == ["temperature"]
    np.testing.assert_array_equal(tree["truth"]["temperature"].values, [1200.0, 1600.0, 2000.0])
    ev = tree["evaluation"]
    per_start = ev["stationary_model_per_start"]
    assert per_start.sizes["start"] == 3 and np.all(np.isfinite(per_start.values))
    np.testing.assert_array_equal(ev["temperature"].values, [1200.0, 1600.0, 2000.0])
    assert np.all(np.isfinite(ev["n_sigma2_m_at_stationary"].values))
    # the rollouts ran every start at its own temperature: rebuild them from the stored model
    from cgflow.engine.keys import stage_id
    from cgflow.methods.partial.closure_stage import truth_states
    from cgflow.methods.partial.stages import load_model

    model = load_model(tree["sde"].to_dataset(), "method", 4)
    with pytest.raises(ValueError, match="conditions"):
        model.drift(np.zeros((1, 6)))
    start = truth_states(tree, 4)[:, :, 0]  # (start, run, obs)
    z0 = start[:, np.arange(8) % 4].reshape(24, 6)
    temps = np.repeat([[1200.0], [1600.0], [2000.0]], 8, axis=0)
    paths = model.rollout(z0, 0.5, 40, (5, stage_id("rollout"), 0, 0), save_every=10, conditions=temps)
    np.testing.assert_array_equal(paths.reshape(3, 8, 5, 6).mean(axis=1),
                                  tree["rollout"]["z_mean"].sel(variant="method", small_size=4).values)


def test_independent_tiling_is_k_small_systems_side_by_side_each_evolved_as_itself():
    """tiling: independent -- every tile of a large state is one pool snapshot kept whole (its vacancy, its
    composition), z0 is the mean of the tiles' own periodic SRO, and a tile run starts from exactly its small
    system (the torus cut out of the tile, before = that snapshot's SRO); random states are K random small systems."""
    system = AlloySystem(800.0, cells=8, small_cells=4, snapshots_per_run=2, tiling="independent")
    assert system.boundary == "periodic"
    pool = system.small_snapshots(4, 2, 50.0, 4, np.random.default_rng(1))
    big = system.upsample(pool, np.random.default_rng(2))
    z_pool = ba.sro(pool, 4)
    tiles = system.patch_model.tile_observables(big, 4, "periodic")  # (B, 8, 6)
    assert np.isclose(tiles.reshape(-1, 1, 6), z_pool[None], rtol=0, atol=1e-12).all(-1).any(1).all()
    assert np.all((big == 0).sum(1) == 8)
    for J in range(8):
        before, _, inc, dt = system.patch_model.evolve_tiles(big, 4, np.full(len(big), J), None, "periodic",
                                                             np.random.default_rng(3), duration=2.0)
        assert np.isclose(before[:, None, :], tiles, rtol=0, atol=1e-12).all(-1).any(1).all()
        assert np.all(dt == 2.0) and np.all(np.isfinite(inc))
    rand = system.random_states(3, np.random.default_rng(4))
    assert np.all((rand == 0).sum(1) == 8)
    assert np.all(np.isfinite(system.patch_model.tile_observables(rand, 4, "periodic")))
    with pytest.raises(ValueError, match="tile_windows"):
        system.patch_model.evolve_tiles(big, 4, None, None, "frozen", np.random.default_rng(3), duration=2.0)
