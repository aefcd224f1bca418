"""Registry of micro models: found by name through the entry-point group ``cgflow.micro_models``.

A model is a class meeting :class:`cgflow.micro.contract.FDRModel`. A package
registers it in its ``pyproject.toml``::

    [project.entry-points."cgflow.micro_models"]
    mymodel = "mypackage.models:MyModel"

and a spec selects it with ``micro.model: mymodel`` (its parameters, the class's
``parameters`` tuple, are ``micro.*`` keys). The built-in models below are
declared the same way in cgflow's own ``pyproject.toml`` (``zrp``, ``sep``): there
is no other path. This is xarray's ``backends/plugins.py`` in small:
:func:`available_models` lists names, :func:`get_model_class` loads and checks one
(a model missing a required method is refused with a :class:`ContractError`
naming the method), :func:`create_model` builds an instance from parameters.
:func:`register` adds a model in-process (tests, notebooks); in-process models
win over entry points of the same name and are only visible in this process
(Dask worker processes see entry-point models only).

Built-in models
---------------
:class:`ZeroRangeModel` (``zrp``; parameter ``rate_exponent`` p: g(k) = k**p) and
:class:`ExclusionModel` (``sep``; no parameter). Both are thin frozen adapters
over the numba kernels and exact facts of :mod:`cgflow.micro.zrp` /
:mod:`cgflow.micro.zrp_hydro` and :mod:`cgflow.micro.sep` /
:mod:`cgflow.micro.sep_hydro`; they call them with exactly the arguments the
fdr stages used before the contract existed, so ZRP results are bitwise
unchanged.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Mapping

import numpy as np

from .contract import ContractError, check_model, family_of

__all__ = [
    "ENTRY_POINT_GROUP",
    "ContractError",
    "UnknownModelError",
    "ExclusionModel",
    "ZeroRangeModel",
    "available_models",
    "create_model",
    "get_model_class",
    "register",
    "unregister",
]

#: Entry-point group of micro models.
ENTRY_POINT_GROUP = "cgflow.micro_models"

_IN_PROCESS: dict[str, type] = {}


class UnknownModelError(KeyError, ValueError):
    """No model of that name is registered; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_models(family: str | None = None) -> list[str]:
    """Sorted names of the registered models (entry points and in-process), of one method family if given.

    Filtering by family loads each entry point (a broken one is left out here and
    reported by :func:`get_model_class` when it is asked for by name).
    """
    names = sorted(set(_entry_points()) | set(_IN_PROCESS))
    if family is None:
        return names
    out = []
    for name in names:
        try:
            cls = _IN_PROCESS[name] if name in _IN_PROCESS else _entry_points()[name].load()
        except Exception:  # noqa: BLE001 - a broken plugin must not hide the others
            continue
        if family_of(cls) == family:
            out.append(name)
    return out


def register(name: str, model_class: type, *, replace: bool = False) -> None:
    """Register ``model_class`` under ``name`` in this process (checked now: a missing method is refused).

    Parameters
    ----------
    name : str
        ``micro.model`` value that selects it.
    model_class : type
        A class meeting :class:`~cgflow.micro.contract.FDRModel`.
    replace : bool, default False
        Allow replacing an in-process registration of the same name.

    Raises
    ------
    ContractError
        If the class lacks a required member (named in the message).
    ValueError
        If ``name`` is taken in-process and ``replace`` is false.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    check_model(model_class)
    if name in _IN_PROCESS and not replace:
        raise ValueError(f"micro model {name!r} is already registered in this process (use replace=True)")
    _IN_PROCESS[name] = model_class
    _cached_model.cache_clear()


def unregister(name: str) -> None:
    """Remove an in-process registration (entry points are not affected)."""
    _IN_PROCESS.pop(name, None)
    _cached_model.cache_clear()


def get_model_class(name: str, family: str | None = None) -> type:
    """The model class registered as ``name``, checked against its family's contract.

    With ``family``, a model of another family is refused (:class:`UnknownModelError`
    listing that family's models).

    Raises
    ------
    UnknownModelError
        If no model has that name; the message lists the registered names.
    ContractError
        If the class does not meet the contract; the message names the missing method(s).
    """
    if name in _IN_PROCESS:
        cls = _IN_PROCESS[name]
    else:
        eps = _entry_points()
        if name not in eps:
            known = ", ".join(available_models(family)) or "none"
            kind = f"{family} models" if family else "models"
            raise UnknownModelError(f"unknown micro model {name!r}; registered {kind}: {known} "
                                    f"(entry-point group {ENTRY_POINT_GROUP!r})")
        try:
            cls = eps[name].load()
        except Exception as exc:  # a broken plugin: say which one
            raise ContractError(f"micro model {name!r}: cannot load entry point {eps[name].value!r}: {exc}") from exc
    if family is not None and family_of(cls) != family:
        known = ", ".join(available_models(family)) or "none"
        raise UnknownModelError(f"micro model {name!r} is a {family_of(cls)} model, not a {family} one; "
                                f"registered {family} models: {known}")
    check_model(cls)
    return cls


def create_model(name: str, params: Mapping[str, Any] | None = None, family: str | None = None):
    """An instance of model ``name`` with ``params`` (exactly the class's ``parameters``; cached).

    ``family`` as in :func:`get_model_class`.

    Raises
    ------
    UnknownModelError, ContractError
        As :func:`get_model_class`.
    ValueError
        If a parameter is missing, not taken by the model, or refused by it.
    """
    params = dict(params or {})
    return _cached_model(name, tuple(sorted(params.items())), family)


@functools.lru_cache(maxsize=64)
def _cached_model(name: str, items: tuple, family: str | None = None):
    cls = get_model_class(name, family)
    params = dict(items)
    missing = [p for p in cls.parameters if p not in params]
    extra = [p for p in params if p not in cls.parameters]
    if missing:
        raise ValueError(f"micro model {name!r} needs parameter(s) {missing}")
    if extra:
        raise ValueError(f"micro model {name!r} takes no parameter(s) {extra} (its parameters: {list(cls.parameters)})")
    return cls(**params)


# ============================================================================= built-in models
def _check_open(rho, lo: float, hi: float) -> None:
    arr = np.asarray(rho, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= lo) | (arr >= hi)
    if np.any(bad):
        where = f"({lo:g}, {hi:g})" if math.isfinite(hi) else f"> {lo:g}"
        raise ValueError(f"densities must be {where}, got {arr[bad].ravel()[0]!r}")


@dataclass(frozen=True)
class ZeroRangeModel:
    """The zero-range process of seed 000: g(k) = k**p, jumps left/right with probability 1/2.

    Parameters
    ----------
    rate_exponent : int
        p in {0, 1, 2} (:data:`cgflow.micro.zrp.SUPPORTED_RATE_EXPONENTS`).
    """

    rate_exponent: int
    name: ClassVar[str] = "zrp"
    description: ClassVar[str] = "zero-range process g(k) = k**p"
    parameters: ClassVar[tuple[str, ...]] = ("rate_exponent",)
    density_domain: ClassVar[tuple[float, float]] = (0.0, math.inf)
    has_bond_rates: ClassVar[bool] = True
    has_exact_facts: ClassVar[bool] = True
    #: How the macro stage's exact reference is computed (stored in its attrs).
    reference_operator: ClassVar[str] = (
        "exact stencil of m = phi/2 by 10-point Gauss-Legendre quadrature per element, "
        "phi from a cubic Hermite table of the Newton inverse (zrp_hydro.tabulated_fugacity, relative error "
        "< 1e-14); the force -log phi from the same table"
    )

    def __post_init__(self):
        from . import zrp

        zrp.check_rate_exponent(self.rate_exponent)

    # required
    def site_positions(self, sites):
        from . import zrp

        return zrp.site_positions(sites)

    def check_density(self, rho):
        _check_open(rho, *self.density_domain)

    def sample_product_measure(self, rho_sites, rng):
        from . import zrp

        return zrp.sample_product_measure(rho_sites, self.rate_exponent, rng)

    def run(self, eta, duration, periodic, rng, bond_jumps=None):
        from . import zrp

        return zrp.run_zrp(eta, duration, self.rate_exponent, periodic, rng, bond_jumps=bond_jumps)

    def event_rate(self, rho_sites, periodic):
        """sum_i phi(rho_i): the mean firing rate (null boundary events included on a closed segment)."""
        from . import zrp

        return zrp.fugacity(rho_sites, self.rate_exponent).sum()

    def warmup(self):
        from . import zrp

        zrp.warmup()

    def conventions(self):
        return {
            "model": "zero-range process",
            "rate_exponent": self.rate_exponent,
            "rate": "g(k) = k**p (p = 0: 1 if k > 0); jump left/right with probability 1/2 each",
        }

    def macro_cases(self):
        return None  # the method's own cases (seed 000 Fig. 4)

    # optional: bond rates
    def bond_rates(self, eta, periodic):
        """(g(eta_i) + g(eta_i+1)) / 2 for every bond: the jump rate across it."""
        g = (eta > 0).astype(np.float64) if self.rate_exponent == 0 else eta.astype(np.float64) ** self.rate_exponent
        if periodic:
            return 0.5 * (g + np.roll(g, -1))
        return 0.5 * (g[:-1] + g[1:])

    # optional: exact facts
    def mean_bond_rates(self, rho_sites, periodic):
        """(phi_i + phi_i+1)/2 under the product measure."""
        from . import zrp

        phi = zrp.fugacity(rho_sites, self.rate_exponent)
        return 0.5 * (phi + np.roll(phi, -1)) if periodic else 0.5 * (phi[:-1] + phi[1:])

    def lattice_mean_field(self, rho_sites, duration, periodic):
        from . import zrp_hydro

        return zrp_hydro.lattice_mean_field(rho_sites, duration, self.rate_exponent, periodic)

    def thermodynamic_force(self, rho, tabulated=False):
        from . import zrp_hydro

        return zrp_hydro.thermodynamic_force(rho, self.rate_exponent, tabulated=tabulated)

    def exact_stencil(self, rho_a, slope, elements, tabulated=False):
        from . import zrp_hydro

        return zrp_hydro.exact_stencil(rho_a, slope, elements, self.rate_exponent, tabulated=tabulated)


def sep_periodic_cosine(x):
    """SEP periodic macro case: rho0(x) = 1/2 + (1/5) cos(2 pi x), rho in [0.3, 0.7], |rho0'| <= 0.4 pi."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 + 0.2 * np.cos(2.0 * np.pi * x)


def sep_dirichlet_asymmetric(x):
    """SEP Dirichlet macro case: rho0(x) = 0.15 + 0.6 x + 0.1 sin(pi x), ends 0.15 and 0.75 held fixed.

    Monotone (slope 0.6 + 0.1 pi cos(pi x) in [0.29, 0.91]) and not symmetric about
    x = 1/2; densities reach below 0.2 and above 0.7, outside the quick workflow's
    probed band [0.2, 0.8] only near the ends (extrapolation, as the ZRP case).
    """
    x = np.asarray(x, dtype=np.float64)
    return 0.15 + 0.6 * x + 0.1 * np.sin(np.pi * x)


@dataclass(frozen=True)
class ExclusionModel:
    """The symmetric simple exclusion process (:mod:`cgflow.micro.sep`): no parameter.

    At most one particle per site; each particle jumps to each empty neighbour at
    rate 1/2. Bernoulli product measures; m(rho) = rho (1 - rho)/2, D = 1/2,
    F = log((1 - rho)/rho) (:mod:`cgflow.micro.sep_hydro`).
    """

    name: ClassVar[str] = "sep"
    description: ClassVar[str] = "symmetric simple exclusion process"
    parameters: ClassVar[tuple[str, ...]] = ()
    density_domain: ClassVar[tuple[float, float]] = (0.0, 1.0)
    has_bond_rates: ClassVar[bool] = True
    has_exact_facts: ClassVar[bool] = True
    #: How the macro stage's exact reference is computed (stored in its attrs).
    reference_operator: ClassVar[str] = (
        "closed-form exact stencil of m = rho (1 - rho)/2 frozen at the local affine state "
        "(sep_hydro.exact_stencil); the force log((1 - rho)/rho) (sep_hydro.thermodynamic_force)"
    )

    def site_positions(self, sites):
        from . import sep

        return sep.site_positions(sites)

    def check_density(self, rho):
        _check_open(rho, *self.density_domain)

    def sample_product_measure(self, rho_sites, rng):
        from . import sep

        return sep.sample_product_measure(rho_sites, rng)

    def run(self, eta, duration, periodic, rng, bond_jumps=None):
        from . import sep

        return sep.run_sep(eta, duration, periodic, rng, bond_jumps=bond_jumps)

    def event_rate(self, rho_sites, periodic):
        from . import sep

        return sep.expected_event_rate(rho_sites, periodic)

    def warmup(self):
        from . import sep

        sep.warmup()

    def conventions(self):
        return {
            "model": "symmetric simple exclusion process",
            "rate": "at most one particle per site; each particle jumps to each empty neighbour at rate 1/2",
        }

    def macro_cases(self):
        return {
            "periodic-cosine": ("periodic", sep_periodic_cosine,
                                "rho0 = 1/2 + (1/5) cos(2 pi x), periodic; rho in [0.3, 0.7], |grad rho| <= 0.4 pi"),
            "dirichlet-asymmetric": ("dirichlet", sep_dirichlet_asymmetric,
                                     "rho0 = 0.15 + 0.6 x + 0.1 sin(pi x), Dirichlet ends fixed at 0.15 and 0.75; "
                                     "slopes in [0.29, 0.91]"),
        }

    def bond_rates(self, eta, periodic):
        from . import sep

        return sep.bond_rates(eta, periodic)

    def mean_bond_rates(self, rho_sites, periodic):
        from . import sep_hydro

        return sep_hydro.mean_bond_rates(rho_sites, periodic)

    def lattice_mean_field(self, rho_sites, duration, periodic):
        from . import sep_hydro

        return sep_hydro.lattice_mean_field(rho_sites, duration, periodic)

    def thermodynamic_force(self, rho, tabulated=False):
        from . import sep_hydro

        return sep_hydro.thermodynamic_force(rho, tabulated=tabulated)

    def exact_stencil(self, rho_a, slope, elements, tabulated=False):
        from . import sep_hydro

        return sep_hydro.exact_stencil(rho_a, slope, elements, tabulated=tabulated)
