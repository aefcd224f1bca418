"""Direct-simulation FSS reference for the 2-D Ising critical point (seed 002, issue 10 "Ising criticality").

    python benchmarks/bench_ising_criticality.py [--sizes 8,16,32,48,64 --runs 8 --n-tau 1000 --eq-tau 20]

REFERENCE-002 §1 "Phase transition" / §9: heat-bath Glauber (continuous time,
``glauber.run_time``, time in attempts per spin) at h = 0 on L x L tori, T in the
authors' grid {2.25, ..., 2.29}; <|M|>, chi, U and dU/dT at T_c = 2.269185 and the
exponents beta/nu, gamma/nu, 1/nu (exact 1/8, 7/4, 1).

Times from the physics. Critical slowing down: tau(L) ~ tau_16 (L/16)**z with
z = 2.17 (Glauber). A pilot at L = 16, T = 2.27 measures tau_16 (integrated
autocorrelation time of |m|); then for every (L, T)

* equilibration (hot start, discarded): eq_tau x tau_prior(L) per run,
* sampling: n_tau x tau_prior(L) in total, split over ``--runs`` independent runs,
  recorded every tau_prior/50.

The measured tau_int of |m| (and of the energy) at every (L, T) is stored beside
the results with the ratios t_eq/tau_int and N_eff = t_sample/(2 tau_int), so the
choice is checked, not assumed. SEs are jackknife over independent runs
(``cgflow.methods.partial.criticality``). Writes
benchmarks/results/ising_criticality.json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

from cgflow.methods.partial import criticality as cr
from cgflow.micro import glauber as g

Z_GLAUBER = 2.17
T_GRID = (2.25, 2.26, 2.27, 2.28, 2.29)
HERE = os.path.dirname(os.path.abspath(__file__))


def make_rng(*seed) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(seed))))


def simulate(L, T, runs, t_eq, t_sample, dt, seed, iT):
    """(m, e) of shape (runs, n): hot start, t_eq discarded, then samples every dt for t_sample."""
    p = g.GlauberParams("ising2d", T, 0.0, L)
    n = max(4, int(round(t_sample / dt)))
    times = t_eq + dt * np.arange(n)
    m = np.empty((runs, n))
    e = np.empty((runs, n))
    for r in range(runs):
        rng = make_rng(seed, L, iT, r)
        s = g.random_spins(1, L, rng)[0]
        _, obs = g.run_time(s, times, p, rng)
        m[r] = obs[:, 0]
        e[r] = 4.0 * obs[:, 1] - 2.0  # energy per spin at h = 0: -(bond sum)/N = 4 rho_dw - 2
    return m, e


def pilot_tau(seed, runs=8):
    L, T = 16, 2.27
    m, _ = simulate(L, T, runs, 2000.0, 20000.0, 1.0, seed + 10_000, 99)
    return cr.integrated_autocorr_time(np.abs(m), dt=1.0)


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ex = res["exponents"]
    per = ex["per_size"]
    L = np.array([p["L"] for p in per])
    panels = [("abs_m", "abs_m_se", r"$\langle|M|\rangle(T_c)$", "beta_over_nu", -1.0),
              ("chi", "chi_se", r"$\chi(T_c)$", "gamma_over_nu", 1.0),
              ("dU_dT", "dU_dT_se", r"$|dU/dT|(T_c)$", "one_over_nu", 1.0)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    Lf = np.geomspace(L.min() * 0.9, L.max() * 1.1, 50)
    fitted = np.array(ex["sizes_fitted"])
    for ax, (k, kse, lab, name, sign) in zip(axes, panels):
        y = np.abs(np.array([p[k] for p in per]))
        yse = np.array([p[kse] for p in per])
        ax.errorbar(L, y, yerr=yse, fmt="o", color="k", capsize=3,
                    label="dU/dT: energy-fluctuation estimator" if k == "dU_dT" else "heat-bath Glauber")
        if k == "dU_dT":
            pg = res["variants"]["grid_fit_all_L"]["per_size"]
            ax.errorbar(L * 1.03, np.abs([p["dU_dT"] for p in pg]), yerr=[p["dU_dT_se"] for p in pg], fmt="s",
                        mfc="none", color="C2", capsize=3, label="dU/dT: polynomial fit of U over the T grid")
        fit = ex[name]
        ax.plot(Lf, fit["amplitude"] * Lf ** (sign * fit["value"]), "C0-",
                label=f"fit: {name.replace('_over_', '/')} = {fit['value']:.3f} ± {fit['se']:.3f}")
        sel = np.isin(L, fitted)
        Lg = math.exp(np.mean(np.log(L[sel])))
        yg = math.exp(np.mean(np.log(y[sel])))
        ax.plot(Lf, yg * (Lf / Lg) ** (sign * fit["exact"]), "C3--", label=f"exact slope {sign * fit['exact']:+g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(L)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("L")
        ax.set_title(lab)
        ax.legend(fontsize=8)
    fig.suptitle(f"2-D Ising, h = 0, T_c = {ex['T_c']:.6f}: FSS from T in {res['config']['temperatures']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8,16,32,48,64")
    ap.add_argument("--temps", default=",".join(str(t) for t in T_GRID))
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--n-tau", type=float, default=1000.0, help="total sampling time per (L, T) in tau_prior(L)")
    ap.add_argument("--eq-tau", type=float, default=20.0, help="equilibration per run in tau_prior(L)")
    ap.add_argument("--l-min", type=int, default=16, help="smallest L of the second set of exponent fits")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "ising_criticality"))
    ap.add_argument("--from-json", default=None, help="re-analyse the per-point results of an earlier run")
    args = ap.parse_args(argv)
    if args.from_json:
        return analyse_and_write(json.load(open(args.from_json)), args)
    sizes = [int(s) for s in args.sizes.split(",")]
    temps = [float(t) for t in args.temps.split(",")]
    g.warmup()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    pil = pilot_tau(args.seed)
    tau16 = pil["tau_int"]
    print(f"pilot L=16 T=2.27: tau_int(|m|) = {tau16:.1f} ± {pil['tau_int_se']:.1f} (attempts per spin)")
    nL, nT, R = len(sizes), len(temps), args.runs
    shape = (nL, nT)
    Ms = {k: np.full(shape, np.nan) for k in ("abs_m", "abs_m_se", "m2", "m4", "chi", "chi_se", "binder",
                                              "binder_se", "dU_dT_fluct", "dU_dT_fluct_se")}
    diag = []
    for i, L in enumerate(sizes):
        tau_prior = tau16 * (L / 16.0) ** Z_GLAUBER
        t_eq = max(100.0, args.eq_tau * tau_prior)
        t_sample = args.n_tau * tau_prior / R
        dt = max(0.05, tau_prior / 50.0)
        for j, T in enumerate(temps):
            c0 = time.process_time()
            m, e = simulate(L, T, R, t_eq, t_sample, dt, args.seed, j)
            cpu = time.process_time() - c0
            mo = cr.moments(m, L, T)
            dU, dUse = cr.binder_derivative(m, e, L, T)
            for k in ("abs_m", "abs_m_se", "m2", "m4", "chi", "chi_se", "binder", "binder_se"):
                Ms[k][i, j] = getattr(mo, k)
            Ms["dU_dT_fluct"][i, j], Ms["dU_dT_fluct_se"][i, j] = dU, dUse
            ta = cr.integrated_autocorr_time(np.abs(m), dt=dt)
            te = cr.integrated_autocorr_time(e, dt=dt)
            # equilibration check: first vs second half of every run
            h = m.shape[1] // 2
            a1, a2 = cr.moments(m[:, :h], L, T), cr.moments(m[:, h:], L, T)
            drift_z = (a2.abs_m - a1.abs_m) / math.hypot(a1.abs_m_se, a2.abs_m_se)
            d = {"L": L, "T": T, "runs": R, "t_eq": t_eq, "t_sample_per_run": t_sample, "dt_record": dt,
                 "samples_per_run": int(m.shape[1]), "tau_prior": tau_prior,
                 "tau_int_abs_m": ta["tau_int"], "tau_int_abs_m_se": ta["tau_int_se"],
                 "tau_int_reliable": ta["reliable"], "tau_int_energy": te["tau_int"],
                 "t_eq_over_tau_int": t_eq / ta["tau_int"],
                 "n_eff_total": R * t_sample / (2.0 * ta["tau_int"]),
                 "halves_drift_in_se": drift_z, "cpu_s": cpu,
                 "abs_m": mo.abs_m, "abs_m_se": mo.abs_m_se, "chi": mo.chi, "chi_se": mo.chi_se,
                 "binder": mo.binder, "binder_se": mo.binder_se, "dU_dT_fluct": dU, "dU_dT_fluct_se": dUse}
            diag.append(d)
            print(f"L={L:3d} T={T:.2f} tau_int={ta['tau_int']:8.1f} (prior {tau_prior:7.1f}) "
                  f"t_eq/tau={d['t_eq_over_tau_int']:5.1f} N_eff={d['n_eff_total']:6.0f} "
                  f"|M|={mo.abs_m:.4f}±{mo.abs_m_se:.4f} chi={mo.chi:8.3f}±{mo.chi_se:6.3f} "
                  f"U={mo.binder:.4f}±{mo.binder_se:.4f} dU/dT={dU:7.3f}±{dUse:5.3f} "
                  f"drift={drift_z:+.1f} cpu={cpu:6.1f}s", flush=True)
    d = {"command": "python benchmarks/bench_ising_criticality.py " + " ".join(
             argv if argv is not None else __import__("sys").argv[1:]),
         "config": {"sizes": sizes, "temperatures": temps, "runs": R, "n_tau": args.n_tau, "eq_tau": args.eq_tau,
                    "z_prior": Z_GLAUBER, "seed": args.seed, "time_unit": "attempts per spin"},
         "pilot": {"L": 16, "T": 2.27, **pil}, "per_point": diag,
         "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0}
    analyse_and_write(d, args)


KEYS = ("abs_m", "abs_m_se", "chi", "chi_se", "binder", "binder_se", "dU_dT_fluct", "dU_dT_fluct_se")


def analyse_and_write(d, args) -> None:
    """Exponent fits (several variants, to expose the systematics), JSON and plot."""
    sizes, temps = d["config"]["sizes"], d["config"]["temperatures"]
    pts = {(p["L"], p["T"]): p for p in d["per_point"]}
    Ms = {k: np.array([[pts[(L, T)][k] for T in temps] for L in sizes]) for k in KEYS}
    mom = cr.Moments(**{k: Ms[k] for k in KEYS[:6]}, m2=None, m4=None, n_runs=d["config"]["runs"], n_samples=-1)
    fl = {"dU_dT": Ms["dU_dT_fluct"], "dU_dT_se": Ms["dU_dT_fluct_se"]}
    big = sum(L >= args.l_min for L in sizes) >= 2
    variants = {}
    for deg in ("auto", 1, 2):
        tag = "" if deg == "auto" else f"_degree{deg}"
        variants[f"fluct_dUdT_all_L{tag}"] = cr.exponents(sizes, temps, mom, degree=deg, **fl)
        variants[f"grid_fit_all_L{tag}"] = cr.exponents(sizes, temps, mom, degree=deg)
        if big:
            variants[f"fluct_dUdT_L_ge_{args.l_min}{tag}"] = cr.exponents(sizes, temps, mom, degree=deg,
                                                                           L_min=args.l_min, **fl)
    # the authors' way: values at the grid point T = 2.27 (no interpolation to T_c)
    if 2.27 in temps:
        j = temps.index(2.27)
        fa = cr.fit_exponent(sizes, Ms["abs_m"][:, j], Ms["abs_m_se"][:, j])
        fc = cr.fit_exponent(sizes, Ms["chi"][:, j], Ms["chi_se"][:, j])
        fu = cr.fit_exponent(sizes, np.abs(Ms["dU_dT_fluct"][:, j]), Ms["dU_dT_fluct_se"][:, j])
        variants["at_T_2.27_all_L"] = {"beta_over_nu": -fa["exponent"], "beta_over_nu_se": fa["exponent_se"],
                                       "gamma_over_nu": fc["exponent"], "gamma_over_nu_se": fc["exponent_se"],
                                       "one_over_nu": fu["exponent"], "one_over_nu_se": fu["exponent_se"]}
    # dynamic exponent from the measured tau_int(|m|) nearest T_c (mean over T = 2.26, 2.27)
    jj = [j for j, T in enumerate(temps) if T in (2.26, 2.27)]
    tz = z_fit = None
    if jj:
        tau = np.array([[pts[(L, temps[j])]["tau_int_abs_m"] for j in jj] for L in sizes]).mean(axis=1)
        tse = np.sqrt((np.array([[pts[(L, temps[j])]["tau_int_abs_m_se"] for j in jj] for L in sizes]) ** 2)
                      .sum(axis=1)) / len(jj)
        z_fit = cr.fit_exponent(sizes, tau, tse)
        tz = dict(zip(map(str, sizes), tau.tolist()))
        print(f"tau_int(|m|) near T_c: {tz}; z = {z_fit['exponent']:.3f} ± {z_fit['exponent_se']:.3f} "
              f"(chi2/dof {z_fit['chi2_dof']:.1f}; prior {Z_GLAUBER})")
    cpu_total, wall_total = d["cpu_s"], d["wall_s"]
    print("\nexponents (value ± SE, exact, deviation/SE, chi2/dof of the L fit)")
    for vname, ex in variants.items():
        if "per_size" not in ex:
            print(f"  {vname}: " + ", ".join(f"{k} = {v:.4f}" for k, v in ex.items()))
            continue
        print(f"  {vname} (L = {ex['sizes_fitted']})")
        for k in ("beta_over_nu", "gamma_over_nu", "one_over_nu"):
            f = ex[k]
            print(f"    {k:14s} {f['value']:.4f} ± {f['se']:.4f}  exact {f['exact']:.4f}  "
                  f"dev {f['deviation_in_se']:+.1f} SE  chi2/dof {f['chi2_dof']:.2f}")
    for p in variants["fluct_dUdT_all_L"]["per_size"]:
        print(f"  L={p['L']:4.0f} |M|(Tc)={p['abs_m']:.4f}±{p['abs_m_se']:.4f} (deg {p['abs_m_degree']}) "
              f"chi(Tc)={p['chi']:.3f}±{p['chi_se']:.3f} (deg {p['chi_degree']}) "
              f"dU/dT(Tc)={p['dU_dT']:.3f}±{p['dU_dT_se']:.3f} (deg {p['dU_dT_degree']}, fluctuation estimator)")
    print(f"cpu {cpu_total:.0f} s, wall {wall_total:.0f} s")
    res = {
        "description": "2-D Ising h=0 heat-bath Glauber (continuous time) FSS reference; REFERENCE-002 §1 "
                       "'Phase transition', §9. SEs: jackknife over independent runs. 'exponents' = "
                       "fluct_dUdT_all_L (dU/dT from energy fluctuations; <|M|>, chi, dU/dT at T_c by "
                       "weighted polynomial fits over T, degree auto = 1 or 2); see 'variants' for the "
                       "degree and L_min systematics and the grid-fit dU/dT.",
        **{k: d[k] for k in ("command", "config", "pilot")},
        "exact": {"T_c": cr.ISING_TC, **cr.EXACT_EXPONENTS},
        "exponents": variants["fluct_dUdT_all_L"],
        "variants": variants,
        "tau_int_abs_m_near_Tc": tz,
        "z_fit": z_fit,
        "per_point": d["per_point"],
        "cpu_s": cpu_total,
        "wall_s": wall_total,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    plot(res, args.out + ".png")
    print(f"wrote {args.out}.json and .png")


if __name__ == "__main__":
    main()
