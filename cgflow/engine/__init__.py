"""cgflow's engine: method-agnostic Dask machinery that knows no physics.

The stable import path for method and model authors::

    from cgflow.engine import BlockOutput, Stat, Sweep, SweepStage, check_stage

* the stage contract: :class:`SweepStage`, :class:`ReduceStage`,
  :class:`PartitionedReduce`, :class:`Sweep`, :class:`Stat`,
  :class:`BlockOutput`, :class:`Moments`, :func:`fingerprint`, :func:`hook`;
* random streams: :class:`BlockKey`, :func:`block_stream`;
* running stages: :func:`run_sweep`, :func:`run_reduce`, :func:`run_iterative`
  (outer loops of block tasks, checkpointed: :class:`IterativeStage`), the executors
  :class:`SerialExecutor` and :class:`DaskExecutor`, :func:`connect`;
* the contract checker :func:`check_stage` (cf. scikit-learn's ``check_estimator``);
* stores: :func:`open_run`.
"""

from __future__ import annotations

from .check import StageContractError, check_stage
from .executors import DaskExecutor, Executor, SerialExecutor, TaskError
from .execute import connect, run_reduce, run_sweep
from .iterate import IterativeStage, run_iterative
from .keys import BlockKey, block_stream
from .stats import Moments, OrderedFold
from .store import open_run
from .types import (
    BLOCK_DIM,
    POINT_DIM,
    REPLICA_DIM,
    BlockOutput,
    FingerprintError,
    PartitionedReduce,
    ReduceStage,
    Stat,
    Sweep,
    SweepStage,
    fingerprint,
    hook,
)
from .validate import BlockOutputError, BlockSchema

__all__ = [
    "BLOCK_DIM",
    "POINT_DIM",
    "REPLICA_DIM",
    "BlockKey",
    "BlockOutput",
    "BlockOutputError",
    "BlockSchema",
    "DaskExecutor",
    "Executor",
    "FingerprintError",
    "IterativeStage",
    "Moments",
    "OrderedFold",
    "PartitionedReduce",
    "ReduceStage",
    "SerialExecutor",
    "StageContractError",
    "Stat",
    "Sweep",
    "SweepStage",
    "TaskError",
    "block_stream",
    "check_stage",
    "connect",
    "fingerprint",
    "hook",
    "open_run",
    "run_iterative",
    "run_reduce",
    "run_sweep",
]
