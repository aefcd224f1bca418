"""Finite-size scaling of learned SDEs at the 2-D Ising critical point (seed 002, issue 10 "Ising criticality").

    for L in 16 32 64 128; do
      cgflow run workflows/ising-criticality.yaml --set micro.size=$L --store ising-criticality-L$L.zarr; done
    python benchmarks/bench_ising_criticality_learned.py ising-criticality-L*.zarr [--paths 64 --t-burn 2000
        --t-sample 20000 --every 10]

Every store holds one SDE of z = (m, rho_dw) conditioned on T (variant ``method``,
lambda = K/r; and ``baseline``) for its large size L, trained on partial-evolution
pairs upsampled from L_s = 16 small systems at h = 0, T in {2.25, ..., 2.29}
(``workflows/ising-criticality.yaml``). Here each SDE is rolled out (Euler-Maruyama,
``SDEModel.rollout``, the store's rollout step) from the truth runs' final states,
``--paths`` paths per T (half of them with m and the sign of m flipped: h = 0 is
symmetric), ``--t-burn`` discarded, then m sampled every ``--every`` for
``--t-sample`` (attempts per spin, as the training data). Every path is one
independent run of :func:`cgflow.methods.partial.criticality.moments` (jackknife
SEs); the exponents come from :func:`~cgflow.methods.partial.criticality.exponents`
(<|M|>, chi and dU/dT read at T_c from fits over the T grid), beside the direct
heat-bath reference of ``benchmarks/bench_ising_criticality.py``
(``benchmarks/results/ising_criticality.json``). The burn-in is checked, not
assumed: the integrated autocorrelation time of |m| of the rollouts is stored with
t_burn / tau_int and t_sample / (2 tau_int) per (L, T).

Writes benchmarks/results/ising_criticality_learned.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from cgflow import open_run
from cgflow.methods.partial import criticality as cr
from cgflow.methods.partial.closure_stage import truth_states
from cgflow.methods.partial.stages import load_model

HERE = os.path.dirname(os.path.abspath(__file__))


def rollout_samples(store: str, variant: str, paths: int, t_burn: float, t_sample: float, every: float, seed: int):
    """(L, T grid, m samples (nT, paths, n), tau_int (nT,)) of one store's learned SDE."""
    tree = open_run(store)
    sde = tree["sde"].to_dataset()
    L = int(tree["truth"].attrs["large_size"])
    Ls = int(sde["small_size"].values[0])
    model = load_model(sde, variant, Ls)
    dt = float(tree["rollout"].attrs["dt"])
    T_grid = np.array(tree["truth"].attrs["training_temperatures"], dtype=float)
    start_T = tree["truth"]["temperature"].values
    final = truth_states(tree, Ls)[:, :, -1]  # (start, run, d): the truth runs' last states
    save = int(round(every / dt))
    n_burn = int(round(t_burn / every))
    n = int(round(t_sample / every))
    out = np.empty((len(T_grid), paths, n))
    tau = np.empty(len(T_grid))
    for i, T in enumerate(T_grid):
        z = final[start_T == T].reshape(-1, final.shape[-1])
        z0 = z[np.arange(paths) % len(z)].copy()
        z0[paths // 2:, 0] *= -1.0  # h = 0: both signs of m
        traj = model.rollout(z0, dt, save * (n_burn + n), (seed, L, i), save_every=save,
                             conditions=np.full((paths, 1), T))
        m = traj[:, n_burn + 1:, 0]
        out[i] = np.clip(m, -1.0, 1.0)
        tau[i] = cr.integrated_autocorr_time(np.abs(m), dt=every)["tau_int"]
    return L, T_grid, out, tau


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--variant", default="method")
    ap.add_argument("--paths", type=int, default=64)
    ap.add_argument("--t-burn", type=float, default=2000.0)
    ap.add_argument("--t-sample", type=float, default=20000.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "ising_criticality_learned.json"))
    a = ap.parse_args()
    t0, c0 = time.time(), time.process_time()
    runs = sorted((rollout_samples(s, a.variant, a.paths, a.t_burn, a.t_sample, a.every, a.seed) + (s,)
                   for s in a.stores), key=lambda r: r[0])
    sizes = np.array([r[0] for r in runs])
    T_grid = runs[0][1]
    if any(not np.array_equal(r[1], T_grid) for r in runs):
        raise SystemExit("the stores were trained on different temperature grids")
    samples = [r[2] for r in runs]
    n = min(s.shape[-1] for s in samples)
    mom = cr.moments(np.stack([s[..., :n] for s in samples]), 1, T_grid)  # L enters chi below
    # chi = (L**2/T)(<M**2> - <|M|>**2): moments() was called with L = 1 to stack sizes; rescale per size
    chi = np.asarray(mom.chi) * (sizes**2)[:, None]
    chi_se = np.asarray(mom.chi_se) * (sizes**2)[:, None]
    mom = cr.Moments(abs_m=mom.abs_m, abs_m_se=mom.abs_m_se, m2=mom.m2, m4=mom.m4, chi=chi, chi_se=chi_se,
                     binder=mom.binder, binder_se=mom.binder_se, n_runs=mom.n_runs, n_samples=mom.n_samples)
    # one store: per-T moments only (the exponents need >= 2 sizes)
    result = {"learned": cr.exponents(sizes, T_grid, mom) if len(set(sizes.tolist())) > 1 else None}
    ref_path = os.path.join(HERE, "results", "ising_criticality.json")
    if os.path.exists(ref_path):
        with open(ref_path) as f:
            result["direct"] = json.load(f)["exponents"]
    result.update(
        description="FSS of learned T-conditioned SDEs of (m, rho_dw) (seed 002 method, L_s = 16) at h = 0",
        command="python benchmarks/bench_ising_criticality_learned.py " + " ".join(a.stores),
        config=vars(a), sizes=sizes.tolist(), temperatures=T_grid.tolist(),
        tau_int_abs_m=[r[3].tolist() for r in runs],
        t_burn_over_tau=[(a.t_burn / r[3]).tolist() for r in runs],
        n_eff=[(a.t_sample / (2.0 * r[3])).tolist() for r in runs],
        moments=mom.to_dict(), cpu_s=time.process_time() - c0, wall_s=time.time() - t0)
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    for L, a_m, c in zip(sizes, np.asarray(mom.abs_m), chi):
        print(f"L = {L}: <|m|> {np.round(a_m, 3)}, chi {np.round(c, 2)} at T = {T_grid.tolist()}")
    if result["learned"] is None:
        return
    for name in ("beta_over_nu", "gamma_over_nu", "one_over_nu"):
        e = result["learned"][name]
        d = result.get("direct", {}).get(name, {})
        print(f"{name:14s} learned {e['value']:.4f} +- {e['se']:.4f} (exact {e['exact']}, {e['deviation_in_se']:+.1f} SE)"
              + (f"; direct {d['value']:.4f} +- {d['se']:.4f}" if d else ""))
    for r, tau in zip(runs, result["tau_int_abs_m"]):
        print(f"L = {r[0]}: tau_int(|m|) of the rollouts {np.round(tau, 1)} (t_burn {a.t_burn:g}, t_sample {a.t_sample:g})")
    plot(result, a.json.replace(".json", ".png"))


def plot(result: dict, path: str) -> None:
    from cgflow.plots._common import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    keys = (("abs_m", "<|M|>(T_c)", "beta_over_nu", -1), ("chi", "chi(T_c)", "gamma_over_nu", 1),
            ("dU_dT", "|dU/dT|(T_c)", "one_over_nu", 1))
    for ax, (k, label, expo, sign) in zip(axes, keys):
        for src, style in (("direct", dict(color="k", marker="o", label="direct heat-bath")),
                           ("learned", dict(color="C0", marker="s", label="learned SDE (method)"))):
            if src not in result:
                continue
            per = result[src]["per_size"]
            L = np.array([p["L"] for p in per])
            y = np.abs([p[k] for p in per])
            ax.errorbar(L, y, yerr=[p[k + "_se"] for p in per], ls="", capsize=3, **style)
            e = result[src][expo]
            ax.plot(L, e["amplitude"] * L ** (sign * e["value"]), color=style["color"], lw=0.8,
                    label=f"{expo} = {e['value']:.3f} +- {e['se']:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_title(f"{label}; exact {result['learned'][expo]['exact']}", fontsize=9)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
