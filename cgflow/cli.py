"""Command line: ``cgflow run | status | show``.

Exit codes: 0 success, 1 a computation failed, 2 invalid spec or usage,
3 the store was refused (another spec, in use), 130 interrupted (re-run the same
command to resume).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
from typing import NoReturn
from pathlib import Path

import click

from . import __version__

EXIT_FAILED, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 1, 2, 3, 130


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cgflow")
def main() -> None:
    """cgflow: learn macroscopic evolution equations from microscopic simulations, on Dask."""


# --------------------------------------------------------------------------- run

@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value, e.g. --set ensemble.replicas.block=32 (typed: numbers, lists, booleans).")
@click.option("--store", type=click.Path(file_okay=False), help="Zarr store of the run [default: <name>.zarr].")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes [default: one per core].")
@click.option("--serial", is_flag=True, help="Run every task in this process, one after the other (no cluster): same store, bitwise; for debugging and small runs.")
@click.option("--pdb", "post_mortem", is_flag=True, help="With --serial: open the Python debugger where a failing task raised.")
@click.option("--scheduler", metavar="ADDR", help="Attach to a running dask scheduler, e.g. tcp://scheduler:8786.")
@click.option("--scheduler-file", type=click.Path(dir_okay=False), help="Attach to the scheduler described by this file.")
@click.option("--restart", is_flag=True, help="Discard the store's contents and start over.")
@click.option("--rerun", "rerun", multiple=True, metavar="STAGE",
              help="Recompute this reduce stage (and every later one) although it is up to date, e.g. after a code change; repeatable.")
@click.option("--dry-run", is_flag=True, help="Print tasks, store layout and cost estimate; compute nothing.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--dashboard-address", default="127.0.0.1:8787", show_default=True, help="Dashboard of a local cluster.")
def run(spec_path, overrides, store, workers, serial, post_mortem, scheduler, scheduler_file, restart, rerun, dry_run, progress, dashboard_address):
    """Run the workflow SPEC (YAML); re-running the same command resumes."""
    from .spec import SpecError, load_spec

    if sum(x is not None for x in (workers, scheduler, scheduler_file)) + bool(serial) > 1:
        _fail("Error: --workers, --serial, --scheduler and --scheduler-file are mutually exclusive", EXIT_USAGE)
    if post_mortem and not serial:
        _fail("Error: --pdb needs --serial (tasks on a cluster fail in other processes)", EXIT_USAGE)
    if scheduler_file is not None and not Path(scheduler_file).is_file():
        _fail(f"Error: --scheduler-file {scheduler_file}: no such file", EXIT_USAGE)
    try:
        spec = load_spec(spec_path, overrides)
    except SpecError as exc:
        _fail(f"invalid spec:\n{exc}", EXIT_USAGE)

    from .engine.store import StoreError
    from .methods import build_stages

    stages = build_stages(spec)
    _check_rerun(rerun, stages)
    store_path = Path(store or f"{spec.name}.zarr")
    if dry_run:
        _dry_run(spec, stages, store_path, restart)
        return
    try:
        _run(spec, stages, store_path, restart, workers, scheduler, scheduler_file, progress, dashboard_address, serial,
             post_mortem, frozenset(rerun))
    except StoreError as exc:
        _fail(f"refused: {exc}", EXIT_STORE)


def _check_rerun(rerun, stages) -> None:
    """--rerun names reduce stages of the spec (sweep blocks and iterative checkpoints are resumed, never redone)."""
    from .engine.iterate import IterativeStage
    from .engine.types import SweepStage

    by_name = {s.name: s for s in stages}
    for name in rerun:
        if name not in by_name:
            _fail(f"Error: --rerun {name}: not a stage of this spec; expected one of {list(by_name)}", EXIT_USAGE)
        if isinstance(by_name[name], (SweepStage, IterativeStage)):
            _fail(f"Error: --rerun {name}: applies to reduce stages; the blocks or checkpoints of a sweep or iterative "
                  "stage are kept (use --restart, or another --store, to recompute them)", EXIT_USAGE)


def _run(spec, stages, store_path, restart, workers, scheduler, scheduler_file, progress, dashboard_address, serial=False,
         post_mortem=False, rerun=frozenset()):
    from .engine import store as st
    from .engine.execute import connect, run_reduce, run_sweep
    from .engine.executors import DaskExecutor, SerialExecutor, TaskError, single_threaded_blas
    from .engine.iterate import IterativeStage, run_iterative
    from .engine.types import PartitionedReduce, SweepStage, fingerprint, hook

    st.check_store(store_path, spec, stages, restart)  # refuse before touching anything
    with st.StoreLock(store_path):
        state = st.prepare_store(store_path, spec, stages, restart)
        runs = st.read_attrs(store_path).get("runs", [])
        run_index = len(runs) + 1
        sweeps = [s for s in stages if isinstance(s, SweepStage)]
        for stage in sweeps:
            if not st.stage_ready(store_path, stage.name):
                st.create_stage(store_path, stage, attrs={"spec_hash": spec.hash})
        record = {"index": run_index, "started": _now(), "status": "running", "spec_hash": spec.hash, "stages": {}}
        if rerun:
            record["rerun"] = sorted(rerun)
        st.update_attrs(store_path, runs=runs + [record])
        click.echo(f"cgflow {__version__}: {spec.name} ({spec.method}), spec {spec.hash[:12]}, store {store_path} ({'resuming' if state == 'resume' else 'new'})")
        status, code = "complete", 0
        path = str(store_path.resolve())  # absolute: workers resolve the path in their own working directory
        try:
            changed = False  # did an earlier stage of this run write anything? then later stages are stale
            with contextlib.ExitStack() as resources:
                # client-side stage work (reduce stages, iterative updates) with one BLAS thread, like the
                # workers: results then do not depend on this machine's core count or on the executor
                resources.enter_context(single_threaded_blas())
                executors: list = []

                def executor():
                    """The run's executor, made on first use: a cluster starts only when there are tasks for it."""
                    if not executors:
                        if serial:
                            executors.append(SerialExecutor())
                            record.update(workers=0, scheduler="serial (in process)")
                        else:
                            client = resources.enter_context(connect(workers, scheduler, scheduler_file, dashboard_address))
                            executors.append(DaskExecutor(client))
                            record.update(workers=len(client.nthreads()), scheduler=client.scheduler.address)
                            click.echo(f"dashboard: {client.dashboard_link}  ({len(client.nthreads())} workers, {executors[0].threads} threads)")
                    return executors[0]

                for stage in stages:
                    if isinstance(stage, SweepStage):
                        pending = bool((st.read_done(path, stage.name) == 0).any())
                        report = run_sweep(executor() if pending else SerialExecutor(), path, stage, run_index, progress=progress)
                        changed |= report.computed > 0
                        record["stages"][stage.name] = {
                            "computed": report.computed,
                            "skipped": report.skipped,
                            "work": report.work,
                            "wall_seconds": round(report.wall_seconds, 3),
                            "compute_seconds": round(report.compute_seconds, 3),
                        }
                        _summary(report, hook(stage, "work_unit"))
                    elif changed or stage.name in rerun or st.stage_fingerprint(path, stage.name) != fingerprint(stage):
                        if isinstance(stage, IterativeStage):
                            seconds = run_iterative(path, stage, spec.hash, executor(), progress=progress)
                        else:
                            parts = executor() if isinstance(stage, PartitionedReduce) else None
                            seconds = run_reduce(path, stage, spec.hash, parts, progress=progress)
                        changed = True
                        record["stages"][stage.name] = {"computed": 1, "skipped": 0, "wall_seconds": round(seconds, 3)}
                        click.echo(f"{stage.name}: computed in {seconds:.2f} s")
                    else:
                        record["stages"][stage.name] = {"computed": 0, "skipped": 1}
                        click.echo(f"{stage.name}: up to date")
        except KeyboardInterrupt:
            status, code = "interrupted", EXIT_INTERRUPTED
        except TaskError as exc:
            status, code = "failed", EXIT_FAILED
            record["error"] = str(exc)
            record["failed_task"] = exc.key
            click.echo(f"error: {exc}\n{exc.remote_traceback}", err=True)
            if post_mortem:
                import pdb

                pdb.post_mortem(exc.__cause__.__traceback__ if exc.__cause__ else exc.__traceback__)
        except Exception as exc:
            status, code = "failed", EXIT_FAILED
            record["error"] = f"{type(exc).__name__}: {exc}"
            click.echo(f"error: {exc}", err=True)
            if post_mortem:
                import pdb

                pdb.post_mortem(exc.__traceback__)
        finally:
            record.update(status=status, finished=_now())
            st.update_attrs(store_path, runs=runs + [record])
            st.consolidate(store_path)
    if status == "interrupted":
        done = {name: s["computed"] for name, s in record["stages"].items()}
        click.echo(f"interrupted; finished blocks are kept ({done or 'see cgflow status'}). Re-run the same command to resume.", err=True)
    if code:
        sys.exit(code)
    click.echo(f"store: {store_path}   (xarray.open_datatree({str(store_path)!r}, engine='zarr') or cgflow.open_run)")


def _summary(r, unit: str = "events") -> None:
    rate = r.work / r.wall_seconds if r.wall_seconds else float("nan")
    click.echo(
        f"{r.stage}: {r.computed} blocks computed, {r.skipped} already done; "
        f"{r.work:.3g} {unit} in {r.wall_seconds:.1f} s wall ({rate:.3g} {unit}/s); "
        f"compute {r.compute_seconds:.1f} core-s, engine overhead {100 * r.overhead:.1f}%"
    )


def _dry_run(spec, stages, store_path, restart) -> None:
    from .engine import store as st

    click.echo(f"spec: {spec.source}  name {spec.name}  method {spec.method}  hash {spec.hash[:12]}")
    try:
        st.check_store(store_path, spec, stages, restart)
        state = "exists, would resume" if st.read_attrs(store_path) else "would be created"
    except st.StoreError as exc:
        state = f"would be refused: {exc}"
    click.echo(f"store: {store_path} ({state})")
    import numpy as np

    from .engine.iterate import IterativeStage
    from .engine.types import SweepStage, hook

    for stage in stages:
        if not isinstance(stage, SweepStage):
            parts = getattr(stage, "parts", None)  # PartitionedReduce
            if isinstance(stage, IterativeStage):
                where = "iterated to its stopping rule, one task per block and iteration on the cluster"
            elif parts is not None:
                where = f"{len(parts())} parts, one task each on the cluster"
            else:
                where = "on the client"
            click.echo(f"stage {stage.name}: reduced from the store ({where}); no cost estimate")
            continue
        sw = stage.sweep
        click.echo(
            f"stage {stage.name}: {sw.n_points} points x {sw.n_blocks} blocks = {sw.n_tasks} tasks; "
            f"{sw.block_size} replicas per block, {sw.n_replicas} per point"
        )
        expected, measure = hook(stage, "expected_events"), hook(stage, "measure_throughput")
        unit = hook(stage, "work_unit")
        if expected is None or measure is None:
            click.echo("cost: no estimate (the stage has no expected_events/measure_throughput hooks)")
            _layout(st, stage)
            continue
        events = np.asarray(expected())
        throughput, how = measure()
        core_s = events.sum() / throughput
        click.echo(
            f"cost: {events.sum():.3g} {unit} expected ({events.min():.3g}..{events.max():.3g} per point); "
            f"{throughput:.3g} per second per core measured here ({how}) -> {core_s:.3g} core-s = {core_s / 3600:.3g} core-hours"
        )
        for cores in (2, 64, 500):
            click.echo(f"  wall on {cores:>3} cores (ideal): {_duration(core_s / min(cores, sw.n_tasks))}")
        _layout(st, stage)


def _layout(st, stage) -> None:
    click.echo("layout (nothing written):")
    for group, ds in st.stage_datasets(stage).items():
        ds.attrs.clear()  # the attributes are listed by `cgflow show` once the run exists
        click.echo(f"  /{group}")
        click.echo("    " + str(ds).replace("\n", "\n    "))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --------------------------------------------------------------------------- status / show

@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
def status(store):
    """Blocks done/pending per stage, spec hash, versions, run history."""
    from .engine import store as st

    attrs = st.read_attrs(store)
    if not attrs or "spec_hash" not in attrs:
        _fail(f"{store} is not a cgflow store", EXIT_USAGE)
    click.echo(f"store {store}: {attrs['name']} ({attrs['method']}), spec {attrs['spec_source']} hash {attrs['spec_hash'][:12]}")
    click.echo(f"cgflow {attrs['versions'].get('cgflow')} commit {attrs.get('cgflow_git_commit')}; root seed {attrs['root_seed']}")
    click.echo("versions: " + ", ".join(f"{k} {v}" for k, v in attrs["versions"].items()))
    groups = st.progress(store)
    order = [n for r in attrs.get("runs", []) for n in r.get("stages", {})]  # execution order
    for name in sorted(groups, key=lambda n: order.index(n) if n in order else len(order)):
        counts = groups[name]
        if counts is None:
            click.echo(f"stage {name}: written (fingerprint {st.stage_fingerprint(store, name)[:12]})")
            continue
        done, total = counts
        state = "complete" if done == total else "incomplete"
        click.echo(f"stage {name}: {done}/{total} blocks done, {total - done} pending ({state})")
    for r in attrs.get("runs", []):
        stages = ", ".join(f"{k}: {v['computed']} computed/{v['skipped']} skipped" for k, v in r.get("stages", {}).items())
        click.echo(f"run {r['index']}: {r['status']} {r['started']} -> {r.get('finished', '?')} {stages}")


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
def show(store):
    """Print what the store holds, as xarray sees it."""
    from .engine.store import StoreError, open_run

    import xarray as xr

    try:
        tree = open_run(store)
    except StoreError as exc:
        _fail(str(exc), EXIT_USAGE)
    with xr.set_options(display_max_rows=1000, display_width=120):  # every variable, not the first 12
        click.echo(tree)


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Directory for the PNG files [default: <store>-figures].")
def plot(store, out):
    """Write the figures the store has data for (PNG)."""
    from .engine.store import StoreError
    from .plots import plot_store

    try:
        paths = plot_store(store, out)
    except StoreError as exc:
        _fail(str(exc), EXIT_USAGE)
    if not paths:
        _fail(f"{store}: no stage with figures yet (run the operator stage first)", EXIT_USAGE)
    for p in paths:
        click.echo(str(p))


if __name__ == "__main__":  # pragma: no cover
    main()
