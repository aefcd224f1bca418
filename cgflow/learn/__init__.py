"""Learned macroscopic right-hand sides with a scikit-learn estimator API (seed 001 §4-§5).

* :mod:`~cgflow.learn.features`: derivative features, stencil windows, the
  field <-> sample plumbing (:class:`Grid`).
* :mod:`~cgflow.learn.models`: :class:`PointwiseNetwork` (eq. (12), (16)),
  :class:`StencilNetwork` (eq. (13), (17)-(19)), :class:`LinearBaseline`, the
  point-level :class:`MLPPointRegressor`, and pickle-free persistence
  (``to_dataset`` / :func:`model_from_dataset`).
* :mod:`~cgflow.learn.metrics`: :func:`relative_mse` (eq. (24)).
* :mod:`~cgflow.learn.rollout`: :func:`rollout` (BDF on the macro grid),
  :func:`effective_coefficient`, :func:`effective_tensor`.
"""

from .features import (
    FD_FEATURES,
    SPECTRAL_FEATURES_2D,
    Grid,
    finite_difference_features,
    spectral_features_2d,
    stencil_windows,
)
from .metrics import relative_mse
from .models import (
    FieldModel,
    LinearBaseline,
    MLPPointRegressor,
    PointwiseNetwork,
    StencilNetwork,
    model_from_dataset,
)
from .rollout import effective_coefficient, effective_tensor, rollout

__all__ = [
    "FD_FEATURES",
    "SPECTRAL_FEATURES_2D",
    "FieldModel",
    "Grid",
    "LinearBaseline",
    "MLPPointRegressor",
    "PointwiseNetwork",
    "StencilNetwork",
    "effective_coefficient",
    "effective_tensor",
    "finite_difference_features",
    "model_from_dataset",
    "relative_mse",
    "rollout",
    "spectral_features_2d",
    "stencil_windows",
]
