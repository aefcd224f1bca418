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


def run_spec(spec_text: str, tmp, *extra: str, check: bool = True):
    """Write ``spec_text`` to ``tmp/spec.yaml`` and ``cgflow run`` it serially into ``tmp/run.zarr``: (store, process)."""
    (tmp / "spec.yaml").write_text(spec_text)
    store = tmp / "run.zarr"
    proc = subprocess.run(cgflow_cmd("run", str(tmp / "spec.yaml"), "--store", str(store), "--serial", "--no-progress", *extra),
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return store, proc


def replace_section(spec_text: str, change: str) -> str:
    """``spec_text`` with its one-line top-level section named by ``change`` ("name: {...}") replaced by ``change``."""
    head = change.split(":")[0]
    return "\n".join([ln for ln in spec_text.splitlines() if not ln.startswith(head + ":")] + [change]) + "\n"


def assert_bad_spec_exits_2(spec_text: str, tmp, key: str) -> None:
    """A serial ``cgflow run`` of the spec exits 2, names ``key`` and writes no store."""
    store, proc = run_spec(spec_text, tmp, check=False)
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr
    assert not store.exists()


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


def assert_stores_bitwise_equal(a, b) -> int:
    """Every deterministic array of two stores has the same dtype, shape and bytes; returns how many were compared."""
    from cgflow.engine.store import compare_stores

    n, differing = compare_stores(a, b)
    assert not differing, f"arrays not bitwise equal: {differing}"
    return n


#: Small specs of every workflow kind (seconds each): executor equality and stage-contract tests.
SMALL_SPECS = {
    "fdr": """\
name: fdr-executors
method: fdr
seed: 5
stages: [ensemble, operator, fit, macro, particles, particles_vs_macro]
micro: {model: zrp, sites: 100, rate_exponent: 2, boundary: closed}
ensemble:
  profiles:
    flat: {rho: [4.0, 8.0]}
    affine: {rho_mid: [9.0], slopes: [12.0]}
  basis_functions: 10
  replicas: {preparations: 16, continuations: 4, block: 8}
  times: {equilibrate: 1.0e-3, decorrelate: 2.5e-6, h: 2.5e-8, window: 2.5e-6}
operator: {margin: 1}
macro: {method: implicit, elements: 10, t_end: 2.0e-4, saves: 2}
particles: {sites: 100, replicas: 16, block: 8}
""",
    "gaptooth-2d": """\
name: gt-executors
method: eqfree
seed: 3
micro: {model: lattice2d, convention: paper, lattice: 480}
gap_tooth: {patches: 16, patch_points: 5, coupling: spectral}
trajectories: {train: 4, test: 2, modes: 10, t_end: 0.2, sample_every: 0.01}
learn: {epochs: 2}
rollout: {initial_conditions: 1, times: [0.1, 0.2]}
""",
    "patch-1d": """\
name: pd-executors
method: eqfree
seed: 4
micro: {model: heterodiffusion, coefficient: {mean: 1.1, amplitude: 1.0}, eps: 1.0e-4, dx: 1.0e-6}
patch_dynamics: {nodes: 11, tooth: 1.0e-4, buffer: 8.0e-3, burst: 1.0e-6, substeps: 4, macro_dt: 1.0e-3}
trajectories: {train: 3, test: 1, modes: 20, t_end: 0.02, sample_every: 1.0e-3}
learn: {epochs: 3}
rollout: {initial_conditions: 1, times: [0.01, 0.02]}
""",
    "probcg": """\
name: probcg-executors
method: probcg
seed: 6
micro: {model: walkers, law: advection_diffusion, walkers: 600}
coarse: {bins: 12, neighbours: 1}
fine: {experiments: 32, block: 8, modes: 4, amplitude: 0.4, test_initial_conditions: 2, test_replicas: 4, test_steps: 3}
infer: {restarts: 2, iterations: 6, block: 8}
predict: {samples: 100}
""",
    "partial": """\
name: partial-executors
method: partial
seed: 8
micro: {model: curie_weiss, temperature: 1.1, field: 0.1, size: 16}
partial: {small_size: [8], pairs: 512, block: 256, pair_duration: 0.1}
upsampling: {window: 8, stride: 4}
sde: {epochs: 5, hidden: [16, 16]}
truth: {runs: 10, block: 5, t_end: 2.0, save_every: 0.5}
rollout: {paths: 50, dt: 0.05}
""",
}


@pytest.fixture(scope="session")
def small_serial_store(tmp_path_factory):
    """``kind -> (store, stdout)``: the small spec of that kind run once per session with ``--serial``."""
    made: dict = {}

    def make(kind: str):
        if kind not in made:
            tmp = tmp_path_factory.mktemp(f"serial-{kind}")
            (tmp / "spec.yaml").write_text(SMALL_SPECS[kind])
            proc = subprocess.run(cgflow_cmd("run", str(tmp / "spec.yaml"), "--store", str(tmp / "run.zarr"), "--serial", "--no-progress"),
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr
            made[kind] = (tmp / "run.zarr", proc.stdout)
        return made[kind]

    return make
