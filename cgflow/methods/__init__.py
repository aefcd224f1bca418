"""Coarse-graining methods: each is a package of stages built from a spec."""

from __future__ import annotations

from typing import Any

__all__ = ["build_stages"]


def build_stages(spec: Any) -> list:
    """The stage objects of ``spec.method`` that ``spec.stages`` selects, in order."""
    if spec.method == "fdr":
        from .fdr import build_stages as fdr_stages

        return fdr_stages(spec)
    if spec.method == "eqfree":
        from .eqfree import build_stages as eqfree_stages

        return eqfree_stages(spec)
    if spec.method == "probcg":
        from .probcg.pipeline import build_stages as probcg_stages

        return probcg_stages(spec)
    if spec.method == "partial":
        from .partial.pipeline import build_stages as partial_stages

        return partial_stages(spec)
    raise ValueError(f"unknown method {spec.method!r}")  # the spec validator rules this out
