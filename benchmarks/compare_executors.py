"""Run workflows with ``--serial`` and with ``--workers N`` and compare the stores bitwise.

Usage::

    python benchmarks/compare_executors.py [--workers 2] [--out DIR] workflows/*-quick.yaml

For every spec: both runs' wall times and, over every array of the store outside
the ``tasks`` bookkeeping and the timing variables (attribute ``cgflow_timing``),
how many arrays were compared and which differ (none, if the engine keeps its
promise). Prints a table and writes ``executors.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cgflow.engine.store import compare_stores as compare


def run(spec: Path, store: Path, *how: str) -> float:
    cgflow = Path(sys.executable).with_name("cgflow")
    start = time.perf_counter()
    proc = subprocess.run([str(cgflow), "run", str(spec), "--store", str(store), "--no-progress", *how], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"cgflow run {spec} {' '.join(how)} failed:\n{proc.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/executors"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'spec':<34} {'serial s':>9} {'workers s':>10} {'arrays':>7}  differing")
    for spec in args.specs:
        serial, cluster = args.out / f"{spec.stem}-serial.zarr", args.out / f"{spec.stem}-workers.zarr"
        for store in (serial, cluster):
            shutil.rmtree(store, ignore_errors=True)
        t_serial = run(spec, serial, "--serial")
        t_cluster = run(spec, cluster, "--workers", str(args.workers))
        n, differing = compare(serial, cluster)
        rows.append({"spec": str(spec), "serial_seconds": round(t_serial, 1), "workers": args.workers,
                     "workers_seconds": round(t_cluster, 1), "arrays_compared": n, "differing": differing})
        print(f"{str(spec):<34} {t_serial:>9.1f} {t_cluster:>10.1f} {n:>7}  {differing or 'none'}")
    (args.out / "executors.json").write_text(json.dumps(rows, indent=1))
    if any(r["differing"] for r in rows):
        raise SystemExit("some stores differ")


if __name__ == "__main__":
    main()
