"""Figures of method probcg (seed 003): one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._common import pyplot

__all__ = ["FIGURES", "convergence", "coefficients", "densities", "pair_probability"]


def _has(tree: xr.DataTree, *groups: str) -> bool:
    return all(g in tree.children for g in groups) and tree.attrs.get("method") == "probcg"


def convergence(tree: xr.DataTree):
    """θ means, 1/<v> and the ELBO against the outer iteration, every restart (seed Figs. 2–5, 10, 15)."""
    plt = pyplot()
    inf = tree["infer"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    best = int(inf["best_restart"])
    it = inf["iteration"].values
    trace = inf["mu_theta_trace"].values[best]
    active = np.abs(inf["theta_mean"].values) > 0.02
    for k, name in enumerate(inf["feature"].values):
        axes[0].plot(it, trace[:, k], lw=1.2 if active[k] else 0.5, alpha=1.0 if active[k] else 0.4,
                     label=str(name) if active[k] else None)
    axes[0].set(xlabel="iteration", ylabel="mean of q(θ)", title=f"θ (restart {best}; active ones labelled)")
    axes[0].legend(fontsize=7)
    for r in inf["restart"].values:
        axes[1].semilogy(it, inf["v_inv_trace"].values[r], label=f"restart {r}")
        axes[2].plot(it, inf["elbo"].values[r], label=f"restart {r}")
    axes[1].set(xlabel="iteration", ylabel="1/<v>", title="noise variance of the coarse law")
    axes[2].set(xlabel="iteration", ylabel="ELBO", title="evidence lower bound")
    axes[2].legend(fontsize=8)
    return fig


def coefficients(tree: xr.DataTree):
    """Posterior of the identifiable coefficients (ordered pairs summed) with 95% intervals (seed Figs. 11, 16)."""
    plt = pyplot()
    inf = tree["infer"]
    names = [str(n) for n in inf["pair"].values]
    mean, sd = inf["pair_sum_mean"].values, inf["pair_sum_sd"].values
    fig, ax = plt.subplots(figsize=(max(8, 0.25 * len(names)), 4.5), constrained_layout=True)
    x = np.arange(len(names))
    ax.bar(x, mean, color=["C1" if "*" in n else "C0" for n in names])
    ax.errorbar(x, mean, yerr=1.959964 * sd, fmt="none", ecolor="k", lw=0.8, capsize=2)
    truth = tree["fine"].attrs.get("theta_true") if "fine" in tree.children else None
    if truth:
        from ..methods.probcg.features import pair_sums, theta_from_mapping

        true_names, true_vals = pair_sums(theta_from_mapping(truth, int(inf.attrs["neighbours"])), int(inf.attrs["neighbours"]))
        ax.scatter(x, [dict(zip(true_names, true_vals))[n] for n in names], marker="_", s=200, color="r", zorder=3, label="θ* (synthetic law)")
        ax.legend()
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.axhline(0, color="0.5", lw=0.5)
    ax.set(ylabel="coefficient", title="q(θ): first order (blue) and pair sums (orange), 95% intervals")
    return fig


def densities(tree: xr.DataTree, ic: int = 0, resolution: str = "density"):
    """Predicted bin densities with 95% intervals against the fine-grained runs at several steps (seed Figs. 7–8, 12–13, 17–18)."""
    plt = pyplot()
    p = tree["predict"]
    steps = p["step"].values
    show = np.unique(np.linspace(1, steps[-1], min(4, len(steps) - 1)).round().astype(int)) if len(steps) > 1 else steps
    x = p["bin"].values if resolution == "density" else p["obs_bin"].values
    n = len(x)
    y = -1 + (x + 0.5) * 2.0 / n
    fig, axes = plt.subplots(1, len(show), figsize=(4 * len(show), 3.6), sharey=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    for ax, k in zip(axes, show):
        sel = dict(ic=ic, step=k)
        ax.fill_between(y, p[f"{resolution}_lo"].sel(sel), p[f"{resolution}_hi"].sel(sel), step="mid", alpha=0.3, label="95% predictive")
        ax.step(y, p[f"{resolution}_mean"].sel(sel), where="mid", label="predictive mean")
        ax.step(y, p[f"{resolution}_truth_mean"].sel(sel), where="mid", color="k", lw=0.8, label="fine-grained mean")
        cov = float(p["coverage"].sel(observable=resolution, ic=ic, step=k))
        ax.set(title=f"step {k} (coverage {cov:.2f})", xlabel="y")
    axes[0].set_ylabel("walker fraction per bin")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"initial condition {ic}, {n} bins")
    return fig


def pair_probability(tree: xr.DataTree, ic: int = 0):
    """2-bin probabilities P(k1, k2): predictive mean vs fine-grained mean at two steps (seed Figs. 9, 14, 19)."""
    plt = pyplot()
    p = tree["predict"]
    steps = p["step"].values
    show = [int(steps[min(1, len(steps) - 1)]), int(steps[-1])]
    fig, axes = plt.subplots(2, 2, figsize=(9, 8), constrained_layout=True)
    for col, k in enumerate(show):
        for row, (key, label) in enumerate((("pair_mean", "predictive mean"), ("pair_truth_mean", "fine-grained mean"))):
            im = axes[row, col].imshow(p[key].sel(ic=ic, step=k).values, origin="lower", cmap="viridis")
            axes[row, col].set(title=f"{label}, step {k}", xlabel="k2", ylabel="k1")
            fig.colorbar(im, ax=axes[row, col], shrink=0.8)
    return fig


FIGURES = [
    ("probcg_convergence", convergence, lambda t: _has(t, "infer")),
    ("probcg_coefficients", coefficients, lambda t: _has(t, "infer")),
    ("probcg_density", densities, lambda t: _has(t, "predict")),
    ("probcg_density_fine", lambda t: densities(t, resolution="fine_density"), lambda t: _has(t, "predict")),
    ("probcg_pairs", pair_probability, lambda t: _has(t, "predict")),
]
