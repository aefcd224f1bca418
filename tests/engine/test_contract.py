"""The engine contract: exact fingerprints, block outputs checked against the template,
check_stage, the serial executor and progress of reduce stages."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from cgflow.engine import (
    BlockKey,
    BlockOutput,
    BlockOutputError,
    FingerprintError,
    Moments,
    SerialExecutor,
    StageContractError,
    Stat,
    Sweep,
    TaskError,
    block_stream,
    check_stage,
    fingerprint,
    run_reduce,
    run_sweep,
)
from cgflow.engine import execute as execute_module
from cgflow.engine.check import check_blocks_are_deterministic, check_fingerprint_is_exact
from cgflow.engine.store import create_stage, open_run, read_done
from cgflow.engine.types import FINGERPRINT_SCHEME


# --------------------------------------------------------------------------- a small sweep stage

@dataclass(frozen=True)
class NoiseStage:
    """Gaussian noise per replica and its moments: 2 points x 3 blocks of 4 replicas."""

    seed: int = 1
    name: str = "noise"
    mode: str = "ok"  # or one of the broken behaviours below
    table: tuple = (1.0, 2.0)

    @property
    def sweep(self) -> Sweep:
        return Sweep(n_points=2, n_blocks=3, block_size=4, stats={"x": Stat("k", 3)})

    def template(self) -> xr.Dataset:
        data = da.zeros((2, 12, 3), chunks=(1, 4, 3), dtype=np.float64)
        return xr.Dataset({"x": (("point", "replica", "k"), data)}, coords={"k": np.arange(3)})

    def compute_block(self, point: int, block: int) -> BlockOutput:
        rng = block_stream(self.seed, BlockKey(self.name, point, block))
        if self.mode == "global_rng":
            x = np.random.default_rng().normal(size=(4, 3))
        elif self.mode == "ignores_key":
            x = np.random.default_rng(self.seed).normal(size=(4, 3))
        else:
            x = rng.normal(size=(4, 3))
        arrays = {"x": x}
        stats = {"x": Moments.from_samples(x)}
        if self.mode == "missing_variable":
            arrays = {}
        elif self.mode == "wrong_shape":
            arrays = {"x": x[:, :2]}
        elif self.mode == "wrong_dtype":
            arrays = {"x": x.astype(np.complex128)}
        elif self.mode == "missing_stat":
            stats = {}
        elif self.mode == "extra_variable":
            arrays["y"] = x
        elif self.mode == "raises" and (point, block) == (1, 2):
            raise ZeroDivisionError("this block is broken on purpose")
        return BlockOutput(stats=stats, arrays=arrays, work=4)


# --------------------------------------------------------------------------- fingerprints

@dataclass(frozen=True)
class TableStage:
    table: np.ndarray
    name: str = "table"


def test_fingerprint_sees_one_element_of_a_long_table():
    table = np.linspace(0.0, 1.0, 2000)
    other = table.copy()
    other[1234] = np.nextafter(other[1234], 2.0)  # one ulp in one element
    assert fingerprint(TableStage(table)) != fingerprint(TableStage(other))
    assert fingerprint(TableStage(table)) == fingerprint(TableStage(table.copy()))
    # the old json(default=str) encoding printed such arrays with "..." and collided
    assert "..." in str(table) and str(table) == str(other)


def test_fingerprint_tells_dtypes_shapes_zero_signs_and_containers_apart():
    a = np.arange(6, dtype=np.int64)
    variants = [a, a.astype(np.int32), a.reshape(2, 3), a.astype(np.float64)]
    assert len({fingerprint(TableStage(v)) for v in variants}) == 4
    assert fingerprint(NoiseStage(table=(0.0,))) != fingerprint(NoiseStage(table=(-0.0,)))
    assert fingerprint(NoiseStage(table=(1.0, 2.0))) != fingerprint(NoiseStage(table=(1.0, 2.0000000000000004)))
    assert fingerprint(NoiseStage(table=({"a": 1, "b": 2},))) == fingerprint(NoiseStage(table=({"b": 2, "a": 1},)))
    assert fingerprint(NoiseStage(table=("1",))) != fingerprint(NoiseStage(table=(1,)))


def test_fingerprint_refuses_callables_and_unknown_objects_naming_the_parameter():
    with pytest.raises(FingerprintError, match=r"NoiseStage\.table\[1\] is a callable"):
        fingerprint(NoiseStage(table=(1.0, np.sin)))
    with pytest.raises(FingerprintError, match=r"NoiseStage\.table\[0\]\['f'\]"):
        fingerprint(NoiseStage(table=({"f": object()},)))
    with pytest.raises(StageContractError, match="check_fingerprint_is_exact"):
        check_fingerprint_is_exact(NoiseStage(table=(lambda x: x,)))


class Opaque:
    """An object that opts into fingerprints through the hook."""

    def __init__(self, coefficients):
        self.coefficients = np.asarray(coefficients, dtype=float)

    def __cgflow_fingerprint__(self):
        return {"coefficients": self.coefficients}


def test_fingerprint_hook_is_the_only_way_in_for_other_objects():
    one, same, other = Opaque([1.0, 2.0]), Opaque([1.0, 2.0]), Opaque([1.0, 3.0])
    assert fingerprint(NoiseStage(table=(one,))) == fingerprint(NoiseStage(table=(same,)))
    assert fingerprint(NoiseStage(table=(one,))) != fingerprint(NoiseStage(table=(other,)))


def test_fingerprint_is_the_same_in_a_fresh_process():
    code = (
        "import numpy as np\n"
        "from dataclasses import dataclass\n"
        "from cgflow.engine import fingerprint\n"
        "@dataclass(frozen=True)\n"
        "class TableStage:\n"
        "    table: np.ndarray\n"
        "    name: str = 'table'\n"
        "print(fingerprint(TableStage(np.linspace(0.0, 1.0, 2000))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "random", "PATH": ""})
    assert out.stdout.strip() == fingerprint(TableStage(np.linspace(0.0, 1.0, 2000)))
    assert FINGERPRINT_SCHEME.startswith("cgflow-fingerprint-2")


# --------------------------------------------------------------------------- block validation

@pytest.fixture
def noise_store(tmp_path):
    def make(stage):
        path = str(tmp_path / f"{stage.mode}.zarr")
        create_stage(path, stage)
        return path

    return make


def test_a_good_stage_runs_serially(noise_store):
    stage = NoiseStage()
    path = noise_store(stage)
    report = run_sweep(SerialExecutor(), path, stage, run_index=1, progress=False)
    assert report.computed == 6 and (read_done(path, "noise") == 1).all()


@pytest.mark.parametrize(
    "mode, message",
    [
        ("missing_variable", r"variable\(s\) \['x'\] of the template are missing"),
        ("extra_variable", r"variable\(s\) \['y'\] are not in the stage template"),
        ("wrong_shape", r"variable 'x' has shape \(4, 2\), expected \(4, 3\)"),
        ("wrong_dtype", r"variable 'x' has dtype complex128, which cannot be stored as the template's float64"),
        ("missing_stat", r"statistics \[\] do not match Sweep.stats \['x'\]"),
    ],
)
def test_malformed_blocks_are_refused_before_anything_is_written(noise_store, mode, message):
    stage = NoiseStage(mode=mode)
    path = noise_store(stage)
    with pytest.raises(TaskError, match="task noise-p0-b0 failed") as info:
        run_sweep(SerialExecutor(), path, stage, run_index=1, progress=False)
    cause = info.value.__cause__
    assert isinstance(cause, BlockOutputError)
    assert "stage 'noise', task noise-p0-b0" in str(cause)
    assert re.search(message, str(cause)), str(cause)
    assert (read_done(path, "noise") == 0).all()  # no done marker
    assert np.isnan(zarr.open_group(path, mode="r")["noise/x"][...]).all()  # nothing written: fill values only


def test_a_failing_task_names_its_key_and_keeps_its_traceback(noise_store):
    stage = NoiseStage(mode="raises")
    path = noise_store(stage)
    with pytest.raises(TaskError) as info:
        run_sweep(SerialExecutor(), path, stage, run_index=1, progress=False)
    assert info.value.key == "noise-p1-b2"
    assert "ZeroDivisionError: this block is broken on purpose" in info.value.remote_traceback
    assert "in compute_block" in info.value.remote_traceback
    assert np.count_nonzero(read_done(path, "noise")) == 5  # the other blocks are done and kept


@pytest.mark.cluster
def test_a_failing_task_on_the_cluster_names_its_key_and_remote_traceback(noise_store):
    from distributed import Client, LocalCluster

    stage = NoiseStage(mode="raises")
    path = noise_store(stage)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        with pytest.raises(TaskError) as info:
            run_sweep(client, path, stage, run_index=1, progress=False)
    assert info.value.key == "noise-p1-b2"
    assert "in compute_block" in info.value.remote_traceback and "ZeroDivisionError" in info.value.remote_traceback


# --------------------------------------------------------------------------- check_stage

def test_check_stage_passes_a_good_stage_and_runs_checks_one_at_a_time():
    names = check_stage(NoiseStage(), fresh_process=False)
    assert "check_blocks_are_deterministic" in names and "check_blocks_match_the_template" in names
    generated = check_stage(NoiseStage(), generate_only=True, fresh_process=False)
    assert [n for n, _ in generated] == names
    for _, check in generated:
        check()


@pytest.mark.parametrize(
    "mode, check",
    [
        ("global_rng", "check_blocks_are_deterministic"),
        ("ignores_key", "check_blocks_are_deterministic"),
        ("wrong_shape", "check_blocks_match_the_template"),
        ("missing_stat", "check_blocks_match_the_template"),
    ],
)
def test_check_stage_finds_broken_stages(mode, check):
    with pytest.raises(StageContractError, match=check):
        check_stage(NoiseStage(mode=mode), fresh_process=False)


def test_check_stage_refuses_what_is_not_a_stage():
    with pytest.raises(StageContractError, match="neither a SweepStage"):
        check_stage(object())


def test_nondeterministic_block_is_caught_by_its_own_check():
    with pytest.raises(StageContractError, match="computed twice differs"):
        check_blocks_are_deterministic(NoiseStage(mode="global_rng"))


# --------------------------------------------------------------------------- reduce stages and progress

@dataclass(frozen=True)
class SlowReduce:
    """Sums the noise of each point, slowly; partitioned by point when ``partitioned``."""

    seconds: float = 0.4
    name: str = "slow"

    def compute(self, tree: xr.DataTree, progress=None) -> xr.Dataset:
        import time

        for i in range(4):
            time.sleep(self.seconds / 4)
            if progress is not None:
                progress(i + 1, 4)
        return xr.Dataset({"total": ((), float(tree["noise"]["x"].sum()))})


@dataclass(frozen=True)
class PartsReduce:
    name: str = "parts"

    def parts(self) -> tuple:
        return (0, 1)

    def compute_part(self, tree, part):
        return float(tree["noise"]["x"][part].sum())

    def combine(self, tree, results):
        return xr.Dataset({"per_point": ("point", [results[0], results[1]])})

    def compute(self, tree):
        return self.combine(tree, {p: self.compute_part(tree, p) for p in self.parts()})


@pytest.fixture
def noise_run(noise_store):
    stage = NoiseStage()
    path = noise_store(stage)
    run_sweep(SerialExecutor(), path, stage, run_index=1, progress=False)
    return path


def test_long_reduce_stage_shows_progress_and_no_progress_silences_it(noise_run, capfd, monkeypatch):
    monkeypatch.setattr(execute_module, "REDUCE_PROGRESS_AFTER", 0.05)
    run_reduce(noise_run, SlowReduce(), "hash", progress=True)
    err = capfd.readouterr().err
    assert "slow" in err and "4/4" in err
    run_reduce(noise_run, SlowReduce(), "hash", progress=False)
    assert capfd.readouterr().err == ""


def test_short_reduce_stage_stays_silent(noise_run, capfd):
    run_reduce(noise_run, SlowReduce(seconds=0.0), "hash", progress=True)
    assert capfd.readouterr().err == ""


def test_partitioned_reduce_passes_check_stage_and_runs_serially(noise_run):
    tree = open_run(noise_run, consolidated=False, chunks=None)
    names = check_stage(PartsReduce(), tree, fresh_process=False)
    assert "check_compute_equals_combined_parts" in names
    run_reduce(noise_run, PartsReduce(), "hash", progress=False)
    assert open_run(noise_run)["parts"]["per_point"].shape == (2,)


@dataclass(frozen=True)
class BadParts(PartsReduce):
    name: str = "bad"

    def compute(self, tree):  # disagrees with its parts
        return xr.Dataset({"per_point": ("point", [0.0, 0.0])})


def test_check_stage_finds_a_partitioned_reduce_whose_parts_disagree(noise_run):
    with pytest.raises(StageContractError, match="check_compute_equals_combined_parts"):
        check_stage(BadParts(), open_run(noise_run, consolidated=False, chunks=None), fresh_process=False)
