"""Throughput of the NbMoTa vacancy-exchange KMC kernel (seed 002, issue 12; REFERENCE-002 §1c, §9).

    python benchmarks/bench_bcc_alloy.py [--events 1e7 --repeats 3 --temperature 2000]

KMC events (vacancy jumps) per CPU second of ``run_jumps`` on one core (process
time, so other load on a shared machine inflates it less than wall time; it still
competes for caches), median of ``--repeats`` runs of ``--events`` jumps each,
after a burn-in of 20 jumps per site from a random equimolar configuration:

* 8192 sites (cells = 16) with 1 and with 8 vacancies,
* 65,536 sites (cells = 32) with 64 vacancies (and 1, for comparison).

Target (issue 12): >= 5e6 events/s at 8192 sites. Stand-in barrier model of
REFERENCE §9, lam = 0.5.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cgflow.micro import bcc_alloy as ba

CASES = ((16, 1), (16, 8), (32, 1), (32, 64))


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=1e7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=2000.0)
    ap.add_argument("--lam", type=float, default=0.5)
    args = ap.parse_args(argv)
    ba.warmup()
    n = int(args.events)
    print(f"run_jumps throughput, T = {args.temperature:g} K, lam = {args.lam:g}, {n:.0e} jumps x "
          f"{args.repeats} repeats (one core, process time)")
    for cells, nv in CASES:
        p = ba.BccAlloyParams(args.temperature, cells, lam=args.lam)
        rng = make_rng(cells * 1000 + nv)
        c = ba.random_configuration(cells, nv, rng)
        c, _, _ = ba.run_jumps(c, 20 * p.sites, p, rng)
        rates, sim = [], 0.0
        for _ in range(args.repeats):
            t0 = time.process_time()
            c, elapsed, jumps = ba.run_jumps(c, n, p, rng)
            rates.append(jumps / (time.process_time() - t0))
            sim += elapsed
        med = statistics.median(rates)
        print(f"   {p.sites:6d} sites, {nv:2d} vacancies: {med:.3e} events/s ({1e9 / med:6.1f} ns/event; "
              f"repeats {', '.join(f'{r:.2e}' for r in rates)}); mean waiting time {sim / (n * args.repeats):.3e} s")


if __name__ == "__main__":
    main()
