"""Check a block's output against its stage's template before anything is written.

A block that left a template variable unwritten, or wrote it with another
shape, would otherwise leave fill values behind a ``done`` marker, or fail
inside zarr with a bare ``KeyError``. :class:`BlockSchema` is computed once on
the client from the template (names, dims, shapes, dtypes, statistics) and
travels with each task (it is small); :meth:`BlockSchema.validate` runs on the
worker after ``compute_block`` and before the first write. The pattern is
xarray-beam's ``validate_zarr_chunk``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .types import REPLICA_DIM, BlockOutput, SweepStage

__all__ = ["BlockOutputError", "VariableSchema", "BlockSchema"]


class BlockOutputError(ValueError):
    """A block's output does not match its stage's template (names the stage, task and variable)."""


@dataclass(frozen=True)
class VariableSchema:
    """One template variable as a block must deliver it: without the point axis."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    per_replica: bool


@dataclass(frozen=True)
class BlockSchema:
    """What every block of a sweep stage must return: variables and statistics."""

    stage: str
    variables: tuple[VariableSchema, ...]
    stats: tuple[tuple[str, int, bool], ...]  # (name, size, full co-moment)

    @classmethod
    def from_stage(cls, stage: SweepStage) -> "BlockSchema":
        """Read the schema off ``stage.template()`` and ``stage.sweep`` (client side, once)."""
        sweep = stage.sweep
        variables = []
        for name, var in stage.template().data_vars.items():
            if var.dims[:1] != (sweep.point_dim,):
                continue  # written with the template, not by blocks
            per_replica = REPLICA_DIM in var.dims
            shape = tuple(int(n) for n in var.shape[1:])
            if per_replica:
                shape = (sweep.block_size,) + shape[1:]
            variables.append(VariableSchema(str(name), tuple(map(str, var.dims[1:])), shape, var.dtype.str, per_replica))
        stats = tuple((name, st.size, st.full) for name, st in sweep.stats.items())
        return cls(stage.name, tuple(variables), stats)

    def validate(self, out: Any, task: str) -> None:
        """Raise :class:`BlockOutputError` unless ``out`` matches this schema exactly."""

        def fail(what: str) -> None:
            raise BlockOutputError(f"stage {self.stage!r}, task {task}: {what}")

        if not isinstance(out, BlockOutput):
            fail(f"compute_block returned {type(out).__qualname__}, expected BlockOutput")
        expected = {v.name: v for v in self.variables}
        missing = sorted(set(expected) - set(out.arrays))
        extra = sorted(set(out.arrays) - set(expected))
        if missing:
            fail(f"variable(s) {missing} of the template are missing from the block output")
        if extra:
            fail(f"variable(s) {extra} are not in the stage template (template has {sorted(expected)})")
        for name, data in out.arrays.items():
            spec = expected[name]
            data = np.asarray(data)
            if data.shape != spec.shape:
                fail(f"variable {name!r} has shape {data.shape}, expected {spec.shape} (dims {spec.dims})")
            target = np.dtype(spec.dtype)
            if not np.can_cast(data.dtype, target, casting="same_kind"):
                fail(f"variable {name!r} has dtype {data.dtype}, which cannot be stored as the template's {target}")
        names = {name for name, _, _ in self.stats}
        if set(out.stats) != names:
            fail(f"statistics {sorted(out.stats)} do not match Sweep.stats {sorted(names)}")
        for name, size, full in self.stats:
            m = out.stats[name]
            if np.shape(m.mean) != (size,):
                fail(f"statistic {name!r} has a mean of shape {np.shape(m.mean)}, expected ({size},)")
            second = (size, size) if full else (size,)
            if np.shape(m.comoment) != second:
                fail(f"statistic {name!r} has a second moment of shape {np.shape(m.comoment)}, expected {second}")
            if int(m.count) < 0:
                fail(f"statistic {name!r} has a negative count {m.count}")
        if int(out.work) < 0:
            fail(f"negative work count {out.work}")
