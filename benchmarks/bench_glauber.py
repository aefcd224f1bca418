"""Throughput of the Glauber kernels and the cost of partial-evolution pairs (seed 002).

    python benchmarks/bench_glauber.py [--size 64 --tile 16 --pairs 2000 --events 2e7]
        [--sizes 16 64 128] [--baseline OLD_GLAUBER.py] [--skip-pairs] [--json OUT.json]

1. Events (flips) per second per core (process time) of ``run_events`` on L x L
   lattices, L in ``--sizes``, for both models (Curie–Weiss T = 1.1, Ising T = 2.5,
   h = 0.1), median of 3 repeats. With ``--baseline`` (a copy of an older
   cgflow/micro/glauber.py, loaded as a module) the old and the current kernels run
   interleaved in the same process from the same state, and their ratio is printed:
   on a shared machine only that ratio is meaningful. ``--json`` writes the
   throughput table (every repeat) to a file.
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
import importlib.util
import json
import statistics
import sys
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


def load_module(path: str):
    """An older glauber.py loaded as a stand-alone module (it imports only numba/numpy/scipy)."""
    spec = importlib.util.spec_from_file_location("glauber_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def throughput(mods: dict, L: int, events: int, repeats: int = 3) -> list:
    """Median events/s of run_events for each module of ``mods``, interleaved, from the same equilibrated state."""
    rows = []
    for model, T in SETTINGS.items():
        rates = {name: [] for name in mods}
        p = {name: m.GlauberParams(model, T, 0.1, L) for name, m in mods.items()}
        rng = make_rng(1)
        s = g.random_spins(1, L, rng, m0=0.5)[0]
        s, _ = g.run_events(s, 100 * L * L, p["new"], rng)
        for _ in range(repeats):
            for name, mod in mods.items():
                t0 = time.process_time()
                mod.run_events(s, events, p[name], rng)
                rates[name].append(events / (time.process_time() - t0))
        med = {name: statistics.median(r) for name, r in rates.items()}
        line = "   ".join(f"{name} {v:.3e} events/s ({1e9 / v:.1f} ns/event)" for name, v in med.items())
        ratio = f"   new/old = {med['new'] / med['old']:.2f}x" if "old" in med else ""
        print(f"   L = {L:4d} {model:12s} {line}{ratio}")
        rows.append({"L": L, "model": model, "temperature": T, "field": 0.1, "events": events,
                     "events_per_s": rates, "median_events_per_s": med})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--tile", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--events", type=float, default=2e7)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="throughput sizes (default: --size)")
    ap.add_argument("--baseline", default=None, help="path of an older glauber.py to compare with")
    ap.add_argument("--skip-pairs", action="store_true", help="only the throughput part")
    ap.add_argument("--json", default=None, help="write the throughput results to this file")
    args = ap.parse_args(argv)
    g.warmup()
    mods = {"new": g}
    if args.baseline:
        mods = {"old": load_module(args.baseline), "new": g}
        mods["old"].warmup()
    L, ls, n = args.size, args.tile, args.pairs
    sizes = args.sizes or [L]
    print(f"1. run_events throughput, {args.events:.0e} events x 3 repeats (one core, process time)")
    rows = []
    for size in sizes:
        rows += throughput(mods, size, int(args.events))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": " ".join(sys.argv), "clock": "time.process_time", "rng": "Philox",
                       "baseline": args.baseline, "results": rows}, fh, indent=1)
    if args.skip_pairs:
        return

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
