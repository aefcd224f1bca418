"""Run a sweep stage on a Dask cluster: submit pending blocks, fold results, track progress.

One task per ``(point, block)``. Tasks get only small parameters (the stage
object, the store path, the key), write their own region of the store and
return the block's sufficient statistics, which the client folds per point in
block order (:class:`~cgflow.engine.stats.OrderedFold`) so the merged result is
bitwise independent of worker count, scheduling order, retries and resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from distributed import Client, LocalCluster, as_completed

from .keys import BlockKey
from .stats import Moments, OrderedFold
from .store import open_run, read_block_stats, read_done, write_block, write_merged_stats, write_reduced
from .types import BlockOutput, PartitionedReduce, ReduceStage, SweepStage

__all__ = ["connect", "run_sweep", "run_reduce", "execute_block", "BlockResult", "SweepReport"]


@contextlib.contextmanager
def connect(
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    dashboard_address: str = "127.0.0.1:8787",
) -> Iterator[Client]:
    """A Dask client: attached to ``scheduler``/``scheduler_file``, or to a new LocalCluster.

    The LocalCluster uses processes with one thread each (the kernels are
    CPU-bound and single-threaded), one worker per core unless ``workers``.
    """
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


def execute_block(stage: SweepStage, path: str, key: BlockKey, run_index: int) -> BlockResult:
    """The task body: compute one block, write it to the store, return its statistics."""
    start = time.perf_counter()
    out: BlockOutput = stage.compute_block(key.point, key.block)
    seconds = time.perf_counter() - start
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


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(
        total=total, initial=initial, desc=desc, unit="block", disable=not enabled, file=sys.stderr,
        dynamic_ncols=True, mininterval=0.1 if interactive else 10.0,  # logs get a line every 10 s
    )


def run_sweep(
    client: Client,
    path: str,
    stage: SweepStage,
    run_index: int,
    progress: bool = True,
    window: int | None = None,
) -> SweepReport:
    """Compute every pending block of ``stage`` and write the merged statistics.

    At most ``window`` tasks are in flight (default: 4 per worker thread, at
    least 16), so client memory and the out-of-order buffer stay bounded.
    """
    sweep = stage.sweep
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

    threads = sum(client.nthreads().values()) or 1
    window = window or max(16, 4 * threads)
    token = uuid.uuid4().hex[:8]  # task keys unique per invocation, stable across retries
    if pending:
        client.run(stage.warmup)  # compile kernels on every worker before the clock starts
    start = time.perf_counter()
    work = 0
    compute_seconds = 0.0
    queue = iter(pending)
    futures = as_completed()
    in_flight: set = set()

    def submit_next() -> None:
        key = next(queue, None)
        if key is not None:
            future = client.submit(
                execute_block, stage, path, key, run_index, key=f"{key.name}-{token}", pure=False, retries=1
            )
            in_flight.add(future)
            futures.add(future)

    bar = _progress(sweep.n_tasks, skipped, stage.name, progress)
    try:
        for _ in range(window):
            submit_next()
        for future in futures:
            try:
                result: BlockResult = future.result()
            except Exception as exc:
                raise RuntimeError(f"task {future.key} failed: {exc}") from exc
            in_flight.discard(future)
            future.release()
            folds[result.key.point].push(result.key.block, result.stats)
            work += result.work
            compute_seconds += result.seconds
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{work / max(elapsed, 1e-9):.3g} work/s", refresh=False)
            bar.update(1)
            submit_next()
    except BaseException:
        # Interrupted or failed: drop what is queued; finished blocks stay marked done.
        futures.clear()
        if in_flight:
            with contextlib.suppress(Exception):
                client.cancel(list(in_flight))
        raise
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


def run_reduce(path: str, stage: ReduceStage, spec_hash: str, client: Client | None = None) -> float:
    """Compute a reduce stage from the store and write its group; return the seconds it took.

    A :class:`PartitionedReduce` stage runs its parts as tasks on ``client``
    (results are combined in part order, so the group does not depend on which
    worker ran what); without a client, or for other stages, it runs here.
    """
    start = time.perf_counter()
    # not consolidated yet: groups written earlier in this run; no dask: many small reads
    tree = open_run(path, consolidated=False, chunks=None)
    if client is not None and isinstance(stage, PartitionedReduce):
        parts = list(stage.parts())
        token = uuid.uuid4().hex[:8]
        futures = [
            client.submit(_reduce_part, stage, path, part, key=f"{stage.name}-{part}-{token}", pure=False, retries=1)
            for part in parts
        ]
        results = dict(zip(parts, client.gather(futures)))
        ds = stage.combine(tree, results)
    else:
        ds = stage.compute(tree)
    write_reduced(path, stage, ds, spec_hash)
    return time.perf_counter() - start
