"""What the training pairs of ``ising-criticality`` can say about the critical law of m (seed 002, issue 10).

    python benchmarks/bench_ising_criticality_data.py ising-criticality-L16.zarr [--bins 16 --bootstrap 400]

The learned-SDE finite-size scaling (``bench_ising_criticality_learned.py``) missed
already at L = 16 = L_s, where K = 1 and the pairs are plain heat-bath increments of
the large system itself. This script separates the data from the fit. It needs every
tile evolved per pair (K = 1, or ``partial.tiles_per_pair: all``): then an increment
has the large system's drift and covariance (lambda = K/r = 1). For
every training temperature it estimates, from the pairs of small-system snapshots
(``source`` 0; the random configurations of ``partial.random_fraction`` sit far from
the critical manifold) and with the symmetry m -> -m of h = 0, the drift
a(|m|) = E[d|m|]/dt and the diffusion D(|m|) = Var[d|m|]/dt in ``--bins`` bins of |m|,
and the stationary law of that one-dimensional diffusion (Fokker-Planck, zero flux):
p(|m|) ∝ exp(∫ 2a/D) / D, hence <|m|> and chi = N (<m²> - <|m|>²). ``--bootstrap``
resamples of the pairs give 95 % intervals. Beside it: the direct heat-bath values
(``benchmarks/results/ising_criticality.json``) and the learned SDE's
(``ising_criticality_learned.json``) at the same L and T.

It also states the sensitivity that makes the critical law hard to learn: an error
δa of the drift, uniform over a range Δm, moves log p by 2 N δa Δm / (N D). The
script reports, per T, the drift error that moves log p by 0.5 over the range
between |m| = 0 and the peak (at least 0.5), and the number of pairs per bin that would estimate
the drift that well (from the measured increment variance), against the number the
store holds. Both grow ∝ N at fixed N D, so the requirement worsens with L.

Writes benchmarks/results/ising_criticality_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from cgflow import open_run

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def binned_moments(am, da, dt, edges):
    """Per bin of |m|: count, drift E[d|m|]/dt, diffusion Var[d|m|]/dt and the drift's standard error."""
    idx = np.clip(np.digitize(am, edges) - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    n = np.bincount(idx, minlength=nb).astype(float)
    s1 = np.bincount(idx, weights=da, minlength=nb)
    s2 = np.bincount(idx, weights=da * da, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = s2 / n - mean**2
    return n, mean / dt, var / dt, np.sqrt(var / np.maximum(n - 1, 1)) / dt


def stationary_law(centres, drift, diffusion, n_sites, grid=400):
    """<|m|> and chi of the 1-D diffusion with these binned coefficients (a(0) = 0 by symmetry)."""
    g = np.linspace(0.0, centres[-1], grid)
    a = np.interp(g, np.r_[0.0, centres], np.r_[0.0, drift])
    D = np.interp(g, centres, diffusion)
    phi = np.cumsum(2.0 * a / D) * (g[1] - g[0])
    p = np.exp(phi - phi.max()) / D
    p /= p.sum()
    mean = float((p * g).sum())
    return mean, float(n_sites * ((p * g * g).sum() - mean**2)), float(g[np.argmax(p)])


def direct_values(path, L):
    """{T: (abs_m, abs_m_se, chi, chi_se)} of the direct heat-bath reference at size L."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        ref = json.load(f)
    return {round(p["T"], 4): (p["abs_m"], p["abs_m_se"], p["chi"], p["chi_se"])
            for p in ref["per_point"] if int(p["L"]) == L}


def learned_values(path, L):
    """{T: (abs_m, chi)} of the learned SDE's rollouts at size L (index by the benchmark's T grid)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        res = json.load(f)
    sizes = list(res["sizes"])
    if L not in sizes:
        return {}
    moments = res["moments"]
    i = sizes.index(L)
    return {round(T, 4): (moments["abs_m"][i][j], moments["chi"][i][j])
            for j, T in enumerate(res["temperatures"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", help="an ising-criticality store (every tile evolved per pair)")
    ap.add_argument("--bins", type=int, default=16)
    ap.add_argument("--bootstrap", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--direct", default=os.path.join(RESULTS, "ising_criticality.json"))
    ap.add_argument("--learned", default=os.path.join(RESULTS, "ising_criticality_learned.json"))
    ap.add_argument("--json", default=os.path.join(RESULTS, "ising_criticality_data.json"))
    args = ap.parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()

    tree = open_run(args.store)
    pairs = tree["pairs"].to_dataset().isel(small_size=0).load()
    L = int(pairs.attrs["large_size"])
    K = int(pairs["n_tiles"].values)
    r = int(pairs["tiles_per_pair"].values) if "tiles_per_pair" in pairs.coords else 1
    if r != K:
        raise SystemExit(f"{args.store}: {r} of K = {K} tiles evolved per pair; this check needs every tile evolved "
                         "(partial.tiles_per_pair: all, or K = 1): then the pairs' increments have the large "
                         "system's mean and covariance (lambda = K/r = 1)")
    N = int(pairs.attrs["n_spins"])
    T = pairs["conditions"].sel(condition="temperature").values
    keep = pairs["source"].values == 0
    z0 = pairs["z0"].sel(obs="m").values
    dz = pairs["z1"].sel(obs="m").values - z0
    dt = pairs["dt"].values
    sign = np.where(z0 < 0, -1.0, 1.0)
    am, da = np.abs(z0), dz * sign
    edges = np.linspace(0.0, 1.0, args.bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    direct = direct_values(args.direct, L)
    learned = learned_values(args.learned, L)
    rng = np.random.default_rng(args.seed)

    rows = []
    for temp in np.unique(T):
        sel = keep & (T == temp)
        step = float(np.mean(dt[sel]))
        n, a, D, se = binned_moments(am[sel], da[sel], step, edges)
        ok = n >= 10
        if not ok.all():  # the stationary law needs every bin up to the largest |m| visited
            last = np.argmin(ok) if not ok[0] else len(ok)
            ok[last:] = False
        m_abs, chi, mode = stationary_law(centres[ok], a[ok], D[ok], N)
        boot = []
        idx = np.flatnonzero(sel)
        for _ in range(args.bootstrap):
            j = rng.choice(idx, idx.size)
            nb_, ab, Db, _ = binned_moments(am[j], da[j], step, edges)
            if np.all(nb_[ok] >= 2):
                boot.append(stationary_law(centres[ok], ab[ok], Db[ok], N)[:2])
        boot = np.array(boot)
        # the drift error that moves log p by 0.5 between |m| = 0 and the mode, and the pairs per bin it needs
        inside = ok & (centres <= max(mode, 0.5))
        ND = float(np.median(N * D[inside]))
        span = max(mode, 0.5)  # |m| = 0 to the peak; at least 0.5, as a noisy law may peak near 0
        delta_a = 0.5 * ND / (2.0 * N * span)
        sd_rate = np.sqrt(np.median(D[ok]) / step)  # s.d. of one pair's d|m|/dt
        need = float((sd_rate / delta_a) ** 2)
        key = round(float(temp), 4)
        row = {
            "T": float(temp), "pairs": int(sel.sum()), "pairs_per_bin_median": float(np.median(n[ok])),
            "drift_se_median": float(np.median(se[ok])),
            "binned_abs_m": m_abs, "binned_abs_m_ci": np.percentile(boot[:, 0], [2.5, 97.5]).tolist(),
            "binned_chi": chi, "binned_chi_ci": np.percentile(boot[:, 1], [2.5, 97.5]).tolist(),
            "binned_mode": mode, "N_D_median": ND, "drift_error_for_half_log_p": delta_a,
            "pairs_per_bin_needed": need,
        }
        if key in direct:
            row.update(direct_abs_m=direct[key][0], direct_abs_m_se=direct[key][1],
                       direct_chi=direct[key][2], direct_chi_se=direct[key][3])
        if key in learned:
            row.update(learned_abs_m=learned[key][0], learned_chi=learned[key][1])
        rows.append(row)
        print(f"T = {temp:.2f}: <|m|> binned {m_abs:.3f} [{row['binned_abs_m_ci'][0]:.3f}, "
              f"{row['binned_abs_m_ci'][1]:.3f}]  direct {row.get('direct_abs_m', np.nan):.3f}  "
              f"learned {row.get('learned_abs_m', np.nan):.3f} | chi binned {chi:.2f} "
              f"[{row['binned_chi_ci'][0]:.2f}, {row['binned_chi_ci'][1]:.2f}]  direct "
              f"{row.get('direct_chi', np.nan):.2f}  learned {row.get('learned_chi', np.nan):.2f} | "
              f"drift s.e. {row['drift_se_median']:.4f}, needed {delta_a:.1e}: "
              f"{need:.0f} pairs per bin (have {row['pairs_per_bin_median']:.0f})")
    out = {
        "description": __doc__.split("\n")[0],
        "command": "python benchmarks/bench_ising_criticality_data.py " + " ".join(argv or []) if argv else
        "python " + " ".join([os.path.relpath(__file__)] + list(os.sys.argv[1:])),
        "store": os.path.abspath(args.store), "L": L, "n_spins": N, "bins": args.bins,
        "bootstrap": args.bootstrap, "seed": args.seed, "per_temperature": rows,
        "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
