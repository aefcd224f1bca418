"""Figures from a run's store: one function per figure, each returning a matplotlib Figure.

``cgflow plot STORE`` writes every figure whose inputs the store holds as PNG
files into ``<store>-figures/`` (or ``--out``). Figures of method fdr live in
:mod:`.fdr`, of method eqfree in :mod:`.eqfree`, of method probcg in :mod:`.probcg`; each module lists its figures
in ``FIGURES`` as ``(file stem, function, applies-to-this-store predicate)``.
"""

from __future__ import annotations

from pathlib import Path

from . import eqfree, fdr, partial, probcg
from ._common import pyplot
from .eqfree import dudt_1d, dudt_2d, implied_coefficients, rollout_1d, rollout_2d, rollout_error_2d, trajectories_1d
from .fdr import estimator_costs, estimator_errors, macro_evolution, operator_entries, v_discr

__all__ = [
    "FIGURES",
    "plot_store",
    "v_discr",
    "operator_entries",
    "estimator_errors",
    "macro_evolution",
    "estimator_costs",
    "trajectories_1d",
    "dudt_1d",
    "rollout_1d",
    "implied_coefficients",
    "dudt_2d",
    "rollout_2d",
    "rollout_error_2d",
]

FIGURES = fdr.FIGURES + eqfree.FIGURES + probcg.FIGURES + partial.FIGURES


def plot_store(path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write every figure the store has data for; return the PNG paths."""
    from ..engine.store import open_run

    path = Path(path)
    tree = open_run(path)
    out = Path(out_dir) if out_dir else path.with_name(path.name.removesuffix(".zarr") + "-figures")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    plt = pyplot()
    for stem, func, applies in FIGURES:
        if not applies(tree):
            continue
        fig = func(tree)
        target = out / f"{stem}.png"
        fig.savefig(target, dpi=120)
        plt.close(fig)
        written.append(target)
    return written
