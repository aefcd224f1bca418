"""Task keys and the random streams derived from them.

Every random number in a run flows from ``(root seed, stage, point, block)``:

>>> key = BlockKey("ensemble", point=3, block=7)
>>> key.name
'ensemble-p3-b7'
>>> a = block_stream(20191105, key, purpose=0).random()
>>> b = block_stream(20191105, key, purpose=0).random()
>>> a == b
True

A stream depends only on its key, never on which worker runs it, in which order,
or how often (retries, resumes), which is what makes runs bitwise reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["BlockKey", "stage_id", "block_stream", "RNG_SCHEME"]

#: Recorded in every store so a reader can regenerate any stream.
RNG_SCHEME = (
    "numpy Generator(Philox(SeedSequence(root_seed, "
    "spawn_key=(stage_id, point, block, purpose)))); stage_id = first 4 bytes (big-endian) "
    "of sha256(stage name)"
)


def stage_id(stage: str) -> int:
    """A stable 32-bit id for a stage name (``hash()`` is salted per process, so not that).

    >>> stage_id("ensemble")
    2417752142
    """
    return int.from_bytes(hashlib.sha256(stage.encode()).digest()[:4], "big")


@dataclass(frozen=True, order=True)
class BlockKey:
    """One task: a block of replicas at one sweep point of one stage."""

    stage: str
    point: int
    block: int

    @property
    def name(self) -> str:
        """The Dask key of the task (unique per run, readable on the dashboard)."""
        return f"{self.stage}-p{self.point}-b{self.block}"


def block_stream(root_seed: int, key: BlockKey, purpose: int = 0) -> np.random.Generator:
    """Independent Philox stream number ``purpose`` of block ``key``.

    ``purpose`` lets one block own several streams (e.g. preparation and
    continuation draws) that never overlap.
    """
    seq = np.random.SeedSequence(root_seed, spawn_key=(stage_id(key.stage), key.point, key.block, purpose))
    return np.random.Generator(np.random.Philox(seq))
