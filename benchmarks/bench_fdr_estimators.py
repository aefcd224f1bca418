"""CPU seconds each operator estimator needs for 1% relative standard error on K_bb (seed 000).

Usage::

    python benchmarks/bench_fdr_estimators.py [--configs 24 --samples 64 --sites 5000]
        [--out results.json] [--figure costs.png]

Set-up: the zero-range process g(k) = k^2 at rho = 7, s = 0, L = 5000, N = 40 hats,
closed ends, h L^2 = 1e-3 (the paper's h = 4e-11), quadratic-variation window
0.1 lattice time units, preparation 100 lattice time units (the paper's 4e-6).

What is measured, on one core, side by side (CPU seconds of this process,
``time.process_time``; the KMC and the projections are single-threaded):

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

Outputs (only when asked): ``--out`` writes every measured and derived number
as JSON; ``--figure`` draws the relative SE of K_bb against CPU seconds on
log-log axes (:func:`cgflow.plots.estimator_costs`), one line per design:
increment at the paper's nesting R2 = 800 and at the optimal R2, increment
without nesting (R2 = 1), quadratic variation (optimal R2), carre du champ
(R2 = 1), each SE = sqrt(v (c_prep + R2 c_e) / C) from one preparation on,
v = sigma_b^2 + sigma_w^2/R2, with the 1% line marked. The committed
``benchmarks/results/fdr_estimators.{json,png}`` are a default run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from cgflow.methods.fdr.ensemble import project
from cgflow.micro import zrp, zrp_hydro


TARGET = 0.01  # relative standard error of K_bb
PAPER_R2 = 800  # increments per preparation in the paper's nested scheme


def design(label: str, estimator: str, r2: float, c_prep: float, c_e: float, sb2: float, sw2: float) -> dict:
    """One (estimator, nesting) design: SE**2 = v/R1, v = sigma_b^2 + sigma_w^2/R2, cost R1 (c_prep + R2 c_e)."""
    v = sb2 + sw2 / r2
    c_unit = c_prep + r2 * c_e  # CPU seconds per preparation with its R2 samples
    r1 = v / TARGET**2
    return {
        "label": label,
        "estimator": estimator,
        "r2": float(r2),
        "cpu_s_per_preparation": c_unit,
        "variance_per_preparation": v,  # relative variance of K_bb of one preparation's mean
        "r1_for_target": r1,
        "cpu_s_for_target": r1 * c_unit,
    }


def optimal_r2(sb2: float, sw2: float, c_prep: float, c_e: float) -> float:
    """R2* = sqrt(sigma_w^2 c_prep / (sigma_b^2 c_e)), but never beyond the R2 at which one preparation
    (R1 = 1) already reaches the target (an unresolved sigma_b^2 = 0 would make R2* infinite), nor below 1."""
    if sw2 == 0:
        return 1.0
    r2 = np.sqrt(sw2 * c_prep / (sb2 * c_e)) if sb2 > 0 else np.inf
    if sb2 < TARGET**2:
        r2 = min(r2, sw2 / (TARGET**2 - sb2))
    return float(max(1.0, r2))


def anova(x: np.ndarray) -> tuple[float, float]:
    """(sigma_b^2, sigma_w^2) of samples x (configs, samples, nodes), pooled over nodes; sigma_b^2 >= 0."""
    within = x.var(axis=1, ddof=1).mean()  # sigma_w^2
    between_means = x.mean(axis=1).var(axis=0, ddof=1).mean()  # sigma_b^2 + sigma_w^2 / R2
    return max(between_means - within / x.shape[1], 0.0), within


def bootstrap_se(x: np.ndarray, stat, rng: np.random.Generator, n: int = 200) -> float:
    """Standard error of stat(x) by resampling configurations (axis 0) with replacement."""
    idx = rng.integers(0, x.shape[0], size=(n, x.shape[0]))
    return float(np.std([stat(x[i]) for i in idx], ddof=1))


def measure(args) -> dict:
    L, N, p = args.sites, args.elements, 2
    h_lat, window_lat, prep_lat = 1e-3, 0.1, 100.0
    rng = np.random.default_rng(args.seed)
    zrp.warmup()
    clock = time.process_time
    cpu0, wall0 = time.process_time(), time.perf_counter()

    k_exact = zrp_hydro.exact_stencil(args.rho, 0.0, N, p)[1]
    nodes = np.arange(2, N - 1)
    samples = {e: np.empty((args.configs, args.samples, len(nodes))) for e in ("increment", "quadratic_variation")}
    cdc = np.empty((args.configs, len(nodes)))
    cost = dict.fromkeys(("prep", "increment", "quadratic_variation", "carre_du_champ"), 0.0)
    jumps = np.zeros(L, dtype=np.int64)
    rho_sites = np.full(L, args.rho)

    for c in range(args.configs):
        t = clock()
        eta = zrp.sample_product_measure(rho_sites, p, rng)
        zrp.run_zrp(eta, prep_lat, p, False, rng)
        cost["prep"] += clock() - t

        t = clock()
        g = eta.astype(float) ** 2
        cdc[c] = zrp_hydro.carre_du_champ_stencil(0.5 * (g[:-1] + g[1:]), L, N, False)[nodes, 1]
        cost["carre_du_champ"] += clock() - t

        for r in range(args.samples):
            t = clock()
            state = eta.copy()
            p0 = project(state, N, False)
            zrp.run_zrp(state, h_lat, p, False, rng)
            dp = project(state, N, False) - p0
            samples["increment"][c, r] = dp[nodes] ** 2 / (2 * h_lat / L**2)
            cost["increment"] += clock() - t

            t = clock()
            state = eta.copy()
            jumps[:] = 0
            zrp.run_zrp(state, window_lat, p, False, rng, bond_jumps=jumps)
            qv = zrp_hydro.carre_du_champ_stencil(jumps[: L - 1] / window_lat, L, N, False)
            samples["quadratic_variation"][c, r] = qv[nodes, 1]
            cost["quadratic_variation"] += clock() - t

    c_prep = cost["prep"] / args.configs
    estimators = {}
    for e in ("increment", "quadratic_variation", "carre_du_champ"):
        boot = np.random.default_rng(args.seed + 1)
        if e == "carre_du_champ":
            x = cdc / k_exact  # one sample per configuration: all variance is between configurations
            c_e = cost[e] / args.configs
            sb2, sw2 = x.var(axis=0, ddof=1).mean(), 0.0
            sb2_se = bootstrap_se(x, lambda y: y.var(axis=0, ddof=1).mean(), boot)
        else:
            x = samples[e] / k_exact  # (configs, samples, nodes)
            c_e = cost[e] / (args.configs * args.samples)
            sb2, sw2 = anova(x)
            sb2_se = bootstrap_se(x, lambda y: anova(y)[0], boot)
        estimators[e] = {
            "mean_K_bb_over_exact": float(x.mean()),
            "cpu_s_per_sample": c_e,
            "sigma_b2": float(sb2),
            "sigma_b2_bootstrap_se": sb2_se,
            "sigma_w2": float(sw2),
            "r2_optimal": optimal_r2(sb2, sw2, c_prep, c_e),
        }

    inc, qv, cd = (estimators[e] for e in ("increment", "quadratic_variation", "carre_du_champ"))
    designs = [
        design(f"increment, paper nesting (R2 = {PAPER_R2})", "increment", PAPER_R2, c_prep,
               inc["cpu_s_per_sample"], inc["sigma_b2"], inc["sigma_w2"]),
        design(f"increment, optimal nesting (R2 = {inc['r2_optimal']:.0f})", "increment", inc["r2_optimal"], c_prep,
               inc["cpu_s_per_sample"], inc["sigma_b2"], inc["sigma_w2"]),
        design("increment, unnested (R2 = 1)", "increment", 1.0, c_prep, inc["cpu_s_per_sample"], inc["sigma_b2"],
               inc["sigma_w2"]),
        design(f"quadratic variation (R2 = {qv['r2_optimal']:.0f})", "quadratic_variation", qv["r2_optimal"], c_prep,
               qv["cpu_s_per_sample"], qv["sigma_b2"], qv["sigma_w2"]),
        design("carre du champ (R2 = 1)", "carre_du_champ", 1.0, c_prep, cd["cpu_s_per_sample"], cd["sigma_b2"],
               cd["sigma_w2"]),
    ]  # fmt: skip
    for e, d in (("increment", designs[1]), ("quadratic_variation", designs[3]), ("carre_du_champ", designs[4])):
        estimators[e]["r1_optimal"] = d["r1_for_target"]
        estimators[e]["cpu_s_for_target_optimal"] = d["cpu_s_for_target"]
    inc["cpu_s_for_target_paper_nesting"] = designs[0]["cpu_s_for_target"]
    inc["cpu_s_for_target_unnested"] = designs[2]["cpu_s_for_target"]
    t_cdc = cd["cpu_s_for_target_optimal"]
    return {
        "benchmark": "benchmarks/bench_fdr_estimators.py",
        "description": "CPU seconds each operator estimator needs for a relative standard error of K_bb (seed 000)",
        "setup": {
            "model": "zero-range process g(k) = k^2, closed ends",
            "rho": args.rho, "slope": 0.0, "sites": L, "elements": N, "rate_exponent": p,
            "h_lattice": h_lat, "window_lattice": window_lat, "preparation_lattice": prep_lat,
            "configs": args.configs, "samples": args.samples, "seed": args.seed,
            "nodes": "interior nodes 2..N-2, pooled",
            "clock": "time.process_time (CPU seconds of this process, one core)",
            "target_relative_se": TARGET,
            "K_exact_bb": float(k_exact),
        },  # fmt: skip
        "cpu_s_per_preparation": c_prep,
        "estimators": estimators,
        "designs": designs,
        "ratios_to_carre_du_champ": {
            "increment_optimal": inc["cpu_s_for_target_optimal"] / t_cdc,
            "increment_paper_nesting": inc["cpu_s_for_target_paper_nesting"] / t_cdc,
            "increment_unnested": inc["cpu_s_for_target_unnested"] / t_cdc,
            "quadratic_variation_optimal": qv["cpu_s_for_target_optimal"] / t_cdc,
        },
        "run": {
            "cpu_seconds": time.process_time() - cpu0,
            "wall_seconds": time.perf_counter() - wall0,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
    }


def report(res: dict) -> None:
    s = res["setup"]
    print(f"ZRP p = 2, rho = {s['rho']}, L = {s['sites']}, N = {s['elements']}: {s['configs']} configurations "
          f"x {s['samples']} samples (CPU seconds, one core)")
    print(f"preparation (100 lattice time units): {res['cpu_s_per_preparation']:.3f} s per configuration")
    for e, r in res["estimators"].items():
        print(
            f"{e:>20}: mean K_bb/K_exact {r['mean_K_bb_over_exact']:.4f}; per-sample {r['cpu_s_per_sample'] * 1e6:8.1f} us; "
            f"sigma_b^2 {r['sigma_b2']:.2e} +- {r['sigma_b2_bootstrap_se']:.1e}, sigma_w^2 {r['sigma_w2']:.2e}; "
            f"optimal R2 {r['r2_optimal']:7.0f}, "
            f"R1 {r['r1_optimal']:8.1f} -> {r['cpu_s_for_target_optimal']:8.1f} CPU s for 1%"
            + (f"; paper nesting R2 = 800: {r['cpu_s_for_target_paper_nesting']:8.1f} CPU s" if e == "increment" else "")
        )
    q = res["ratios_to_carre_du_champ"]
    print(f"increment / carre du champ: {q['increment_optimal']:.1f}x (optimal nesting), "
          f"{q['increment_paper_nesting']:.1f}x (paper nesting)")
    print(f"quadratic variation / carre du champ: {q['quadratic_variation_optimal']:.1f}x")
    print(f"increment without nesting (one sample per preparation): "
          f"{res['estimators']['increment']['cpu_s_for_target_unnested']:.3g} CPU s = {q['increment_unnested']:.0f}x carre du champ")
    print("(sigma_b^2 of the increment and of the quadratic variation is the variance of their conditional mean "
          "given the configuration, ~ that of the carre du champ; their ANOVA estimates carry the bootstrap SE shown)")
    print()
    print(f"{'design':>40} {'R2':>7} {'CPU s/prep':>11} {'rel var/prep':>13} {'R1 for 1%':>10} {'CPU s for 1%':>13}")
    for d in res["designs"]:
        print(f"{d['label']:>40} {d['r2']:>7.0f} {d['cpu_s_per_preparation']:>11.4g} {d['variance_per_preparation']:>13.3g} "
              f"{d['r1_for_target']:>10.4g} {d['cpu_s_for_target']:>13.4g}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=24)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--sites", type=int, default=5000)
    ap.add_argument("--elements", type=int, default=40)
    ap.add_argument("--rho", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--out", type=Path, help="write the results as JSON to this path")
    ap.add_argument("--figure", type=Path, help="write the SE-versus-CPU-seconds figure (PNG) to this path")
    args = ap.parse_args(argv)
    res = measure(args)
    report(res)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.figure:
        from cgflow.plots import estimator_costs

        args.figure.parent.mkdir(parents=True, exist_ok=True)
        import matplotlib.pyplot as plt

        plt.close(estimator_costs(res, args.figure))
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
