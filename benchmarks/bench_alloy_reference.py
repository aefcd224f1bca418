"""Direct-KMC ground truth for the NbMoTa learned-SDE comparisons of issue 12 (seed 002; REFERENCE-002 §1c, §6, §9).

    python benchmarks/bench_alloy_reference.py [--quick] [--out benchmarks/results/alloy_reference.json]

One process, one core, sequential. Stand-in barrier model of REFERENCE §9 (lam = 0.5).

1. Large system, 8192 sites (cells = 16), T = 2000 K and 800 K, from random equimolar
   starts, with 8 vacancies (c_v = 1/1024: the vacancy fraction of the paper's 1024-site
   small systems and of its upsampled large states, one vacancy per 1024-site block,
   REFERENCE §3; this is the case the learned SDE is compared with) and with 1 vacancy
   (c_v = 1/8192). The dynamics of dilute vacancies run on the clock t * c_v, so every
   time is also reported as ``t_scaled`` = t * c_v (seconds x vacancy fraction).
   Per case: R trajectories (:func:`cgflow.micro.bcc_alloy.sro_ensemble`), the SRO at a
   grid of times (geometric up to half the run, uniform over the second half), its
   ensemble mean +- SE, the stationary SRO (second half: mean of the R path averages,
   SE across the independent paths and from 4 block averages per path) with the plateau
   check (mean of the last quarter minus the third quarter, paired over paths, within
   3 SE), and the time to approach equilibrium
   (:func:`cgflow.micro.bcc_alloy.equilibration_time` of the ensemble-mean delta_MoMo,
   the dominant component; fractions 1 - 1/e and 0.9; SE by bootstrap over paths).
2. Small system, 1024 sites (cells = 8, 1 vacancy, as the paper), stationary SRO at
   3000, 2000, 1200 and 800 K against the §9 table (which gives 3000, 1200, 800 K, to
   2 decimals).

Durations come from the physics, measured in pilot runs (same kernel, one trajectory
each) before this script was written, then verified here by the stored plateau check:

* 2000 K: delta_MoMo reaches its plateau within ~15 jumps per site (8192 sites, both
  vacancy contents); 300 jumps per site are run (t * c_v = 2.1e-9 s; mean time per jump
  8.7e-13 s with 8 vacancies, 7.0e-12 s with 1).
* 800 K: two stages. Local order forms within ~500 jumps per site (delta_MoMo ~ -1.2),
  then B2-type long-range order (Mo on one simple-cubic sublattice, sublattice
  occupation difference ~0.45) coarsens to a single domain; at 8192 sites delta_MoMo
  reached -1.75 only after ~8500 jumps per site. 8192 sites are run for t * c_v = 7.8e-3 s
  (~19,000 jumps per site with 8 vacancies; the time per jump grows as the alloy orders).
* 1024 sites: 4000 jumps per site at 3000 and 2000 K, 20,000 at 1200 K, 60,000 at
  800 K (where single snapshots fluctuate by +-0.3 in delta_MoMo), second half averaged.

Outputs: ``--out`` (json: per case the time grid, mean/SE curves, stationary estimate,
equilibration times, events per CPU second, wall and CPU time), ``<out stem>_runs.json``
(every path's SRO curves, for bootstrap comparisons) and ``<out stem>.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import numpy as np

from cgflow.micro import bcc_alloy as ba

MOMO = ba.SRO_PAIRS.index("MoMo")
FRACTIONS = (1 - 1 / math.e, 0.9)
#: Large-system runs: (T, vacancies, runs, duration as t * c_v in seconds).
LARGE = ((2000.0, 8, 32, 2.1e-9), (2000.0, 1, 32, 2.1e-9), (800.0, 8, 16, 7.8e-3), (800.0, 1, 8, 7.8e-3))
#: Small-system runs (cells = 8, 1 vacancy): (T, runs, duration in seconds).
SMALL = ((3000.0, 16, 3.5e-6), (2000.0, 16, 2.9e-5), (1200.0, 16, 1.15e-2), (800.0, 16, 30.0))
N_BOOT = 500


def make_rng(*seed) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(seed))))


def time_grid(t_end: float, n_log: int = 100, n_lin: int = 200) -> np.ndarray:
    """0, geometric from t_end/2e4 to t_end/2, uniform over [t_end/2, t_end]."""
    g = np.geomspace(t_end / 2e4, t_end / 2, n_log, endpoint=False)
    return np.concatenate([[0.0], g, np.linspace(t_end / 2, t_end, n_lin)])


def equilibration(times, runs, rng):
    """Equilibration times of the ensemble-mean curves (all six components) and bootstrap SEs over paths."""
    R = runs.shape[0]
    out = {}
    for f in FRACTIONS:
        tau = ba.equilibration_time(times, runs.mean(0), fraction=f)
        boot = np.array([ba.equilibration_time(times, runs[rng.integers(0, R, R)].mean(0), fraction=f)
                         for _ in range(N_BOOT)])
        with np.errstate(invalid="ignore"):
            se = np.nanstd(boot, axis=0, ddof=1)
        out[f"{f:.3f}"] = {"t": tau, "se": se, "bootstrap_nan_fraction": np.isnan(boot).mean(0)}
    return out


def run_case(params, n_vac, n_runs, t_end, seed):
    times = time_grid(t_end)
    rng = make_rng(2026, seed)
    ba.warmup()
    w0, c0 = time.perf_counter(), time.process_time()
    runs, jumps = ba.sro_ensemble(params, n_vac, times, n_runs, rng)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    N = params.sites
    cv = n_vac / N
    st = ba.stationary_estimate(times, runs)
    eq = equilibration(times, runs, make_rng(2026, seed, 1))
    mean = runs.mean(0)
    se = runs.std(0, ddof=1) / math.sqrt(n_runs) if n_runs > 1 else np.full_like(mean, np.nan)
    res = {
        "temperature": params.temperature, "cells": params.cells, "sites": N, "vacancies": n_vac,
        "vacancy_fraction": cv, "lam": params.lam, "runs": n_runs, "t_end": t_end, "t_end_scaled": t_end * cv,
        "jumps_per_site_mean": float(jumps.mean() / N), "jumps_per_site_min": float(jumps.min() / N),
        "events_per_cpu_second": float(jumps.sum() / cpu), "cpu_seconds": cpu, "wall_seconds": wall,
        "mean_time_per_jump_second_half": float(np.mean(t_end / 2 / np.maximum(jumps / 2, 1))),
        "times": times, "times_scaled": times * cv, "sro_mean": mean, "sro_se": se,
        "stationary": st,
        "equilibration_MoMo": {k: {"t": v["t"][MOMO], "t_se": v["se"][MOMO], "t_scaled": v["t"][MOMO] * cv,
                                   "t_scaled_se": v["se"][MOMO] * cv,
                                   "jumps_per_site_approx": v["t"][MOMO] / t_end * jumps.mean() / N,
                                   "bootstrap_nan_fraction": v["bootstrap_nan_fraction"][MOMO]}
                               for k, v in eq.items()},
        "equilibration_all_components": {k: {"t": v["t"], "se": v["se"]} for k, v in eq.items()},
    }
    print(f"  T = {params.temperature:g} K, {N} sites, {n_vac} vac, {n_runs} runs x {jumps.mean() / N:.0f} jumps/site "
          f"(t_end {t_end:.3e} s): {jumps.sum() / cpu:.3e} events/s, cpu {cpu:.1f} s, wall {wall:.1f} s", flush=True)
    print("    stationary", np.round(st["mean"], 3), "+-", np.round(st["se"], 3),
          "(blocks", np.round(st["se_blocks"], 3), ") plateau", st["plateau"], flush=True)
    e = res["equilibration_MoMo"]
    print("    t_eq(MoMo):", {k: f"{v['t']:.3e}+-{v['t_se']:.1e} s (x c_v {v['t_scaled']:.3e})" for k, v in e.items()},
          flush=True)
    return res, runs


def clean(x):
    """json-ready: arrays to lists, NaN/inf to None, numpy scalars to python."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def figure(large, small, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, T in zip(axes[:2], (2000.0, 800.0)):
        for res in (r for r in large if r["temperature"] == T):
            ls = "-" if res["vacancies"] > 1 else "--"
            x = np.asarray(res["times_scaled"])
            for k, name in enumerate(ba.SRO_PAIRS):
                m, s = np.asarray(res["sro_mean"])[:, k], np.asarray(res["sro_se"])[:, k]
                lab = f"{name}" if res["vacancies"] > 1 else None
                ax.plot(x[1:], m[1:], ls, color=colors[k], lw=1.2, label=lab)
                if res["vacancies"] > 1:
                    ax.fill_between(x[1:], (m - s)[1:], (m + s)[1:], color=colors[k], alpha=0.25, lw=0)
            if res["vacancies"] > 1:
                for key, style in (("0.632", ":"), ("0.900", "-.")):
                    te = res["equilibration_MoMo"][key]["t_scaled"]
                    if te:
                        ax.axvline(te, color="k", ls=style, lw=0.8,
                                   label=f"t_eq MoMo ({'1-1/e' if key == '0.632' else '90%'})")
        tab = ba.EQUILIBRIUM_SRO_TABLE.get(int(T))
        if tab:
            for k in range(6):
                ax.plot([ax.get_xlim()[1]], [tab[k]], "o", mfc="none", color=colors[k], ms=8, clip_on=False)
        ax.set_xscale("log")
        ax.set_xlabel("t x vacancy fraction (s)")
        ax.set_ylabel("SRO delta_ab")
        ax.set_title(f"direct KMC, 8192 sites, {T:g} K (solid: 8 vac +-SE, dashed: 1 vac)"
                     + ("; o: §9 table" if tab else ""), fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    Ts = np.array([r["temperature"] for r in small])
    for k, name in enumerate(ba.SRO_PAIRS):
        m = np.array([r["stationary"]["mean"][k] for r in small])
        s = np.array([r["stationary"]["se"][k] for r in small])
        ax.errorbar(Ts, m, yerr=s, fmt="o-", color=colors[k], capsize=3, ms=4, label=f"{name} 1024 sites")
        tT = sorted(ba.EQUILIBRIUM_SRO_TABLE)
        ax.plot(tT, [ba.EQUILIBRIUM_SRO_TABLE[t][k] for t in tT], "x", color=colors[k], ms=9, mew=2)
        lg = [r for r in large if r["vacancies"] > 1]
        ax.errorbar([r["temperature"] + 40 for r in lg], [r["stationary"]["mean"][k] for r in lg],
                    yerr=[r["stationary"]["se"][k] for r in lg], fmt="s", mfc="none", color=colors[k], capsize=3)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("stationary SRO")
    ax.set_title("stationary SRO: o-1024 sites (1 vac), s 8192 sites (8 vac), x §9 table", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/alloy_reference.json")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 runs, durations / 50")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w0, c0 = time.perf_counter(), time.process_time()
    q = 50.0 if args.quick else 1.0
    large, small, raw = [], [], {}
    print("large system, cells = 16 (8192 sites)", flush=True)
    for i, (T, nv, R, ts) in enumerate(LARGE):
        p = ba.BccAlloyParams(T, 16)
        res, runs = run_case(p, nv, 2 if args.quick else R, ts / (nv / p.sites) / q, 100 + i)
        large.append(res)
        raw[f"large_{T:g}K_{nv}vac"] = {"times": res["times"], "sro": np.round(runs, 5)}
    print("small system, cells = 8 (1024 sites), 1 vacancy", flush=True)
    for i, (T, R, d) in enumerate(SMALL):
        p = ba.BccAlloyParams(T, 8)
        res, runs = run_case(p, 1, 2 if args.quick else R, d / q, 200 + i)
        tab = ba.EQUILIBRIUM_SRO_TABLE.get(int(T))
        if tab is not None:
            diff = res["stationary"]["mean"] - np.array(tab)
            res["table_section9"] = np.array(tab)
            res["minus_table"] = diff
            res["z_vs_table"] = diff / res["stationary"]["se"]
            res["within_4se_plus_rounding"] = np.abs(diff) <= 4 * res["stationary"]["se"] + 0.005
            print("    §9 table", tab, "diff", np.round(diff, 3), "z", np.round(res["z_vs_table"], 1), flush=True)
        small.append(res)
        raw[f"small_{T:g}K_1vac"] = {"times": res["times"], "sro": np.round(runs, 5)}
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    summary = {
        "what": "direct KMC reference for issue 12 (NbMoTa, stand-in barrier model of REFERENCE-002 §9)",
        "description": ba.DESCRIPTION,
        "sro_pairs": ba.SRO_PAIRS,
        "command": "python benchmarks/bench_alloy_reference.py" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "time_scaled_definition": "t_scaled = t * n_vacancies / sites (seconds x vacancy fraction)",
        "equilibration_definition": "cgflow.micro.bcc_alloy.equilibration_time: first time the ensemble-mean "
                                    "delta_MoMo covers the fraction (1-1/e or 0.9) of its way from its t=0 value to "
                                    "its stationary value (time average over the second half); bootstrap SE over paths",
        "stationary_definition": "cgflow.micro.bcc_alloy.stationary_estimate over the second half of each run",
        "large": large,
        "small": small,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }
    out.write_text(json.dumps(clean(summary), indent=1))
    runs_path = out.with_name(out.stem + "_runs.json")
    runs_path.write_text(json.dumps(clean(raw)))
    png = out.with_suffix(".png")
    figure(clean(large), clean(small), png)
    print(f"wrote {out}, {runs_path}, {png}; wall {wall:.0f} s, cpu {cpu:.0f} s", flush=True)


if __name__ == "__main__":
    main()
