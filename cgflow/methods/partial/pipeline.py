"""The stages of method ``partial`` from a spec: pairs -> sde -> truth -> rollout -> evaluation."""

from __future__ import annotations

from typing import Any

from .stages import build

__all__ = ["build_stages"]


def build_stages(spec: Any) -> list:
    """All stages of the method, chained by fingerprints; those in ``spec.stages`` are returned, in order."""
    stages = build(spec)
    return [stages[name] for name in spec.stages]
