"""cgflow.plots.estimator_costs: the figure of benchmarks/bench_fdr_estimators.py (--figure), from its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cgflow.plots import estimator_costs

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "fdr_estimators.json"


def synthetic() -> dict:
    def design(label, estimator, r2, c_unit, v):
        return {"label": label, "estimator": estimator, "r2": r2, "cpu_s_per_preparation": c_unit,
                "variance_per_preparation": v, "r1_for_target": v / 1e-4, "cpu_s_for_target": v / 1e-4 * c_unit}

    return {
        "setup": {"target_relative_se": 0.01, "rho": 7.0, "sites": 5000, "elements": 40},
        "designs": [design("increment, R2 = 800", "increment", 800, 1.1, 4.8e-3),
                    design("increment, R2 = 1", "increment", 1, 1.0, 2.0),
                    design("carre du champ", "carre_du_champ", 1, 1.0, 1.2e-3)],
    }  # fmt: skip


@pytest.mark.parametrize("source", ["synthetic", "committed"])
def test_estimator_costs_writes_the_figure(tmp_path, source):
    import matplotlib.pyplot as plt

    if source == "committed":
        assert RESULTS.exists(), "benchmarks/results/fdr_estimators.json is committed with the benchmark"
        results = json.loads(RESULTS.read_text())
    else:
        results = synthetic()
    target = tmp_path / "costs.png"
    fig = estimator_costs(results, target)
    assert target.stat().st_size > 10_000
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    lines = [ln for ln in ax.get_lines() if np.size(ln.get_xdata()) > 2]  # one curve per design
    assert len(lines) == len(results["designs"])
    for line, d in zip(lines, results["designs"]):  # SE = sqrt(v c / C): through the 1 % point
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert x[0] == pytest.approx(d["cpu_s_per_preparation"])  # from one preparation on
        assert y[0] == pytest.approx(np.sqrt(d["variance_per_preparation"]))
        assert np.interp(np.log(d["cpu_s_for_target"]), np.log(x), np.log(y)) == pytest.approx(np.log(0.01), abs=1e-3)
    plt.close(fig)
    assert estimator_costs(results).axes  # no path: nothing written, a Figure returned
    plt.close("all")
