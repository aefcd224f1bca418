"""Spec sections of method ``partial`` (seed 002), read by :mod:`cgflow.spec`."""

from __future__ import annotations

from typing import Any

#: The stages of method partial, in execution order.
STAGES: tuple[str, ...] = ()

#: Sections of the spec (nested dicts of cgflow.spec.Field), filled in by the stage author.
SCHEMA: dict[str, Any] = {}

#: Sections that may be omitted as a whole.
OPTIONAL_SECTIONS: frozenset[str] = frozenset()


def check(d: dict, problems: list) -> None:
    """Cross-key rules; append ``(dotted key, message)`` to ``problems``."""
