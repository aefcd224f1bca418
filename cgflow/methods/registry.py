"""Registry of coarse-graining methods: ``method: NAME`` -> its spec sections and its stages.

A method is two modules. Its *schema module* holds what the spec validator
(:mod:`cgflow.spec`) needs, and nothing heavy:

``STAGES``
    the stage names, in execution order;
``OPTIONAL_SECTIONS``
    dotted names of sections that may be omitted as a whole (they take their defaults);
``sections(data, problems) -> dict | None``
    the spec sections (nested dicts of :class:`cgflow.spec.Field`) for the raw
    spec ``data``. A method whose sections depend on its micro model (eqfree)
    reads ``micro.model`` here; when it cannot decide it appends the problem and
    returns None;
``check(d, problems)``
    rules across keys, on the typed, defaulted spec ``d``; may narrow ``d["stages"]``.

Its *pipeline* ``"module:function"`` builds the stage objects from a validated
:class:`~cgflow.spec.Spec`. The validator and the CLI only ever go through
:func:`get_method`: neither names a method. :func:`register` adds one in-process
(the counterpart of :func:`cgflow.micro.registry.register` for micro models).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Any

__all__ = ["Method", "UnknownMethodError", "available_methods", "build_stages", "get_method", "register"]


@dataclass(frozen=True)
class Method:
    """One coarse-graining method.

    Parameters
    ----------
    name : str
        The spec's ``method`` value.
    schema_module : str
        Dotted path of its schema module (module docstring).
    pipeline : str
        ``"module:function"``: the function ``(spec) -> list of stages`` of ``spec.stages``.
    seed : str
        Which paper it implements (shown by ``cgflow methods``-style listings and errors).
    """

    name: str
    schema_module: str
    pipeline: str
    seed: str = ""

    @property
    def schema(self) -> ModuleType:
        return import_module(self.schema_module)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.schema.STAGES)

    @property
    def optional_sections(self) -> frozenset[str]:
        return frozenset(self.schema.OPTIONAL_SECTIONS)

    def sections(self, data: Any, problems: list) -> dict | None:
        return self.schema.sections(data, problems)

    def check(self, d: dict, problems: list) -> None:
        self.schema.check(d, problems)

    def build_stages(self, spec: Any) -> list:
        module, _, function = self.pipeline.partition(":")
        return getattr(import_module(module), function)(spec)


_METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("fdr", "cgflow.methods.fdr.schema", "cgflow.methods.fdr:build_stages",
               "seed 000: fluctuation-dissipation operator discovery"),
        Method("eqfree", "cgflow.methods.eqfree.schema", "cgflow.methods.eqfree:build_stages",
               "seed 001: equation-free patch dynamics + neural networks"),
        Method("probcg", "cgflow.methods.probcg.schema", "cgflow.methods.probcg.pipeline:build_stages",
               "seed 003: probabilistic coarse-graining with sparse Bayesian learning"),
        Method("partial", "cgflow.methods.partial.schema", "cgflow.methods.partial.pipeline:build_stages",
               "seed 002: partial evolution + hierarchical upsampling"),
    )
}


class UnknownMethodError(KeyError, ValueError):
    """No method of that name; the message lists the registered ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def available_methods() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(_METHODS)


def get_method(name: str) -> Method:
    """The method registered as ``name`` (:class:`UnknownMethodError` lists the others)."""
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(f"unknown method {name!r}; registered methods: {', '.join(_METHODS)}") from None


def register(method: Method, *, replace: bool = False) -> None:
    """Add ``method`` in this process (its schema module is imported now, so a broken one fails here)."""
    if method.name in _METHODS and not replace:
        raise ValueError(f"method {method.name!r} is already registered (use replace=True)")
    missing = [n for n in ("STAGES", "OPTIONAL_SECTIONS", "sections", "check") if not hasattr(method.schema, n)]
    if missing:
        raise TypeError(f"schema module {method.schema_module!r} of method {method.name!r} lacks {missing}")
    _METHODS[method.name] = method


def build_stages(spec: Any) -> list:
    """The stage objects of ``spec.method`` that ``spec.stages`` selects, in order."""
    return get_method(spec.method).build_stages(spec)
