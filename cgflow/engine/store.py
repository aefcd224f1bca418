"""One Zarr v3 store per run: templates, region writes, done markers, provenance.

Layout of a sweep stage ``S`` (every group readable with plain xarray)::

    /                     attrs: spec text + hash, versions, git commit, seed, runs
    /S                    coordinates of the sweep, per-replica arrays (optional),
                          merged statistics  {stat}_count/_mean/_comoment (point, ...)
    /S/blocks             per-block statistics and work counts (point, block, ...)
    /S/tasks              bookkeeping: done (point, block) = invocation that finished
                          the block (0 = pending), seconds = compute time

The store is built once from templates (metadata only); each task then writes
its own chunks in ``r+`` mode and finally its ``done`` marker, so a block is
either marked done with all its data written, or recomputed on resume.
Everything under ``/S`` and ``/S/blocks`` is deterministic; ``/S/tasks`` is not.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import getpass
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from .keys import RNG_SCHEME, BlockKey, stage_id
from .stats import Moments
from .types import BLOCK_DIM, REPLICA_DIM, Sweep, SweepStage, fingerprint

__all__ = [
    "StoreError",
    "StoreLock",
    "open_run",
    "provenance",
    "check_store",
    "prepare_store",
    "read_attrs",
    "stage_ready",
    "progress",
    "stage_datasets",
    "create_stage",
    "write_reduced",
    "stage_fingerprint",
    "write_block",
    "read_done",
    "read_block_stats",
    "write_merged_stats",
    "update_attrs",
    "consolidate",
    "deterministic_arrays",
    "compare_stores",
]

PACKAGES = ("cgflow", "numpy", "numba", "scipy", "xarray", "zarr", "dask", "distributed", "scikit-learn")


class StoreError(RuntimeError):
    """The store cannot be used for this run (another spec, in use, not a cgflow store)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- lock

class StoreLock:
    """Exclusive lock on a store for the lifetime of one ``cgflow run``.

    Uses ``flock`` on a hidden file beside the store (``.NAME.lock``; inside the
    store Zarr would take it for a broken node): the kernel drops the lock when the
    process dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def lock_file(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"

    def __enter__(self) -> "StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(f"store {self.path} is in use by another cgflow run ({holder}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_now()}".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- provenance

def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(spec: Any) -> dict[str, Any]:
    """Root attributes that say exactly what produced the store."""
    return {
        "cgflow_store": 1,
        "name": spec.name,
        "method": spec.method,
        "spec_source": spec.source,
        "spec_text": spec.text,
        "spec_resolved": spec.resolved_yaml,
        "spec_hash": spec.hash,
        "root_seed": spec.seed,
        "rng_scheme": RNG_SCHEME,
        "cgflow_git_commit": _git_commit(),
        "versions": _versions(),
        "created": _now(),
        "created_by": f"{getpass.getuser()}@{socket.gethostname()}",
        "runs": [],
    }


# --------------------------------------------------------------------------- open / prepare

def _root_attrs(path: Path) -> dict | None:
    meta = path / "zarr.json"
    if not meta.exists():
        return None
    try:
        return json.loads(meta.read_text()).get("attributes", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path} has an unreadable zarr.json: {exc}") from exc


def open_run(path: str | os.PathLike, consolidated: bool | None = None, chunks: Any = "auto") -> xr.DataTree:
    """Open a cgflow store as an :class:`xarray.DataTree` (lazy, read-only).

    By default variables are dask arrays chunked as stored; ``chunks=None`` gives
    lazily indexed arrays read directly with zarr (faster for many small reads).
    """
    path = Path(path)
    if _root_attrs(path) is None:
        raise StoreError(f"{path} is not a cgflow store (no zarr.json)")
    return xr.open_datatree(path, engine="zarr", chunks={} if chunks == "auto" else chunks, consolidated=consolidated)


def read_attrs(path: str | os.PathLike) -> dict:
    """Root attributes of a store ({} if there is no store)."""
    return _root_attrs(Path(path)) or {}


def check_store(path: str | os.PathLike, spec: Any, stages: Iterable[Any] = (), restart: bool = False) -> None:
    """Raise :class:`StoreError` unless ``path`` can hold this run.

    Accepted: no store yet, an empty directory, or a cgflow store whose sweep
    stages were computed with the same parameters (a resume). A sweep computed
    with other parameters is never mixed with new blocks: that needs
    ``restart``. A directory that is not a cgflow store is refused even then
    (it may be someone's data).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} exists and is not a directory")
    attrs = _root_attrs(path)
    if attrs is None:
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path} exists and is not a cgflow store; choose another --store")
        return
    if "spec_hash" not in attrs:
        raise StoreError(f"{path} is a Zarr store but not a cgflow run; choose another --store")
    if restart:
        return
    for stage in stages:
        stored = stage_fingerprint(path, stage.name)
        if isinstance(stage, SweepStage) and stored is not None and stored != fingerprint(stage):
            raise StoreError(
                f"store {path} was made by another spec (stage {stage.name!r} was computed by spec "
                f"{_group_attrs(path, stage.name).get('spec_hash', '?')[:12]}, name {attrs.get('name')!r}) than the one "
                f"requested (name {spec.name!r}, hash {spec.hash[:12]}) and the change affects its results; "
                "results are never mixed: use --restart to start over, or another --store"
            )


def prepare_store(path: str | os.PathLike, spec: Any, stages: Iterable[Any] = (), restart: bool = False) -> str:
    """Create, resume or restart the store for ``spec``; return ``"new"`` or ``"resume"``.

    Must be called with the :class:`StoreLock` held (checks again under it). On
    resume the root attributes describe the newest spec; each stage group keeps
    the hash of the spec that computed it.
    """
    path = Path(path)
    check_store(path, spec, stages, restart)
    if _root_attrs(path) is not None and not restart:
        latest = provenance(spec)
        update_attrs(path, **{k: latest[k] for k in ("spec_source", "spec_text", "spec_resolved", "spec_hash", "cgflow_git_commit", "versions")})
        return "resume"
    for p in path.iterdir() if path.exists() else ():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    root = zarr.open_group(path, mode="a", zarr_format=3)
    root.attrs.update(provenance(spec))
    return "new"


def update_attrs(path: str | os.PathLike, group: str = "", **attrs: Any) -> None:
    """Update the attributes of the root or of ``group`` (client side, under the lock)."""
    g = zarr.open_group(str(path), mode="r+", path=group or None, use_consolidated=False)
    g.attrs.update(attrs)


def consolidate(path: str | os.PathLike) -> None:
    """Consolidate metadata so readers open the store with one request."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))


def _group_attrs(path: str | os.PathLike, group: str) -> dict:
    meta = Path(path) / group / "zarr.json"
    if not meta.exists():
        return {}
    return json.loads(meta.read_text()).get("attributes", {})


def stage_fingerprint(path: str | os.PathLike, stage: str) -> str | None:
    """Fingerprint of a completely created stage group, or None."""
    attrs = _group_attrs(path, stage)
    return attrs.get("cgflow_fingerprint") if attrs.get("cgflow_ready") else None


def stage_ready(path: str | os.PathLike, stage: str) -> bool:
    """Whether the group of ``stage`` was completely created (sweep) or written (reduce)."""
    return bool(_group_attrs(path, stage).get("cgflow_ready"))


def progress(path: str | os.PathLike) -> dict[str, tuple[int, int] | None]:
    """``{stage: (blocks done, blocks total)}`` for sweep stages; ``None`` for a written reduce stage."""
    out: dict[str, tuple[int, int] | None] = {}
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    for name, group in root.groups():
        if "tasks" in group and "done" in group["tasks"]:
            done = np.asarray(group["tasks"]["done"][...])
            out[name] = (int(np.count_nonzero(done)), int(done.size))
        elif group.attrs.get("cgflow_ready"):
            out[name] = None
    return out


# --------------------------------------------------------------------------- templates

def _lazy(shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any) -> da.Array:
    return da.zeros(shape, chunks=chunks, dtype=dtype)


def _stats_vars(sweep: Sweep, per_block: bool) -> dict[str, tuple]:
    lead = (sweep.point_dim, BLOCK_DIM) if per_block else (sweep.point_dim,)
    shape = (sweep.n_points, sweep.n_blocks) if per_block else (sweep.n_points,)
    one = (1,) * len(lead)
    out = {}
    for stat, spec in sweep.stats.items():
        dim, size = spec.dim, spec.size
        out[f"{stat}_count"] = (lead, _lazy(shape, one, np.int64))
        out[f"{stat}_mean"] = (lead + (dim,), _lazy(shape + (size,), one + (size,), np.float64))
        if spec.full:
            out[f"{stat}_comoment"] = (lead + (dim, f"{dim}_b"), _lazy(shape + (size, size), one + (size, size), np.float64))
        else:
            out[f"{stat}_m2"] = (lead + (dim,), _lazy(shape + (size,), one + (size,), np.float64))
    return out


def stage_datasets(stage: SweepStage, attrs: Mapping[str, Any] | None = None) -> dict[str, xr.Dataset]:
    """The lazy datasets of a stage's groups: ``{group path: Dataset}`` (metadata only).

    The stage's own template (coordinates and per-replica variables) plus the
    merged statistics, the per-block statistics and the task bookkeeping.
    """
    sweep = stage.sweep
    science = stage.template()
    for name, var in science.data_vars.items():
        if var.dims[:1] != (sweep.point_dim,):
            continue  # coordinates-like data written with the template
        if var.chunks is None:
            raise ValueError(f"template variable {name!r} must be dask-backed (chunked by block)")
        if REPLICA_DIM not in var.dims and sweep.n_blocks != 1:
            raise ValueError(f"template variable {name!r} has no {REPLICA_DIM!r} dimension: only sweeps of one block per point may have per-point variables")
    merged = xr.Dataset(_stats_vars(sweep, per_block=False))
    for name, var in merged.data_vars.items():
        var.attrs["description"] = _describe(name, merged=True)
    science = science.merge(merged)
    science.attrs.update(
        {
            "stage": stage.name,
            "stage_id": stage_id(stage.name),
            "block_size": sweep.block_size,
            "n_blocks": sweep.n_blocks,
            "n_points": sweep.n_points,
            "replicas_per_point": sweep.n_replicas,
            **(attrs or {}),
        }
    )

    blocks = xr.Dataset(_stats_vars(sweep, per_block=True))
    for name, var in blocks.data_vars.items():
        var.attrs["description"] = _describe(name, merged=False)
    lead = (sweep.point_dim, BLOCK_DIM)
    blocks["work"] = (lead, _lazy((sweep.n_points, sweep.n_blocks), (1, 1), np.int64))
    blocks["work"].attrs["description"] = "elementary operations of the block (e.g. KMC events)"

    shape, chunks = (sweep.n_points, sweep.n_blocks), (1, 1)
    tasks = xr.Dataset(
        {
            "done": (lead, _lazy(shape, chunks, np.int16)),
            "seconds": (lead, _lazy(shape, chunks, np.float64)),
        }
    )
    tasks["done"].attrs["description"] = "0 = pending; k = finished by the k-th invocation of cgflow run on this store"
    tasks["seconds"].attrs["description"] = "compute seconds of the block on its worker (excludes I/O)"
    return {stage.name: science, f"{stage.name}/blocks": blocks, f"{stage.name}/tasks": tasks}


def create_stage(path: str | os.PathLike, stage: SweepStage, attrs: Mapping[str, Any] | None = None) -> None:
    """Write the metadata of stage ``stage.name`` and its ``blocks``/``tasks`` subgroups.

    Only coordinates are written eagerly; data variables are templates that the
    tasks fill region by region.
    """
    for group, ds in stage_datasets(stage, attrs).items():  # parent first: mode "w" clears a group
        ds.to_zarr(path, group=group, mode="w", compute=False, zarr_format=3, consolidated=False)
    _mark_ready(path, stage)  # last: a half-built stage is rebuilt on resume


def write_reduced(path: str | os.PathLike, stage: Any, ds: xr.Dataset | xr.DataTree, spec_hash: str) -> None:
    """Write (or overwrite) the group of a reduce stage, then mark it ready.

    ``ds`` is the stage's Dataset, or a DataTree whose root becomes the stage's
    group and whose children its subgroups (e.g. one per trained model).
    """
    tree = ds if isinstance(ds, xr.DataTree) else xr.DataTree(ds)
    for node in tree.subtree:  # parent first: mode "w" clears a group with its children
        group = stage.name + node.path.rstrip("/") if node.path != "/" else stage.name
        out = node.to_dataset(inherit=False).copy()
        if node.path == "/":
            out.attrs.update({"stage": stage.name, "spec_hash": spec_hash})
        out.to_zarr(path, group=group, mode="w", zarr_format=3, consolidated=False)
    _mark_ready(path, stage)


def _mark_ready(path: str | os.PathLike, stage: Any) -> None:
    update_attrs(path, stage.name, cgflow_ready=True, cgflow_fingerprint=fingerprint(stage))


def _describe(name: str, merged: bool) -> str:
    stat, _, part = name.rpartition("_")
    scope = "all replicas of the point, merged in block order" if merged else "the replicas of one block"
    return {
        "count": f"number of samples of '{stat}' over {scope}",
        "mean": f"mean of '{stat}' over {scope}",
        "comoment": f"co-moment sum (x - mean)(x - mean)^T of '{stat}' over {scope}; covariance = comoment / (count - 1)",
        "m2": f"sum of squared deviations (x - mean)^2 of '{stat}' over {scope}; variance = m2 / (count - 1)",
    }[part]


# --------------------------------------------------------------------------- task-side writes

def write_block(
    path: str | os.PathLike,
    key: BlockKey,
    sweep: Sweep,
    out: "Any",
    run_index: int,
    seconds: float,
) -> None:
    """Write one block's arrays and statistics, then its done marker (last)."""
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group = root[key.stage]
    p, b, bs = key.point, key.block, sweep.block_size
    for name, data in out.arrays.items():
        arr = group[name]
        if REPLICA_DIM not in (arr.metadata.dimension_names or ()):  # a per-point variable
            if data.shape != arr.shape[1:]:
                raise ValueError(f"{key.name}: {name} has shape {data.shape}, expected {arr.shape[1:]}")
            arr[p, ...] = data
            continue
        if data.shape[0] != bs:
            raise ValueError(f"{key.name}: {name} has {data.shape[0]} rows, expected block size {bs}")
        arr[p, b * bs:(b + 1) * bs, ...] = data
    blocks = group["blocks"]
    for stat, m in out.stats.items():
        blocks[f"{stat}_count"][p, b] = m.count
        blocks[f"{stat}_mean"][p, b, :] = m.mean
        blocks[_second_moment(stat, m.full)][p, b, ...] = m.comoment
    blocks["work"][p, b] = out.work
    tasks = group["tasks"]
    tasks["seconds"][p, b] = seconds
    tasks["done"][p, b] = run_index  # the marker goes last: a block marked done is complete


# --------------------------------------------------------------------------- client-side reads / writes

def read_done(path: str | os.PathLike, stage: str) -> np.ndarray:
    """``done`` marker array ``(point, block)``; 0 means pending."""
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return np.asarray(root[f"{stage}/tasks/done"][...])


def read_block_stats(path: str | os.PathLike, stage: str, sweep: Sweep, point: int, blocks: Iterable[int]) -> dict[int, dict[str, Moments]]:
    """Statistics of finished blocks of one point, as stored by :func:`write_block`."""
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    g = root[f"{stage}/blocks"]
    blocks = list(blocks)
    out: dict[int, dict[str, Moments]] = {b: {} for b in blocks}
    for stat, spec in sweep.stats.items():
        count = g[f"{stat}_count"][point, :]
        mean = g[f"{stat}_mean"][point, :, :]
        com = g[_second_moment(stat, spec.full)][point, ...]
        for b in blocks:
            out[b][stat] = Moments(int(count[b]), np.array(mean[b]), np.array(com[b]))
    return out


def write_merged_stats(path: str | os.PathLike, stage: str, point: int, stats: Mapping[str, Moments]) -> None:
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    g = root[stage]
    for stat, m in stats.items():
        g[f"{stat}_count"][point] = m.count
        g[f"{stat}_mean"][point, :] = m.mean
        g[_second_moment(stat, m.full)][point, ...] = m.comoment


def _second_moment(stat: str, full: bool) -> str:
    return f"{stat}_comoment" if full else f"{stat}_m2"


# --------------------------------------------------------------------------- comparing runs

def deterministic_arrays(path: str | os.PathLike) -> dict[str, Any]:
    """Every array of a store that must not depend on how the run was executed.

    Left out: the ``tasks`` bookkeeping groups (run indices, seconds) and
    variables marked as timings (attribute ``cgflow_timing``).
    """
    from .types import TIMING_ATTR

    def walk(group, prefix=""):
        for name, arr in group.arrays():
            if not arr.attrs.get(TIMING_ATTR):
                yield prefix + name, arr
        for name, sub in group.groups():
            if name != "tasks":
                yield from walk(sub, f"{prefix}{name}/")

    return dict(walk(zarr.open_group(str(path), mode="r")))


def _bytes(x: np.ndarray) -> bytes:
    x = np.asarray(x)
    return repr(x.tolist()).encode() if x.dtype.hasobject else x.tobytes()


def compare_stores(a: str | os.PathLike, b: str | os.PathLike) -> tuple[int, list[str]]:
    """``(arrays compared, arrays that differ)`` between two stores, bitwise (dtype, shape and bytes).

    Two runs of the same spec must differ in none, whatever executor, worker
    count, retries or resumes produced them.
    """
    xa, xb = deterministic_arrays(a), deterministic_arrays(b)
    differing = sorted(set(xa) ^ set(xb))
    for name in sorted(set(xa) & set(xb)):
        x, y = xa[name][...], xb[name][...]
        if x.dtype != y.dtype or x.shape != y.shape or _bytes(x) != _bytes(y):
            differing.append(name)
    return len(set(xa) | set(xb)), differing
