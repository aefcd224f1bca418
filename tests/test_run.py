"""End to end: real clusters, worker deaths, interrupts and resumes give bitwise-identical stores."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from cgflow import open_run
from cgflow.engine.store import read_done

from .conftest import TINY_SPEC, _wait_for, cgflow_cmd

#: Blocks of about a second each (18 blocks): long enough to kill or interrupt mid-run.
SLOW_SPEC = TINY_SPEC.replace("sites: 100", "sites: 200").replace(
    "replicas: {preparations: 16, continuations: 4, block: 8}", "replicas: {preparations: 12, continuations: 4, block: 8}"
).replace("equilibrate: 2.0e-3", "equilibrate: 2.5e-2")

DETERMINISTIC = ("ensemble", "ensemble/blocks")


def run_cli(*args, timeout=600, check=True):
    proc = subprocess.run(cgflow_cmd(*args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"cgflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_same_results(a: Path, b: Path) -> None:
    """Every deterministic array of two stores is bitwise equal (bookkeeping under /tasks is not)."""
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for group in DETERMINISTIC:
        names = sorted(n for n, _ in ga[group].arrays())
        assert names == sorted(n for n, _ in gb[group].arrays())
        for name in names:
            x, y = ga[group][name][...], gb[group][name][...]
            assert x.dtype == y.dtype and x.shape == y.shape, f"{group}/{name}"
            assert x.tobytes() == y.tobytes(), f"{group}/{name} differs"


@pytest.fixture(scope="module")
def slow_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "slow.yaml"
    path.write_text(SLOW_SPEC)
    return path


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory, slow_spec) -> Path:
    """The reference: an uninterrupted run on a 2-process LocalCluster."""
    store = tmp_path_factory.mktemp("clean") / "clean.zarr"
    proc = run_cli("run", str(slow_spec), "--store", str(store), "--workers", "2", "--no-progress")
    assert "18 blocks computed, 0 already done" in proc.stdout
    return store


def test_store_reads_with_plain_xarray(clean_store):
    tree = xr.open_datatree(clean_store, engine="zarr")
    ens = tree["ensemble"].ds
    assert ens.sizes["point"] == 3 and ens.sizes["replica"] == 48 and ens.sizes["node"] == 11
    assert tree.attrs["spec_hash"] and "ensemble" in tree.attrs["spec_resolved"]
    assert tree["ensemble"].attrs["time_scaling"] == "lattice time = macroscopic time * sites**2"
    assert int(tree["ensemble/tasks"].ds.done.min()) == 1
    # the streamed statistics agree with the stored replicas
    proj = ens.projection.values
    inc = proj[:, :, 1] - proj[:, :, 0]
    np.testing.assert_allclose(ens.increment_mean.values, inc.mean(axis=1), rtol=1e-12, atol=1e-14)
    for p in range(3):
        np.testing.assert_allclose(ens.increment_comoment.values[p] / 47, np.cov(inc[p].T), rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(ens.increment_count.values, 48)
    # mass: local density of flat profiles is close to rho
    rho = ens.local_density.isel(time=0, node=slice(1, -1)).mean(("replica", "node")).values
    np.testing.assert_allclose(rho[:2], [3.0, 6.0], rtol=0.05)
    assert open_run(clean_store)["ensemble"].ds.projection.shape == proj.shape


def test_status_and_show(clean_store):
    out = run_cli("status", str(clean_store)).stdout
    assert "stage ensemble: 18/18 blocks done, 0 pending (complete)" in out
    assert "numba" in out and "hash" in out
    shown = run_cli("show", str(clean_store)).stdout
    assert "Group: /ensemble" in shown and "projection" in shown


def test_rerun_is_a_noop_and_other_spec_is_refused(clean_store, slow_spec, tmp_path):
    proc = run_cli("run", str(slow_spec), "--store", str(clean_store), "--workers", "1", "--no-progress")
    assert "0 blocks computed, 18 already done" in proc.stdout
    refused = run_cli("run", str(slow_spec), "--store", str(clean_store), "--set", "seed=8", check=False)
    assert refused.returncode == 3
    assert "made by another spec" in refused.stderr and "--restart" in refused.stderr


@pytest.mark.cluster
def test_external_scheduler_matches_local_cluster(dask_cluster, slow_spec, clean_store, tmp_path):
    address, _, _ = dask_cluster
    store = tmp_path / "remote.zarr"
    proc = run_cli("run", str(slow_spec), "--store", str(store), "--scheduler", address, "--no-progress")
    assert "2 workers" in proc.stdout
    assert_same_results(clean_store, store)


@pytest.mark.cluster
def test_worker_killed_mid_run(dask_cluster, slow_spec, clean_store, tmp_path):
    _, workers, scheduler_file = dask_cluster
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen(cgflow_cmd("run", str(slow_spec), "--store", str(store), "--scheduler-file", str(scheduler_file),
                                       "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (store / "ensemble" / "tasks" / "done" / "zarr.json").exists() and 2 <= np.count_nonzero(read_done(store, "ensemble")) < 12,
                  120, "a few finished blocks")
        workers[0].send_signal(signal.SIGKILL)  # dies mid-task: its block is rescheduled
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert workers[0].wait(timeout=10) == -signal.SIGKILL
    assert_same_results(clean_store, store)


def test_sigint_then_resume(slow_spec, clean_store, tmp_path):
    store = tmp_path / "resumed.zarr"
    proc = subprocess.Popen(cgflow_cmd("run", str(slow_spec), "--store", str(store), "--workers", "2", "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (store / "ensemble" / "tasks" / "done" / "zarr.json").exists() and 3 <= np.count_nonzero(read_done(store, "ensemble")) < 14,
                  120, "a few finished blocks")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Re-run the same command to resume" in err
    done_before = read_done(store, "ensemble")
    kept = int(np.count_nonzero(done_before))
    assert 3 <= kept < 18

    again = run_cli("run", str(slow_spec), "--store", str(store), "--workers", "1", "--no-progress")  # fewer workers
    assert f"{18 - kept} blocks computed, {kept} already done" in again.stdout
    done_after = read_done(store, "ensemble")
    # blocks finished by run 1 were not recomputed: their marker still says run 1
    np.testing.assert_array_equal(done_after[done_before == 1], 1)
    assert np.all(done_after[done_before == 0] == 2)
    assert_same_results(clean_store, store)
    status = run_cli("status", str(store)).stdout
    assert "run 1: interrupted" in status and "run 2: complete" in status


def test_concurrent_run_is_refused(slow_spec, tmp_path):
    import requests

    store = tmp_path / "busy.zarr"
    first = subprocess.Popen(cgflow_cmd("run", str(slow_spec), "--store", str(store), "--workers", "1", "--no-progress",
                                        "--dashboard-address", "127.0.0.1:0"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        link = None
        deadline = time.monotonic() + 120
        while link is None and time.monotonic() < deadline:
            line = first.stdout.readline()
            m = re.search(r"dashboard: (\S+)", line)
            link = m.group(1) if m else None
        assert link, "no dashboard link printed"
        # the dashboard answers while the run is going
        assert requests.get(link, timeout=30).status_code == 200
        assert first.poll() is None
        second = run_cli("run", str(slow_spec), "--store", str(store), "--workers", "1", check=False)
        assert second.returncode == 3
        assert "in use by another cgflow run" in second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            first.kill()


def test_rerun_recomputes_a_reduce_stage_and_what_follows(tmp_path):
    """--rerun STAGE: the stage and every later one are recomputed (e.g. after a code change), bitwise the same."""
    from cgflow.engine.store import deterministic_arrays

    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC.replace("stages: [ensemble]", "stages: [ensemble, operator, fit]"))
    store = tmp_path / "run.zarr"
    run_cli("run", str(spec), "--store", str(store), "--serial", "--no-progress")
    before = {k: v[...].tobytes() for k, v in deterministic_arrays(store).items() if k.startswith(("operator/", "fit/"))}
    out = run_cli("run", str(spec), "--store", str(store), "--serial", "--no-progress", "--rerun", "operator").stdout
    assert "operator: computed" in out and "fit: computed" in out, out
    after = {k: v[...].tobytes() for k, v in deterministic_arrays(store).items() if k.startswith(("operator/", "fit/"))}
    assert before and after == before
    assert open_run(store).attrs["runs"][-1]["rerun"] == ["operator"]
    out = run_cli("run", str(spec), "--store", str(store), "--serial", "--no-progress").stdout
    assert "operator: up to date" in out and "fit: up to date" in out
    bad = run_cli("run", str(spec), "--store", str(store), "--rerun", "nonsense", check=False)
    assert bad.returncode == 2 and "expected one of" in bad.stderr
    sweep = run_cli("run", str(spec), "--store", str(store), "--rerun", "ensemble", check=False)
    assert sweep.returncode == 2 and "reduce stages" in sweep.stderr
