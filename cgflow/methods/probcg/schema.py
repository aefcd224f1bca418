"""Spec sections of method ``probcg`` (seed 003), read by :mod:`cgflow.spec` through :mod:`cgflow.methods.registry`."""

from __future__ import annotations

import difflib
from typing import Any

from ...spec import Field

__all__ = ["STAGES", "OPTIONAL_SECTIONS", "WALKER_LAWS", "SCHEMA", "sections", "check"]

#: The stages of method probcg, in execution order.
STAGES: tuple[str, ...] = ("fine", "infer", "reference", "predict")

#: Sections that may be omitted as a whole.
OPTIONAL_SECTIONS: frozenset[str] = frozenset({"coarse", "fine", "infer", "predict"})

#: Fine-grained walker laws (seed 003, §3; REFERENCE-003 §1).
WALKER_LAWS = ("synthetic", "advection_diffusion", "burgers")

_POS = dict(minimum=0, exclusive_minimum=True)

SCHEMA: dict[str, Any] = {
    "micro": {
        "model": Field("str", choices=("walkers",)),
        "law": Field("str", choices=WALKER_LAWS, doc="synthetic: a prescribed coarse law theta; advection_diffusion or burgers walkers"),
        "walkers": Field("int", minimum=1, doc="n_f walkers on [-1, 1), periodic"),
        "jump_right": Field("float", required=False, default=0.205, minimum=0, maximum=1, doc="probability of a +step jump per fine step (advection_diffusion)"),
        "jump_left": Field("float", required=False, default=0.195, minimum=0, maximum=1, doc="probability of a -step jump per fine step (advection_diffusion)"),
        "step": Field("float", required=False, default=3.875e-3, **_POS, doc="jump length delta y"),
        "dt": Field("float", required=False, default=2.5e-3, **_POS, doc="fine time step delta t"),
        "fine_steps": Field("int", required=False, default=400, minimum=1, doc="fine steps per coarse step Delta t"),
        "density_scale": Field("float", required=False, default=1.0 / 12.0, **_POS, doc="c of the Burgers walkers' local density (REFERENCE-003 §1c)"),
        "theta": Field("floatmap", required=False, doc="synthetic law: {feature name: value}, e.g. {'X[j-1]': 0.5}; features not named are 0"),
    },
    "coarse": {
        "bins": Field("int", required=False, default=24, minimum=3, doc="n_c coarse bins on [-1, 1)"),
        "neighbours": Field("int", required=False, default=2, minimum=0, doc="M: features X[j+m], |m| <= M, and their ordered products"),
    },
    "fine": {
        "experiments": Field("int", required=False, default=64, minimum=1, doc="N training experiments (one coarse step each)"),
        "block": Field("int", required=False, default=16, minimum=1, doc="experiments per task"),
        "modes": Field("int", required=False, default=12, minimum=1, doc="K: Fourier modes of the initial-state prior"),
        "amplitude": Field("float", required=False, default=0.4, minimum=0, doc="A: prior amplitude, a_k, b_k ~ N(0, (A/k^decay)^2)"),
        "decay": Field("float", required=False, default=1.0, minimum=0, doc="spectrum exponent of the initial-state prior (1: REFERENCE-003's proposal; 0.5 decorrelates neighbouring bins, so the quadratic features are identifiable)"),
        "test_initial_conditions": Field("int", required=False, default=2, minimum=0, doc="held-out initial conditions"),
        "test_replicas": Field("int", required=False, default=32, minimum=1, doc="fine-grained runs from each held-out initial condition"),
        "test_steps": Field("int", required=False, default=10, minimum=1, doc="coarse steps of the test runs"),
        "observe_bins": Field("int", required=False, default=96, minimum=1, doc="finer observation resolution (a multiple of coarse.bins)"),
        "test_initial": Field("str", required=False, default="prior", choices=("prior", "sine"), doc="held-out initial states: prior draws, or log(1 + A sin(pi y)) (shock formation)"),
        "test_amplitude": Field("float", required=False, default=0.5, minimum=0, maximum=0.99, doc="A of the sine initial state"),
        "lifting": Field("str", required=False, default="uniform", choices=("uniform", "smooth"), doc="how a coarse state is lifted to walkers: uniform inside the bin (REFERENCE-003 §1), or i.i.d. from the continuous prior field exp X0(y) on sub-cells of width <= step/4 (no density jumps at bin edges; training and held-out states alike)"),
        "test_shared_start": Field("bool", required=False, default=True, doc="all fine-grained runs of a held-out state start from one fine state x0; false: each run from its own x0 ~ p_cf(.|X0) (the predictive then mixes the same starts)"),
    },
    "infer": {
        "data": Field("str", required=False, doc="bring your own bin counts (netCDF or Zarr; see the README); then the fine stage is skipped"),
        "holdout": Field("int", required=False, default=0, minimum=0, doc="with infer.data: the last steps of each experiment kept out of training, for predict"),
        "restarts": Field("int", required=False, default=2, minimum=1, doc="independent fits; the highest ELBO is kept"),
        "bootstrap": Field("int", required=False, default=0, minimum=0, doc="extra fits to bootstrap resamples of the experiments (for predict.theta: bootstrap); 0: none"),
        "iterations": Field("int", required=False, default=150, minimum=1, doc="outer iterations at most"),
        "block": Field("int", required=False, default=16, minimum=1, doc="experiments per task in each iteration"),
        "learning_rate": Field("float", required=False, default=0.02, **_POS, doc="Adam step on (mu, log s) of q(X_i)"),
        "samples": Field("int", required=False, default=16, minimum=1, doc="Monte Carlo samples per SVI gradient"),
        "svi_steps": Field("int", required=False, default=40, minimum=1, doc="Adam steps per outer iteration"),
        "tolerance": Field("float", required=False, default=1.0e-4, **_POS, doc="stopping rule: absolute floor of the allowed drift of each mu_theta over the window"),
        "relative_tolerance": Field("float", required=False, default=0.1, minimum=0, doc="stopping rule: allowed drift of mu_theta_l over the window, in posterior s.d. of theta_l"),
        "stop_z": Field("float", required=False, default=3.0, minimum=0, doc="stopping rule: drifts within this many standard errors of the iteration noise count as no drift"),
        "window": Field("int", required=False, default=10, minimum=3, doc="iterations the stopping rule fits its line to"),
    },
    "predict": {
        "samples": Field("int", required=False, default=1000, minimum=10, doc="posterior predictive samples"),
        "noise": Field("str", required=False, default="mean", choices=("mean", "sampled"), doc="v at prediction time: <v>, or drawn from q(v)"),
        "theta": Field("str", required=False, default="posterior", choices=("posterior", "bootstrap"), doc="posterior: theta ~ q(theta) of the reported fit; bootstrap: sample s draws theta ~ q_b(theta) (and v of) bootstrap fit b = s mod infer.bootstrap (the bagged posterior: carries the training-set variability of a misspecified law)"),
    },
}


def sections(data: Any = None, problems: list | None = None) -> dict[str, Any]:
    """The sections (they do not depend on the spec's values)."""
    return SCHEMA


def check(d: dict, problems: list) -> None:
    """Cross-key rules; with ``infer.data`` the fine and reference stages are dropped (the data replace them)."""
    micro, coarse, fine, infer = d.get("micro", {}), d.get("coarse", {}), d.get("fine", {}), d.get("infer", {})
    if d.get("predict", {}).get("theta") == "bootstrap" and not infer.get("bootstrap"):
        problems.append(("predict.theta", "bootstrap needs fits to resample: set infer.bootstrap to the number of them (e.g. 8)"))
    right, left = micro.get("jump_right"), micro.get("jump_left")
    if right is not None and left is not None and right + left > 1:
        problems.append(("micro.jump_right", f"jump_right + jump_left must not exceed 1 (the rest is the probability to stay), got {right:g} + {left:g}"))
    if fine.get("experiments") and fine.get("block") and fine["experiments"] % fine["block"]:
        problems.append(("fine.block", f"must divide fine.experiments = {fine['experiments']}, got {fine['block']}"))
    bins, observe = coarse.get("bins"), fine.get("observe_bins")
    if bins is not None and observe is not None and observe % bins:
        problems.append(("fine.observe_bins", f"must be a multiple of coarse.bins = {bins}, got {observe}"))
    theta = micro.get("theta")
    if micro.get("law") == "synthetic":
        if not theta:
            problems.append(("micro.theta", "the synthetic law needs its coefficients: {feature name: value}"))
    elif theta:
        problems.append(("micro.theta", f"only the synthetic law takes coefficients (law is {micro.get('law')!r})"))
    if theta and coarse.get("neighbours") is not None:
        from .features import feature_names

        names = feature_names(coarse["neighbours"])
        unknown = sorted(set(theta) - set(names))
        if unknown:
            hint = difflib.get_close_matches(unknown[0], names, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(("micro.theta", f"unknown feature(s) {unknown}{extra} for coarse.neighbours = {coarse['neighbours']}; names look like X[j-1], X[j], X[j+1]*X[j+1]"))
    if infer.get("data") is not None:
        from .data import DataError, check_count_data

        try:
            check_count_data(infer["data"], bins=coarse.get("bins"), holdout=infer.get("holdout", 0))
        except DataError as exc:
            problems.append(("infer.data", str(exc)))
        d["stages"] = tuple(s for s in d.get("stages", ()) if s not in ("fine", "reference"))  # the data replace them
    elif infer.get("holdout"):
        problems.append(("infer.holdout", "only with infer.data (the fine stage makes its own test runs)"))
