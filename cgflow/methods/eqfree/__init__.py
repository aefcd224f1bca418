"""Equation-free multiscale methods and learned PDEs (seed 001: Arbabi, Bunder, Samaey, Roberts, Kevrekidis 2020).

Stages: ``trajectories`` (a Dask sweep, one task per trajectory: patch dynamics
in 1-D, gap-tooth in 2-D) -> ``homogenized`` (exact references) -> ``learn``
(networks and a linear baseline) -> ``rollout`` (learned PDEs integrated from
unseen initial conditions). The numerics live in :mod:`.patch_dynamics` and
:mod:`.gap_tooth` and know nothing of Dask or stores.
"""

from __future__ import annotations

from typing import Any

from .gap_tooth import GapTooth2D
from .homogenized import Homogenized
from .learning import LearnModels
from .patch_dynamics import PatchDynamics
from .rollout import Rollout
from .trajectories import GapToothTrajectories, PatchTrajectories

__all__ = [
    "PatchDynamics",
    "GapTooth2D",
    "PatchTrajectories",
    "GapToothTrajectories",
    "Homogenized",
    "LearnModels",
    "Rollout",
    "build_stages",
]


def build_stages(spec: Any) -> list:
    """All stages of the method, chained by fingerprints; those in ``spec.stages`` are returned.

    The trajectories sweep is the micro model's (:mod:`.models`, selected by ``micro.model``).
    """
    from .schema import eqfree_model

    trajectories = eqfree_model(spec["micro.model"]).trajectories(spec)
    homogenized = Homogenized.from_stage(trajectories)
    learn = LearnModels.from_spec(spec, homogenized)
    stages = {
        "trajectories": trajectories,
        "homogenized": homogenized,
        "learn": learn,
        "rollout": Rollout.from_spec(spec, learn),
    }
    return [stages[name] for name in spec.stages]
