"""Figures of method fdr (seed 000): one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ._common import pyplot as _pyplot

__all__ = ["FIGURES", "v_discr", "operator_entries", "estimator_errors", "macro_evolution",
           "estimator_costs"]

ENTRY_LABELS = {-1: r"$K_{b,b-1}$", 0: r"$K_{bb}$", 1: r"$K_{b,b+1}$"}


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
            from ..methods.fdr.fit import FittedOperator

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


def estimator_costs(results: dict, path: str | Path | None = None):
    """Relative standard error of K_bb against CPU seconds, one line per estimator design (log-log).

    Parameters
    ----------
    results : dict
        As written by ``benchmarks/bench_fdr_estimators.py --out``: ``designs``, a
        list of dicts with ``label``, ``estimator``, ``r2``, ``cpu_s_per_preparation``
        (c_prep + R2 c_e), ``variance_per_preparation`` (relative variance of one
        preparation's mean, sigma_b^2 + sigma_w^2/R2) and ``cpu_s_for_target``;
        ``setup`` with ``target_relative_se``, ``rho``, ``sites``, ``elements``.
    path : str or Path, optional
        Where to write the PNG (dpi 120, as ``cgflow plot``).

    Returns
    -------
    matplotlib.figure.Figure
        SE(C) = sqrt(v c / C) for C from one preparation (R1 = 1) to beyond the
        slowest design's 1 % cost; each line ends in a marker at the target.
    """
    plt = _pyplot()
    setup = results.get("setup", {})
    target = float(setup.get("target_relative_se", 0.01))
    designs = results["designs"]
    colors = {"increment": "C0", "quadratic_variation": "C1", "carre_du_champ": "C2"}
    styles = ["-", "--", ":", "-.", (0, (5, 2, 1, 2))]
    c_hi = 10 * max(d["cpu_s_for_target"] for d in designs)
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    for k, d in enumerate(designs):
        c_unit, v = d["cpu_s_per_preparation"], d["variance_per_preparation"]
        cost = np.geomspace(c_unit, max(c_hi, 10 * c_unit), 200)
        color = colors.get(d["estimator"], f"C{3 + k}")
        ax.plot(cost, np.sqrt(v * c_unit / cost), color=color, ls=styles[k % len(styles)], lw=1.5,
                label=f"{d['label']}: {d['cpu_s_for_target']:.3g} s")  # fmt: skip
        ax.plot(d["cpu_s_for_target"], target, "o", color=color, ms=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(target, color="k", lw=0.8)
    ax.text(0.99, target, f"{target:.0%} relative SE", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
            fontsize=8)  # fmt: skip
    ax.set_xlabel("CPU seconds (one core)")
    ax.set_ylabel(r"relative standard error of $K_{bb}$")
    ax.set_title(f"operator estimators, ZRP g(k) = k$^2$, rho = {setup.get('rho', '?')}, s = 0, "
                 f"L = {setup.get('sites', '?')}, N = {setup.get('elements', '?')}", fontsize=9)  # fmt: skip
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.legend(fontsize=7, title="design: CPU s for the target", title_fontsize=7, loc="lower left")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _needs(*groups: str):
    return lambda tree: all(g in tree.children for g in groups)


#: (file stem, figure function, applies to the store?)
FIGURES = [
    ("v_discr", v_discr, _needs("operator")),
    ("operator_entries", operator_entries, _needs("operator")),
    ("estimator_errors", estimator_errors, _needs("operator")),
    ("macro_evolution", macro_evolution, _needs("macro")),
]
