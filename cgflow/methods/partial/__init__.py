"""Partial evolution, hierarchical upsampling and K-scaled SDE learning (seed 002: Chen, Huang, Novoselov, Li 2025).

Numerics (no Dask, no stores): :mod:`.evolution` builds partial-evolution
training pairs from large snapshots by evolving one tile; :mod:`.upsampling`
builds large snapshots from small-system ones. Both talk to a micro model
through :class:`PatchModel` (``cgflow.micro.glauber.GlauberParams`` is one).
"""

from __future__ import annotations

from .evolution import PartialPairs, PatchModel, full_pairs, partial_evolution_pairs
from .upsampling import check_upsampling, hierarchical_upsample, upsample_level

__all__ = [
    "PartialPairs",
    "PatchModel",
    "check_upsampling",
    "full_pairs",
    "hierarchical_upsample",
    "partial_evolution_pairs",
    "upsample_level",
]
