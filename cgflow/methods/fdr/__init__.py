"""Fluctuation–dissipation operator discovery (seed 000: Li, Dirr, Embacher, Zimmer, Reina 2019)."""

from __future__ import annotations

from typing import Any

from .ensemble import FDREnsemble, ZRPEnsemble
from .fit import FittedOperator, OperatorFit, fitted_operator
from .macro import MacroSimulation
from .operator import OperatorTable
from .particles import ParticleComparison, ParticleEnsemble

__all__ = [
    "ZRPEnsemble",
    "FDREnsemble",
    "OperatorTable",
    "OperatorFit",
    "MacroSimulation",
    "ParticleEnsemble",
    "ParticleComparison",
    "FittedOperator",
    "fitted_operator",
    "build_stages",
]


def build_stages(spec: Any) -> list:
    """All stages of the method, chained by fingerprints; those in ``spec.stages`` are returned.

    The micro model is ``micro.model`` from the registry (:mod:`cgflow.micro.registry`),
    built with its parameters; no stage names a model.
    """
    ensemble = FDREnsemble.from_spec(spec)
    operator = OperatorTable.from_spec(spec, ensemble)
    fit = OperatorFit.from_spec(spec, operator)
    macro = MacroSimulation.from_spec(spec, fit)
    particles = ParticleEnsemble.from_spec(spec)
    stages = {
        "ensemble": ensemble,
        "operator": operator,
        "fit": fit,
        "macro": macro,
        "particles": particles,
        "particles_vs_macro": ParticleComparison.from_stages(particles, macro),
    }
    return [stages[name] for name in spec.stages]
