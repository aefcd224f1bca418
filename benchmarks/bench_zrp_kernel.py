"""Single-core throughput of the ZRP KMC kernel (cgflow.micro.zrp.run_zrp).

    python benchmarks/bench_zrp_kernel.py [--sites 5000 --rho 7 --rate-exponent 2 --events 5e7]

For the requested rate exponent (and, for information, the other supported ones)
the lattice is drawn from the stationary product measure, the JIT is warmed up,
and ``run_zrp`` is timed over about ``--events`` events per repeat on one core,
for periodic and closed boundaries. Reported: median events/s and ns/event over
the repeats, and the cost of a short call (the per-call set-up that dominates
increments of h L**2 = 1e-3 lattice time, ~260 events at rho = 7, p = 2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from cgflow.micro import zrp


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))


def bench(sites: int, rho: float, p: int, periodic: bool, events: float, repeats: int, seed: int) -> dict:
    rng = make_rng(seed)
    eta = zrp.sample_product_measure(np.full(sites, rho), p, rng)
    rate = float(zrp.fugacity(rho, p)) * sites  # expected events per unit lattice time
    zrp.run_zrp(eta, 1e6 / rate, p, periodic, rng)  # JIT warm-up (or cache load) and a short relaxation
    duration = events / rate
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = zrp.run_zrp(eta, duration, p, periodic, rng)
        rates.append(n / (time.perf_counter() - t0))
    # short calls: per-call overhead (validation, generator unboxing, O(L + N) set-up)
    short = 1e-3
    calls = 200
    n_short = 0
    t0 = time.perf_counter()
    for _ in range(calls):
        n_short += zrp.run_zrp(eta, short, p, periodic, rng)
    per_call = (time.perf_counter() - t0) / calls
    med = statistics.median(rates)
    return {
        "p": p,
        "boundary": "periodic" if periodic else "closed",
        "events_per_s": med,
        "ns_per_event": 1e9 / med,
        "min_max": (min(rates), max(rates)),
        "short_call_us": per_call * 1e6,
        "short_call_events": n_short / calls,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=5000)
    ap.add_argument("--rho", type=float, default=7.0)
    ap.add_argument("--rate-exponent", type=int, default=2, choices=zrp.SUPPORTED_RATE_EXPONENTS)
    ap.add_argument("--events", type=float, default=5e7, help="events per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    ap.add_argument("--only", action="store_true", help="skip the informational other exponents")
    args = ap.parse_args(argv)

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    exponents = [args.rate_exponent]
    if not args.only:
        exponents += [p for p in zrp.SUPPORTED_RATE_EXPONENTS if p != args.rate_exponent]
    print(f"ZRP KMC kernel, one core: L = {args.sites}, rho = {args.rho}, ~{args.events:.3g} events x {args.repeats} repeats")
    print(f"{'p':>2} {'boundary':>9} {'events/s':>10} {'ns/event':>9} {'min..max events/s':>22} {'short call':>22}")
    for p in exponents:
        for periodic in (True, False):
            r = bench(args.sites, args.rho, p, periodic, args.events, args.repeats, args.seed)
            lo, hi = r["min_max"]
            short = f"{r['short_call_us']:.0f} us/{r['short_call_events']:.0f} ev"
            print(f"{p:>2} {r['boundary']:>9} {r['events_per_s']:>10.3g} {r['ns_per_event']:>9.1f} {lo:>10.3g}..{hi:<10.3g} {short:>22}")


if __name__ == "__main__":
    main()
