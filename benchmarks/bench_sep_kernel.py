"""Single-core throughput of the SEP KMC kernel (cgflow.micro.sep.run_sep), next to run_zrp.

    python benchmarks/bench_sep_kernel.py [--sites 5000 --rho 0.3 0.5 --events 2e7 --zrp-rho 0.3 7]

For every SEP density the lattice is drawn from the Bernoulli product measure, the
JIT is warmed up, and ``run_sep`` is timed over about ``--events`` events per
repeat on one core, for periodic and closed boundaries. For comparison the same
is done for ``run_zrp`` (p = 0, 1, 2) at the ``--zrp-rho`` densities (by default
the SEP's 0.3 and the paper's 7). Reported: median events/s and ns/event, and the
cost of a short call (h L**2 = 1 lattice time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from cgflow.micro import sep, zrp


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))


def _time(run, eta, rate: float, events: float, repeats: int, short: float = 1.0, calls: int = 200) -> dict:
    run(eta, 1e6 / rate)  # JIT warm-up (or cache load) and a short relaxation
    duration = events / rate
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = run(eta, duration)
        rates.append(n / (time.perf_counter() - t0))
    n_short = 0
    t0 = time.perf_counter()
    for _ in range(calls):
        n_short += run(eta, short)
    per_call = (time.perf_counter() - t0) / calls
    med = statistics.median(rates)
    return {"events_per_s": med, "ns_per_event": 1e9 / med, "min_max": (min(rates), max(rates)),
            "short_call_us": per_call * 1e6, "short_call_events": n_short / calls}


def bench_sep(sites, rho, periodic, events, repeats, seed) -> dict:
    rng = make_rng(seed)
    eta = sep.sample_product_measure(np.full(sites, rho), rng)
    rate = sep.expected_event_rate(np.full(sites, rho), periodic)
    return _time(lambda e, d: sep.run_sep(e, d, periodic, rng), eta, rate, events, repeats)


def bench_zrp(sites, rho, p, periodic, events, repeats, seed) -> dict:
    rng = make_rng(seed)
    eta = zrp.sample_product_measure(np.full(sites, rho), p, rng)
    rate = float(zrp.fugacity(rho, p)) * sites
    return _time(lambda e, d: zrp.run_zrp(e, d, p, periodic, rng), eta, rate, events, repeats)


def _row(label: str, r: dict) -> str:
    lo, hi = r["min_max"]
    short = f"{r['short_call_us']:.1f} us/{r['short_call_events']:.0f} ev"
    return f"{label:<22} {r['events_per_s']:>10.3g} {r['ns_per_event']:>9.1f} {lo:>10.3g}..{hi:<10.3g} {short:>20}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=5000)
    ap.add_argument("--rho", type=float, nargs="+", default=[0.3, 0.5], help="SEP densities")
    ap.add_argument("--zrp-rho", type=float, nargs="*", default=[0.3, 7.0], help="ZRP densities (none: skip)")
    ap.add_argument("--events", type=float, default=2e7, help="events per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args(argv)

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"KMC kernels, one core: L = {args.sites}, ~{args.events:.3g} events x {args.repeats} repeats")
    print(f"{'kernel':<22} {'events/s':>10} {'ns/event':>9} {'min..max events/s':>22} {'short call (1 lt)':>20}")
    for rho in args.rho:
        for periodic in (True, False):
            r = bench_sep(args.sites, rho, periodic, args.events, args.repeats, args.seed)
            print(_row(f"SEP rho={rho:g} {'ring' if periodic else 'closed'}", r), flush=True)
    for rho in args.zrp_rho:
        for p in zrp.SUPPORTED_RATE_EXPONENTS:
            for periodic in (True, False):
                r = bench_zrp(args.sites, rho, p, periodic, args.events, args.repeats, args.seed)
                print(_row(f"ZRP p={p} rho={rho:g} {'ring' if periodic else 'closed'}", r), flush=True)


if __name__ == "__main__":
    main()
