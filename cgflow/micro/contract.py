"""The micro-model contracts: ``fdr`` (a 1-D conserved lattice gas) and ``eqfree`` (a detailed heterogeneous problem).

Every registered model declares its ``family`` (a class attribute; ``"fdr"`` if
absent). :func:`check_model` applies the family's contract; the ``eqfree`` one is
:data:`EQFREE_REQUIRED` (documented in :mod:`cgflow.methods.eqfree.models`).
The rest of this docstring is the fdr contract.

The stages of :mod:`cgflow.methods.fdr` (ensemble -> operator -> fit -> macro ->
particles) never name a particle system. They get a *model object* from the
registry (:func:`cgflow.micro.registry.create_model`, selected by
``micro.model: NAME`` and built with that model's parameters, e.g. the zero-range
process's ``rate_exponent``) and call only the methods below. The shape follows
xarray's ``BackendEntrypoint`` (a small class with required methods, optional
ones announced by flags, discovered through entry points) and scikit-learn's
estimator contract (``__init__`` stores parameters only; :func:`check_model`
is the contract test, the counterpart of ``check_estimator``).

Conventions every model shares (those of :mod:`cgflow.micro.zrp`)
-------------------------------------------------------------------
* configurations are C-contiguous, writeable ``int64`` vectors of occupations,
  evolved in place;
* sites x_i = i/L (:meth:`FDRModel.site_positions`), lattice time = macroscopic
  time x L**2;
* bond i joins sites i and i+1; on a ring (``periodic=True``) bond L-1 joins L-1
  and 0; on a closed segment there is no flux through the ends;
* ``bond_jumps`` counters have length L and count crossings of bond i in either
  direction.

Required (a model lacking any of them is refused by the registry, naming it)
-----------------------------------------------------------------------------
``name``, ``description``, ``parameters``
    class attributes: registry name, one-line description of the dynamics (stored
    in the store attrs), and the ``micro.*`` spec keys the model takes (all
    required; e.g. ``("rate_exponent",)`` for the ZRP, ``()`` for the SEP). Keys
    the fdr schema does not know are added for the selected model, typed by an
    optional class attribute ``parameter_kinds`` (``{key: "int" | "float" |
    "str" | "bool"}``, default ``"float"``); a plugin needs no edit of cgflow.
``site_positions(sites)``
    x_i = i/L.
``check_density(rho)``
    raise ``ValueError`` unless every density is inside the model's domain
    (``density_domain``, a class attribute ``(low, high)``; ``high`` may be
    ``inf``). Local-equilibrium product measures exist on the open domain.
``sample_product_measure(rho_sites, rng)``
    one exact draw of the local-equilibrium product measure with the given site
    densities (the fdr ensemble's preparations).
``run(eta, duration, periodic, rng, bond_jumps=None) -> int``
    advance ``eta`` in place by ``duration`` lattice time units with exact
    continuous-time dynamics; returns the number of events (the stage's work).
``event_rate(rho_sites, periodic) -> float``
    expected events per unit lattice time in the product measure of
    ``rho_sites`` (cost estimates only: ``expected_events``, throughput).
``warmup()``
    compile kernels (numba caches on disk); may do nothing.
``conventions() -> dict``
    model attributes stored with every fdr store group (``model``, ``rate``, the
    parameters).

Optional, announced by capability flags
---------------------------------------
``has_bond_rates = True`` and ``bond_rates(eta, periodic)``
    the jump rate across every bond in configuration ``eta`` (length L on a ring,
    L - 1 closed). Needed by the carré-du-champ estimator; without it the spec
    refuses ``operator.estimators: [..., carre_du_champ]``.
``has_exact_facts = True`` and
    ``mean_bond_rates(rho_sites, periodic)`` (E of the bond rates under the product
    measure), ``lattice_mean_field(rho_sites, duration, periodic)`` (the mean
    occupations after ``duration`` lattice time under local equilibrium; flat
    profiles are not evolved), ``thermodynamic_force(rho, tabulated=False)``
    (F(rho), seed eq. (7); sign convention F = -log phi) and
    ``exact_stencil(rho_a, slope, elements, tabulated=False)`` (the continuum
    operator row (K_a,a-1, K_aa, K_a,a+1) frozen at an affine profile). Without
    them the operator stage writes ``K_reference`` as NaN and the spec refuses
    the ``macro`` and ``particles`` stages (they need the force F and the exact
    reference).
``macro_cases() -> dict``
    the model's test profiles for the macro and particles stages:
    ``{case name: (boundary, rho0 callable, description)}`` with case names from
    ``cgflow.spec.MACRO_CASES``. ``None`` (the default) means the method's own
    cases (seed 000 Fig. 4, densities 3–12), which suit models whose domain holds
    them; a model with a bounded domain (the SEP: (0, 1)) gives its own. The spec
    checks that every case profile lies inside ``density_domain``.

A model is a small frozen object: it must pickle (stages travel to workers and
build it there from ``(name, parameters)``) and equal models must behave
identically.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "FAMILIES",
    "FDRModel",
    "ContractError",
    "EQFREE_REQUIRED",
    "REQUIRED",
    "OPTIONAL",
    "check_model",
    "family_of",
    "missing_methods",
]

#: Method families a micro model can serve.
FAMILIES = ("fdr", "eqfree")

#: Methods and attributes every fdr model must have.
REQUIRED: tuple[str, ...] = (
    "name",
    "description",
    "parameters",
    "density_domain",
    "site_positions",
    "check_density",
    "sample_product_measure",
    "run",
    "event_rate",
    "warmup",
    "conventions",
)

#: Optional capabilities: flag -> methods it promises.
OPTIONAL: dict[str, tuple[str, ...]] = {
    "has_bond_rates": ("bond_rates",),
    "has_exact_facts": ("mean_bond_rates", "lattice_mean_field", "thermodynamic_force", "exact_stencil"),
}


#: Members every eqfree model must have (:mod:`cgflow.methods.eqfree.models`): its spec sections and rules,
#: the sweep that advances its patches, random and stored initial conditions, the homogenized reference,
#: the informative points, and the coefficient a learned right-hand side implies.
EQFREE_REQUIRED: tuple[str, ...] = (
    "name",
    "description",
    "parameters",
    "dimension",
    "sections",
    "check_spec",
    "trajectories",
    "random_initial_condition",
    "stored_initial_condition",
    "reference",
    "interior_points",
    "implied",
    "implied_variables",
)

_ATTRIBUTES = ("name", "description", "parameters", "density_domain", "dimension")


def family_of(model: Any) -> str:
    """The method family a model (class or instance) declares: its ``family`` attribute, ``"fdr"`` by default."""
    return getattr(model, "family", "fdr")


class ContractError(TypeError):
    """A registered model does not meet :class:`FDRModel`; the message names what is missing."""


@runtime_checkable
class FDRModel(Protocol):
    """A 1-D conserved lattice gas usable by every fdr stage (module docstring).

    Attributes
    ----------
    name : str
        Registry name (``micro.model``).
    description : str
        One line on the dynamics, stored in the store attrs.
    parameters : tuple of str
        The ``micro.*`` spec keys the model takes, all required.
    density_domain : tuple of float
        ``(low, high)``: open interval of the densities of its product measures.
    has_bond_rates, has_exact_facts : bool
        Capability flags of the optional methods (module docstring).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[tuple[str, ...]]
    density_domain: ClassVar[tuple[float, float]]
    has_bond_rates: ClassVar[bool]
    has_exact_facts: ClassVar[bool]

    def site_positions(self, sites: int) -> np.ndarray:
        """x_i = i/L, shape (L,)."""

    def check_density(self, rho: Any) -> None:
        """Raise ``ValueError`` unless every value lies in the open ``density_domain``."""

    def sample_product_measure(self, rho_sites: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One exact draw of the product measure with site densities ``rho_sites`` (int64, shape (L,))."""

    def run(self, eta: np.ndarray, duration: float, periodic: bool, rng: np.random.Generator,
            bond_jumps: np.ndarray | None = None) -> int:
        """Evolve ``eta`` in place for ``duration`` lattice time units; return the number of events."""

    def event_rate(self, rho_sites: np.ndarray, periodic: bool) -> float:
        """Expected events per unit lattice time under the product measure of ``rho_sites``."""

    def warmup(self) -> None:
        """Compile kernels (may do nothing)."""

    def conventions(self) -> dict:
        """Model attributes for the store (``model``, ``rate``, parameters)."""

    def macro_cases(self) -> Mapping[str, tuple[str, Callable, str]] | None:
        """The model's macro test profiles, or None for the method's defaults."""


def missing_methods(model: Any) -> list[str]:
    """Names of required members that ``model`` (a class or an instance) lacks, then those its flags promise."""
    required = EQFREE_REQUIRED if family_of(model) == "eqfree" else REQUIRED
    missing = [n for n in required if not hasattr(model, n)]
    for n in required:
        if n in _ATTRIBUTES or n in missing:
            continue
        if not callable(getattr(model, n)):
            missing.append(n)
    for flag, methods in OPTIONAL.items():
        if getattr(model, flag, False):
            missing += [m for m in methods if not callable(getattr(model, m, None))]
    return missing


def check_model(model: Any, *, simulate: bool = True) -> None:
    """The contract test of an fdr model (the counterpart of scikit-learn's ``check_estimator``).

    Parameters
    ----------
    model : object
        A model class or instance. A class is checked statically only.
    simulate : bool, default True
        For an instance, also run a tiny simulation: same generator state, same
        events and bytes; occupations stay int64 and the particle number is
        conserved on a ring; ``bond_jumps`` counts every event; the model pickles
        to an equal-behaving copy.

    Raises
    ------
    ContractError
        Naming the first missing method (all of them, in order) or the failed check.
    """
    family = family_of(model)
    label = getattr(model, "name", None) or getattr(model, "__name__", type(model).__name__)
    if family not in FAMILIES:
        raise ContractError(f"micro model {label!r}: family must be one of {FAMILIES}, got {family!r}")
    missing = missing_methods(model)
    if missing:
        raise ContractError(f"micro model {label!r} does not meet the {family} contract: missing required method(s) "
                            f"{', '.join(missing)} (see cgflow.micro.contract)")
    if not isinstance(model.parameters, tuple) or not all(isinstance(p, str) for p in model.parameters):
        raise ContractError(f"micro model {label!r}: 'parameters' must be a tuple of spec keys, got {model.parameters!r}")
    if family == "eqfree":
        if model.dimension not in (1, 2):
            raise ContractError(f"micro model {label!r}: dimension must be 1 or 2, got {model.dimension!r}")
        return
    lo, hi = model.density_domain
    if not (lo < hi):
        raise ContractError(f"micro model {label!r}: density_domain must be (low, high) with low < high, got {model.density_domain!r}")
    if inspect.isclass(model) or not simulate:
        return
    import pickle

    L = 16
    mid = 0.5 * (lo + hi) if math.isfinite(hi) else lo + 1.0
    rho = np.full(L, mid)
    outs = []
    for m in (model, pickle.loads(pickle.dumps(model))):
        rng = np.random.default_rng(7)
        eta = m.sample_product_measure(rho, rng)
        if not (isinstance(eta, np.ndarray) and eta.dtype == np.int64 and eta.shape == (L,)):
            raise ContractError(f"micro model {label!r}: sample_product_measure must return int64 of shape ({L},)")
        n0 = int(eta.sum())
        jumps = np.zeros(L, dtype=np.int64)
        events = int(m.run(eta, 5.0, True, rng, bond_jumps=jumps))
        if int(eta.sum()) != n0:
            raise ContractError(f"micro model {label!r}: run does not conserve the particle number on a ring")
        if int(jumps.sum()) != events:
            raise ContractError(f"micro model {label!r}: bond_jumps counted {int(jumps.sum())} crossings, run returned {events} events")
        outs.append((eta.copy(), events))
    if not (np.array_equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]):
        raise ContractError(f"micro model {label!r}: the same generator state gave different results (or the pickled copy differs)")
