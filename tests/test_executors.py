"""The serial executor writes the same store as a 2-worker LocalCluster, bitwise, for every kind of workflow.

Small specs of each workflow kind (fdr: all six stages; eqfree 1-D patch
dynamics; eqfree 2-D gap-tooth) run once with ``--serial`` and once with
``--workers 2``; every array outside the ``tasks`` bookkeeping must have the
same bytes.
"""

from __future__ import annotations

import subprocess

import pytest

from .conftest import SMALL_SPECS, assert_stores_bitwise_equal, cgflow_cmd



def _run(spec, store, *how):
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--store", str(store), "--no-progress", *how),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.cluster
@pytest.mark.parametrize("kind", sorted(SMALL_SPECS))
def test_serial_and_two_workers_write_the_same_store(kind, small_serial_store, tmp_path):
    serial_store, serial_output = small_serial_store(kind)
    assert "dashboard" not in serial_output
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL_SPECS[kind])
    cluster = _run(spec, tmp_path / "cluster.zarr", "--workers", "2")
    assert "2 workers" in cluster.stdout
    assert assert_stores_bitwise_equal(serial_store, tmp_path / "cluster.zarr") > 20


def test_serial_excludes_cluster_options(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL_SPECS["fdr"])
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--serial", "--workers", "2"), capture_output=True, text=True)
    assert proc.returncode == 2 and "mutually exclusive" in proc.stderr
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--pdb"), capture_output=True, text=True)
    assert proc.returncode == 2 and "--pdb needs --serial" in proc.stderr
    assert not list(tmp_path.glob("*.zarr"))
