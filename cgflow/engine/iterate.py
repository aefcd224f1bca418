"""Iterative stages: an outer loop whose every iteration is a set of independent block tasks.

Fits such as mean-field variational inference alternate a *local* step, one
per item (an experiment's q(X_i)), that is independent across items given the
*global* state (q(θ), q(τ), q(v)), and a cheap global update from sums over
items. :class:`IterativeStage` states that shape; :func:`run_iterative` runs
it on any executor:

* items are split into fixed blocks; each iteration runs one task per
  ``(chain, block)`` (chains are independent restarts, run side by side);
* a task reads the chain's global state and its block's local state from the
  store, runs :meth:`IterativeStage.step` with random streams derived from
  ``(seed, stage, chain, iteration, block)``, writes the new local state into
  the other of two slots and returns small statistics;
* the client folds the statistics in block order (so results do not depend on
  worker count or completion order), calls :meth:`IterativeStage.update`, and
  commits the new global state with its iteration number, last. Global and
  local states are double-buffered (slot = iteration mod 2), so a crash in the
  middle of a commit leaves the previous iteration intact.

The store therefore holds a consistent checkpoint after every iteration: an
interrupted or killed fit resumes from the last committed iteration and ends
bitwise equal to an uninterrupted one (tested). The checkpoint lives in the
group ``<name>_state`` beside the stage's result group and records the stage's
fingerprint; a checkpoint of other parameters is discarded, never continued.
"""

from __future__ import annotations

import time
import uuid
from functools import lru_cache
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import xarray as xr
import zarr

from .executors import Executor, SerialExecutor, as_executor
from .store import open_run, write_reduced
from .types import fingerprint

__all__ = ["IterativeStage", "run_iterative", "read_checkpoint", "state_group"]

State = dict[str, np.ndarray]


@runtime_checkable
class IterativeStage(Protocol):
    """A stage computed by an outer loop of block tasks and client-side updates.

    Attributes
    ----------
    name : str
        The result group; the checkpoint is ``<name>_state``.
    seed : int
        Root seed: a task's streams come from ``(seed, name, chain, iteration, block)``.
    chains : int
        Independent runs of the loop (restarts), advanced side by side.
    max_iterations : int
        A chain stops here if :meth:`update` has not said it converged.
    """

    name: str
    seed: int
    chains: int
    max_iterations: int

    def blocks(self, tree: xr.DataTree) -> Sequence[tuple[int, int]]:
        """The fixed partition of the items: ``[(start, stop), ...]`` in order."""

    def initial_state(self, tree: xr.DataTree, chain: int) -> tuple[State, State]:
        """``(global, local)`` at iteration 0; local arrays have the items along their first axis."""

    def step(self, tree: xr.DataTree, chain: int, iteration: int, block: int, state: State, local: State) -> tuple[State, Any]:
        """One block's local update at ``iteration`` (1, 2, ...): ``(new local rows, statistics)``; pure."""

    def update(self, tree: xr.DataTree, chain: int, iteration: int, state: State, stats: list) -> tuple[State, bool]:
        """The new global state from the blocks' statistics (in block order), and whether the chain converged."""

    def finalize(self, tree: xr.DataTree, states: list[State], locals_: list[State], iterations: list[int]) -> xr.Dataset | xr.DataTree:
        """The stage's result group from every chain's final global and local state."""


def state_group(stage: Any) -> str:
    """The checkpoint group of an iterative stage."""
    return f"{stage.name}_state"


def _chain_path(stage: Any, chain: int) -> str:
    return f"{state_group(stage)}/chain{chain}"


# --------------------------------------------------------------------------- checkpoint I/O

def _write_arrays(group: zarr.Group, arrays: Mapping[str, np.ndarray], chunks: Mapping[str, tuple] | None = None) -> None:
    """Write arrays with dimension names (xarray must be able to open every group of a store)."""
    existing = dict(group.arrays())
    for name, value in arrays.items():
        value = np.asarray(value)
        if name in existing and existing[name].shape == value.shape and existing[name].dtype == value.dtype:
            existing[name][...] = value  # in place: no metadata rewrite
            continue
        chunk = (chunks or {}).get(name) or (value.shape if value.ndim else "auto")  # one chunk unless told
        dims = [f"{name}_{i}" for i in range(value.ndim)]
        if chunks is not None and value.ndim:
            dims[0] = "item"  # local state: the items along the first axis
        arr = group.create_array(name, shape=value.shape, dtype=value.dtype, chunks=chunk, overwrite=True, fill_value=0, dimension_names=dims)
        arr[...] = value


def _read_arrays(group: zarr.Group) -> State:
    return {name: np.asarray(arr[...]) for name, arr in group.arrays()}


def _init_checkpoint(path: str, stage: IterativeStage, tree: xr.DataTree, block_ranges: Sequence[tuple[int, int]]) -> None:
    """Write iteration 0 of every chain (client side); the fingerprint goes last."""
    root = zarr.open_group(path, mode="r+", use_consolidated=False)
    if state_group(stage) in root:
        del root[state_group(stage)]
    top = root.create_group(state_group(stage))
    size = max(stop - start for start, stop in block_ranges)
    # blocks write their rows concurrently: each must own whole chunks
    if any(start != b * size for b, (start, _) in enumerate(block_ranges)) or block_ranges[-1][1] <= block_ranges[-1][0]:
        raise ValueError(f"{stage.name}: blocks must be consecutive ranges of equal size (the last may be shorter), got {list(block_ranges)}")
    for chain in range(stage.chains):
        state, local = stage.initial_state(tree, chain)
        g = top.create_group(f"chain{chain}")
        _write_arrays(g.create_group("global0"), state)
        g.create_group("global1")
        for slot in (0, 1):
            _write_arrays(g.create_group(f"local{slot}"), local, {k: (size,) + np.shape(v)[1:] for k, v in local.items()})
        g.attrs.update(iteration=0, finished=False)
    top.attrs.update(blocks=[list(map(int, b)) for b in block_ranges], cgflow_fingerprint=fingerprint(stage))


def read_checkpoint(path: str, stage: IterativeStage, chain: int) -> tuple[State, State, int, bool]:
    """``(global, local, iteration, finished)`` of ``chain`` as last committed."""
    g = zarr.open_group(path, mode="r", path=_chain_path(stage, chain), use_consolidated=False)
    iteration = int(g.attrs["iteration"])
    slot = iteration % 2
    return _read_arrays(g[f"global{slot}"]), _read_arrays(g[f"local{slot}"]), iteration, bool(g.attrs["finished"])


def _checkpoint_matches(path: str, stage: IterativeStage, block_ranges: Sequence[tuple[int, int]]) -> bool:
    try:
        top = zarr.open_group(path, mode="r", path=state_group(stage), use_consolidated=False)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return False
    attrs = top.attrs
    return attrs.get("cgflow_fingerprint") == fingerprint(stage) and attrs.get("blocks") == [list(map(int, b)) for b in block_ranges]


@lru_cache(maxsize=2)
def _inputs(path: str, token: str) -> xr.DataTree:
    """The store opened once per process and call of :func:`run_iterative` (opening costs ~0.1 s).

    Steps read their inputs (earlier stages' groups, unchanged while this stage
    runs) through it; the checkpoint is read with zarr directly.
    """
    return open_run(path, consolidated=False, chunks=None)


def _step_task(stage: IterativeStage, path: str, chain: int, iteration: int, block: int, rows: tuple[int, int], token: str = ""):
    """Task body: read the chain's state and this block's rows, step, write the rows into the next slot."""
    tree = _inputs(path, token) if token else open_run(path, consolidated=False, chunks=None)
    g = zarr.open_group(path, mode="r+", path=_chain_path(stage, chain), use_consolidated=False)
    start, stop = rows
    state = _read_arrays(g[f"global{(iteration - 1) % 2}"])
    src, dst = g[f"local{(iteration - 1) % 2}"], g[f"local{iteration % 2}"]
    local = {name: np.asarray(arr[start:stop]) for name, arr in src.arrays()}
    new_local, stats = stage.step(tree, chain, iteration, block, state, local)
    if set(new_local) != set(local):
        raise ValueError(f"{stage.name}: step returned local variables {sorted(new_local)}, expected {sorted(local)}")
    for name, value in new_local.items():
        value = np.asarray(value)
        if value.shape != local[name].shape:
            raise ValueError(f"{stage.name}: step returned {name} of shape {value.shape}, expected {local[name].shape}")
        dst[name][start:stop] = value
    return stats


def _commit(path: str, stage: IterativeStage, chain: int, state: State, iteration: int, finished: bool) -> None:
    g = zarr.open_group(path, mode="r+", path=_chain_path(stage, chain), use_consolidated=False)
    _write_arrays(g[f"global{iteration % 2}"], state)  # the other slot: the last commit stays intact until...
    g.attrs.update(iteration=iteration, finished=finished)  # ...this, the commit point


# --------------------------------------------------------------------------- the loop

def run_iterative(
    path: str,
    stage: IterativeStage,
    spec_hash: str,
    executor: Executor | Any | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> float:
    """Run (or resume) an iterative stage to convergence and write its result group.

    ``stop_after`` ends the call after that many iterations of this call (for
    tests of resumption: the checkpoint stays, the result group is not
    written). Returns the seconds it took.
    """
    from .execute import DelayedProgress

    executor = as_executor(executor) or SerialExecutor()
    start_time = time.perf_counter()
    token = uuid.uuid4().hex  # tasks of this call share one opened store per process
    tree = open_run(path, consolidated=False, chunks=None)
    block_ranges = [tuple(map(int, b)) for b in stage.blocks(tree)]
    if not _checkpoint_matches(path, stage, block_ranges):
        _init_checkpoint(path, stage, tree, block_ranges)
    chains = [read_checkpoint(path, stage, c) for c in range(stage.chains)]
    states = [c[0] for c in chains]
    iteration = [c[2] for c in chains]
    finished = [c[3] for c in chains]
    done_before = sum(stage.max_iterations if f else i for i, f in zip(iteration, finished))
    bar = DelayedProgress(stage.chains * stage.max_iterations, stage.name, progress, unit="iter")
    bar.update(done_before)
    rounds = 0
    try:
        while not all(finished) and (stop_after is None or rounds < stop_after):
            active = [c for c in range(stage.chains) if not finished[c]]
            tasks = [
                (f"{stage.name}-c{c}-i{iteration[c] + 1}-b{b}", _step_task, (stage, path, c, iteration[c] + 1, b, rows, token))
                for c in active
                for b, rows in enumerate(block_ranges)
            ]
            results: dict[str, Any] = {}
            for key, stats in executor.map_unordered(iter(tasks), window=len(tasks)):
                results[key] = stats
            for c in active:
                k = iteration[c] + 1
                stats = [results[f"{stage.name}-c{c}-i{k}-b{b}"] for b in range(len(block_ranges))]  # block order
                state, converged = stage.update(tree, c, k, states[c], stats)
                done = bool(converged) or k >= stage.max_iterations
                _commit(path, stage, c, state, k, done)
                states[c], iteration[c], finished[c] = state, k, done
                bar.update(stage.max_iterations - k + 1 if done else 1)
            rounds += 1
    finally:
        bar.close()
    if all(finished):
        final = [read_checkpoint(path, stage, c) for c in range(stage.chains)]
        result = stage.finalize(tree, [f[0] for f in final], [f[1] for f in final], [f[2] for f in final])
        write_reduced(path, stage, result, spec_hash)
    return time.perf_counter() - start_time
