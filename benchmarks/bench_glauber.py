"""Throughput of the Glauber kernels and the cost of partial-evolution pairs (seed 002).

    python benchmarks/bench_glauber.py [--size 64 --tile 16 --pairs 2000 --events 2e7]

1. Events (flips) per second per core of ``run_events`` on an L x L lattice for
   both models (Curie–Weiss T = 1.1, Ising T = 2.5, h = 0.1), median of 3 repeats.
2. CPU seconds for ``--pairs`` training pairs at L = ``--size``:
   (a) upsampled route: small L_s snapshots (one sweep = L_s**2 flips apart on one
       chain), hierarchical upsampling to L (defaults), partial evolution of one
       tile (L_s**2 flips) per snapshot;
   (b) direct route: large L snapshots one sweep (L**2 flips) apart, each paired
       with one whole-lattice window of L**2 flips.
   Both measured in the same run; their ratio is the figure to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cgflow.methods import partial as pm
from cgflow.micro import glauber as g

SETTINGS = {"curie_weiss": 1.1, "ising2d": 2.5}


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))


def chain_snapshots(p: g.GlauberParams, n: int, rng) -> np.ndarray:
    """n snapshots one sweep (L**2 flips) apart on one chain after 100 sweeps of burn-in."""
    L = p.size
    s = g.random_spins(1, L, rng, m0=0.5)[0]
    s, _ = g.run_events(s, 100 * L * L, p, rng)
    out = np.empty((n, L, L), np.int8)
    for i in range(n):
        s, _ = g.run_events(s, L * L, p, rng)
        out[i] = s
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--tile", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--events", type=float, default=2e7)
    args = ap.parse_args(argv)
    g.warmup()
    L, ls, n = args.size, args.tile, args.pairs
    print(f"1. run_events throughput, L = {L}, {args.events:.0e} events x 3 repeats (one core)")
    for model, T in SETTINGS.items():
        p = g.GlauberParams(model, T, 0.1, L)
        rng = make_rng(1)
        s = g.random_spins(1, L, rng, m0=0.5)[0]
        s, _ = g.run_events(s, 100 * L * L, p, rng)
        rates = []
        for _ in range(3):
            t0 = time.process_time()
            s, _ = g.run_events(s, int(args.events), p, rng)
            rates.append(args.events / (time.process_time() - t0))
        print(f"   {model:12s} {statistics.median(rates):.3e} events/s  ({1e9 / statistics.median(rates):.1f} ns/event)")

    print(f"2. CPU seconds for {n} pairs at L = {L} (L_s = {ls}, K = {(L // ls) ** 2})")
    for model, T in SETTINGS.items():
        p_big = g.GlauberParams(model, T, 0.1, L)
        p_small = g.GlauberParams(model, T, 0.1, ls)
        rng = make_rng(2)
        t0 = time.process_time()
        pool = chain_snapshots(p_small, n, rng)
        t_small = time.process_time() - t0
        t0 = time.process_time()
        big = pm.hierarchical_upsample(pool, L, p_big, rng)
        t_up = time.process_time() - t0
        t0 = time.process_time()
        pairs = pm.partial_evolution_pairs(big, ls, p_big, rng)
        t_pe = time.process_time() - t0
        t0 = time.process_time()
        direct = chain_snapshots(p_big, n, rng)
        t_dsnap = time.process_time() - t0
        t0 = time.process_time()
        z0, z1, dt = pm.full_pairs(direct, p_big, rng)
        t_dpairs = time.process_time() - t0
        up_total = t_small + t_up + t_pe
        d_total = t_dsnap + t_dpairs
        print(f"   {model}: upsampled route {up_total:.2f} s (small chain {t_small:.2f}, upsampling {t_up:.2f}, "
              f"partial pairs {t_pe:.2f}); direct route {d_total:.2f} s (large chain {t_dsnap:.2f}, "
              f"full pairs {t_dpairs:.2f}); direct/upsampled = {d_total / up_total:.1f}x; "
              f"pairs only: full/partial = {t_dpairs / t_pe:.1f}x")
        print(f"      mean dt partial {pairs.dt.mean():.3f}, full {dt.mean():.3f}; <m> upsampled "
              f"{pairs.z0[:, 0].mean():.4f} vs direct {z0[:, 0].mean():.4f}")


if __name__ == "__main__":
    main()
