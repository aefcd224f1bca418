"""Figures of method eqfree (seed 001): one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._common import pyplot

__all__ = ["FIGURES", "trajectories_1d", "dudt_1d", "rollout_1d", "dudt_2d", "rollout_2d", "rollout_error_2d", "implied_coefficients"]

MODEL_STYLE = {
    "pointwise": dict(color="C0", ls="--", label="pointwise network"),
    "stencil": dict(color="C1", ls="-.", label="stencil network"),
    "linear": dict(color="C2", ls=":", label="linear baseline"),
    "semidiscrete": dict(color="0.5", ls="-", lw=0.8, label="homogenized on the macro grid"),
}


def _is_1d(tree: xr.DataTree) -> bool:
    """One space dimension: the trajectories have an x grid and no y grid (whatever the micro model)."""
    return "y" not in tree["trajectories"].dims


def _fine_reference(tree: xr.DataTree, traj: int, times: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The exact homogenized solution of a stored trajectory on a fine grid (1-D)."""
    from ..methods.eqfree.homogenized import reference
    from ..methods.eqfree.trajectories import initial_condition

    ds = tree["trajectories"].to_dataset()
    return reference(dict(ds.attrs), initial_condition(ds, traj), x, times)["U_h"]


def trajectories_1d(tree: xr.DataTree, traj: int = 0, times=(0.0, 0.01, 0.05, 0.2, 0.5)):
    """Patch-dynamics data against the homogenized solution at several times (seed Fig. 2 analogue)."""
    plt = pyplot()
    ds = tree["trajectories"].to_dataset()
    t_all = ds["time"].values
    idx = [int(np.argmin(abs(t_all - t))) for t in times if t <= t_all[-1]]
    fine_x = np.linspace(0, 1, 401)
    fine = _fine_reference(tree, traj, t_all[idx], fine_x)
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for c, (i, u) in enumerate(zip(idx, fine)):
        ax.plot(fine_x, u, color=f"C{c}", lw=1, label=f"homogenized, t = {t_all[i]:g}")
        ax.plot(ds["x"], ds["U"].values[traj, i], "o", color=f"C{c}", ms=5)
    ax.set_xlabel("x")
    ax.set_ylabel("u")
    a = ds.attrs
    title = "patch dynamics (dots) vs homogenized (lines)"
    if "cost_ratio" in a:
        title += (f"\n{100 * a['space_fraction']:.1f}% of space, {100 * a['time_fraction']:.2g}% of time, "
                  f"cost 1/{a['cost_ratio']:.3g} of full resolution")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def dudt_1d(tree: xr.DataTree, times=(0.0, 0.02, 0.1, 0.5)):
    """Predicted dU/dt on a held-out trajectory against the truth (seed Fig. 4 analogue)."""
    plt = pyplot()
    learn = tree["learn"].to_dataset()
    hom = tree["homogenized"].to_dataset()
    traj = tree["trajectories"].to_dataset()
    test = int(learn["test_traj"].values[0])
    t_all = traj["time"].values
    idx = [int(np.argmin(abs(t_all - t))) for t in times if t <= t_all[-1]]
    fig, axes = plt.subplots(1, len(idx), figsize=(3.3 * len(idx), 3.4), constrained_layout=True, squeeze=False)
    for ax, i in zip(axes[0], idx):
        x = traj["x"].values
        ax.plot(x, hom["dUdt_h"].values[test, i], "k-", lw=1.2, label="homogenized (exact)")
        ax.plot(x, hom["dUdt_fd"].values[test, i], color="0.5", lw=0.8, label="homogenized on the macro grid")
        ax.plot(x, traj["dUdt"].values[test, i], "ko", ms=4, mfc="none", label="patch estimate (eq. 11)")
        for m in learn["model"].values:
            ax.plot(x, learn["dUdt_pred"].sel(model=m).values[0, i], **MODEL_STYLE[str(m)])
        ax.set_title(f"t = {t_all[i]:g}")
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel(r"$\partial_t U$")
    axes[0, 0].legend(fontsize=7)
    r = learn["rmse_dUdt"]
    text = "; ".join(f"{m}: {float(r.sel(model=m, reference='patch')):.1e}" for m in learn["model"].values)
    fig.suptitle(f"held-out trajectory {test}; rMSE vs patch estimate: {text}", fontsize=9)
    return fig


def rollout_1d(tree: xr.DataTree, ic: int = 0):
    """Learned models integrated from an unseen initial condition vs the homogenized solution (seed Fig. 5)."""
    plt = pyplot()
    roll = tree["rollout"].to_dataset()
    times = roll["time"].values
    report = roll["report_time"].values
    fig, axes = plt.subplots(1, len(report) + 1, figsize=(3.4 * (len(report) + 1), 3.4), constrained_layout=True)
    x = roll["x"].values
    for ax, t in zip(axes, report):
        i = int(np.argmin(abs(times - t)))
        ax.plot(x, roll["U_h"].values[ic, i], "k-", lw=1.2, label="homogenized")
        for m in roll["model"].values:
            ax.plot(x, roll["U"].sel(model=m).values[ic, i], **MODEL_STYLE[str(m)])
        ax.set_title(f"t = {t:g}")
        ax.set_xlabel("x")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for m in roll["model"].values:
        err = roll["U"].sel(model=m).values[ic] - roll["U_h"].values[ic]
        norm = np.linalg.norm(roll["U_h"].values[ic][:, 1:-1], axis=-1)
        ax.semilogy(times[1:], np.linalg.norm(err[1:, 1:-1], axis=-1) / norm[1:], **MODEL_STYLE[str(m)])
    ax.set_xlabel("t")
    ax.set_title(r"$\|U - U_h\| / \|U_h\|$")
    return fig


def implied_coefficients(tree: xr.DataTree):
    """The coefficient (1-D) or tensor (2-D) each learned model implies, beside the exact one."""
    plt = pyplot()
    learn = tree["learn"].to_dataset()
    models = [str(m) for m in learn["model"].values]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    if "a_implied" in learn:
        vals = learn["a_implied"].values
        ax.bar(models, vals, color=[MODEL_STYLE[m]["color"] for m in models])
        ax.axhline(learn.attrs["a_star"], color="k", lw=1, label=f"a* = {learn.attrs['a_star']:.6f} (cell problem)")
        ax.set_ylabel("implied coefficient")
        lo, hi = min(vals.min(), learn.attrs["a_star"]), max(vals.max(), learn.attrs["a_star"])
        ax.set_ylim(lo - 0.2 * (hi - lo + 1e-3), hi + 0.2 * (hi - lo + 1e-3))
    else:
        comps = [str(c) for c in learn["component"].values]
        width = 0.8 / (len(models) + 1)
        pos = np.arange(len(comps))
        ax.bar(pos, [learn.attrs[c] for c in comps], width, color="k", label="exact (cell problem)")
        for j, m in enumerate(models):
            ax.bar(pos + (j + 1) * width, learn["A_implied"].sel(model=m).values, width, color=MODEL_STYLE[m]["color"], label=m)
        ax.set_xticks(pos + 0.4 - width / 2, comps)
        ax.set_ylabel("implied tensor entry")
    ax.legend(fontsize=8)
    ax.set_title("what the learned models imply")
    return fig


def dudt_2d(tree: xr.DataTree, times=(0.01, 0.1, 0.5)):
    """dU/dt of a held-out trajectory: homogenized truth and each model's error (seed Fig. 6 analogue)."""
    plt = pyplot()
    learn = tree["learn"].to_dataset()
    hom = tree["homogenized"].to_dataset()
    t_all = hom["time"].values
    test = int(learn["test_traj"].values[0])
    idx = [int(np.argmin(abs(t_all - t))) for t in times if t <= t_all[-1]]
    models = [str(m) for m in learn["model"].values]
    fig, axes = plt.subplots(len(idx), 1 + len(models), figsize=(3 * (1 + len(models)), 2.8 * len(idx)),
                             constrained_layout=True, squeeze=False)
    for row, i in zip(axes, idx):
        truth = hom["dUdt_h"].values[test, i]
        scale = np.abs(truth).max()
        im = row[0].imshow(truth.T, origin="lower", cmap="RdBu_r", vmin=-scale, vmax=scale)
        row[0].set_title(f"homogenized dU/dt, t = {t_all[i]:g}", fontsize=8)
        fig.colorbar(im, ax=row[0], shrink=0.8)
        for ax, m in zip(row[1:], models):
            err = learn["dUdt_pred"].sel(model=m).values[0, i] - truth
            im = ax.imshow(err.T, origin="lower", cmap="PuOr", vmin=-scale / 10, vmax=scale / 10)
            ax.set_title(f"{m} error (rel. {np.linalg.norm(err) / np.linalg.norm(truth):.1e})", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def rollout_2d(tree: xr.DataTree, ic: int = 0):
    """Learned models integrated from an unseen initial condition vs the homogenized solution (seed Fig. 7)."""
    plt = pyplot()
    roll = tree["rollout"].to_dataset()
    times, report = roll["time"].values, roll["report_time"].values
    models = [str(m) for m in roll["model"].values]
    fig, axes = plt.subplots(len(report), 1 + len(models), figsize=(2.8 * (1 + len(models)), 2.6 * len(report)),
                             constrained_layout=True, squeeze=False)
    for row, t in zip(axes, report):
        i = int(np.argmin(abs(times - t)))
        truth = roll["U_h"].values[ic, i]
        scale = np.abs(truth).max()
        panels = [("homogenized", truth)] + [(m, roll["U"].sel(model=m).values[ic, i]) for m in models]
        for ax, (label, u) in zip(row, panels):
            ax.imshow(u.T, origin="lower", cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_title(f"{label}, t = {t:g}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def rollout_error_2d(tree: xr.DataTree, ic: int = 0):
    """(a) error of the rollouts against time; (b) the trajectories in the plane of the two largest
    Fourier amplitudes of the homogenized solution (seed Fig. 8 analogue)."""
    plt = pyplot()
    roll = tree["rollout"].to_dataset()
    times = roll["time"].values
    truth = roll["U_h"].values[ic]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    spec = np.fft.rfft2(truth)  # (time, kx, ky)
    top = np.argsort(np.abs(spec[0]).ravel())[::-1][:2]
    for m in roll["model"].values:
        u = roll["U"].sel(model=m).values[ic]
        err = np.linalg.norm((u - truth).reshape(len(times), -1), axis=1) / np.linalg.norm(truth.reshape(len(times), -1), axis=1)
        ax.semilogy(times[1:], err[1:], **MODEL_STYLE.get(str(m), {}))  # t = 0: the same initial field
        c = np.fft.rfft2(u).reshape(len(times), -1)[:, top]
        bx.plot(c[:, 0].real, c[:, 1].real, **MODEL_STYLE.get(str(m), {}))
    c = spec.reshape(len(times), -1)[:, top]
    bx.plot(c[:, 0].real, c[:, 1].real, "k-", lw=1.2, label="homogenized")
    ax.set_xlabel("t")
    ax.set_title(r"$\|U - U_h\| / \|U_h\|$")
    ax.legend(fontsize=8)
    bx.set_xlabel("Re of the largest Fourier coefficient")
    bx.set_ylabel("Re of the second largest")
    bx.set_title("state space (seed Fig. 8b)")
    bx.legend(fontsize=8)
    return fig


def _when(stage: str, dims: int):
    def ok(tree: xr.DataTree) -> bool:
        if stage not in tree.children or "trajectories" not in tree.children:
            return False
        return _is_1d(tree) == (dims == 1)
    return ok


#: (file stem, figure function, applies to the store?)
FIGURES = [
    ("eqfree_trajectories", trajectories_1d, _when("homogenized", 1)),
    ("eqfree_dudt", dudt_1d, _when("learn", 1)),
    ("eqfree_rollout", rollout_1d, _when("rollout", 1)),
    ("eqfree_implied", implied_coefficients, lambda t: "learn" in t.children),
    ("gaptooth_dudt", dudt_2d, _when("learn", 2)),
    ("gaptooth_rollout", rollout_2d, _when("rollout", 2)),
    ("gaptooth_rollout_error", rollout_error_2d, _when("rollout", 2)),
]
