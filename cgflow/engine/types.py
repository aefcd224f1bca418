"""The small contract between the engine and a method's sweep stages.

The engine knows sweeps of ``points x blocks``; a stage supplies what a block
*is* (``compute_block``) and what its store group looks like (``template``).
Stages are small picklable objects: they travel to the workers with each task,
so they hold parameters, never arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from .stats import Moments

__all__ = ["Stat", "Sweep", "BlockOutput", "SweepStage", "ReduceStage", "PartitionedReduce", "fingerprint", "REPLICA_DIM", "POINT_DIM", "BLOCK_DIM"]

POINT_DIM = "point"
BLOCK_DIM = "block"
REPLICA_DIM = "replica"


@dataclass(frozen=True)
class Stat:
    """A streaming statistic: a vector of ``size`` along dimension ``dim``.

    ``full`` keeps the whole co-moment matrix; otherwise only its diagonal.
    """

    dim: str
    size: int
    full: bool = True


@dataclass(frozen=True)
class Sweep:
    """Shape of a sweep: ``n_points`` grid points, each ``n_blocks`` blocks of ``block_size`` replicas.

    ``stats`` names the streaming statistics a block returns, each a vector
    along one dimension: ``{"increment": Stat("node", 21)}``. ``point_dim``
    names the sweep axis in the store (``"point"``; ``"traj"`` for a sweep of
    trajectories).
    """

    n_points: int
    n_blocks: int
    block_size: int
    stats: Mapping[str, Stat] = field(default_factory=dict)
    point_dim: str = POINT_DIM

    @property
    def n_tasks(self) -> int:
        return self.n_points * self.n_blocks

    @property
    def n_replicas(self) -> int:
        return self.n_blocks * self.block_size


@dataclass
class BlockOutput:
    """What one block produces.

    ``arrays`` are per-replica data for the variables of the stage template with
    dims ``(point, replica, ...)``, given without the point axis and with
    ``block_size`` rows; a template variable without the ``replica`` dimension
    is per point (sweeps of one block per point only) and is given without the
    point axis. ``stats`` are :class:`Moments` keyed as in
    :attr:`Sweep.stats`. ``work`` counts the block's elementary operations
    (e.g. KMC events), for cost accounting.
    """

    stats: dict[str, Moments]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    work: int = 0


@runtime_checkable
class SweepStage(Protocol):
    """A stage the engine can run as a sweep of ``(point, block)`` tasks."""

    name: str
    seed: int

    @property
    def sweep(self) -> Sweep: ...

    def template(self) -> xr.Dataset:
        """Coordinates and lazily defined per-replica variables of the stage group."""

    def compute_block(self, point: int, block: int) -> BlockOutput:
        """Simulate one block; must be a pure function of ``(seed, name, point, block)``."""

    def warmup(self) -> None:
        """Compile kernels (run on every worker before timing starts)."""


@runtime_checkable
class ReduceStage(Protocol):
    """A stage computed on the client from earlier groups of the store (cheap, deterministic)."""

    name: str

    def compute(self, tree: xr.DataTree) -> xr.Dataset | xr.DataTree:
        """The stage's group (a Dataset, or a DataTree with subgroups), from the store opened as a DataTree."""


@runtime_checkable
class PartitionedReduce(ReduceStage, Protocol):
    """A reduce stage whose work splits into independent parts that can run as cluster tasks.

    ``compute_part(tree, part)`` must be a pure function of the store and the
    part (it runs on a worker, which opens the store itself) and return a small
    result; ``combine(tree, results)`` builds the group from ``{part: result}``.
    ``compute(tree)`` must equal ``combine(tree, {p: compute_part(tree, p)})``.
    """

    def parts(self) -> tuple: ...

    def compute_part(self, tree: xr.DataTree, part: Any) -> Any: ...

    def combine(self, tree: xr.DataTree, results: Mapping[Any, Any]) -> xr.Dataset | xr.DataTree: ...


def fingerprint(stage: Any) -> str:
    """sha256 of a stage's parameters (a frozen dataclass): what its stored results depend on.

    A stage whose group was written with another fingerprint holds results of
    other parameters: sweeps then refuse to resume, reduce stages recompute.
    """
    params = dataclasses.asdict(stage)
    text = json.dumps({"stage": type(stage).__qualname__, **params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
