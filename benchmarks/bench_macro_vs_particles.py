"""Speed-up of the macroscopic FEM simulation over direct particle (KMC) simulation, same horizon (seed 000).

Usage::

    python benchmarks/bench_macro_vs_particles.py [--sites 5000 --small-sites 400 --elements 40
        --t-end 2e-3 --fraction 0.01 --large-replicas 5 --small-replicas 128 --repeats 3]

The problem is the macro stage's periodic case (``cgflow.methods.fdr.macro``):
rho0 = 7 + 2 cos 2 pi x, zero-range process g(k) = k^2, macroscopic horizon
t_end = 2e-3 with 5 equally spaced outputs, N = 40 elements (hat averages over
n = L/N sites per side on the particle side, as ``cgflow.methods.fdr.particles``).
Every time is CPU seconds of this process (``time.process_time``; all of it is
single-threaded), wall seconds are shown for the macro runs; each figure is the
median of ``--repeats`` runs (the macro runs) or of the replicas timed (KMC).

(a) Macro: :func:`cgflow.macro.fem.simulate` to t_end, with the exact operator
    (:func:`cgflow.micro.zrp_hydro.exact_stencil`) and with a fitted one (the
    quadratic, mass-conserving :func:`cgflow.methods.fdr.fit.fit_stencil` of the
    exact stencils on a V_discr grid rho in [4, 10] x |s| <= 19: what the
    ``fit`` stage returns, without the noise); integrators: explicit Euler at
    the stability bound recomputed every step (the macro stage's policy,
    safety 0.9), explicit Euler with the fixed step 0.9 x the bound of rho0
    (the bound only shrinks as the profile flattens), and BDF (rtol 1e-8).
    Their accuracy: the largest nodal deviation over the save times of the
    hat-averaged FEM solution from the hat averages of the lattice mean field
    at L = ``--sites`` (:func:`cgflow.micro.zrp_hydro.lattice_mean_field`: what
    the particle mean converges to).

(b) Particles: one replica on L = ``--sites`` sites over the same macroscopic
    horizon is L^2 t_end = 5e4 lattice time units, ~1.4e10 events at L = 5000
    (~10 CPU minutes). It is not run to the end: ``--large-replicas`` replicas
    (product measure of rho0, exact KMC :func:`cgflow.micro.zrp.run_zrp`) are
    timed over the first ``--fraction`` of the horizon, and the full replica is
    extrapolated linearly in events: CPU s per event (median over the replicas)
    x the expected events L^2 integral_0^t_end sum_i phi(rho_i(t)) dt (rate of
    the local-equilibrium mean field, trapezoid on 20 intervals); the check of
    that rule is at L = ``--small-sites``, where ``--small-replicas`` replicas
    (the particles stage's L = 400 and the quick workflow's 128) are run over
    the whole horizon and timed directly (``ParticleEnsemble.replica_densities``:
    sampling, KMC and hat averages) and, separately, over the first fraction.

    Replicas for an accuracy: the per-replica variance var_a(t) of the hat
    averages is measured from the L = 400 replicas at every node and save time
    and carried to L by the product-measure factor sum gamma^2 / n^2 =
    (2 n^2 + 1)/(3 n^3) (hats n = L/N sites wide; the correlations of the
    relaxing process enter at the same relative size for the same N); the
    L = ``--sites`` replicas check that scaling at t = fraction x t_end. The
    replicas needed for a target standard error SE_a(t) of the ensemble mean
    is R = ceil(max over nodes and save times t > 0 of var_a(t) / SE_a(t)^2)
    for the targets: 1 % of rho_a(t); the SE of the quick workflow's particle
    stage (L = 400, 128 replicas); the macro solution's own error level (the
    FEM deviation above, as a uniform SE).

Reported: speed-up = particle CPU seconds / macro CPU seconds for one replica
and for each ensemble, at L = ``--sites`` and L = ``--small-sites``, against
each macro run. The fitted operator (a polynomial) is ~10x cheaper to evaluate
than the exact one (Gauss-Legendre quadrature of phi(rho), a Newton inversion
with Bessel ratios), so the macro cost depends on the operator: the fitted
runs are what the method costs; the exact ones are the macro stage's reference.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from cgflow.macro import fem
from cgflow.methods.fdr.fit import fit_stencil
from cgflow.methods.fdr.macro import EXPLICIT_SAFETY, initial_condition, save_times
from cgflow.methods.fdr.particles import ParticleEnsemble, _hat_average
from cgflow.micro import zrp, zrp_hydro

CASE = "periodic-cosine"
P = 2
START = time.perf_counter()


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))


def hat_factor(n: int) -> float:
    """sum_i gamma_a(x_i)^2 / n^2 for a hat n sites wide per side: the product-measure variance of a hat average / chi."""
    return (2 * n * n + 1) / (3 * n**3)


# ----------------------------------------------------------------------------- macro
def fitted_operator(elements: int):
    """Quadratic mass-conserving fit of the exact stencils on a V_discr grid (what the fit stage returns, noise-free)."""
    rho, slope = (v.ravel() for v in np.meshgrid(np.linspace(4, 10, 13), np.linspace(-19, 19, 9)))
    k = zrp_hydro.exact_stencil(rho, slope, elements, P)
    fit = fit_stencil(rho, slope, k, 1e-3 * np.abs(k), order=2, mass_conservation=True)
    op = fit.operator("exact, fitted")
    return lambda r, s: op.stencil(r, s, on_extrapolation="ignore")


def time_macro(stencil, method: str, elements: int, t_end: float, times, repeats: int) -> dict:
    _, rho0 = initial_condition(CASE, elements)

    def force(r):
        return zrp_hydro.thermodynamic_force(r, P)

    kw = dict(elements=elements, boundary="periodic", save_times=times, safety=EXPLICIT_SAFETY)
    if method == "explicit-fixed":
        d_eff = fem.estimate_max_diffusivity(rho0, stencil, force, elements=elements, boundary="periodic")
        kw.update(method="explicit", dt=EXPLICIT_SAFETY * fem.stable_time_step(d_eff, elements))
    else:
        kw.update(method="implicit" if method == "bdf" else "explicit")
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        res = fem.simulate(rho0, stencil, force, t_end, **kw)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall), "steps": res.steps, "dt": res.dt,
            "rho": res.rho}  # fmt: skip


# ----------------------------------------------------------------------------- particles
def mean_field(stage: ParticleEnsemble, times) -> tuple[np.ndarray, np.ndarray]:
    """Lattice mean field at ``times``: hat averages (T, N) and total rates sum_i phi(rho_i) (T,)."""
    rho, prev, hats, rates = stage.density_profile(), 0.0, [], []
    for t in times:
        rho = zrp_hydro.lattice_mean_field(rho, (t - prev) * stage.sites**2, P, True)
        prev = t
        hats.append(stage.local_density(rho))
        rates.append(float(zrp.fugacity(rho, P).sum()))
    return np.array(hats), np.array(rates)


def expected_events(sites: int, t_end: float, grid, rates) -> float:
    """L^2 integral_0^t_end sum_i phi(rho_i(t)) dt (trapezoid on ``grid``)."""
    return float(np.sum(np.diff(grid) * 0.5 * (rates[1:] + rates[:-1]))) * sites**2 * (t_end / grid[-1])


def time_large(stage: ParticleEnsemble, duration: float, replicas: int, seed: int) -> dict:
    """KMC over ``duration`` (macroscopic) from the product measure of rho0: CPU s and events per replica."""
    rng = make_rng(seed)
    cpu, events, dens = [], [], []
    for _ in range(replicas):
        eta = zrp.sample_product_measure(stage.density_profile(), P, rng)
        c0 = time.process_time()
        n = zrp.run_zrp(eta, duration * stage.sites**2, P, True, rng)
        cpu.append(time.process_time() - c0)
        events.append(n)
        dens.append(stage.local_density(eta))
    per_event = [c / e for c, e in zip(cpu, events)]
    return {"cpu": cpu, "events": events, "cpu_per_event": statistics.median(per_event), "density": np.array(dens)}


def time_small(stage: ParticleEnsemble) -> dict:
    """Every replica of the stage over the whole horizon: per-replica CPU s (per block / block size) and densities."""
    cpu, events, dens = [], 0, []
    for b in range(stage.sweep.n_blocks):
        c0 = time.process_time()
        d, work = stage.replica_densities(b)
        cpu.append((time.process_time() - c0) / stage.block_size)
        events += work
        dens.append(d)
    return {"cpu_per_replica": statistics.median(cpu), "events_per_replica": events / stage.replicas,
            "density": np.concatenate(dens)}  # fmt: skip


def replicas_for(var: np.ndarray, target: np.ndarray) -> int:
    """ceil(max var / target^2) over nodes and save times t > 0 (row 0 is t = 0)."""
    need = float(np.max(var[1:] / np.broadcast_to(target, var.shape)[1:] ** 2))
    return max(1, math.ceil(need * (1 - 1e-12)))  # the quick-workflow target at its own lattice gives exactly R


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=5000, help="paper-scale lattice (timed over a fraction)")
    ap.add_argument("--small-sites", type=int, default=400, help="the particles stage's lattice (timed in full)")
    ap.add_argument("--elements", type=int, default=40)
    ap.add_argument("--t-end", type=float, default=2.0e-3)
    ap.add_argument("--saves", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=0.01, help="fraction of the horizon timed at --sites")
    ap.add_argument("--large-replicas", type=int, default=5)
    ap.add_argument("--small-replicas", type=int, default=128)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--quick-replicas", type=int, default=128, help="replicas of the quick workflow's particles stage")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each macro run (median)")
    ap.add_argument("--seed", type=int, default=2019)
    args = ap.parse_args(argv)
    N, T_END = args.elements, args.t_end
    times = save_times(T_END, args.saves)
    t_frac = args.fraction * T_END
    zrp.warmup()
    print(f"ZRP g(k) = k^2, rho0 = 7 + 2 cos 2 pi x (periodic), t_end = {T_END:g}, N = {N}, {args.saves} outputs; "
          f"CPU seconds of one core (process_time)\n")  # fmt: skip

    # ------------------------------------------------------------------ (a) macro
    stencils = {"exact": lambda r, s: zrp_hydro.exact_stencil(r, s, N, P), "fitted": fitted_operator(N)}
    methods = {"explicit-adaptive": "explicit, bound every step (macro stage)",
               "explicit-fixed": "explicit, fixed dt = 0.9 x bound of rho0", "bdf": "BDF (rtol 1e-8)"}  # fmt: skip
    large = ParticleEnsemble(args.seed, args.sites, P, N, CASE, tuple(times), 2, 1)
    grid = np.linspace(0.0, T_END, 21)
    c0 = time.process_time()
    mf_hats, mf_rates = mean_field(large, grid)
    mf_cpu = time.process_time() - c0
    truth = mf_hats[:: (grid.size - 1) // args.saves] if (grid.size - 1) % args.saves == 0 else mean_field(large, times)[0]
    macro = {}
    for op, st in stencils.items():
        for m in methods:
            macro[op, m] = r = time_macro(st, m, N, T_END, times, args.repeats)
            r["error"] = float(np.abs(_hat_average(r["rho"]) - truth).max())
    ref_rho = macro["exact", "bdf"]["rho"]
    print(f"(a) macro FEM, N = {N}, to t_end = {T_END:g} (median of {args.repeats}); error = max |hat-averaged FEM - "
          f"lattice mean field at L = {args.sites}| over nodes and save times")  # fmt: skip
    print(f"{'operator':>8} {'integrator':>42} {'steps':>6} {'CPU s':>8} {'wall s':>8} {'error':>8} {'vs exact BDF':>13}")
    for (op, m), r in macro.items():
        diff = float(np.abs(r["rho"] - ref_rho).max())
        print(f"{op:>8} {methods[m]:>42} {r['steps']:>6} {r['cpu']:>8.3f} {r['wall']:>8.3f} {r['error']:>8.4f} {diff:>13.2e}")
    print(f"(lattice mean field at L = {args.sites}, 20 intervals: {mf_cpu:.1f} CPU s; not part of either cost)\n")

    # ------------------------------------------------------------------ (b) particles
    # L = small: every replica over the whole horizon, plus the save t_frac for the variance check
    small_times = tuple(sorted(set(times.tolist()) | {t_frac}))
    k_frac = small_times.index(t_frac)
    keep = [small_times.index(t) for t in times]
    small = ParticleEnsemble(args.seed, args.small_sites, P, N, CASE, small_times, args.small_replicas, args.block)
    ts = time_small(small)
    dens_s = ts["density"]  # (R, T', N)
    var_s_all = dens_s.var(axis=0, ddof=1)
    var_s, mean_s = var_s_all[keep], dens_s.mean(axis=0)[keep]  # (T, N) at the save times
    _, rates_s = mean_field(small, grid)
    events_s_expected = expected_events(args.small_sites, T_END, grid, rates_s)
    cpu_per_event_s = ts["cpu_per_replica"] / ts["events_per_replica"]
    # the extrapolation rule of L = sites, applied at L = small_sites: CPU s/event over the first fraction x events
    tf = time_large(small, t_frac, args.small_replicas, args.seed + 2)
    rule_s = tf["cpu_per_event"] * events_s_expected

    tl = time_large(large, t_frac, args.large_replicas, args.seed + 1)
    events_l = expected_events(args.sites, T_END, grid, mf_rates)
    cpu_l = tl["cpu_per_event"] * events_l  # one full replica at L = sites, extrapolated in events
    n_s, n_l = args.small_sites // N, args.sites // N
    scale = hat_factor(n_l) / hat_factor(n_s)
    var_l = var_s * scale
    # check of the scaling: pooled variance of the large replicas at t_frac against the scaled small ones
    d_l = tl["density"]
    check = float((d_l.var(axis=0, ddof=1)).mean() / (var_s_all[k_frac] * scale).mean())
    check_se = math.sqrt(2.0 / ((d_l.shape[0] - 1) * N))

    print("(b) particles: replica cost")
    print(f"  L = {args.small_sites}: {args.small_replicas} replicas over the whole horizon: {ts['cpu_per_replica']:.3f} "
          f"CPU s per replica (median over blocks of {args.block}), {ts['events_per_replica']:.3g} events "
          f"(mean-field expectation {events_s_expected:.3g}, ratio {ts['events_per_replica'] / events_s_expected:.4f}), "
          f"{1 / cpu_per_event_s:.3g} events/s")  # fmt: skip
    print(f"  L = {args.sites}: {args.large_replicas} replicas over {args.fraction:g} of the horizon "
          f"({t_frac * args.sites**2:.0f} lattice time units): {statistics.median(tl['cpu']):.2f} CPU s, "
          f"{statistics.median(tl['events']):.3g} events each, {1 / tl['cpu_per_event']:.3g} events/s; whole horizon: "
          f"{events_l:.3g} expected events -> {cpu_l:.0f} CPU s per replica (extrapolated linearly in events)")  # fmt: skip
    print(f"  extrapolation check at L = {args.small_sites}: L = {args.sites}'s rule (CPU s/event over the first "
          f"{args.fraction:g} of the horizon, {statistics.median(tf['events']):.3g} events x {args.small_replicas} replicas, "
          f"x expected events) gives {rule_s:.3f} s per replica against {ts['cpu_per_replica']:.3f} s measured "
          f"(ratio {rule_s / ts['cpu_per_replica']:.3f})")  # fmt: skip
    print(f"  per-replica variance of the hat averages, L = {args.small_sites} (n = {n_s}): "
          f"{var_s[1:].min():.4f}..{var_s[1:].max():.4f} over nodes and t > 0; x {scale:.5f} "
          f"((2n^2+1)/(3n^3) at n = {n_l} over n = {n_s}) for L = {args.sites}; measured/scaled at L = {args.sites}, "
          f"t = {t_frac:g}: {check:.3f} +- {check_se:.3f}\n")  # fmt: skip

    # ------------------------------------------------------------------ replicas and speed-ups
    e_macro = max(macro[op, "explicit-adaptive"]["error"] for op in stencils)
    se_quick = np.sqrt(var_s / args.quick_replicas)
    targets = [
        ("A", "SE_a(t) <= 1 % of rho_a(t)", 0.01 * mean_s),
        ("B", f"SE_a(t) <= SE of the quick workflow's particle stage (L = {args.small_sites}, {args.quick_replicas} "
              f"replicas: {se_quick[1:].min():.3f}..{se_quick[1:].max():.3f})", se_quick),
        ("C", f"SE_a(t) <= the macro solution's error level {e_macro:.4f} (N = {N}, explicit, table (a))",
         np.full_like(var_s, e_macro)),
    ]  # fmt: skip
    rows = [(args.sites, "one replica", 1, cpu_l), (args.small_sites, "one replica", 1, ts["cpu_per_replica"])]
    for key, _, target in targets:
        r_l, r_s = replicas_for(var_l, target), replicas_for(var_s, target)
        rows += [(args.sites, f"ensemble {key}", r_l, r_l * cpu_l),
                 (args.small_sites, f"ensemble {key}", r_s, r_s * ts["cpu_per_replica"])]  # fmt: skip
    rows.sort(key=lambda r: -r[0])
    print("accuracy targets for the ensemble mean, every node, every save time t > 0 "
          "(replicas = ceil(max var_a(t) / target_a(t)^2)):")
    for key, text, _ in targets:
        print(f"  {key}: {text}")
    cols = [("fitted", m) for m in methods] + [("exact", "explicit-adaptive"), ("exact", "bdf")]
    short = {"explicit-adaptive": "expl-adapt", "explicit-fixed": "expl-fixed", "bdf": "BDF"}
    print("\nspeed-up = particle CPU s / macro CPU s, per macro run (operator, integrator of table (a)); "
          "ensemble CPU s = replicas x one replica")
    head = "".join(f"{op + ' ' + short[m]:>19}" for op, m in cols)
    print(f"{'L':>6} {'particle simulation':>20} {'replicas':>8} {'CPU s':>10} |{head}")
    print(f"{'':>6} {'macro CPU s':>20} {'':>8} {'':>10} |" + "".join(f"{macro[c]['cpu']:>19.3g}" for c in cols))
    for sites, label, r, cpu in rows:
        print(f"{sites:>6} {label:>20} {r:>8} {cpu:>10.4g} |" + "".join(f"{cpu / macro[c]['cpu']:>19.3g}" for c in cols))
    print(f"\nbenchmark: {time.process_time():.0f} CPU s, {time.perf_counter() - START:.0f} wall s")

if __name__ == "__main__":
    main()
