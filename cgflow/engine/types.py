"""The small contract between the engine and a method's sweep stages.

The engine knows sweeps of ``points x blocks``; a stage supplies what a block
*is* (``compute_block``) and what its store group looks like (``template``).
Stages are small picklable objects: they travel to the workers with each task,
so they hold parameters, never arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from .stats import Moments

__all__ = ["Sweep", "BlockOutput", "SweepStage", "REPLICA_DIM", "POINT_DIM", "BLOCK_DIM"]

POINT_DIM = "point"
BLOCK_DIM = "block"
REPLICA_DIM = "replica"


@dataclass(frozen=True)
class Sweep:
    """Shape of a sweep: ``n_points`` grid points, each ``n_blocks`` blocks of ``block_size`` replicas.

    ``stats`` names the streaming statistics a block returns, each a vector
    along one dimension: ``{"increment": ("node", 21)}``.
    """

    n_points: int
    n_blocks: int
    block_size: int
    stats: Mapping[str, tuple[str, int]] = field(default_factory=dict)

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
    ``block_size`` rows. ``stats`` are :class:`Moments` keyed as in
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
