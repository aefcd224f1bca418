"""Wall time of the probcg ``infer`` stage for N experiments on 1 and 2 workers, and of the fine stage.

Usage::

    python benchmarks/bench_probcg_scaling.py [--experiments 64 1024] [--iterations 20] [--workers 1 2]

Runs ``workflows/probcg-advdiff-quick.yaml`` with ``fine.experiments = N`` and a
fixed number of outer iterations (the stopping rule switched off by a zero
tolerance window, so every run does the same work), reads the stage times from
the store's run record, and prints infer seconds per iteration, the speed-up
from 1 to 2 workers, and the fine stage's walker steps per second per core.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import zarr

ROOT = Path(__file__).resolve().parents[1]


def run(n: int, workers: int, iterations: int, block: int, tmp: Path) -> dict:
    store = tmp / f"n{n}-w{workers}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("cgflow")), "run", str(ROOT / "workflows/probcg-advdiff-quick.yaml"),
           "--store", str(store), "--workers", str(workers), "--no-progress",
           "--set", f"fine.experiments={n}", "--set", f"fine.block={block}", "--set", f"infer.block={block}",
           "--set", f"infer.iterations={iterations}", "--set", "infer.tolerance=1e-300", "--set", "infer.relative_tolerance=0", "--set", "infer.stop_z=0", "--set", "infer.restarts=1",
           "--set", "stages=[fine, infer]"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    record = zarr.open_group(str(store), mode="r").attrs["runs"][-1]["stages"]
    fine = zarr.open_group(str(store), mode="r")["fine/blocks/work"][...].sum()
    fine_core_s = zarr.open_group(str(store), mode="r")["fine/tasks/seconds"][...].sum()
    return {"experiments": n, "workers": workers, "infer_seconds": record["infer"]["wall_seconds"],
            "fine_walker_steps_per_core_second": float(fine / fine_core_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/probcg_scaling.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.experiments:
            block = max(16, n // 8)  # 8 blocks: enough tasks per iteration for a few workers
            for w in args.workers:
                row = run(n, w, args.iterations, block, Path(tmp))
                row["seconds_per_iteration"] = row["infer_seconds"] / args.iterations
                rows.append(row)
                print(f"N = {n:5d}, {w} worker(s): infer {row['infer_seconds']:7.1f} s ({row['seconds_per_iteration']:.3f} s/iteration); "
                      f"fine {row['fine_walker_steps_per_core_second']:.3g} walker steps/s/core", flush=True)
    for n in args.experiments:
        t = {r["workers"]: r["infer_seconds"] for r in rows if r["experiments"] == n}
        if 1 in t and 2 in t:
            print(f"N = {n}: speed-up 1 -> 2 workers {t[1] / t[2]:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
