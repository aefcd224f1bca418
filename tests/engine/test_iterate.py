"""Iterative stages: block tasks + client updates, checkpointed; resume is bitwise equal to an uninterrupted run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr
import zarr

from cgflow.engine import BlockKey, SerialExecutor, TaskError, block_stream, run_iterative
from cgflow.engine.iterate import IterativeStage, read_checkpoint, state_group
from cgflow.engine.store import open_run


@dataclass(frozen=True)
class NoisyRelaxation:
    """Items relax toward their common mean with noise; converges when the mean stops moving."""

    seed: int = 3
    n_items: int = 10
    block: int = 4
    chains: int = 2
    max_iterations: int = 40
    tol: float = 1e-4
    name: str = "relax"
    fail_at: int = 0  # iteration at which block 1 raises (0: never)

    def blocks(self, tree):
        return [(s, min(s + self.block, self.n_items)) for s in range(0, self.n_items, self.block)]

    def initial_state(self, tree, chain):
        x0 = np.arange(self.n_items, dtype=float) * (chain + 1)
        return {"mean": np.array(x0.mean()), "trace": np.full(self.max_iterations, np.nan)}, {"y": x0}

    def step(self, tree, chain, iteration, block, state, local):
        if iteration == self.fail_at and block == 1:
            raise FloatingPointError("block 1 fails on purpose")
        rng = block_stream(self.seed, BlockKey(self.name, chain, iteration * 1000 + block))
        y = local["y"] + 0.5 * (state["mean"] - local["y"]) + 1e-3 * rng.standard_normal(local["y"].shape)
        return {"y": y}, (float(y.sum()), y.size)

    def update(self, tree, chain, iteration, state, stats):
        total = sum(s for s, _ in stats)
        count = sum(n for _, n in stats)
        mean = total / count
        trace = state["trace"].copy()
        trace[iteration - 1] = mean
        return {"mean": np.array(mean), "trace": trace}, abs(mean - float(state["mean"])) < self.tol

    def finalize(self, tree, states, locals_, iterations):
        return xr.Dataset(
            {
                "mean": ("chain", [float(s["mean"]) for s in states]),
                "y": (("chain", "item"), np.stack([l["y"] for l in locals_])),
                "iterations": ("chain", iterations),
                "trace": (("chain", "iteration"), np.stack([s["trace"] for s in states])),
            }
        )


def _store(tmp_path, name="s.zarr"):
    path = str(tmp_path / name)
    zarr.open_group(path, mode="w", zarr_format=3).attrs.update(cgflow_store=1)
    return path


def _result(path):
    return open_run(path, consolidated=False, chunks=None)["relax"].to_dataset().load()


def test_the_protocol_is_recognised():
    assert isinstance(NoisyRelaxation(), IterativeStage)


def test_runs_to_convergence_serially(tmp_path):
    path = _store(tmp_path)
    run_iterative(path, NoisyRelaxation(), "hash", SerialExecutor(), progress=False)
    ds = _result(path)
    assert (ds.iterations < 40).all() and (ds.iterations > 3).all()
    np.testing.assert_allclose(ds["mean"], [4.5, 9.0], atol=0.02)  # the noise moves the mean by ~1e-3 per step


def test_resume_after_an_interruption_is_bitwise_equal(tmp_path):
    stage = NoisyRelaxation()
    whole = _store(tmp_path, "whole.zarr")
    run_iterative(whole, stage, "hash", progress=False)
    parts = _store(tmp_path, "parts.zarr")
    run_iterative(parts, stage, "hash", progress=False, stop_after=3)
    assert "relax" not in zarr.open_group(parts, mode="r")  # not finished: no result group yet
    assert read_checkpoint(parts, stage, 0)[2] == 3
    run_iterative(parts, stage, "hash", progress=False, stop_after=2)
    run_iterative(parts, stage, "hash", progress=False)
    a, b = _result(whole), _result(parts)
    for name in a.data_vars:
        assert a[name].values.tobytes() == b[name].values.tobytes(), name


def test_a_failed_iteration_is_redone_from_the_last_commit(tmp_path):
    path = _store(tmp_path)
    broken = NoisyRelaxation(fail_at=4)
    with pytest.raises(TaskError, match="relax-c0-i4-b1"):
        run_iterative(path, broken, "hash", progress=False)
    assert read_checkpoint(path, broken, 0)[2] == 3  # iteration 4 never committed
    # the same parameters except the failure (another fingerprint) start over; the fixed stage on a
    # checkpoint of its own parameters resumes: both must equal an uninterrupted run
    reference = _store(tmp_path, "ref.zarr")
    run_iterative(reference, NoisyRelaxation(), "hash", progress=False)
    run_iterative(path, NoisyRelaxation(), "hash", progress=False)
    assert _result(path)["y"].values.tobytes() == _result(reference)["y"].values.tobytes()


def test_a_checkpoint_of_other_parameters_is_discarded(tmp_path):
    path = _store(tmp_path)
    run_iterative(path, NoisyRelaxation(), "hash", progress=False, stop_after=2)
    other = NoisyRelaxation(tol=1e-6)
    run_iterative(path, other, "hash", progress=False)
    fresh = _store(tmp_path, "fresh.zarr")
    run_iterative(fresh, other, "hash", progress=False)
    assert _result(path)["y"].values.tobytes() == _result(fresh)["y"].values.tobytes()
    assert zarr.open_group(path, mode="r")[state_group(other)].attrs["blocks"] == [[0, 4], [4, 8], [8, 10]]


def test_blocks_that_split_chunks_are_refused(tmp_path):
    @dataclass(frozen=True)
    class Uneven(NoisyRelaxation):
        def blocks(self, tree):
            return [(0, 3), (3, 7), (7, 10)]

    with pytest.raises(ValueError, match="consecutive ranges of equal size"):
        run_iterative(_store(tmp_path), Uneven(), "hash", progress=False)


@pytest.mark.cluster
def test_dask_executor_gives_the_same_bytes(tmp_path):
    from distributed import Client, LocalCluster

    serial = _store(tmp_path, "serial.zarr")
    run_iterative(serial, NoisyRelaxation(), "hash", progress=False)
    dask_path = _store(tmp_path, "dask.zarr")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        run_iterative(dask_path, NoisyRelaxation(), "hash", client, progress=False)
    for name in ("mean", "y", "trace", "iterations"):
        assert _result(serial)[name].values.tobytes() == _result(dask_path)[name].values.tobytes()
