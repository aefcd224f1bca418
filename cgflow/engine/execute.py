"""Run stages: plan the pending tasks, run them on an executor, fold results, show progress.

A sweep is one task per ``(point, block)``. Tasks get only small parameters
(the stage object, the store path, the key, the block schema), check their
output against the template, write their own region of the store and return
the block's sufficient statistics, which the client folds per point in block
order (:class:`~cgflow.engine.stats.OrderedFold`) so the merged result is
bitwise independent of the executor, worker count, scheduling order, retries
and resumes. Executors (:mod:`cgflow.engine.executors`) run the tasks in this
process or on a Dask cluster; :func:`connect` makes the Dask client.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .executors import Executor, SerialExecutor, as_executor
from .keys import BlockKey
from .stats import Moments, OrderedFold
from .store import open_run, read_block_stats, read_done, write_block, write_merged_stats, write_reduced
from .types import BlockOutput, PartitionedReduce, ReduceStage, SweepStage, hook
from .validate import BlockSchema

__all__ = ["connect", "run_sweep", "run_reduce", "execute_block", "BlockResult", "SweepReport", "REDUCE_PROGRESS_AFTER"]

#: A reduce stage shows a progress bar once it has run this many seconds.
REDUCE_PROGRESS_AFTER = 2.0


@contextlib.contextmanager
def connect(
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    dashboard_address: str = "127.0.0.1:8787",
) -> Iterator["Client"]:
    """A Dask client: attached to ``scheduler``/``scheduler_file``, or to a new LocalCluster.

    The LocalCluster uses processes with one thread each (the kernels are
    CPU-bound and single-threaded), one worker per core unless ``workers``.
    """
    from distributed import Client, LocalCluster

    if scheduler or scheduler_file:
        client = Client(address=scheduler, scheduler_file=scheduler_file, timeout="60s")
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=dashboard_address,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@dataclass(frozen=True)
class BlockResult:
    """What a task sends back: small, fixed size whatever the replica count."""

    key: BlockKey
    stats: dict[str, Moments]
    work: int
    seconds: float


def execute_block(stage: SweepStage, path: str, key: BlockKey, run_index: int, schema: BlockSchema | None = None) -> BlockResult:
    """The task body: compute one block, check it against the template, write it, return its statistics.

    Nothing is written unless the whole output matches ``schema`` (built from
    the template when not given), so a malformed block never gets a done marker.
    """
    start = time.perf_counter()
    out: BlockOutput = stage.compute_block(key.point, key.block)
    seconds = time.perf_counter() - start
    (schema or BlockSchema.from_stage(stage)).validate(out, key.name)
    write_block(path, key, stage.sweep, out, run_index, seconds)
    return BlockResult(key, out.stats, out.work, seconds)


@dataclass
class SweepReport:
    stage: str
    computed: int
    skipped: int
    work: int
    compute_seconds: float
    wall_seconds: float
    threads: int

    @property
    def overhead(self) -> float:
        """Fraction of the workers' wall time not spent computing blocks."""
        if self.computed == 0 or self.wall_seconds == 0:
            return 0.0
        return max(0.0, 1.0 - self.compute_seconds / (self.wall_seconds * min(self.threads, self.computed)))


def _merge(a: dict[str, Moments], b: dict[str, Moments]) -> dict[str, Moments]:
    return {k: a[k].merge(b[k]) for k in a}


def _interactive() -> bool:
    return sys.stderr.isatty()


def _progress(total: int | None, initial: int, desc: str, enabled: bool, unit: str = "block", bar_format: str | None = None):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, bar_format=bar_format,
        dynamic_ncols=True, mininterval=0.1 if _interactive() else 10.0,  # logs get a line every 10 s
    )


class DelayedProgress:
    """A progress bar that appears only once its work has taken ``after`` seconds.

    Short stages stay silent; long ones show the same bar as the sweeps, kept
    alive (elapsed time ticking) by a background thread even while one long
    step runs. ``update`` and ``set_total`` are thread-safe.
    """

    def __init__(self, total: int | None, desc: str, enabled: bool, after: float | None = None, unit: str = "part"):
        self.total, self.desc, self.unit = total, desc, unit
        self.after = REDUCE_PROGRESS_AFTER if after is None else after
        self.n = 0
        self._bar = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = None
        if enabled:
            self._thread = threading.Thread(target=self._tick, name=f"progress-{desc}", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        if self._closed.wait(self.after):
            return
        with self._lock:
            if self._closed.is_set():
                return
            # nothing to count (yet): say that it runs, and for how long
            running = "{desc}: running for {elapsed}" if self.total is None else None
            self._bar = _progress(self.total, self.n, self.desc, True, self.unit, bar_format=running)
        interval = 0.5 if _interactive() else 10.0
        while not self._closed.wait(interval):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()

    def set_total(self, total: int) -> None:
        with self._lock:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def update(self, k: int = 1) -> None:
        with self._lock:
            self.n += k
            if self._bar is not None:
                self._bar.update(k)

    def report(self, done: int, total: int) -> None:
        """The ``progress(done, total)`` callback handed to a reduce stage's ``compute``."""
        with self._lock:
            self.total = total
            step = done - self.n
            self.n = done
            if self._bar is not None:
                self._bar.total = total
                self._bar.bar_format = None
                self._bar.update(step)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> "DelayedProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_sweep(
    executor: Executor | Any,
    path: str,
    stage: SweepStage,
    run_index: int,
    progress: bool = True,
    window: int | None = None,
) -> SweepReport:
    """Compute every pending block of ``stage`` and write the merged statistics.

    ``executor`` is an :class:`~cgflow.engine.executors.Executor` or a
    ``distributed.Client``. At most ``window`` tasks are in flight (default: 4
    per worker thread, at least 16), so client memory and the out-of-order
    buffer stay bounded. A failing block raises
    :class:`~cgflow.engine.executors.TaskError` naming its key.
    """
    executor = as_executor(executor)
    sweep = stage.sweep
    schema = BlockSchema.from_stage(stage)
    done = read_done(path, stage.name)
    empty = {name: Moments.empty(st.size, st.full) for name, st in sweep.stats.items()}
    folds = [OrderedFold(_merge, empty, sweep.n_blocks) for _ in range(sweep.n_points)]
    for point in range(sweep.n_points):
        finished = np.flatnonzero(done[point])
        if finished.size:
            for block, stats in read_block_stats(path, stage.name, sweep, point, finished).items():
                folds[point].push(block, stats)
    pending = [BlockKey(stage.name, int(p), int(b)) for p, b in zip(*np.nonzero(done == 0))]
    skipped = sweep.n_tasks - len(pending)

    threads = executor.threads
    window = window or max(16, 4 * threads)
    if pending:
        executor.run_everywhere(hook(stage, "warmup"))  # compile kernels everywhere before the clock starts
    start = time.perf_counter()
    work = 0
    compute_seconds = 0.0
    tasks = ((key.name, execute_block, (stage, path, key, run_index, schema)) for key in pending)
    bar = _progress(sweep.n_tasks, skipped, stage.name, progress)
    try:
        for _, result in executor.map_unordered(tasks, window):
            folds[result.key.point].push(result.key.block, result.stats)
            work += result.work
            compute_seconds += result.seconds
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{work / max(elapsed, 1e-9):.3g} work/s", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    wall = time.perf_counter() - start

    for point, fold in enumerate(folds):
        if not fold.complete:  # pragma: no cover - guarded by the loop above
            raise RuntimeError(f"{stage.name}: point {point} has {fold.folded}/{fold.size} blocks merged")
        write_merged_stats(path, stage.name, point, fold.value)
    return SweepReport(stage.name, len(pending), skipped, work, compute_seconds, wall, threads)


def _reduce_part(stage: PartitionedReduce, path: str, part):
    """Task body of one part of a partitioned reduce stage: it reads the store itself."""
    return stage.compute_part(open_run(path, consolidated=False, chunks=None), part)


def _part_key(stage: str, index: int, part: Any) -> str:
    """A readable task key for a part: ``learn-pointwise``; ``macro-part3`` for structured parts."""
    return f"{stage}-{part}" if isinstance(part, (str, int)) else f"{stage}-part{index}"


def _accepts_progress(fn) -> bool:
    try:
        return "progress" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False


def run_reduce(
    path: str,
    stage: ReduceStage,
    spec_hash: str,
    executor: Executor | Any | None = None,
    progress: bool = True,
) -> float:
    """Compute a reduce stage from the store and write its group; return the seconds it took.

    A :class:`PartitionedReduce` stage runs its parts as tasks on ``executor``
    (in this process when it is ``None``); results are combined in part order,
    so the group does not depend on where each part ran. A stage that runs
    longer than :data:`REDUCE_PROGRESS_AFTER` seconds shows a progress bar on
    stderr (over its parts, or through the ``progress`` callback its
    ``compute`` may accept) unless ``progress`` is false.
    """
    executor = as_executor(executor) or SerialExecutor()
    start = time.perf_counter()
    # not consolidated yet: groups written earlier in this run; no dask: many small reads
    tree = open_run(path, consolidated=False, chunks=None)
    if isinstance(stage, PartitionedReduce):
        parts = list(stage.parts())
        names = {_part_key(stage.name, i, part): part for i, part in enumerate(parts)}
        tasks = ((key, _reduce_part, (stage, path, part)) for key, part in names.items())
        results = {}
        with DelayedProgress(len(parts), stage.name, progress) as bar:
            for key, result in executor.map_unordered(tasks, window=max(16, 4 * executor.threads)):
                results[names[key]] = result
                bar.update(1)
        ds = stage.combine(tree, {part: results[part] for part in parts})  # part order, whatever finished first
    else:
        with DelayedProgress(None, stage.name, progress, unit="step") as bar:
            ds = stage.compute(tree, progress=bar.report) if _accepts_progress(stage.compute) else stage.compute(tree)
    write_reduced(path, stage, ds, spec_hash)
    return time.perf_counter() - start
