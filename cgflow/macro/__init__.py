"""Macroscopic solvers for learned evolution equations (seed 000, Algorithm 1, step 4)."""

from .fem import (
    MacroResult,
    apply_operator,
    assemble_operator,
    estimate_max_diffusivity,
    mass_matrix,
    nodal_slopes,
    node_positions,
    simulate,
    stable_time_step,
)

__all__ = [
    "MacroResult",
    "apply_operator",
    "assemble_operator",
    "estimate_max_diffusivity",
    "mass_matrix",
    "nodal_slopes",
    "node_positions",
    "simulate",
    "stable_time_step",
]
