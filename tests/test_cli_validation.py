"""`cgflow run` refuses invalid specs before anything is written: exit 2, the key named, no store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import TINY_SPEC, cgflow_cmd

CASES = {
    "unknown key": (TINY_SPEC.replace("sites: 100", "sites: 100, colour: red"), "micro.colour", "unknown key"),
    "wrong type": (TINY_SPEC.replace("sites: 100", "sites: many"), "micro.sites", "expected an integer"),
    "out of range": (TINY_SPEC.replace("rate_exponent: 2", "rate_exponent: 5"), "micro.rate_exponent", "expected an integer in {0, 1, 2}"),
    "missing key": (TINY_SPEC.replace("  basis_functions: 10\n", ""), "ensemble.basis_functions", "missing required key"),
    "block does not divide": (TINY_SPEC.replace("block: 8", "block: 5"), "ensemble.replicas.block", "must divide the replica count preparations x continuations = 64"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_spec_exit_code_message_and_no_store(tmp_path, case):
    text, key, expected = CASES[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    store = tmp_path / "out.zarr"
    before = set(tmp_path.iterdir())
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--store", str(store)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{spec}: {key}: " in proc.stderr
    assert expected in proc.stderr
    assert set(tmp_path.iterdir()) == before  # nothing written: no store, no lock
    assert not store.exists()


def test_bad_override_is_a_spec_error(tmp_path, tiny_spec):
    proc = subprocess.run(cgflow_cmd("run", str(tiny_spec), "--set", "ensemble.replicas.block=3",
                                     "--store", str(tmp_path / "s.zarr")), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "ensemble.replicas.block" in proc.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_missing_file(tmp_path):
    proc = subprocess.run(cgflow_cmd("run", str(tmp_path / "nope.yaml")), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot read spec" in proc.stderr


def test_conflicting_cluster_options(tiny_spec):
    proc = subprocess.run(cgflow_cmd("run", str(tiny_spec), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "mutually exclusive" in proc.stderr


def test_dry_run_describes_every_stage_and_writes_nothing(tmp_path):
    """Sweeps get a measured cost; reduce and iterative stages say where they run and claim no duration."""
    store = tmp_path / "dry.zarr"
    spec = Path(__file__).resolve().parents[1] / "workflows" / "probcg-synthetic-quick.yaml"
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--store", str(store), "--dry-run"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "stage fine: 1 points x 4 blocks = 4 tasks" in out and "measured here (one real block)" in out
    assert "stage infer: reduced from the store (iterated to its stopping rule" in out
    assert "stage predict: reduced from the store (2 parts, one task each on the cluster); no cost estimate" in out
    assert "(seconds)" not in out
    assert not store.exists()
