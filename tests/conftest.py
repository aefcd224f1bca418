"""Shared fixtures: tiny specs and a real Dask cluster on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: A ZRP ensemble small enough for tests: 3 points x 8 blocks, about a second of KMC in all.
TINY_SPEC = """\
name: tiny
method: fdr
seed: 7
stages: [ensemble]
micro: {model: zrp, sites: 100, rate_exponent: 2, boundary: closed}
ensemble:
  profiles:
    flat: {rho: [3.0, 6.0]}
    affine: {rho_mid: [5.0], slopes: [4.0]}
  basis_functions: 10
  replicas: {preparations: 16, continuations: 4, block: 8}
  times: {equilibrate: 2.0e-3, decorrelate: 1.0e-5, h: 1.0e-7}
  store_replicas: true
"""


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def cgflow_cmd(*args: str) -> list[str]:
    """The installed console script, from the same environment as the tests."""
    exe = shutil.which("cgflow", path=str(BIN)) or shutil.which("cgflow")
    return [exe, *args] if exe else [sys.executable, "-m", "cgflow.cli", *args]


def _wait_for(predicate, timeout: float, what: str, procs=()):
    """Poll ``predicate`` until it is truthy; fail early if one of ``procs`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"{p.args[:2]} exited with {p.returncode} while waiting for {what}"
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def dask_cluster(tmp_path: Path):
    """`dask scheduler` + two `dask worker` processes on 127.0.0.1; stopped afterwards.

    Yields ``(scheduler_address, worker_processes, scheduler_file)``.
    """
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    dask = str(BIN / "dask")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        ))
        _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 60, "the scheduler file")
        import json

        address = json.loads(sched_file.read_text())["address"]
        workers = []
        for i in range(2):
            w = subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                 "--name", f"w{i}", "--no-dashboard", "--local-directory", str(tmp_path / f"w{i}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )
            procs.append(w)
            workers.append(w)
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers, sched_file
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
