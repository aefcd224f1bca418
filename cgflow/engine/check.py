"""``check_stage``: the stage contract as a battery of small checks (cf. scikit-learn's ``check_estimator``).

Method and model authors run it on their stages; cgflow runs it on every
built-in stage in its tests. Each check is a plain function of the stage (and,
for reduce stages, of a store opened with :func:`cgflow.open_run` that holds
the stage's inputs); it raises :class:`StageContractError` with what is wrong.

>>> from cgflow.engine import check_stage
>>> check_stage(stage)                                  # doctest: +SKIP
>>> for name, check in check_stage(stage, generate_only=True):  # doctest: +SKIP
...     check()                                         # one at a time, e.g. under pytest.mark.parametrize

Sweep stages are checked for: pickling to an equal object with the same
fingerprint; a fingerprint that is exact and the same in a fresh process; a
template the store can be built from; ``compute_block`` giving the same bytes
for the same key and other bytes for another key; block outputs matching the
template; well-formed optional cost hooks. Reduce stages (given ``tree``):
pickling and fingerprints as above; ``compute`` deterministic; and for a
partitioned reduce, ``compute(tree) == combine(tree, {p: compute_part(tree, p)})``.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import tempfile
from typing import Any, Callable

import numpy as np
import xarray as xr

from .types import BlockOutput, FingerprintError, PartitionedReduce, ReduceStage, SweepStage, fingerprint, hook, without_timings
from .iterate import IterativeStage
from .validate import BlockOutputError, BlockSchema

__all__ = ["StageContractError", "check_stage"]


class StageContractError(AssertionError):
    """A stage breaks the engine's contract (the message says which check and why)."""


def _fail(check: str, stage: Any, message: str) -> None:
    raise StageContractError(f"{check} ({type(stage).__qualname__} {getattr(stage, 'name', '?')!r}): {message}")


# --------------------------------------------------------------------------- shared checks

def check_pickles_to_an_equal_stage(stage: Any) -> None:
    """Stages travel to workers with every task: a pickled copy must be equal and fingerprint the same."""
    try:
        copy = pickle.loads(pickle.dumps(stage))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        _fail("check_pickles_to_an_equal_stage", stage, f"does not pickle: {type(exc).__name__}: {exc}")
    if copy != stage:
        _fail("check_pickles_to_an_equal_stage", stage, "the unpickled copy is not equal to the original (define __eq__, e.g. a dataclass)")
    if fingerprint(copy) != fingerprint(stage):
        _fail("check_pickles_to_an_equal_stage", stage, "the unpickled copy has another fingerprint")


def check_fingerprint_is_exact(stage: Any) -> None:
    """Every parameter has an exact encoding (no FingerprintError), and the stage has a ``name``."""
    if not isinstance(getattr(stage, "name", None), str) or not stage.name:
        _fail("check_fingerprint_is_exact", stage, "has no non-empty str attribute 'name' (its store group)")
    try:
        fingerprint(stage)
    except FingerprintError as exc:
        _fail("check_fingerprint_is_exact", stage, str(exc))


_FRESH_PROCESS = (
    "import pickle, sys\n"
    "from cgflow.engine.types import fingerprint\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    print(fingerprint(pickle.load(f)))\n"
)


def check_fingerprint_is_stable_across_processes(stage: Any) -> None:
    """The fingerprint computed in a fresh interpreter equals this one (no addresses, no salted hashes)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stage.pkl")
        with open(path, "wb") as f:
            pickle.dump(stage, f)
        env = {**os.environ, "PYTHONHASHSEED": "random"}
        proc = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, path], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        _fail("check_fingerprint_is_stable_across_processes", stage, f"a fresh process could not compute it:\n{proc.stderr}")
    if proc.stdout.strip() != fingerprint(stage):
        _fail("check_fingerprint_is_stable_across_processes", stage, f"fresh process {proc.stdout.strip()[:12]} != here {fingerprint(stage)[:12]}")


# --------------------------------------------------------------------------- sweep checks

def check_template_builds_a_store_layout(stage: SweepStage) -> None:
    """The template's block variables are dask-backed along the sweep axis, and a block schema can be read off it."""
    from .store import stage_datasets

    try:
        stage_datasets(stage)
        BlockSchema.from_stage(stage)
    except Exception as exc:  # noqa: BLE001
        _fail("check_template_builds_a_store_layout", stage, f"{type(exc).__name__}: {exc}")


def _block_bytes(out: BlockOutput) -> dict[str, bytes]:
    data = {f"array {k}": np.ascontiguousarray(v).tobytes() for k, v in out.arrays.items()}
    for k, m in out.stats.items():
        data[f"stat {k}"] = np.int64(m.count).tobytes() + np.ascontiguousarray(m.mean).tobytes() + np.ascontiguousarray(m.comoment).tobytes()
    data["work"] = np.int64(out.work).tobytes()
    return data


def _other_key(stage: SweepStage) -> tuple[int, int] | None:
    sweep = stage.sweep
    if sweep.n_blocks > 1:
        return (0, 1)
    if sweep.n_points > 1:
        return (1, 0)
    return None


def check_blocks_match_the_template(stage: SweepStage) -> None:
    """Block ``(0, 0)`` (and another one) deliver every template variable and statistic with the right shape and dtype."""
    schema = BlockSchema.from_stage(stage)
    for key in [(0, 0), _other_key(stage)]:
        if key is None:
            continue
        try:
            schema.validate(stage.compute_block(*key), f"p{key[0]}-b{key[1]}")
        except BlockOutputError as exc:
            _fail("check_blocks_match_the_template", stage, str(exc))


def check_blocks_are_deterministic(stage: SweepStage) -> None:
    """The same key gives the same bytes; another key gives other bytes (its own random stream)."""
    first = _block_bytes(stage.compute_block(0, 0))
    again = _block_bytes(stage.compute_block(0, 0))
    differing = sorted(k for k in first if first[k] != again.get(k))
    if differing:
        _fail("check_blocks_are_deterministic", stage, f"block (0, 0) computed twice differs in {differing}")
    other = _other_key(stage)
    if other is not None:
        second = _block_bytes(stage.compute_block(*other))
        if all(second.get(k) == v for k, v in first.items() if k != "work"):
            _fail("check_blocks_are_deterministic", stage, f"block {other} equals block (0, 0): random streams must depend on the key")


def check_cost_hooks(stage: SweepStage) -> None:
    """Optional hooks are well formed: ``work_unit`` a str, ``expected_events()`` one non-negative number per point, ``warmup`` callable."""
    if not isinstance(hook(stage, "work_unit"), str):
        _fail("check_cost_hooks", stage, "work_unit must be a str")
    if not callable(hook(stage, "warmup")):
        _fail("check_cost_hooks", stage, "warmup must be callable")
    expected, measure = hook(stage, "expected_events"), hook(stage, "measure_throughput")
    if (expected is None) != (measure is None):
        _fail("check_cost_hooks", stage, "expected_events and measure_throughput come together (dry-run costs need both)")
    if expected is not None:
        events = np.asarray(expected())
        if events.shape != (stage.sweep.n_points,) or not np.all(np.isfinite(events)) or np.any(events < 0):
            _fail("check_cost_hooks", stage, f"expected_events() must give {stage.sweep.n_points} finite non-negative numbers, got shape {events.shape}")


# --------------------------------------------------------------------------- reduce checks

def _assert_identical(a: Any, b: Any, what: str, stage: Any, check: str) -> None:
    """Identical up to timing variables (measured, not computed)."""
    try:
        xr.testing.assert_identical(without_timings(a), without_timings(b))
    except AssertionError as exc:
        _fail(check, stage, f"{what}:\n{str(exc)[:2000]}")


def check_reduce_is_deterministic(stage: ReduceStage, tree: xr.DataTree) -> None:
    """``compute(tree)`` twice gives identical groups."""
    _assert_identical(stage.compute(tree), stage.compute(tree), "two calls of compute differ", stage, "check_reduce_is_deterministic")


def check_compute_equals_combined_parts(stage: PartitionedReduce, tree: xr.DataTree) -> None:
    """A partitioned reduce gives the same group serially and part by part (the engine may run either)."""
    parts = tuple(stage.parts())
    if len(set(map(repr, parts))) != len(parts):
        _fail("check_compute_equals_combined_parts", stage, f"parts are not unique: {parts}")
    combined = stage.combine(tree, {p: stage.compute_part(tree, p) for p in parts})
    _assert_identical(stage.compute(tree), combined, "compute(tree) != combine(tree, parts)", stage, "check_compute_equals_combined_parts")


# --------------------------------------------------------------------------- iterative checks

def _state_bytes(state: dict) -> dict:
    return {k: np.ascontiguousarray(v).tobytes() for k, v in state.items()}


def check_iterative_start_and_step_are_deterministic(stage: Any, tree: xr.DataTree) -> None:
    """``initial_state`` and the first ``step`` of block 0 give the same bytes twice; local rows keep their shapes."""
    check = "check_iterative_start_and_step_are_deterministic"
    blocks = list(stage.blocks(tree))
    if not blocks:
        _fail(check, stage, "blocks(tree) is empty")
    first, again = stage.initial_state(tree, 0), stage.initial_state(tree, 0)
    for part, (a, b) in (("global", (first[0], again[0])), ("local", (first[1], again[1]))):
        if _state_bytes(a) != _state_bytes(b):
            _fail(check, stage, f"initial_state gives a different {part} state twice")
    state, local = first
    start, stop = blocks[0]
    rows = {k: np.asarray(v)[start:stop] for k, v in local.items()}
    new, _ = stage.step(tree, 0, 1, 0, state, rows)
    new_again, _ = stage.step(tree, 0, 1, 0, state, rows)
    if _state_bytes(new) != _state_bytes(new_again):
        _fail(check, stage, "step(chain 0, iteration 1, block 0) gives different bytes twice")
    bad = {k: (np.shape(new.get(k)), np.shape(v)) for k, v in rows.items() if np.shape(new.get(k)) != np.shape(v)}
    if bad or set(new) != set(rows):
        _fail(check, stage, f"step must return the block's local rows with their shapes: {bad or sorted(set(new) ^ set(rows))}")


# --------------------------------------------------------------------------- the battery

def check_stage(stage: Any, tree: xr.DataTree | None = None, *, generate_only: bool = False, fresh_process: bool = True):
    """Check ``stage`` against the engine's contract.

    Parameters
    ----------
    stage
        A sweep or reduce stage.
    tree
        For reduce stages: the store holding the stage's inputs
        (``cgflow.open_run(path)``); without it only pickling and
        fingerprints are checked.
    generate_only
        Return ``[(check name, zero-argument callable), ...]`` instead of
        running them, to run (and report) one at a time.
    fresh_process
        Include the check that starts a fresh interpreter (about a second).

    Returns
    -------
    list of str or list of (str, callable)
        The names of the checks that ran (all passed), or the generated checks.

    Raises
    ------
    StageContractError
        At the first failing check, naming it.
    """
    checks: list[Callable[..., None]] = [check_fingerprint_is_exact, check_pickles_to_an_equal_stage]
    if fresh_process:
        checks.append(check_fingerprint_is_stable_across_processes)
    if isinstance(stage, SweepStage):
        checks += [check_template_builds_a_store_layout, check_blocks_match_the_template, check_blocks_are_deterministic, check_cost_hooks]
    elif isinstance(stage, IterativeStage):
        generated = [(c.__name__, functools.partial(c, stage)) for c in checks]
        if tree is not None:
            c = check_iterative_start_and_step_are_deterministic
            generated.append((c.__name__, functools.partial(c, stage, tree)))
        return generated if generate_only else _run(generated)
    elif isinstance(stage, ReduceStage):
        if tree is not None:
            reduce_checks = [check_reduce_is_deterministic]
            if isinstance(stage, PartitionedReduce):
                reduce_checks.append(check_compute_equals_combined_parts)
            generated = [(c.__name__, functools.partial(c, stage)) for c in checks]
            generated += [(c.__name__, functools.partial(c, stage, tree)) for c in reduce_checks]
            return generated if generate_only else _run(generated)
    else:
        raise StageContractError(
            f"{type(stage).__qualname__} is neither a SweepStage (name, seed, sweep, template, compute_block), "
            "an IterativeStage (name, seed, chains, max_iterations, blocks, initial_state, step, update, finalize) "
            "nor a ReduceStage (name, compute)"
        )
    generated = [(c.__name__, functools.partial(c, stage)) for c in checks]
    return generated if generate_only else _run(generated)


def _run(generated: list[tuple[str, Callable[[], None]]]) -> list[str]:
    for _, check in generated:
        check()
    return [name for name, _ in generated]

