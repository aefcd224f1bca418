"""Fluctuation–dissipation operator discovery (seed 000: Li, Dirr, Embacher, Zimmer, Reina 2019)."""

from __future__ import annotations

from typing import Any

from .ensemble import ZRPEnsemble

__all__ = ["ZRPEnsemble", "build_stages"]


def build_stages(spec: Any) -> list:
    stages = {"ensemble": ZRPEnsemble.from_spec}
    return [stages[name](spec) for name in spec.stages]
