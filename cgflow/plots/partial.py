"""Figures of method partial (seed 002): one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._common import pyplot

__all__ = ["FIGURES", "drift_diffusion", "rollouts"]

VARIANT_STYLE = {"method": dict(ls="-"), "baseline": dict(ls="--")}


def drift_diffusion(tree: xr.DataTree):
    """Learned drift b(m) and diffusion sigma^2(m) of every (variant, L_s) against the exact a(m) and (2/N)(1 - m tanh)."""
    plt = pyplot()
    sde = tree["sde"].to_dataset().load()
    m = sde["m"].values
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax.plot(m, sde["drift_exact"].values, color="k", lw=2, label="exact a(m)")
    bx.plot(m, sde["diffusion_exact"].values, color="k", lw=2, label=f"exact, N = {sde.attrs['n_spins']}")
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
    true = truth["z"].isel(obs=0).mean("replica").values  # m: the first closure variable
    sizes = roll["small_size"].values
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4), constrained_layout=True, squeeze=False)
    for ax, Ls in zip(axes[0], sizes):
        for i, m0 in enumerate(truth["m0"].values):
            ax.plot(t, true[i], color=f"C{i}", lw=2, alpha=0.5, label=f"truth, m0 = {m0:g}" if Ls == sizes[0] else None)
            for v in roll["variant"].values:
                ax.plot(t, roll["z_mean"].isel(obs=0).sel(variant=v, small_size=Ls).values[i], color=f"C{i}", lw=1,
                        **VARIANT_STYLE.get(str(v), {}))
        title = f"L_s = {Ls}"
        if ev is not None:
            e = ev["relative_error"].sel(small_size=Ls)
            title += f": rel. error method {float(e.sel(variant='method')):.2g}, baseline {float(e.sel(variant='baseline')):.2g}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"t ({truth.attrs.get('time_unit', '')[:20]})")
        ax.set_ylabel("ensemble mean m")
    axes[0, 0].legend(fontsize=7)
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
]
