"""Integrate the learned PDEs from unseen initial conditions (seed 001, §5.1 Fig. 5, §5.2 Figs. 7–8).

The ``rollout`` stage reloads every model the ``learn`` stage saved, draws
``rollout.initial_conditions`` new initial conditions (eq. 23 / 28) from the
stage's own streams ``(root seed, "rollout", k)`` — never seen in training —
and integrates dU/dt = model(U) on the macro grid with BDF (scipy
``solve_ivp``; 1-D Dirichlet ends fixed, 2-D periodic). Each rollout is set
beside the exact homogenized solution (1-D also beside the semi-discrete
homogenized system, the best a macro grid of this spacing can do):

* ``rmse(model, ic, report_time)``: seed eq. (24) over the snapshots in
  [0, report_time];
* ``relative_error(model, ic, report_time)``: ||U(t) − U_h(t)|| / ||U_h(t)|| at
  the report time (information-carrying nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ...engine.keys import BlockKey, block_stream
from ...learn import model_from_dataset, relative_mse
from ...learn import rollout as integrate_model
from .homogenized import interior, reference
from .schema import eqfree_model

__all__ = ["Rollout"]


@dataclass(frozen=True)
class Rollout:
    """The ``rollout`` reduce stage (implements ``ReduceStage``)."""

    upstream: str  # fingerprint of the learn stage
    seed: int
    initial_conditions: int = 1
    report_times: tuple[float, ...] = (0.1, 0.5, 1.0)
    modes: int = 20
    name: str = field(default="rollout", kw_only=True)

    @classmethod
    def from_spec(cls, spec, learn) -> "Rollout":
        from ...engine.types import fingerprint

        r = spec["rollout"]
        return cls(
            upstream=fingerprint(learn), seed=spec.seed, initial_conditions=r["initial_conditions"],
            report_times=tuple(r["times"]), modes=spec["trajectories.modes"],
        )

    def initial_condition(self, model: str, k: int):
        """The k-th unseen initial condition of micro model ``model`` (its own stream: not a training trajectory's)."""
        rng = block_stream(self.seed, BlockKey(self.name, k, 0))
        return eqfree_model(model).random_initial_condition(rng, self.modes)

    def compute(self, tree: xr.DataTree, progress=None) -> xr.Dataset:
        """Roll every learned model out from each unseen initial condition; ``progress(done, total)`` is told after each."""
        traj = tree["trajectories"]
        attrs = dict(traj.attrs)
        learn = tree["learn"]
        kinds = [str(k) for k in learn["model"].values]
        models = {k: model_from_dataset(learn[k].to_dataset().load()) for k in kinds}
        x, times = traj["x"].values, traj["time"].values
        grid_dims = [d for d in ("x", "y") if d in traj.dims]
        inner = interior({**attrs, "transient_snapshots": 0})  # rollouts start from a macro field: no transient

        refs = [reference(attrs, self.initial_condition(attrs["model"], k), x, times) for k in range(self.initial_conditions)]
        U_model = np.empty((len(kinds), self.initial_conditions, *refs[0]["U_h"].shape))
        total = len(refs) * len(kinds)
        for k, ref in enumerate(refs):
            U0 = ref["U_h"][0]  # 2-D: the patch-averaged initial condition, as the scheme would restrict it
            for m, kind in enumerate(kinds):
                U_model[m, k] = integrate_model(models[kind], U0, times)
                if progress is not None:
                    progress(k * len(kinds) + m + 1, total)

        report = np.array(self.report_times)
        last = [int(np.searchsorted(times, t - 1e-12)) for t in report]  # index of each report time
        candidates = {"homogenized": [r["U_h"] for r in refs]}
        names = list(kinds)
        if "U_fd" in refs[0]:
            names.append("semidiscrete")  # the macro grid's own error, as a floor for the learned models
            U_model = np.concatenate([U_model, np.stack([r["U_fd"] for r in refs])[None]], axis=0)
        rmse = np.empty((len(names), self.initial_conditions, len(report)))
        rel = np.empty_like(rmse)
        for m in range(len(names)):
            for k in range(self.initial_conditions):
                truth = candidates["homogenized"][k]
                for j, i in enumerate(last):
                    rmse[m, k, j] = relative_mse(U_model[m, k][: i + 1][inner], truth[: i + 1][inner])
                    diff = (U_model[m, k][i] - truth[i])[inner[1:]]
                    rel[m, k, j] = np.linalg.norm(diff) / np.linalg.norm(truth[i][inner[1:]])

        out = xr.Dataset(
            coords={"model": np.array(names, dtype=object), "ic": np.arange(self.initial_conditions), "time": times,
                    "report_time": report, **{d: traj[d].values for d in grid_dims}}
        )
        out["U"] = (("model", "ic", "time", *grid_dims), U_model)
        out["U"].attrs["description"] = "rollout of each learned model with BDF from the unseen initial conditions ('semidiscrete': the homogenized system on the macro grid)"
        out["U_h"] = (("ic", "time", *grid_dims), np.stack(candidates["homogenized"]))
        out["U_h"].attrs["description"] = "exact homogenized solution from the same initial conditions"
        out["rmse"] = (("model", "ic", "report_time"), rmse)
        out["rmse"].attrs["description"] = "rMSE (seed eq. 24) against the homogenized solution over the snapshots in [0, report_time]"
        out["relative_error"] = (("model", "ic", "report_time"), rel)
        out["relative_error"].attrs["description"] = "||U - U_h|| / ||U_h|| at the report time"
        return out
