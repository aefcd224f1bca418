"""Coarse-graining methods: each is a package of stages built from a spec (see :mod:`.registry`)."""

from __future__ import annotations

from .registry import build_stages, get_method

__all__ = ["build_stages", "get_method"]
