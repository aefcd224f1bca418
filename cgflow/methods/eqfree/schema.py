"""Spec sections of method ``eqfree`` (seed 001), read by :mod:`cgflow.spec` through :mod:`cgflow.methods.registry`.

The sections common to every detailed model (training trajectories, learning,
rollouts) are here; ``micro`` and the multiscale scheme's section come from the
eqfree micro model that ``micro.model`` selects (:mod:`.models`, registered in
the entry-point group ``cgflow.micro_models`` with family ``eqfree``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...spec import Field, ratio

__all__ = ["STAGES", "OPTIONAL_SECTIONS", "LEARNED_MODELS", "COMMON_SECTIONS", "sections", "check", "eqfree_model"]

#: The stages of method eqfree, in execution order.
STAGES: tuple[str, ...] = ("trajectories", "homogenized", "learn", "rollout")

#: Sections that may be omitted as a whole.
OPTIONAL_SECTIONS: frozenset[str] = frozenset({"micro.coefficient", "learn", "rollout"})

#: Learned right-hand sides (seed 001, §4): derivative features, stencil windows, least squares.
LEARNED_MODELS = ("pointwise", "stencil", "linear")

_POS = dict(minimum=0, exclusive_minimum=True)

#: Sections shared by both eqfree models: training data, learning, rollouts (seed 001, §4–5).
COMMON_SECTIONS: dict[str, Any] = {
    "trajectories": {
        "train": Field("int", minimum=1, doc="trajectories the models are fitted on"),
        "test": Field("int", minimum=1, doc="held-out trajectories for the rMSE of dU/dt (eq. 24)"),
        "modes": Field("int", minimum=1, doc="Fourier terms of the random initial conditions (eq. 23 / 28)"),
        "t_end": Field("float", **_POS, doc="horizon of every trajectory"),
        "sample_every": Field("float", **_POS, doc="interval between recorded snapshots"),
    },
    "learn": {
        "models": Field("strs", required=False, default=LEARNED_MODELS, choices=LEARNED_MODELS),
        "epochs": Field("int", required=False, default=40, minimum=1, doc="passes of Adam over the training set (the best epoch's weights are kept)"),
        "batch": Field("int", required=False, default=64, minimum=1),
        "learning_rate": Field("float", required=False, default=1.0e-3, **_POS),
    },
    "rollout": {
        "initial_conditions": Field("int", required=False, default=1, minimum=1, doc="unseen initial conditions integrated with each model"),
        "times": Field("floats", required=False, default=(0.1, 0.5, 1.0), **_POS, doc="times at which the rollout error is reported"),
    },
}

def eqfree_model(name: str):
    """The eqfree micro model registered as ``name`` (an instance; its contract checked)."""
    from ...micro.registry import create_model

    return create_model(name, family="eqfree")


def sections(data: Any, problems: list) -> dict | None:
    """The selected model's sections plus :data:`COMMON_SECTIONS`; None (a problem) if ``micro.model`` is not one."""
    from ...micro.registry import ContractError, UnknownModelError, available_models

    micro = data.get("micro") if isinstance(data, Mapping) else None
    name = micro.get("model") if isinstance(micro, Mapping) else None
    known = available_models(family="eqfree")
    if name not in known:
        problems.append(("micro.model", f"expected one of {{{', '.join(known)}}}, got {name!r} (the registered eqfree micro models)"))
        return None
    try:
        model = eqfree_model(name)
    except (ContractError, UnknownModelError) as exc:
        problems.append(("micro.model", str(exc)))
        return None
    return {**model.sections(), **COMMON_SECTIONS}


def check(d: dict, problems: list) -> None:
    """Cross-key rules: sampling and rollout times here, the rest by the model's ``check_spec``."""
    traj, rollout = d.get("trajectories", {}), d.get("rollout", {})
    t_end, every = traj.get("t_end"), traj.get("sample_every")
    if t_end is not None and every is not None and ratio(t_end, every) is None:
        problems.append(("trajectories.sample_every", f"must divide trajectories.t_end = {t_end:g} a whole number of times, got {every:g}"))
    for t in rollout.get("times", ()):
        if t_end is not None and t > t_end * (1 + 1e-12):
            problems.append(("rollout.times", f"must be <= trajectories.t_end = {t_end:g}, got {t:g}"))
    eqfree_model(d["micro"]["model"]).check_spec(d, problems)
