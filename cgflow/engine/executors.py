"""Executors: where the tasks of a plan run — in this process, or on a Dask cluster.

The engine plans *what* to compute (pending blocks of a sweep, parts of a
partitioned reduce) and folds results in a fixed order; an executor only runs
``fn(*args)`` for named tasks and hands back results as they finish. Because
every task is a pure function of its key and results are folded in key order,
the serial and the Dask executor write bitwise-identical stores (tested). The
shape follows rechunker's executors: a tiny reference executor next to the
distributed one.

A task that raises surfaces as :class:`TaskError` with the task's key and the
full traceback of the place it failed (on the worker, for Dask).
"""

from __future__ import annotations

import contextlib
import traceback
import uuid
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

__all__ = ["TaskError", "Executor", "SerialExecutor", "DaskExecutor", "as_executor", "single_threaded_blas"]

Task = tuple[str, Callable[..., Any], tuple]  # (key, function, arguments)


class TaskError(RuntimeError):
    """A task failed; ``key`` names it and ``remote_traceback`` says where."""

    def __init__(self, key: str, exc: BaseException):
        self.key = key
        self.remote_traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        super().__init__(f"task {key} failed: {type(exc).__name__}: {exc}")


@runtime_checkable
class Executor(Protocol):
    """Runs named tasks; results come back in completion order as ``(key, result)``."""

    @property
    def threads(self) -> int:
        """How many tasks can run at once."""

    def run_everywhere(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` once in every process that will run tasks (e.g. to compile kernels)."""

    def map_unordered(self, tasks: Iterable[Task], window: int) -> Iterator[tuple[str, Any]]:
        """Run ``tasks`` with at most ``window`` in flight; yield ``(key, result)`` as they finish."""


def single_threaded_blas():
    """BLAS/OpenMP pools limited to one thread, as in every Dask worker (distributed's pre-spawn
    environment sets OMP/MKL/OPENBLAS_NUM_THREADS=1): a multi-threaded GEMM sums in another order,
    so the same task would give other bits in this process than on a worker."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


class SerialExecutor:
    """Runs every task here, one after the other: for debugging, tests and small runs.

    Tasks run with single-threaded BLAS, as on the workers, so the store is
    bitwise the same as a cluster's. Exceptions propagate as :class:`TaskError`
    chained to the original, so a debugger's post-mortem lands in the failing
    task's frame.
    """

    threads = 1

    def run_everywhere(self, fn: Callable[[], Any]) -> None:
        with single_threaded_blas():
            fn()

    def map_unordered(self, tasks: Iterable[Task], window: int = 1) -> Iterator[tuple[str, Any]]:
        for key, fn, args in tasks:
            try:
                with single_threaded_blas():
                    result = fn(*args)
            except Exception as exc:
                raise TaskError(key, exc) from exc
            yield key, result

    def __repr__(self) -> str:
        return "SerialExecutor()"


class DaskExecutor:
    """Runs tasks on a Dask cluster through ``client``; tasks are retried once (a lost worker).

    Task keys are the plan's keys with a per-call token, so they are readable
    on the dashboard and unique per invocation.
    """

    def __init__(self, client: Any):
        self.client = client

    @property
    def threads(self) -> int:
        return sum(self.client.nthreads().values()) or 1

    def run_everywhere(self, fn: Callable[[], Any]) -> None:
        self.client.run(fn)

    def map_unordered(self, tasks: Iterable[Task], window: int) -> Iterator[tuple[str, Any]]:
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        queue = iter(tasks)
        futures = as_completed()
        in_flight: dict[Any, str] = {}

        def submit_next() -> None:
            item = next(queue, None)
            if item is not None:
                key, fn, args = item
                future = self.client.submit(fn, *args, key=f"{key}-{token}", pure=False, retries=1)
                in_flight[future] = key
                futures.add(future)

        try:
            for _ in range(max(1, window)):
                submit_next()
            for future in futures:
                key = in_flight.pop(future)
                try:
                    result = future.result()
                except Exception as exc:
                    raise TaskError(key, exc) from exc
                future.release()
                yield key, result
                submit_next()
        finally:
            # Interrupted, failed or abandoned: drop what is queued; finished tasks keep their writes.
            futures.clear()
            if in_flight:
                with contextlib.suppress(Exception):
                    self.client.cancel(list(in_flight))

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client.scheduler.address})"


def as_executor(obj: Any) -> Executor | None:
    """``obj`` as an executor: an executor as is, a ``distributed.Client`` wrapped, ``None`` kept."""
    if obj is None or isinstance(obj, (SerialExecutor, DaskExecutor)):
        return obj
    if hasattr(obj, "submit") and hasattr(obj, "nthreads"):
        return DaskExecutor(obj)
    if isinstance(obj, Executor):
        return obj
    raise TypeError(f"not an executor or a distributed.Client: {obj!r}")
