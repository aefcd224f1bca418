"""Engine benchmarks: speed-up of 2 workers over 1, engine overhead, peak worker memory vs R.

Usage::

    python benchmarks/bench_engine.py            # all three, about 5 minutes on 2 cores
    python benchmarks/bench_engine.py --only scaling

Everything is measured side by side in one run of this script (the machines are
shared and noisy: compare the ratios, not absolute times). The sweep is the ZRP
ensemble stage at L = 1000, rho = 7, p = 2 with a default block of 8 replicas
(8 preparations of 100 lattice time units, about 2 s of KMC per task), through the same engine calls ``cgflow run`` makes.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from cgflow.engine import store as st
from cgflow.engine.execute import connect, run_sweep
from cgflow.methods.fdr.ensemble import ZRPEnsemble
from cgflow.spec import spec_from_dict


def make_spec(preparations: int, block: int, points: int, sites: int) -> dict:
    return {
        "name": "bench-engine",
        "method": "fdr",
        "seed": 1,
        "micro": {"model": "zrp", "sites": sites, "rate_exponent": 2, "boundary": "closed"},
        "ensemble": {
            "profiles": {"flat": {"rho": [7.0 + 0.1 * i for i in range(points)]}},
            "basis_functions": 20,
            "replicas": {"preparations": preparations, "continuations": 1, "block": block},
            # 100 lattice time units of preparation (as the paper), h L^2 = 1e-3
            "times": {"equilibrate": 100.0 / sites**2, "decorrelate": 0.0, "h": 1e-3 / sites**2},
        },
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sweep_once(spec_dict: dict, workers: int, tmp: Path) -> dict:
    spec = spec_from_dict(spec_dict)
    (stage,) = [ZRPEnsemble.from_spec(spec)]
    path = tmp / f"{spec.name}-{workers}-{time.monotonic_ns()}.zarr"
    with st.StoreLock(path):
        st.prepare_store(path, spec)
        st.create_stage(path, stage)
        with connect(workers=workers, dashboard_address="127.0.0.1:0") as client:
            report = run_sweep(client, str(path), stage, run_index=1, progress=False)
            rss = client.run(_peak_rss_mb)
    return {"report": report, "rss_mb": sorted(rss.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["scaling", "overhead", "memory"])
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--block", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cgflow-bench-"))

    if args.only in (None, "scaling", "overhead"):
        spec = make_spec(preparations=96, block=args.block, points=2, sites=args.sites)
        one = sweep_once(spec, 1, tmp)["report"]
        two = sweep_once(spec, 2, tmp)["report"]
        print(f"sweep: 2 points x {one.computed // 2} blocks of {args.block} replicas, L = {args.sites}, "
              f"{one.work:.3g} KMC events, mean task {one.compute_seconds / one.computed:.2f} s")
        print(f"1 worker : wall {one.wall_seconds:7.2f} s  compute {one.compute_seconds:7.2f} core-s  overhead {100 * one.overhead:5.2f}%")
        print(f"2 workers: wall {two.wall_seconds:7.2f} s  compute {two.compute_seconds:7.2f} core-s  overhead {100 * two.overhead:5.2f}%")
        print(f"speed-up 2 vs 1 workers: {one.wall_seconds / two.wall_seconds:.2f}x  (target >= 1.8x)")
        print(f"engine overhead at block {args.block}: {100 * two.overhead:.2f}% of 2-worker wall time (target <= 5%)")

    if args.only in (None, "memory"):
        rows = []
        for preps in (16, 160):
            spec = make_spec(preparations=preps, block=args.block, points=1, sites=args.sites)
            out = sweep_once(spec, 2, tmp)
            rows.append((preps, out["rss_mb"]))
        for preps, rss in rows:
            print(f"R = {preps:4d} replicas per point: peak RSS per worker {', '.join(f'{r:.0f}' for r in rss)} MB")
        ratio = max(rows[1][1]) / max(rows[0][1])
        print(f"peak worker memory ratio R x10: {ratio:.3f} (independent of R if ~1)")


if __name__ == "__main__":
    main()
