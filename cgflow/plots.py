"""Figures from a run's store: one function per figure, each returning a matplotlib Figure.

``cgflow plot STORE`` writes every figure whose inputs the store holds as PNG
files into ``STORE/../<name>-figures/``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

__all__ = ["FIGURES", "plot_store", "v_discr", "operator_entries", "estimator_errors", "macro_evolution"]

ENTRY_LABELS = {-1: r"$K_{b,b-1}$", 0: r"$K_{bb}$", 1: r"$K_{b,b+1}$"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def v_discr(tree: xr.DataTree):
    """The probed set V_discr of (rho_a, s_a) pairs (seed Fig. 3, top left)."""
    plt = _pyplot()
    op = tree["operator"].ds.load()
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    sc = ax.scatter(op.rho, op.slope, c=op.profile, cmap="tab20", s=14)
    ax.set_xlabel(r"$\rho_a$ (measured at $t_0$)")
    ax.set_ylabel(r"$\nabla\rho|_a$")
    ax.set_title(f"V_discr: {op.sizes['point']} points from {len(np.unique(op.profile))} profiles")
    fig.colorbar(sc, ax=ax, label="profile")
    return fig


def operator_entries(tree: xr.DataTree, estimator: str = "carre_du_champ"):
    """The three stencil entries against rho, coloured by slope, with error bars and the exact values (Fig. 3)."""
    plt = _pyplot()
    op = tree["operator"].ds.load().sel(estimator=estimator)
    fit = tree["fit"].ds if "fit" in tree.children else None
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for ax, offset in zip(axes, (-1, 0, 1)):
        k = op.K.sel(offset=offset)
        ax.errorbar(op.rho, k, yerr=op.K_stderr.sel(offset=offset), fmt="none", ecolor="0.6", lw=0.8)
        sc = ax.scatter(op.rho, k, c=op.slope, cmap="coolwarm", s=12, zorder=3)
        ax.scatter(op.rho, op.K_reference.sel(offset=offset), marker="x", c="k", s=10, lw=0.6, label="exact", zorder=4)
        if fit is not None and estimator in fit.estimator.values:
            from .methods.fdr.fit import FittedOperator

            fitted = FittedOperator.from_dataset(fit, estimator, True)
            rho = np.linspace(float(op.rho.min()), float(op.rho.max()), 100)
            slopes = op.slope.values
            with warnings.catch_warnings():  # curves span the whole rho range of the plot
                warnings.simplefilter("ignore")
                for s in np.unique(np.round(op.slope_nominal.values)):
                    ax.plot(rho, fitted.stencil(rho, np.full_like(rho, s))[:, offset + 1], lw=0.8,
                            color=plt.cm.coolwarm((s - slopes.min()) / max(np.ptp(slopes), 1e-9)))
        ax.set_xlabel(r"$\rho_a$")
        ax.set_title(ENTRY_LABELS[offset])
    axes[0].legend(loc="best")
    fig.colorbar(sc, ax=axes, label=r"$\nabla\rho|_a$")
    fig.suptitle(f"<K gamma_a, gamma_b> by {estimator.replace('_', ' ')} (seed eq. 5, Fig. 3)")
    return fig


def estimator_errors(tree: xr.DataTree):
    """Standard-error-normalised deviations from the exact operator, one histogram per estimator."""
    plt = _pyplot()
    op = tree["operator"].ds.load()
    fig, axes = plt.subplots(1, op.sizes["estimator"], figsize=(4 * op.sizes["estimator"], 3.4), constrained_layout=True,
                             squeeze=False)
    grid = np.linspace(-5, 5, 201)
    dof = op.attrs.get("clusters_per_profile", 30) - 1
    from scipy import stats

    for ax, est in zip(axes[0], op.estimator.values):
        sel = op.sel(estimator=est)
        z = ((sel.K - sel.K_reference) / sel.K_stderr).values.ravel()
        rel = float((sel.K_stderr / np.abs(sel.K_reference)).sel(offset=0).median())
        ax.hist(z[np.isfinite(z)], bins=40, range=(-5, 5), density=True, color="C0", alpha=0.7)
        ax.plot(grid, stats.t(dof).pdf(grid), "k", lw=1, label=f"t({dof})")
        ax.set_title(f"{est}\nmedian SE(K_bb)/K_bb = {rel:.2%}")
        ax.set_xlabel("(K - K_exact) / SE")
    axes[0][0].legend()
    return fig


def macro_evolution(tree: xr.DataTree, estimator: str = "carre_du_champ", mass_conservation: bool = True):
    """Macroscopic evolution with the learned operator against the exact-operator reference (Fig. 4)."""
    plt = _pyplot()
    mac = tree["macro"].ds.load()
    cases = list(mac.case.values)
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), constrained_layout=True, squeeze=False)
    for ax, case in zip(axes[0], cases):
        learned = mac.rho.sel(estimator=estimator, mass_conservation=mass_conservation, case=case)
        ref = mac.rho_reference.sel(case=case)
        colors = plt.cm.viridis(np.linspace(0, 1, mac.sizes["time"]))
        for i, t in enumerate(mac.time.values):
            ax.plot(mac.x, ref.isel(time=i), color=colors[i], lw=2.5, alpha=0.35)
            ax.plot(mac.x, learned.isel(time=i), color=colors[i], lw=1, ls="--", label=f"t = {t:.2g}")
        err = mac.rel_l2_error.sel(estimator=estimator, mass_conservation=mass_conservation, case=case).isel(time=-1)
        ax.set_title(f"{case}: rel. L2 error at t_end {float(err):.2e}")
        ax.set_xlabel("x")
        ax.set_ylabel(r"$\rho$")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"learned operator ({estimator}, mass conservation {mass_conservation}) dashed; exact operator thick")
    return fig


#: name -> (function, groups it needs)
FIGURES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "v_discr": (v_discr, ("operator",)),
    "operator_entries": (operator_entries, ("operator",)),
    "estimator_errors": (estimator_errors, ("operator",)),
    "macro_evolution": (macro_evolution, ("macro",)),
}


def plot_store(path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write every figure the store has data for; return the PNG paths."""
    from .engine.store import open_run

    path = Path(path)
    tree = open_run(path)
    out = Path(out_dir) if out_dir else path.with_name(path.name.removesuffix(".zarr") + "-figures")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    plt = _pyplot()
    for name, (func, needs) in FIGURES.items():
        if not all(group in tree.children for group in needs):
            continue
        fig = func(tree)
        target = out / f"{name}.png"
        fig.savefig(target, dpi=120)
        plt.close(fig)
        written.append(target)
    return written
