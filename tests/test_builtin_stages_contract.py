"""check_stage on every built-in stage, with the small store of its workflow kind as input."""

from __future__ import annotations

import pytest

from cgflow.engine import IterativeStage, ReduceStage, SweepStage, check_stage
from cgflow.methods import build_stages
from cgflow.spec import load_spec

from cgflow import open_run

STAGES = {
    "fdr": ("ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro"),
    "patch-1d": ("trajectories", "homogenized", "learn", "rollout"),
    "gaptooth-2d": ("trajectories", "homogenized", "learn", "rollout"),
    "probcg": ("fine", "infer", "reference", "predict"),
    "partial": ("pairs", "sde", "truth", "rollout", "evaluation"),
}


@pytest.mark.parametrize("kind, name", [(k, n) for k, names in STAGES.items() for n in names])
def test_builtin_stage_meets_the_contract(kind, name, small_serial_store):
    store, _ = small_serial_store(kind)
    stages = {s.name: s for s in build_stages(load_spec(store.parent / "spec.yaml"))}
    assert set(stages) == set(STAGES[kind])
    stage = stages[name]
    assert isinstance(stage, (SweepStage, ReduceStage, IterativeStage))
    tree = open_run(store, chunks=None)
    ran = check_stage(stage, tree)
    assert "check_fingerprint_is_stable_across_processes" in ran
    if isinstance(stage, SweepStage):
        assert "check_blocks_are_deterministic" in ran
    elif isinstance(stage, IterativeStage):
        assert "check_iterative_start_and_step_are_deterministic" in ran
    else:
        assert "check_reduce_is_deterministic" in ran
