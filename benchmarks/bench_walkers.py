"""Throughput of the seed-003 walker kernels (cgflow.micro.walkers) on one core.

Prints walker-fine-steps per second for
  * advection-diffusion, step by step (numba, one uniform per walker per fine step),
  * advection-diffusion, exact sampling per coarse step (two binomials per walker per coarse
    step; its rate in "equivalent fine steps" counts fine_steps_per_coarse per walker),
  * Burgers (synchronous Lax-Friedrichs walkers, numba, cell counts recomputed each fine step),
at n_f = 2400 and the paper's parameters (400 fine steps per coarse step), and the
ratios measured in the same run. Compilation is excluded (one warm-up call each);
each figure is the best of ``--repeats`` runs.

Usage: .venv/bin/python benchmarks/bench_walkers.py [--walkers 2400] [--coarse-steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from cgflow.micro import walkers as wk  # noqa: E402


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--walkers", type=int, default=2400)
    ap.add_argument("--coarse-steps", type=int, default=20, help="coarse steps per timed step-by-step run")
    ap.add_argument("--exact-coarse-steps", type=int, default=500, help="coarse steps per timed exact run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    params = wk.WalkerParams(walkers=args.walkers)
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([2019, 3])))
    X0 = wk.sample_initial_states(1, 24, 3, 0.5, rng)[0]
    x0 = wk.sample_fine_state(X0, params.walkers, rng)
    nfine = params.fine_steps_per_coarse

    cases = [
        ("AD step-by-step", "advection_diffusion", "steps", args.coarse_steps),
        ("AD exact sampling", "advection_diffusion", "exact", args.exact_coarse_steps),
        ("Burgers", "burgers", None, args.coarse_steps),
    ]
    rates = {}
    print(f"n_f = {params.walkers}, fine steps per coarse step = {nfine}, repeats = {args.repeats}, "
          f"NUMBA_NUM_THREADS = {os.environ['NUMBA_NUM_THREADS']}")  # fmt: skip
    for label, law, method, steps in cases:
        wk.simulate(law, x0, 1, params, rng, method=method)  # compile / warm up
        t = best_time(lambda: wk.simulate(law, x0, steps, params, rng, method=method), args.repeats)
        walker_fine_steps = params.walkers * nfine * steps
        rates[label] = walker_fine_steps / t
        print(f"{label:20s} {steps:5d} coarse steps in {t:8.4f} s: "
              f"{rates[label]:10.3e} walker-fine-steps/s, {t / steps * 1e3:8.3f} ms per coarse step, "
              f"{params.walkers * steps / t:10.3e} walker-coarse-steps/s")  # fmt: skip
    print(f"ratio exact / step-by-step (AD): {rates['AD exact sampling'] / rates['AD step-by-step']:.1f}")
    print(f"ratio Burgers / AD step-by-step: {rates['Burgers'] / rates['AD step-by-step']:.2f}")
    # the paper's largest data set: N = 128 runs x 1 coarse step (REFERENCE §7: <= 5e8 walker-steps)
    n_runs = 128
    print(f"paper-scale training data ({n_runs} ICs x 1 coarse step): "
          f"AD exact {n_runs * params.walkers * nfine / rates['AD exact sampling']:.3f} s, "
          f"AD steps {n_runs * params.walkers * nfine / rates['AD step-by-step']:.2f} s, "
          f"Burgers {n_runs * params.walkers * nfine / rates['Burgers']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
