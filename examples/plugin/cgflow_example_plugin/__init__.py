"""Example cgflow micro-model plugin: the two-server zero-range process (``micro.model: zrp2server``)."""

from .model import TwoServerZRP, fugacity, mobility, thermodynamic_force

__all__ = ["TwoServerZRP", "fugacity", "mobility", "thermodynamic_force"]
