"""The contract between the engine and a method's stages.

The engine knows two kinds of stage:

* a **sweep** (:class:`SweepStage`): ``points x blocks`` independent tasks; the
  stage says what a block *is* (``compute_block``) and what its store group
  looks like (``template``);
* a **reduce** (:class:`ReduceStage`): a group computed from earlier groups of
  the store; a :class:`PartitionedReduce` splits that work into independent
  parts that run as tasks.

Stages are small picklable frozen dataclasses: they travel to the workers with
each task, so they hold parameters, never arrays. Their :func:`fingerprint`
(what their stored results depend on) decides whether a store can be resumed
or a group must be recomputed. :func:`cgflow.engine.check_stage` tests a stage
against this contract.

Optional hooks of a sweep stage (the engine falls back to the defaults below,
see :func:`hook`):

``warmup()``
    Compile kernels; run once on every worker before the clock starts.
    Default: nothing.
``work_unit``
    Name of the unit ``BlockOutput.work`` counts (``"KMC events"``).
    Default: ``"events"``.
``expected_events()``
    Expected work per point (array of ``n_points``), for ``--dry-run`` costs.
    Default: no cost estimate.
``measure_throughput(budget=20.0)``
    ``(work per second per core, how it was measured)``, for ``--dry-run``.
    Default: no cost estimate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import enum
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from .stats import Moments

__all__ = [
    "Stat",
    "Sweep",
    "BlockOutput",
    "SweepStage",
    "ReduceStage",
    "PartitionedReduce",
    "fingerprint",
    "FingerprintError",
    "FINGERPRINT_SCHEME",
    "hook",
    "SWEEP_HOOK_DEFAULTS",
    "TIMING_ATTR",
    "without_timings",
    "REPLICA_DIM",
    "POINT_DIM",
    "BLOCK_DIM",
]

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
    """A stage the engine can run as a sweep of ``(point, block)`` tasks.

    ``name`` is the store group (a dataclass field, so two instances may write
    different groups); ``seed`` is the run's root seed. The optional hooks are
    listed in the module docstring.
    """

    name: str
    seed: int

    @property
    def sweep(self) -> Sweep: ...

    def template(self) -> xr.Dataset:
        """Coordinates and lazily defined (dask-backed) per-replica or per-point variables of the stage group."""

    def compute_block(self, point: int, block: int) -> BlockOutput:
        """Simulate one block; must be a pure function of ``(seed, name, point, block)`` and the parameters."""


@runtime_checkable
class ReduceStage(Protocol):
    """A stage computed from earlier groups of the store (deterministic).

    A long ``compute`` may report progress by accepting a keyword argument
    ``progress``: the engine then passes a callable ``progress(done, total)``.
    """

    name: str

    def compute(self, tree: xr.DataTree) -> xr.Dataset | xr.DataTree:
        """The stage's group (a Dataset, or a DataTree with subgroups), from the store opened as a DataTree."""


@runtime_checkable
class PartitionedReduce(ReduceStage, Protocol):
    """A reduce stage whose work splits into independent parts that can run as tasks.

    ``compute_part(tree, part)`` must be a pure function of the store and the
    part (it runs on a worker, which opens the store itself) and return a small
    result; ``combine(tree, results)`` builds the group from ``{part: result}``.
    ``compute(tree)`` must equal ``combine(tree, {p: compute_part(tree, p)})``.
    """

    def parts(self) -> tuple: ...

    def compute_part(self, tree: xr.DataTree, part: Any) -> Any: ...

    def combine(self, tree: xr.DataTree, results: Mapping[Any, Any]) -> xr.Dataset | xr.DataTree: ...


def _no_warmup() -> None:
    return None


#: Optional sweep-stage hooks and their defaults (``None``: the feature is unavailable).
SWEEP_HOOK_DEFAULTS: dict[str, Any] = {
    "warmup": None,
    "work_unit": "events",
    "expected_events": None,
    "measure_throughput": None,
}


def hook(stage: Any, name: str) -> Any:
    """An optional hook of ``stage``, or its default from :data:`SWEEP_HOOK_DEFAULTS`.

    ``hook(stage, "warmup")`` is always callable.
    """
    if name not in SWEEP_HOOK_DEFAULTS:
        raise KeyError(f"{name!r} is not an optional stage hook; known: {sorted(SWEEP_HOOK_DEFAULTS)}")
    value = getattr(stage, name, None)
    if value is None:
        value = SWEEP_HOOK_DEFAULTS[name]
    if name == "warmup" and value is None:
        return _no_warmup
    return value


#: Attribute of a variable whose values are measured on the machine (e.g. seconds),
#: not computed from the inputs: the one exception to "same inputs, same bytes".
TIMING_ATTR = "cgflow_timing"


def without_timings(obj: Any) -> Any:
    """A Dataset or DataTree without its timing variables (those with ``attrs[TIMING_ATTR]``)."""
    if isinstance(obj, xr.DataTree):
        return obj.map_over_datasets(without_timings)
    return obj.drop_vars([n for n, v in obj.variables.items() if v.attrs.get(TIMING_ATTR)])


# --------------------------------------------------------------------------- fingerprints

#: Recorded with every stage group; bump when the encoding below changes.
FINGERPRINT_SCHEME = "cgflow-fingerprint-2: sha256 of a typed, length-prefixed encoding; arrays by dtype, shape and bytes; floats by their hex form"


class FingerprintError(TypeError):
    """A stage parameter that has no exact, process-independent encoding."""


def _put(h: "hashlib._Hash", tag: bytes, payload: bytes = b"") -> None:
    h.update(tag + len(payload).to_bytes(8, "little") + payload)


def _encode(h: "hashlib._Hash", obj: Any, where: str) -> None:
    """Feed an exact, unambiguous encoding of ``obj`` into ``h`` (recursive)."""
    if obj is None:
        _put(h, b"N")
    elif isinstance(obj, (bool, np.bool_)):
        _put(h, b"B", b"1" if obj else b"0")
    elif isinstance(obj, (int, np.integer)):
        _put(h, b"I", str(int(obj)).encode())
    elif isinstance(obj, (float, np.floating)):
        if isinstance(obj, np.floating) and obj.dtype.itemsize > 8:
            raise FingerprintError(f"parameter {where}: {obj.dtype} scalars have no exact float encoding here")
        _put(h, b"F", float(obj).hex().encode())  # exact; distinguishes 0.0/-0.0, keeps NaN stable
    elif isinstance(obj, (complex, np.complexfloating)):
        _put(h, b"C", f"{complex(obj).real.hex()},{complex(obj).imag.hex()}".encode())
    elif isinstance(obj, str):
        _put(h, b"S", obj.encode())
    elif isinstance(obj, bytes):
        _put(h, b"Y", obj)
    elif isinstance(obj, enum.Enum):
        _put(h, b"E", f"{type(obj).__qualname__}.{obj.name}".encode())
    elif isinstance(obj, os.PathLike):
        _put(h, b"P", os.fspath(obj).encode())
    elif hasattr(obj, "__cgflow_fingerprint__"):  # explicit opt-in of any other object
        _put(h, b"O", type(obj).__qualname__.encode())
        _encode(h, obj.__cgflow_fingerprint__(), f"{where}.__cgflow_fingerprint__()")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise FingerprintError(f"parameter {where}: object arrays have no exact encoding; use a numeric array or a tuple")
        arr = np.ascontiguousarray(obj)
        _put(h, b"A", f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [f for f in dataclasses.fields(obj) if f.metadata.get("fingerprint", True)]
        _put(h, b"D", type(obj).__qualname__.encode())
        _put(h, b"n", str(len(fields)).encode())
        for f in fields:
            _put(h, b"k", f.name.encode())
            _encode(h, getattr(obj, f.name), f"{where}.{f.name}")
    elif isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            sub = hashlib.sha256()
            _encode(sub, key, f"{where}[{key!r}] (key)")
            items.append((sub.digest(), key, value))
        _put(h, b"M", str(len(items)).encode())
        for digest, key, value in sorted(items, key=lambda t: t[0]):
            h.update(digest)
            _encode(h, value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        _put(h, b"L", str(len(obj)).encode())
        for i, item in enumerate(obj):
            _encode(h, item, f"{where}[{i}]")
    elif isinstance(obj, (set, frozenset)):
        digests = []
        for item in obj:
            sub = hashlib.sha256()
            _encode(sub, item, f"{where} (set item)")
            digests.append(sub.digest())
        _put(h, b"Z", str(len(digests)).encode())
        for d in sorted(digests):
            h.update(d)
    else:
        kind = "a callable" if callable(obj) else f"a {type(obj).__module__}.{type(obj).__qualname__}"
        raise FingerprintError(
            f"parameter {where} is {kind}, which has no exact, process-independent encoding; "
            "use numbers, strings, arrays, tuples, mappings or dataclasses of them, "
            "or give its class a __cgflow_fingerprint__() method returning such a value"
        )


def fingerprint(stage: Any) -> str:
    """sha256 of a stage's parameters (a dataclass): what its stored results depend on.

    The encoding is exact and the same in every process: numbers by value
    (floats by their hexadecimal form), arrays by dtype, shape and bytes,
    containers and dataclasses recursively; other objects only through a
    ``__cgflow_fingerprint__()`` method they opt into. Anything else raises
    :class:`FingerprintError` naming the parameter. A dataclass field with
    ``metadata={"fingerprint": False}`` is left out (caches, not parameters).

    A stage whose group was written with another fingerprint holds results of
    other parameters: sweeps then refuse to resume, reduce stages recompute.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Stage:
    ...     name: str
    ...     table: tuple
    >>> fingerprint(Stage("a", (1.0, 2.0))) == fingerprint(Stage("a", (1.0, 2.0)))
    True
    >>> fingerprint(Stage("a", (1.0, 2.0))) == fingerprint(Stage("a", (1.0, 2.0000000000000004)))
    False
    """
    if not (dataclasses.is_dataclass(stage) and not isinstance(stage, type)):
        raise FingerprintError(f"{type(stage).__qualname__} is not a dataclass instance: stages are dataclasses of their parameters")
    h = hashlib.sha256()
    _put(h, b"V", FINGERPRINT_SCHEME.encode())
    _encode(h, stage, type(stage).__qualname__)
    return h.hexdigest()
