"""Cost of one patch-dynamics burst: numba kernel vs LAPACK path, with and without the Dask nanny's malloc setting.

    python benchmarks/bench_patch_kernel.py [--repeats 5 --solvers numba ldl --json out.json]

What is measured. One burst is one call of
:meth:`cgflow.methods.eqfree.patch_dynamics.PatchDynamics.time_derivative` (seed eq. (11)):
lift, ``substeps`` TR-BDF2 micro steps on all 9 patches (H = 8e-3, frozen buffer
ends), restriction. Its wall time (median and min over ``--repeats`` calls, after one
warm-up call that builds the bond coefficients, the factorisations, the work arrays
and loads or compiles the numba kernel; at least ``--min-time`` seconds of calls) is
measured at

* the paper's medium: eps = 1e-5, dx = 1e-7 (80,001 points per patch), 4 and 10 substeps;
* the quick workflow's medium: eps = 1e-4, dx = 1e-6 (8,001 points per patch), 4 and 10 substeps;

for the solvers ``micro_solver="numba"`` (the default: one allocation-free compiled
kernel per burst) and ``"ldl"`` (the earlier numpy + LAPACK ``dpttrs`` stages, which
allocate several patch-sized temporaries per micro step), each in a fresh
single-threaded subprocess (BLAS/OpenMP threads 1; ``--pin`` also pins it to one CPU),
once with the inherited environment minus
``MALLOC_TRIM_THRESHOLD_`` and once with ``MALLOC_TRIM_THRESHOLD_=65536``, the value
a Dask nanny sets in its workers, with which glibc returns (munmap) every large
freed block, so each large temporary costs an mmap, page faults and an munmap.
The user and system CPU time per burst (getrusage) show where the time goes.

Also printed: the projected core-minutes for 8 trajectories of 1001 bursts each
(1000 forward-Euler projective steps of 1e-3 over t in [0, 1] plus the final
estimate, the paper's and the quick workflow's training set), from the CPU time
(user + sys) per burst, which unlike the wall time does not count waiting for a
busy core; and the largest relative difference of F between the solvers (same
macro profile).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

#: (label, PatchDynamics keyword arguments); buffer 8e-3, tooth 1e-4, burst 1e-6 are the defaults.
CONFIGS = {
    "paper": dict(eps=1e-5, micro_dx=1e-7),
    "quick": dict(eps=1e-4, micro_dx=1e-6),
}
MALLOC_ENV = "MALLOC_TRIM_THRESHOLD_"


def worker(config: str, substeps: int, solver: str, repeats: int, min_time: float, pin: bool) -> dict:
    """Time ``repeats`` bursts in this process; returns a JSON-able dict."""
    import numpy as np

    from cgflow.methods.eqfree.patch_dynamics import PatchDynamics

    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pd = PatchDynamics(buffer=8e-3, substeps=substeps, micro_solver=solver, **CONFIGS[config])
    U = np.sin(np.pi * pd.x) + pd.x**2 + 0.3 * np.cos(7.0 * pd.x)
    start = time.perf_counter()
    F, _ = pd.time_derivative(U)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    pd.time_derivative(U)
    repeats = max(repeats, min(2000, math.ceil(min_time / (time.perf_counter() - start))))
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        start = time.perf_counter()
        pd.time_derivative(U)
        times.append(time.perf_counter() - start)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "config": config, "substeps": substeps, "solver": solver, "malloc_trim": os.environ.get(MALLOC_ENV),
        "patches": pd.n_patches, "points": pd.n_micro,
        "median_s": statistics.median(times), "min_s": min(times), "first_call_s": setup,
        "user_s": (r1.ru_utime - r0.ru_utime) / repeats, "sys_s": (r1.ru_stime - r0.ru_stime) / repeats,
        "minflt": (r1.ru_minflt - r0.ru_minflt) / repeats, "repeats": repeats,
        "F": F.tolist(),
    }


def run_worker(config, substeps, solver, repeats, min_time, trim: bool, pin: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env.pop(MALLOC_ENV, None)
    if trim:
        env[MALLOC_ENV] = "65536"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", config, str(substeps), solver,
           "--repeats", str(repeats), "--min-time", str(min_time)] + (["--pin"] if pin else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"worker {cmd} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="minimum timed bursts per measurement (after a warm-up)")
    ap.add_argument("--min-time", type=float, default=2.0, help="minimum seconds of timed bursts per measurement")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--substeps", type=int, nargs="+", default=[4, 10])
    ap.add_argument("--solvers", nargs="+", default=["numba", "ldl"], choices=["numba", "ldl", "banded"])
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--bursts", type=int, default=1001, help="bursts per trajectory")
    ap.add_argument("--pin", action="store_true", help="pin every worker process to the first allowed CPU")
    ap.add_argument("--json", help="also write the measurements to this file")
    ap.add_argument("--worker", nargs=3, metavar=("CONFIG", "SUBSTEPS", "SOLVER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        config, substeps, solver = args.worker
        print(json.dumps(worker(config, int(substeps), solver, max(1, args.repeats), args.min_time, args.pin)))
        return

    import numpy as np

    rows = []
    print(f"one burst = PatchDynamics.time_derivative, 9 patches, H = 8e-3, TR-BDF2; wall ms median (min) of "
          f">= {args.repeats} calls after a warm-up (>= {args.min_time:g} s of calls)")
    print(f"user/sys ms and minor page faults per burst; core-min = {args.trajectories} trajectories x "
          f"{args.bursts} bursts x (user + sys)")
    head = (f"{'medium':>6} {'points':>6} {'sub':>3} {'solver':>6} {MALLOC_ENV:>22} {'ms/burst':>16} "
            f"{'user ms':>8} {'sys ms':>7} {'faults':>7} {'core-min':>8}")
    print(head)
    print("-" * len(head))
    for config in args.configs:
        for substeps in args.substeps:
            Fs = {}
            for solver in args.solvers:
                for trim in (False, True):
                    r = run_worker(config, substeps, solver, args.repeats, args.min_time, trim, args.pin)
                    r["core_minutes"] = args.trajectories * args.bursts * (r["user_s"] + r["sys_s"]) / 60.0
                    rows.append(r)
                    Fs.setdefault(solver, np.asarray(r["F"]))
                    ms = f"{r['median_s'] * 1e3:.1f} ({r['min_s'] * 1e3:.1f})"
                    env = "65536" if trim else "unset"
                    print(f"{config:>6} {r['points']:>6} {substeps:>3} {solver:>6} {env:>22} "
                          f"{ms:>16} {r['user_s'] * 1e3:>8.1f} {r['sys_s'] * 1e3:>7.1f} {r['minflt']:>7.0f} "
                          f"{r['core_minutes']:>8.2f}")
            ref = Fs[args.solvers[0]]
            for solver, F in Fs.items():
                if solver != args.solvers[0]:
                    rel = np.abs(F - ref).max() / np.abs(ref).max()
                    print(f"{'':>6} max |F_{args.solvers[0]} - F_{solver}| / max |F| = {rel:.1e}")
    # speed-ups (median wall time) of the first solver over the others, per configuration and environment
    print()
    first = args.solvers[0]
    for r in rows:
        if r["solver"] == first:
            continue
        match = next(q for q in rows if q["solver"] == first and q["config"] == r["config"]
                     and q["substeps"] == r["substeps"] and q["malloc_trim"] == r["malloc_trim"])
        env = "65536" if r["malloc_trim"] else "unset"
        print(f"{r['config']:>6} substeps {r['substeps']:>2}, {MALLOC_ENV} {env:>5}: "
              f"{first} is {r['median_s'] / match['median_s']:.1f}x faster than {r['solver']} (wall median), "
              f"{(r['user_s'] + r['sys_s']) / (match['user_s'] + match['sys_s']):.1f}x (CPU time)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{k: v for k, v in r.items() if k != "F"} for r in rows], fh, indent=1)


if __name__ == "__main__":
    main()
