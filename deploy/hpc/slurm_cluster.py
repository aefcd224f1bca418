#!/usr/bin/env python3
"""Start a Dask cluster on SLURM for cgflow (dask-jobqueue), and optionally run cgflow on it.

The scheduler runs in this process (on the login node, or in a small long-lived
job); the workers run in SLURM jobs laid out as deploy/hpc/jobqueue.yaml says.

Keep a cluster up, and run cgflow against it from another shell:

    python deploy/hpc/slurm_cluster.py --jobs 8 --scheduler-file ~/cgflow-scheduler.json
    cgflow run workflows/zrp-fdr-paper.yaml --scheduler-file ~/cgflow-scheduler.json \\
        --store /shared/project/zrp-fdr-paper.zarr

Or start the cluster, run one command on it, and stop the cluster when it ends (a
`cgflow run` command is given `--scheduler-file` automatically):

    python deploy/hpc/slurm_cluster.py --jobs 8 -- \\
        cgflow run workflows/zrp-fdr-paper.yaml --store /shared/project/zrp-fdr-paper.zarr

Print the job script that would be submitted, and submit nothing:

    python deploy/hpc/slurm_cluster.py --print-job-script

dask-jobqueue is not a dependency of cgflow: `pip install dask-jobqueue` in the
environment that runs this script. The workers need cgflow itself, from the same
Python installation on a file system the compute nodes see (see
`job-script-prologue` in jobqueue.yaml). The store given to `cgflow run --store`
must also be on such a shared file system, because every worker writes its own
blocks of it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_JOBQUEUE_CONFIG = HERE / "jobqueue.yaml"
DEFAULT_DASK_CONFIG_DIR = HERE.parent / "config"
CLUSTER_OPTIONS = ("--scheduler", "--scheduler-file", "--workers")


class Terminated(Exception):
    """SIGTERM arrived (kill, or scancel of a job running this script)."""


def _raise_terminated(signum, frame):
    raise Terminated


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start a Dask cluster on SLURM for cgflow; optionally run COMMAND on it, then stop it.",
        epilog="Example: %(prog)s --jobs 8 -- cgflow run workflows/zrp-fdr-paper.yaml --store /shared/x.zarr",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_JOBQUEUE_CONFIG,
                        help="dask-jobqueue settings (jobqueue.slurm.*) [default: %(default)s]")
    parser.add_argument("--dask-config", default=str(DEFAULT_DASK_CONFIG_DIR),
                        help="directory of Dask settings for the scheduler and, via DASK_CONFIG, the workers; "
                             "'' for none [default: %(default)s]")
    parser.add_argument("--jobs", type=int, default=1,
                        help="SLURM jobs to keep running; workers = jobs x jobqueue.slurm.processes [default: 1]")
    parser.add_argument("--queue", help="SLURM partition (overrides jobqueue.slurm.queue)")
    parser.add_argument("--account", help="SLURM account (overrides jobqueue.slurm.account)")
    parser.add_argument("--scheduler-file", type=Path, default=Path("cgflow-scheduler.json"),
                        help="where to write the scheduler's address for `cgflow run --scheduler-file` "
                             "[default: %(default)s]")
    parser.add_argument("--print-job-script", action="store_true",
                        help="print the SLURM job script and exit without submitting anything")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="command to run once the cluster is up (after `--`); the cluster stops when it exits")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def load_config(jobqueue_config: Path, dask_config_dir: Path | None) -> None:
    """Merge the YAML settings into dask's configuration.

    The files take precedence over dask's other YAML sources, and ``DASK_*``
    environment variables still take precedence over the files.
    """
    import dask.config

    paths = [str(jobqueue_config)]
    if dask_config_dir is not None:
        paths.append(str(dask_config_dir))
    for path in paths:
        if not Path(path).exists():
            sys.exit(f"slurm_cluster.py: {path}: no such file or directory")
    dask.config.update(dask.config.config, dask.config.collect(paths=paths, env=os.environ), priority="new")


def cgflow_command(command: list[str], scheduler_file: Path) -> list[str]:
    """Append ``--scheduler-file`` to a `cgflow run` command that doesn't choose a cluster itself."""
    is_cgflow_run = len(command) >= 2 and Path(command[0]).name == "cgflow" and command[1] == "run"
    chooses_cluster = any(arg.split("=", 1)[0] in CLUSTER_OPTIONS for arg in command)
    if is_cgflow_run and not chooses_cluster:
        return [*command, "--scheduler-file", str(scheduler_file)]
    return command


def run_command(command: list[str]) -> int:
    """Run ``command`` to completion and return its exit code.

    Interrupting it keeps cgflow's finished blocks: Ctrl-C reaches the command
    directly (same process group), and cgflow records the run as interrupted and
    exits 130; SIGTERM sent to this script is passed on to it as SIGINT. Either
    way this waits for the command to finish before the cluster is stopped.
    """
    proc = subprocess.Popen(command)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue
        except Terminated:
            proc.send_signal(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dask_config_dir = Path(args.dask_config).resolve() if args.dask_config else None

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        sys.exit(
            "slurm_cluster.py needs dask-jobqueue, which cgflow does not install.\n"
            "Install it into this environment:  python -m pip install dask-jobqueue"
        )
    import dask.config
    from distributed import Client

    load_config(args.config, dask_config_dir)

    kwargs = {}
    if args.queue:
        kwargs["queue"] = args.queue
    if args.account:
        kwargs["account"] = args.account
    if dask_config_dir is not None:
        # The workers start in fresh shells on the compute nodes: point their dask
        # at the same settings (the path must be visible there, like the venv).
        prologue = list(dask.config.get("jobqueue.slurm.job-script-prologue") or [])
        kwargs["job_script_prologue"] = [*prologue, f"export DASK_CONFIG={dask_config_dir}"]

    cluster = SLURMCluster(**kwargs)
    if args.print_job_script:
        print(cluster.job_script())
        cluster.close()
        return 0

    # SIGTERM shuts down as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_terminated)

    scheduler_file = args.scheduler_file.expanduser().resolve()
    client = None
    try:
        # A fixed-size adaptive cluster rather than scale(): when a job ends (the
        # workers retire before walltime, see --lifetime in jobqueue.yaml, or the
        # job is preempted) a replacement is submitted.
        cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
        client = Client(cluster)
        client.write_scheduler_file(str(scheduler_file))
        print(f"scheduler {cluster.scheduler_address}, dashboard {client.dashboard_link}", flush=True)
        print(f"scheduler file {scheduler_file}; {args.jobs} SLURM job(s) of "
              f"{dask.config.get('jobqueue.slurm.processes')} worker(s) requested", flush=True)

        if args.command:
            command = cgflow_command(args.command, scheduler_file)
            print("running: " + " ".join(command), flush=True)
            return run_command(command)

        print(f"run:  cgflow run SPEC --scheduler-file {scheduler_file} --store /shared/path/NAME.zarr", flush=True)
        print("Ctrl-C stops the cluster and cancels its jobs.", flush=True)
        seen = -1
        while True:
            n = len(client.nthreads())
            if n != seen:
                print(f"{time.strftime('%H:%M:%S')}  {n} worker(s) connected", flush=True)
                seen = n
            time.sleep(10)
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 128 + signal.SIGTERM
    finally:
        # The file would point at a dead scheduler: remove it, then stop the cluster.
        scheduler_file.unlink(missing_ok=True)
        if client is not None:
            client.close()
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
