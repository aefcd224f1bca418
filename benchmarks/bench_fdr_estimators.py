"""CPU seconds each operator estimator needs for 1% relative standard error on K_bb (seed 000).

Usage::

    python benchmarks/bench_fdr_estimators.py [--configs 24 --samples 64 --sites 5000]

Set-up: the zero-range process g(k) = k^2 at rho = 7, s = 0, L = 5000, N = 40 hats,
closed ends, h L^2 = 1e-3 (the paper's h = 4e-11), quadratic-variation window
0.1 lattice time units, preparation 100 lattice time units (the paper's 4e-6).

What is measured, on one core, side by side:

* c_prep: seconds to prepare one independent configuration (product-measure
  sample + 100 lattice time units of KMC);
* c_e: seconds per sample of estimator e from a prepared configuration (the h
  run and two projections for ``increment``; the window run and a stencil for
  ``quadratic_variation``; one stencil evaluation for ``carre_du_champ``);
* the variance of K_bb / K_exact between configurations (sigma_b^2: the
  variance of the conditional mean) and within one configuration (sigma_w^2),
  by one-way analysis of variance over ``--configs`` configurations with
  ``--samples`` samples each, pooled over the interior nodes.

With R1 configurations and R2 samples each, SE^2 = (sigma_b^2 + sigma_w^2/R2)/R1
and the cost is R1 (c_prep + R2 c_e); the cheapest design has
R2* = sqrt(sigma_w^2 c_prep / (sigma_b^2 c_e)). The script prints the CPU seconds
for 1% at the optimal design and at the paper's nesting (R2 = 800 increments per
preparation), and the ratios between estimators.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cgflow.methods.fdr.ensemble import project
from cgflow.micro import zrp, zrp_hydro


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=24)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--sites", type=int, default=5000)
    ap.add_argument("--elements", type=int, default=40)
    ap.add_argument("--rho", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=2019)
    args = ap.parse_args()
    L, N, p = args.sites, args.elements, 2
    h_lat, window_lat, prep_lat = 1e-3, 0.1, 100.0
    rng = np.random.default_rng(args.seed)
    zrp.warmup()

    k_exact = zrp_hydro.exact_stencil(args.rho, 0.0, N, p)[1]
    nodes = np.arange(2, N - 1)
    samples = {e: np.empty((args.configs, args.samples, len(nodes))) for e in ("increment", "quadratic_variation")}
    cdc = np.empty((args.configs, len(nodes)))
    cost = dict.fromkeys(("prep", "increment", "quadratic_variation", "carre_du_champ"), 0.0)
    jumps = np.zeros(L, dtype=np.int64)
    rho_sites = np.full(L, args.rho)

    for c in range(args.configs):
        t = time.perf_counter()
        eta = zrp.sample_product_measure(rho_sites, p, rng)
        zrp.run_zrp(eta, prep_lat, p, False, rng)
        cost["prep"] += time.perf_counter() - t

        t = time.perf_counter()
        g = eta.astype(float) ** 2
        cdc[c] = zrp_hydro.carre_du_champ_stencil(0.5 * (g[:-1] + g[1:]), L, N, False)[nodes, 1]
        cost["carre_du_champ"] += time.perf_counter() - t

        for r in range(args.samples):
            t = time.perf_counter()
            state = eta.copy()
            p0 = project(state, N, False)
            zrp.run_zrp(state, h_lat, p, False, rng)
            dp = project(state, N, False) - p0
            samples["increment"][c, r] = dp[nodes] ** 2 / (2 * h_lat / L**2)
            cost["increment"] += time.perf_counter() - t

            t = time.perf_counter()
            state = eta.copy()
            jumps[:] = 0
            zrp.run_zrp(state, window_lat, p, False, rng, bond_jumps=jumps)
            qv = zrp_hydro.carre_du_champ_stencil(jumps[: L - 1] / window_lat, L, N, False)
            samples["quadratic_variation"][c, r] = qv[nodes, 1]
            cost["quadratic_variation"] += time.perf_counter() - t

    c_prep = cost["prep"] / args.configs
    print(f"ZRP p = 2, rho = {args.rho}, L = {L}, N = {N}: {args.configs} configurations x {args.samples} samples")
    print(f"preparation (100 lattice time units): {c_prep:.3f} s per configuration")
    rows = {}
    for e in ("increment", "quadratic_variation", "carre_du_champ"):
        if e == "carre_du_champ":
            x = cdc / k_exact  # one sample per configuration: all variance is between configurations
            c_e = cost[e] / args.configs
            sb2, sw2 = x.var(axis=0, ddof=1).mean(), 0.0
            mean = x.mean()
        else:
            x = samples[e] / k_exact  # (configs, samples, nodes)
            c_e = cost[e] / (args.configs * args.samples)
            within = x.var(axis=1, ddof=1).mean()  # sigma_w^2
            between_means = x.mean(axis=1).var(axis=0, ddof=1).mean()  # sigma_b^2 + sigma_w^2 / R2
            sw2, sb2 = within, max(between_means - within / args.samples, 0.0)
            mean = x.mean()
        r2 = 1.0 if sw2 == 0 else max(1.0, np.sqrt(sw2 * c_prep / max(sb2, 1e-300) / c_e))
        r1 = (sb2 + sw2 / r2) / 1e-4
        t_opt = r1 * (c_prep + r2 * c_e)
        r1_paper = (sb2 + sw2 / 800) / 1e-4
        t_paper = r1_paper * (c_prep + 800 * c_e) if e == "increment" else np.nan
        rows[e] = (t_opt, t_paper, sb2, sw2, c_e)
        print(
            f"{e:>20}: mean K_bb/K_exact {mean:.4f}; per-sample {c_e * 1e6:8.1f} us; sigma_b^2 {sb2:.2e}, "
            f"sigma_w^2 {sw2:.2e}; optimal R2 {r2:7.0f}, R1 {r1:8.1f} -> {t_opt:8.1f} CPU s for 1%"
            + (f"; paper nesting R2 = 800: {t_paper:8.1f} CPU s" if e == "increment" else "")
        )
    cdc_t = rows["carre_du_champ"][0]
    print(f"increment / carre du champ: {rows['increment'][0] / cdc_t:.1f}x (optimal nesting), "
          f"{rows['increment'][1] / cdc_t:.1f}x (paper nesting)")
    print(f"quadratic variation / carre du champ: {rows['quadratic_variation'][0] / cdc_t:.1f}x")
    _, _, sb2, sw2, c_e = rows["increment"]
    t_unnested = (sb2 + sw2) / 1e-4 * (c_prep + c_e)  # every increment from its own preparation
    print(f"increment without nesting (one sample per preparation): {t_unnested:.3g} CPU s "
          f"= {t_unnested / cdc_t:.0f}x carre du champ")


if __name__ == "__main__":
    main()
