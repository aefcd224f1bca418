"""Figures of method partial (seed 002): one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._common import pyplot

__all__ = ["FIGURES", "drift_diffusion", "mmd_vs_lambda", "rollouts", "sro_trajectories", "stationary_vs_temperature"]

VARIANT_STYLE = {"method": dict(ls="-"), "baseline": dict(ls="--")}


def drift_diffusion(tree: xr.DataTree):
    """Learned drift b(m) and diffusion sigma^2(m) of every (variant, L_s) against the exact a(m) and (2/N)(1 - m tanh)."""
    plt = pyplot()
    sde = tree["sde"].to_dataset().load()
    m = sde["m"].values
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax.plot(m, sde["drift_exact"].values, color="k", lw=2, label="exact a(m)")
    bx.plot(m, sde["diffusion_exact"].values, color="k", lw=2, label=f"exact, N = {sde.attrs.get('n_sites', sde.attrs.get('n_spins'))}")
    for j, Ls in enumerate(sde["small_size"].values):
        for v in sde["variant"].values:
            sel = sde.sel(variant=v, small_size=Ls)
            lo, hi = sel["visited"].isel(obs=0).values
            inside = (m >= lo) & (m <= hi)
            style = dict(color=f"C{j}", **VARIANT_STYLE.get(str(v), {}), label=f"{v}, L_s = {Ls}")
            ax.plot(m[inside], sel["drift"].values[inside], **style)
            bx.plot(m[inside], sel["diffusion"].values[inside], **style)
        bx.plot(m, sde["diffusion_exact_small"].sel(small_size=Ls).values, color=f"C{j}", lw=0.8, ls=":",
                label=f"exact, N_s = {Ls * Ls}")
    ax.set_xlabel("m")
    ax.set_ylabel("drift per unit time")
    bx.set_xlabel("m")
    bx.set_ylabel("sigma^2 per unit time")
    bx.set_yscale("log")
    ax.legend(fontsize=7)
    bx.legend(fontsize=7)
    ax.set_title("learned drift over the visited range", fontsize=9)
    bx.set_title("lambda = K recovers the large system; lambda = 1 the small one", fontsize=9)
    return fig


def rollouts(tree: xr.DataTree):
    """Ensemble-mean rollouts of every fitted SDE against the large-system runs, one panel per L_s."""
    plt = pyplot()
    roll = tree["rollout"].to_dataset().load()
    truth = tree["truth"].to_dataset().load()
    ev = tree["evaluation"].to_dataset().load() if "evaluation" in tree.children else None
    t = truth["time"].values
    obs = str(truth["obs"].values[0])
    true = truth["z"].isel(obs=0).mean("replica").values  # the first closure variable (m; u for predator-prey)
    sizes = roll["small_size"].values
    dim = truth["z"].dims[0]
    labels = [", ".join(f"{c} = {float(truth[c].values[i]):g}" for c in truth.coords if truth[c].dims == (dim,)
                        and (c != dim or truth[c].dtype.kind == "f")) for i in range(truth.sizes[dim])]
    shown = [v for v in roll["variant"].values if str(v) in VARIANT_STYLE]  # the lambda sweep has its own figure
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4), constrained_layout=True, squeeze=False)
    for ax, Ls in zip(axes[0], sizes):
        for i, label in enumerate(labels):
            ax.plot(t, true[i], color=f"C{i}", lw=2, alpha=0.5, label=f"truth, {label}" if Ls == sizes[0] else None)
            for v in shown:
                ax.plot(t, roll["z_mean"].isel(obs=0).sel(variant=v, small_size=Ls).values[i], color=f"C{i}", lw=1,
                        **VARIANT_STYLE.get(str(v), {}))
        title = f"L_s = {Ls}"
        if ev is not None:
            e = ev["relative_error"].sel(small_size=Ls)
            title += f": rel. error method {float(e.sel(variant='method')):.2g}, baseline {float(e.sel(variant='baseline')):.2g}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"t ({truth.attrs.get('time_unit', '').split(' (')[0]})")
        ax.set_ylabel(f"ensemble mean {obs}")
    axes[0, 0].legend(fontsize=7)
    return fig


def mmd_vs_lambda(tree: xr.DataTree):
    """The paper's lambda sweep (REFERENCE-002 §6): biased MMD² of rollout vs truth ensembles against lambda, and
    the learned noise N sigma² at the stationary state, one line per small size; the method (lambda = K) marked."""
    plt = pyplot()
    ev = tree["evaluation"].to_dataset().load()
    sde = tree["sde"].to_dataset().load()
    sweep = [str(v) for v in ev["variant"].values if str(v).startswith("lambda=")]
    lam = np.array([float(v.split("=", 1)[1]) for v in sweep])
    order = np.argsort(lam)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for j, Ls in enumerate(ev["small_size"].values):
        K = float(sde["loss_scaling"].sel(variant="method", small_size=Ls))
        for key, axis, raw in (("mmd2", ax, False), ("n_sigma2_m_at_stationary", bx, True)):
            y = ev[key].sel(small_size=Ls, variant=sweep).values[order]
            axis.plot(lam[order], y, "o-", color=f"C{j}", label=f"n_s = {Ls}")
            axis.axvline(K, color=f"C{j}", ls=":", lw=1)
        if "mmd2" in ev:
            i_best = int(np.argmin(ev["mmd2"].sel(small_size=Ls, variant=sweep).values))
            ax.plot(lam[i_best], ev["mmd2"].sel(small_size=Ls, variant=sweep[i_best]), "*", ms=14, color=f"C{j}")
    ax.set_xlabel("lambda (loss scaling)")
    ax.set_ylabel("MMD² (spread-scaled), mean over steps and starts")
    ax.set_title("rollout vs direct large-system ensembles; dotted: lambda = K", fontsize=9)
    bx.set_xlabel("lambda")
    bx.set_ylabel("N sigma² of the first variable at the stationary state")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_title("learned noise: lambda = K recovers the large system", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def stationary_vs_temperature(tree: xr.DataTree):
    """Stationary SRO against temperature (a temperature-conditioned alloy SDE; REFERENCE-002 §1c, §9): direct
    large-lattice KMC with 2 SE bars, every variant's rollouts, and the equilibrium table of REFERENCE-002 §9;
    trained temperatures marked. One panel per SRO parameter."""
    from ..micro.bcc_alloy import EQUILIBRIUM_SRO_TABLE

    plt = pyplot()
    ev = tree["evaluation"].to_dataset().load()
    trained = np.asarray(tree["truth"].attrs.get("training_temperatures", []), dtype=float)
    T = ev["temperature"].values
    order = np.argsort(T)
    obs = [str(o) for o in ev["obs"].values]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True, sharex=True)
    table_T = np.array([t for t in sorted(EQUILIBRIUM_SRO_TABLE) if 0.9 * T.min() <= t <= 1.1 * T.max()])
    for k, (ax, name) in enumerate(zip(axes.flat, obs)):
        truth = ev["stationary_truth_per_start"].isel(obs=k).values[order]
        se = ev["stationary_truth_per_start_se"].isel(obs=k).values[order]
        ax.errorbar(T[order], truth, yerr=2 * se, color="k", marker="o", lw=2, capsize=3, label="direct KMC (2 SE)")
        ax.plot(table_T, [EQUILIBRIUM_SRO_TABLE[t][k] for t in table_T], "s", mfc="none", color="0.4", ms=8,
                label="REFERENCE-002 §9 table")
        for j, Ls in enumerate(ev["small_size"].values):
            for v in ev["variant"].values:
                y = ev["stationary_model_per_start"].sel(variant=v, small_size=Ls).isel(obs=k).values[order]
                ax.plot(T[order], y, marker=".", color=f"C{j}", **VARIANT_STYLE.get(str(v), dict(ls=":")),
                        label=f"{v}, small {Ls}")
        for t in trained:
            ax.axvline(t, color="0.85", lw=0.8, zorder=0)
        ax.set_title(f"delta_{name}", fontsize=9)
        ax.set_xlabel("T (K); grey lines: trained temperatures")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("stationary short-range order: learned temperature-conditioned SDE vs direct KMC", fontsize=10)
    return fig


def sro_trajectories(tree: xr.DataTree):
    """The alloy's six SRO against time (REFERENCE-002 §1c, issue 12): direct large-lattice KMC (ensemble mean with a
    2 SE band) and every variant's rollout mean, one colour per test start (temperature), log time axis."""
    plt = pyplot()
    roll = tree["rollout"].to_dataset().load()
    truth = tree["truth"].to_dataset().load()
    t = truth["time"].values
    obs = [str(o) for o in truth["obs"].values]
    dim = truth["z"].dims[0]
    temps = truth["temperature"].values if "temperature" in truth.coords else [truth.attrs.get("temperature")]
    shown = [v for v in roll["variant"].values if str(v) in VARIANT_STYLE]
    Ls = roll["small_size"].values[0]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True, sharex=True)
    keep = t > 0  # log axis
    for k, (ax, name) in enumerate(zip(axes.flat, obs)):
        for i in range(truth.sizes[dim]):
            z = truth["z"].isel({dim: i, "obs": k}).values  # (replica, time)
            mean, se = z.mean(0), z.std(0, ddof=1) / np.sqrt(z.shape[0])
            label = f"{float(temps[i]):g} K" if temps[i] is not None else None
            ax.fill_between(t[keep], (mean - 2 * se)[keep], (mean + 2 * se)[keep], color=f"C{i}", alpha=0.25, lw=0)
            ax.plot(t[keep], mean[keep], color=f"C{i}", lw=2, alpha=0.6,
                    label=f"direct KMC, {label}" if k == 0 else None)
            for v in shown:
                m = roll["z_mean"].sel(variant=v, small_size=Ls).isel(start=i, obs=k).values
                ax.plot(t[keep], m[keep], color=f"C{i}", lw=1, **VARIANT_STYLE[str(v)],
                        label=f"{v}, {label}" if k == 0 else None)
        ax.set_xscale("log")
        ax.set_title(f"delta_{name}", fontsize=9)
        ax.set_xlabel(f"t ({truth.attrs.get('time_unit', '').split(' (')[0]})")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"short-range order: learned SDE (small systems of {Ls} cells per side) vs direct "
                 f"{truth.attrs.get('n_sites', '')}-site KMC (band: 2 SE)", fontsize=10)
    return fig


def _has(*groups):
    def ok(tree: xr.DataTree) -> bool:
        return "pairs" in tree.children and all(g in tree.children for g in groups) and "sde" in tree.children \
            and "variant" in tree["sde"].dims
    return ok


#: (file stem, figure function, applies to the store?) -- register in cgflow.plots.FIGURES
FIGURES = [
    ("partial_drift_diffusion", drift_diffusion, lambda tree: _has("sde")(tree) and "drift_exact" in tree["sde"]),
    ("partial_rollouts", rollouts, _has("rollout", "truth")),
    ("partial_sro_trajectories", sro_trajectories,
     lambda tree: _has("rollout", "truth")(tree) and "MoMo" in [str(o) for o in tree["truth"]["obs"].values]),
    ("partial_mmd_vs_lambda", mmd_vs_lambda, lambda tree: _has("evaluation")(tree) and "mmd2" in tree["evaluation"]
     and any(str(v).startswith("lambda=") for v in tree["sde"]["variant"].values)),
    ("partial_stationary_vs_temperature", stationary_vs_temperature,
     lambda tree: _has("evaluation")(tree) and "stationary_truth_per_start" in tree["evaluation"]
     and "temperature" in tree["evaluation"].coords),
]
