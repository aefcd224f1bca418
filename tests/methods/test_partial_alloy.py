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
    ("sde: {drift_estimator: richardson}", "sde.drift_estimator"),
])
def test_bad_specs_exit_2_naming_the_key(tmp_path, change, key):
    assert_bad_spec_exits_2(replace_section(SPEC, change), tmp_path, key)


def test_a_small_run_goes_end_to_end(tmp_path):
    from cgflow import open_run

    store, _ = run_spec(SPEC, tmp_path)
    tree = open_run(store)
    assert list(tree["pairs"]["obs"].values) == list(ba.SRO_PAIRS)
    assert tree["truth"].attrs["barrier_model"].startswith("stand-in")
    assert np.all(np.isfinite(tree["evaluation"]["relative_error"].values))
