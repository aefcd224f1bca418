"""Macro stage: continuum simulations with the fitted operator (seed 000 §4, Fig. 4; Algorithm 1 lines 21-43).

The fitted operator of the ``fit`` stage is a local model of the tridiagonal
discretised operator, K_ba = K_ba(rho_a, grad rho|_a) (seed eqs. (6), (8), (9)).
With the analytic thermodynamic force F = -log phi(rho) = -log 2m (seed eq. (7);
:func:`cgflow.micro.zrp_hydro.thermodynamic_force`) it closes the weak form

    sum_a <gamma_a, gamma_b> d rho_a/dt = sum_{a in {b-1, b, b+1}} K_ba(rho_a, grad rho|_a) F_a   (eqs. (4), (8))

which :func:`cgflow.macro.fem.simulate` integrates on linear hats (consistent
mass matrix, Algorithm 1 lines 21-25; explicit Euler lines 29-43, or BDF). The
paper probes the operator's accuracy exactly this way: "We here use the
analytical thermodynamic force, cf. (7), to probe the accuracy of the
operator", and compares with "the solution of the PDE given explicitly by (7)
... with an identical spatio-temporal discretization scheme". Here that
*reference* is the same scheme and the same step policy with the exact operator
of the mobility m(rho) = phi/2, frozen at the same local affine states
(:func:`cgflow.micro.zrp_hydro.exact_stencil`), so the difference between the
two runs is the error of the fitted operator alone (data, fit, extrapolation),
not the discretisation error that both share.

The reference is cheap: m = phi/2 at the quadrature points and the force
-log phi come from a cubic Hermite table of the Newton inverse of rho(phi)
(:func:`cgflow.micro.zrp_hydro.tabulated_fugacity`, < 1e-14 relative), and the
explicit step evaluates the stencil once on its three stacked states
(:func:`cgflow.macro.fem.simulate`): the same steps and, to rounding (1e-13),
the same numbers as with Newton, about 60x faster per stencil call. How far the
reference is from time convergence is measured, not assumed: the same
semi-discrete system is integrated again by BDF at rtol 1e-10 and the distance
is stored as ``reference_time_error`` (explicit, quick workflow: 2e-5 at
t_end; it agrees with the step-halving Richardson estimate to 0.3 %). It
largely cancels in ``rel_l2_error`` because fitted and reference runs share
the scheme and the step policy: explicit and implicit runs report the same
``rel_l2_error`` to within 4.4e-4 of its size (quick workflow).

Cases (seed Fig. 4)
-------------------
``periodic-cosine``
    rho0(x) = 7 + 2 cos(2 pi x) on the periodic unit interval: density in
    [5, 9], gradient |rho0'| <= 4 pi ~ 12.6, inside the probed region of the
    paper's V_discr (rho in [4, 10], |s| <= 19; Appendix A). This is Fig. 4
    left, "a cosine profile with periodic boundary conditions, whose density
    and gradient lie within the bounds of the probed region in V". The mass
    1^T M rho is conserved exactly when every column of K sums to zero.
``dirichlet-asymmetric``
    rho0(x) = 3 + 9x + 2 sin(pi x) with the end values 3 and 12 held fixed
    (Algorithm 1 lines 23-25, 34-41). It is not symmetric about x = 1/2 (the
    linear part tilts it; reflection x -> 1 - x does not map it to itself or
    to its mirror), it is monotone (rho0' = 9 + 2 pi cos(pi x) in [2.7, 15.3]),
    and its slopes stay inside |s| <= 19 while its densities leave [4, 10] on
    both sides (rho0 < 4 for x < 0.066, rho0 > 10 for x > 0.559: half of the
    domain at t = 0). This is Fig. 4 right, "a non-symmetric initial density
    with fixed Dirichlet data extrapolating beyond this region"; the paper does
    not give its formula, so the choice is ours: the profile extrapolates in
    rho only, on both sides and far (up to rho = 12, a third of the probed
    width beyond it), and keeps doing so for all times because the boundary
    data do. The fraction of operator evaluations outside the probed region is
    recorded per run (``extrapolated_fraction``).

Other micro models
------------------
The force, the exact reference operator and the case profiles come from the
micro model of the spec (:mod:`cgflow.micro.contract`, ``thermodynamic_force``,
``exact_stencil``, ``macro_cases``); the text above is the zero-range process
of the paper. A model with a bounded density range gives its own profiles under
the same case names (the SEP: rho0 = 1/2 + cos(2 pi x)/5 and
0.15 + 0.6 x + 0.1 sin(pi x); :class:`cgflow.micro.registry.ExclusionModel`).

Outputs
-------
See :meth:`MacroSimulation.compute`. A failed run (e.g. a fit whose solution
leaves rho > 0, or an operator that is not dissipative) is recorded, not
raised: its variables are NaN, ``failed`` is True, ``steps`` is -1 and the
message is in the attribute ``failures``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import xarray as xr

from ...engine.types import TIMING_ATTR, fingerprint
from ...macro import fem
from .ensemble import micro_model, model_fields
from .fit import FittedOperator

__all__ = [
    "CASES",
    "MacroCase",
    "MacroSimulation",
    "model_cases",
    "dirichlet_asymmetric",
    "initial_condition",
    "periodic_cosine",
    "rescale_stencil",
    "save_times",
]

METHODS = ("explicit", "implicit")

#: Safety factor of the explicit step (fraction of the rigorous stability bound; fem's default).
EXPLICIT_SAFETY = 0.9
#: A fitted run may use at most this many times the reference's operator evaluations ...
BUDGET_FACTOR = 20
#: ... and at least this many, before it is stopped and recorded as a failure.
BUDGET_MIN_CALLS = 20_000
#: Tolerances of the time-convergence check of the reference: BDF at rtol, atol = CHECK_ATOL * max|rho0|.
CHECK_RTOL = 1e-10
CHECK_ATOL = 1e-12


# ----------------------------------------------------------------------------- cases
def periodic_cosine(x):
    """Initial density of the periodic case, rho0(x) = 7 + 2 cos(2 pi x) (seed Fig. 4 left).

    Parameters
    ----------
    x : array_like
        Positions in [0, 1).

    Returns
    -------
    ndarray
        Densities in [5, 9]; the gradient -4 pi sin(2 pi x) is bounded by 4 pi ~ 12.6,
        so every local state (rho_a, s_a) lies inside the paper's probed region
        rho in [4, 10], |s| <= 19 (Appendix A).
    """
    x = np.asarray(x, dtype=np.float64)
    return 7.0 + 2.0 * np.cos(2.0 * np.pi * x)


def dirichlet_asymmetric(x):
    """Initial density of the Dirichlet case, rho0(x) = 3 + 9x + 2 sin(pi x) (seed Fig. 4 right).

    Parameters
    ----------
    x : array_like
        Positions in [0, 1].

    Returns
    -------
    ndarray
        Monotone profile from rho0(0) = 3 to rho0(1) = 12 (the fixed boundary data),
        slope 9 + 2 pi cos(pi x) in [9 - 2 pi, 9 + 2 pi] ~ [2.7, 15.3]. The densities
        leave the probed range [4, 10] for x < 0.066 and x > 0.559 while the slopes
        stay inside |s| <= 19: the case extrapolates in rho, as the paper's Fig. 4
        right does ("fixed Dirichlet data extrapolating beyond this region").
    """
    x = np.asarray(x, dtype=np.float64)
    return 3.0 + 9.0 * x + 2.0 * np.sin(np.pi * x)


@dataclass(frozen=True)
class MacroCase:
    """An initial-boundary value problem of the macro stage.

    Attributes
    ----------
    name : str
        Case key (``spec.MACRO_CASES``).
    boundary : {'periodic', 'dirichlet'}
        Boundary conditions of :func:`cgflow.macro.fem.simulate`.
    profile : callable
        ``rho0(x)``, vectorised; for Dirichlet its end values are the boundary data.
    description : str
        One-line description, stored in the output attributes.
    """

    name: str
    boundary: str
    profile: Callable[[np.ndarray], np.ndarray]
    description: str

    def initial(self, elements: int) -> tuple[np.ndarray, np.ndarray]:
        """Node positions and nodal initial densities (nodal interpolation of ``profile``).

        Parameters
        ----------
        elements : int
            Number of elements N (Delta = 1/N).

        Returns
        -------
        x, rho0 : ndarray
            N nodes a/N, a = 0..N-1 (periodic) or N + 1 nodes a = 0..N (Dirichlet);
            Algorithm 1 line 10.
        """
        x = fem.node_positions(elements, self.boundary)
        return x, self.profile(x)


CASES: dict[str, MacroCase] = {
    "periodic-cosine": MacroCase(
        "periodic-cosine",
        "periodic",
        periodic_cosine,
        "rho0 = 7 + 2 cos(2 pi x), periodic; rho in [5, 9], |grad rho| <= 4 pi: inside the probed region "
        "(seed Fig. 4 left)",
    ),
    "dirichlet-asymmetric": MacroCase(
        "dirichlet-asymmetric",
        "dirichlet",
        dirichlet_asymmetric,
        "rho0 = 3 + 9 x + 2 sin(pi x), Dirichlet ends fixed at 3 and 12; slopes in [2.7, 15.3], densities "
        "outside [4, 10] for x < 0.066 and x > 0.559: extrapolates in rho (seed Fig. 4 right)",
    ),
}


def model_cases(model) -> dict[str, MacroCase]:
    """The macro cases of a micro model: its ``macro_cases()`` if it gives them, else :data:`CASES`.

    A model of the fdr contract (:mod:`cgflow.micro.contract`) may return
    ``{name: (boundary, rho0 callable, description)}`` with names from
    :data:`CASES` (e.g. the SEP, whose densities live in (0, 1), gives profiles
    inside (0, 1)); ``None`` keeps the seed's cases (densities 3-12).
    """
    own = model.macro_cases() if hasattr(model, "macro_cases") else None
    if own is None:
        return CASES
    return {name: MacroCase(name, boundary, profile, text) for name, (boundary, profile, text) in own.items()}


def initial_condition(case: str, elements: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, rho0)`` of a named case on N = ``elements`` elements (see :class:`MacroCase`)."""
    if case not in CASES:
        raise ValueError(f"unknown macro case {case!r}; known: {tuple(CASES)}")
    return CASES[case].initial(elements)


def save_times(t_end: float, saves: int) -> np.ndarray:
    """Output times: t = 0 and ``saves`` equally spaced times up to ``t_end`` (``saves + 1`` in all)."""
    return np.linspace(0.0, float(t_end), int(saves) + 1)


# ----------------------------------------------------------------------------- operators
def rescale_stencil(stencils, flat, ratio: float) -> np.ndarray:
    """Carry row stencils fitted at spacing Delta_fit to the macro spacing Delta = Delta_fit/ratio.

    Parameters
    ----------
    stencils : array_like, shape (..., 3)
        (K_{a,a-1}, K_aa, K_{a,a+1}) at (rho_a, s_a), spacing Delta_fit.
    flat : array_like, shape (..., 3)
        The same operator at (rho_a, 0), i.e. K(1)(rho_a) of seed eq. (9).
    ratio : float
        Delta_fit/Delta (= elements/fit_elements).

    Returns
    -------
    ndarray, shape (..., 3)
        ratio K(1) + K(2)_grad + K(2)_sym/ratio, where K(2) = stencils - flat is split
        into its gradient part K(2)_grad = g (1, 0, -1), g = (K(2)_{a,a-1} - K(2)_{a,a+1})/2,
        and the rest K(2)_sym. ``stencils`` itself (a copy) when ``ratio == 1``.

    Notes
    -----
    For the operator <m grad gamma_a, grad gamma_b> frozen at an affine profile the
    stencil is (m/Delta + m'' s**2 Delta/6)(-1, 2, -1) + (m' s/2)(1, 0, -1) + O(Delta**3)
    (seed Appendix C; REFERENCE §1): the Laplacian stencil K(1) = (m/Delta)(-1, 2, -1)
    scales like 1/Delta, the gradient stencil (m' s/2)(1, 0, -1) does not depend on
    Delta, and the symmetric slope correction (m'' s**2 Delta/6)(-1, 2, -1) scales
    like Delta. Each part is rescaled by its own power, so row sums stay
    proportional (zero stays zero: mass conservation is kept). For the exact
    zero-range operator the result matches the operator at the new spacing to
    4e-5 relative for Delta_fit = 1/10 -> Delta = 1/20 (rho in [3, 12], |s| <= 19);
    scaling the whole stencil's symmetric part by ``ratio`` instead leaves
    m'' s**2 (Delta_fit**2 - Delta**2)/(6 m), 5 % at rho = 4, s = 19.
    """
    k = np.array(stencils, dtype=np.float64)
    if ratio == 1:
        return k
    k0 = np.asarray(flat, dtype=np.float64)
    k2 = k - k0
    g = 0.5 * (k2[..., 0] - k2[..., 2])
    grad = np.stack([g, np.zeros_like(g), -g], axis=-1)
    return ratio * k0 + grad + (k2 - grad) / ratio


class _BudgetExceeded(RuntimeError):
    """A fitted run needed far more operator evaluations than the reference (it is not a ValueError,
    so :func:`cgflow.macro.fem.simulate` does not treat it as a recoverable domain violation)."""


class _FittedStencil:
    """``stencil(rho, slope)`` of a fitted operator for :func:`cgflow.macro.fem.simulate`.

    Evaluates the fit with ``on_extrapolation='ignore'`` (no :class:`ExtrapolationWarning`,
    expected for the Dirichlet case) and counts instead the node-evaluations whose local state lies
    outside the operator's probed box ``rho_range`` x ``slope_range`` (the
    rectangle of the V_discr points its fit used); rescales the stencil
    to the macro spacing (:func:`rescale_stencil`); stops runaway runs after
    ``budget`` calls.
    """

    def __init__(self, operator, ratio: float, budget: int | None):
        self.operator = operator
        self.rho_lo, self.rho_hi = (float(v) for v in operator.rho_range)
        self.s_lo, self.s_hi = (float(v) for v in operator.slope_range)
        self.ratio = ratio
        self.budget = budget
        self.calls = 0
        self.evaluations = 0
        self.outside = 0

    def __call__(self, rho, slope):
        self.calls += 1
        if self.budget is not None and self.calls > self.budget:
            raise _BudgetExceeded(
                f"stopped after {self.budget} operator evaluations (the larger of {BUDGET_MIN_CALLS} and "
                f"{BUDGET_FACTOR}x the reference's): the step size collapsed"
            )
        rho = np.asarray(rho, dtype=np.float64)
        slope = np.asarray(slope, dtype=np.float64)
        out = (rho < self.rho_lo) | (rho > self.rho_hi) | (slope < self.s_lo) | (slope > self.s_hi)
        self.evaluations += out.size
        self.outside += int(np.count_nonzero(out))
        # extrapolation is counted above, not warned; the stencil at (rho, s) and the flat one at
        # (rho, 0) of the rescaling come from one evaluation of the polynomial
        if self.ratio == 1:
            return self.operator.stencil(rho, slope, on_extrapolation="ignore")
        both = self.operator.stencil(
            np.concatenate([rho, rho]), np.concatenate([slope, np.zeros_like(slope)]), on_extrapolation="ignore"
        )
        return rescale_stencil(both[: rho.shape[0]], both[rho.shape[0] :], self.ratio)

    @property
    def outside_fraction(self) -> float:
        return self.outside / self.evaluations if self.evaluations else math.nan


class _CountingCalls:
    """Wraps a stencil callable and counts its calls (the budget of the fitted runs)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, rho, slope):
        self.calls += 1
        return self.fn(rho, slope)


# ----------------------------------------------------------------------------- stage
_STABILITY_POLICY = {
    "explicit": (
        "forward Euler (Algorithm 1 lines 29-43) with the adaptive step dt = {safety} * 2/Lambda, Lambda a rigorous "
        "bound on the spectral radius of M^-1 d(K F)/d rho for the run's own operator at the current profile, "
        "recomputed every step (cgflow.macro.fem.estimate_max_diffusivity / stable_time_step). The textbook "
        "Delta^2/(6 D_max) with D = m' (REFERENCE §1) is ~5x too large for eq. (8): the column-wise operator adds the "
        "(dK/drho) F term, and a flat zero-range state has the effective diffusivity m'(1 - F). Fitted and reference "
        "runs use the same policy, so their steps differ only through their operators (dt, dt_reference)."
    ),
    "implicit": (
        "variable-order variable-step BDF (scipy.integrate.BDF, rtol 1e-8, atol 1e-10 max|rho0|) with a "
        "finite-difference banded Jacobian (cgflow.macro.fem.simulate); no stability restriction on the step; "
        "dt is the largest accepted step. Fitted and reference runs use the same tolerances."
    ),
}


@dataclass(frozen=True)
class MacroSimulation:
    """The ``macro`` reduce stage (implements ``ReduceStage``): seed Fig. 4 with every fitted operator.

    Attributes
    ----------
    upstream : str
        Fingerprint of the ``fit`` stage it reads.
    rate_exponent : int
        p of the zero-range rate g(k) = k**p; sets the analytic force -log phi and
        the reference operator.
    elements : int
        Number of macro elements N (Delta = 1/N). If it differs from the fit's
        ``elements`` attribute, the fitted stencils are carried to the macro
        spacing by :func:`rescale_stencil` (recorded as ``stencil_rescale``).
    cases : tuple of str
        Keys of :data:`CASES`.
    t_end : float
        Final time (macroscopic units).
    saves : int
        Number of output times after t = 0 (:func:`save_times`).
    method : {'explicit', 'implicit'}
        Time integrator of :func:`cgflow.macro.fem.simulate`.
    name : str
        Store group.
    """

    upstream: str
    rate_exponent: int | None
    elements: int
    cases: tuple[str, ...]
    t_end: float
    saves: int
    method: str
    model: str = "zrp"
    model_params: tuple = ()
    name: str = "macro"

    @property
    def micro(self):
        """The micro model object (registry; cached): force, exact operator and cases."""
        return micro_model(self.model, self.rate_exponent, self.model_params)

    @property
    def case_table(self) -> dict[str, MacroCase]:
        """The model's cases (:func:`model_cases`)."""
        return model_cases(self.micro)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        table = self.case_table
        unknown = [c for c in self.cases if c not in table]
        if unknown or not self.cases:
            raise ValueError(f"cases must be a non-empty subset of {tuple(table)}, got {self.cases!r}")
        if len(set(self.cases)) != len(self.cases):
            raise ValueError(f"cases must not repeat, got {self.cases!r}")
        if isinstance(self.elements, bool) or int(self.elements) != self.elements or self.elements < 4:
            raise ValueError(f"elements must be an integer >= 4, got {self.elements!r}")
        if not (math.isfinite(self.t_end) and self.t_end > 0):
            raise ValueError(f"t_end must be finite and > 0, got {self.t_end!r}")
        if isinstance(self.saves, bool) or int(self.saves) != self.saves or self.saves < 1:
            raise ValueError(f"saves must be an integer >= 1, got {self.saves!r}")

    @classmethod
    def from_spec(cls, spec, fit) -> "MacroSimulation":
        """The stage of a validated spec (section ``macro``), downstream of the ``fit`` stage ``fit``."""
        macro = spec["macro"]
        return cls(
            upstream=fingerprint(fit),
            rate_exponent=spec["micro"]["rate_exponent"],
            elements=macro["elements"],
            cases=tuple(macro["cases"]),
            t_end=macro["t_end"],
            saves=macro["saves"],
            method=macro["method"],
            **model_fields(spec),
        )

    # ------------------------------------------------------------------ helpers
    def _force(self, rho):
        """Nodal analytic force F_a = -log phi(rho_a) (seed eq. (7); Algorithm 1 line 30): the model's."""
        return self.micro.thermodynamic_force(rho, tabulated=True)

    def _reference_stencil(self, rho, slope):
        """Exact operator of m(rho) frozen at the local affine state (seed eqs. (6), (8); App. C)."""
        return self.micro.exact_stencil(rho, slope, self.elements, tabulated=True)

    def _run(self, rho0, stencil, boundary, times) -> fem.MacroResult:
        return fem.simulate(
            rho0,
            stencil,
            self._force,
            self.t_end,
            elements=self.elements,
            boundary=boundary,
            save_times=times,
            method=self.method,
            safety=EXPLICIT_SAFETY,
        )

    def _time_check(self, rho0, boundary, times) -> fem.MacroResult:
        """The reference's semi-discrete system integrated to (near) time convergence.

        Same operator, force, mesh and save times as the reference, BDF at rtol
        CHECK_RTOL = 1e-10 and atol CHECK_ATOL max|rho0| (1e-12 max|rho0|): its distance
        from ``rho_reference`` is the reference's time-discretisation error (the
        O(dt) Euler error for ``method='explicit'``; the BDF tolerance error for
        ``'implicit'``, rtol 1e-8). Its own error (against rtol 1e-12) is 6e-6 of the
        former and 2 % of the latter (N = 20; tests/methods/test_fdr_macro.py).
        """
        return fem.simulate(
            rho0,
            self._reference_stencil,
            self._force,
            self.t_end,
            elements=self.elements,
            boundary=boundary,
            save_times=times,
            method="implicit",
            rtol=CHECK_RTOL,
            atol=CHECK_ATOL * float(np.max(np.abs(rho0))),
        )

    # ------------------------------------------------------------------ compute
    def compute(self, tree: xr.DataTree, progress=None) -> xr.Dataset:
        """Run every fitted operator and the exact reference on every case.

        Parameters
        ----------
        tree : xarray.DataTree
            The store, or any tree with a ``fit`` group as written by
            :class:`cgflow.methods.fdr.fit.OperatorFit` (coords ``estimator``,
            ``mass_conservation``, ``offset``, ``term``; variables
            ``coefficients``, ``coefficients_covariance``; attrs ``rho_range``,
            ``slope_range``, ``order``, ``elements``). Every (estimator,
            mass_conservation) variant is read with
            ``FittedOperator.from_dataset``; its probed rectangle is that of the
            points its fit used. The group attrs ``elements`` (the fit's N_gamma;
            -1 or missing: taken equal to ``self.elements``) sets the rescaling
            of :func:`rescale_stencil`.

        Returns
        -------
        xarray.Dataset
            Dimensions ``estimator`` and ``mass_conservation`` (as in /fit),
            ``case``, ``time`` (``saves + 1`` times from 0 to t_end) and ``x``
            (N + 1 node positions a/N; a periodic case has N nodes, and its value at
            x = 1 repeats the one at x = 0, the same node). Variables:

            * ``rho(estimator, mass_conservation, case, time, x)`` — fitted-operator solution;
            * ``rho_reference(case, time, x)`` — exact-operator solution (same scheme);
            * ``rel_l2_error(estimator, mass_conservation, case, time)`` —
              ||rho - rho_ref||_M/||rho_ref||_M with ||v||_M**2 = v^T M v, M the
              consistent mass matrix on the case's own nodes: the L2(0, 1) norm of
              the P1 interpolants (the periodic duplicate is not counted twice);
            * ``mass(...)``, ``mass_reference(case, time)`` — 1^T M rho, the integral
              of the P1 interpolant (conserved for periodic runs iff the columns of
              K sum to zero; Dirichlet runs exchange mass through the ends);
            * ``dt``, ``dt_min``, ``steps``, ``wall_seconds``, ``failed``,
              ``extrapolated_fraction`` over (estimator, mass_conservation, case)
              and ``dt_reference``, ``steps_reference``, ``wall_seconds_reference``
              over (case);
            * ``reference_time_error(case, time)`` — the time-discretisation error
              of ``rho_reference``, its relative M-norm distance from the same
              semi-discrete system integrated by BDF at rtol 1e-10
              (:meth:`_time_check`), and ``wall_seconds_time_check(case)``. It
              largely cancels in ``rel_l2_error`` (fitted and reference runs share
              the scheme and step policy); see ``attrs['reference_time_check']``.

            A failed run has NaN values, ``steps = -1`` and ``failed = True``, and its
            message ("<estimator> / mass_conservation=<bool> / <case>: <error>") is
            in ``attrs['failures']``; nothing is raised. If the reference of a case
            fails ("reference / <case>: ..."), its ``rho_reference`` and the case's
            ``rel_l2_error`` are NaN; a failed time check ("reference time check /
            <case>: ...") leaves ``reference_time_error`` NaN.
        """
        fit = tree["fit"].to_dataset().load()  # read once, not per variant
        estimators = [str(e) for e in fit["estimator"].values]
        variants = [bool(v) for v in fit["mass_conservation"].values]
        rho_range = [float(v) for v in np.ravel(fit.attrs["rho_range"])]
        slope_range = [float(v) for v in np.ravel(fit.attrs["slope_range"])]
        fit_elements = int(fit.attrs.get("elements", -1))
        # stencils fitted at another spacing are carried to the macro one; unknown spacing: taken as equal
        ratio = self.elements / fit_elements if fit_elements > 0 else 1.0

        times = save_times(self.t_end, self.saves)
        n_e, n_v, n_c, n_t, n_x = len(estimators), len(variants), len(self.cases), times.size, self.elements + 1
        x_all = np.arange(n_x) / self.elements

        rho = np.full((n_e, n_v, n_c, n_t, n_x), np.nan)
        rho_ref = np.full((n_c, n_t, n_x), np.nan)
        err = np.full((n_e, n_v, n_c, n_t), np.nan)
        mass = np.full((n_e, n_v, n_c, n_t), np.nan)
        mass_ref = np.full((n_c, n_t), np.nan)
        run_shape = (n_e, n_v, n_c)
        dt, dt_min, wall = (np.full(run_shape, np.nan) for _ in range(3))
        steps = np.full(run_shape, -1, dtype=np.int64)
        failed = np.zeros(run_shape, dtype=bool)
        extrap = np.full(run_shape, np.nan)
        dt_ref, wall_ref = np.full(n_c, np.nan), np.full(n_c, np.nan)
        steps_ref = np.full(n_c, -1, dtype=np.int64)
        time_err = np.full((n_c, n_t), np.nan)
        wall_check = np.full(n_c, np.nan)
        failures: list[str] = []
        extrapolation: list[str] = []

        total = len(self.cases) * (1 + len(estimators) * len(variants))  # runs, for the progress bar
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        table = self.case_table
        for c, case_name in enumerate(self.cases):
            case = table[case_name]
            _, rho0 = case.initial(self.elements)
            m_mat = fem.mass_matrix(self.elements, case.boundary)

            ref_stencil = _CountingCalls(self._reference_stencil)
            ref = None
            try:
                ref = self._run(rho0, ref_stencil, case.boundary, times)
            except Exception as exc:  # recorded, never raised: the stage reports every run
                failures.append(f"reference / {case_name}: {type(exc).__name__}: {exc}")
            if ref is not None:
                rho_ref[c] = _pad(ref.rho, case.boundary)
                mass_ref[c] = ref.mass()
                dt_ref[c], steps_ref[c], wall_ref[c] = ref.dt, ref.steps, ref.wall_seconds
                ref_norm = np.sqrt(_m_norm2(ref.rho, m_mat))
                try:
                    check = self._time_check(rho0, case.boundary, times)
                except Exception as exc:  # recorded, never raised
                    failures.append(f"reference time check / {case_name}: {type(exc).__name__}: {exc}")
                else:
                    time_err[c] = np.sqrt(_m_norm2(ref.rho - check.rho, m_mat) / _m_norm2(check.rho, m_mat))
                    wall_check[c] = check.wall_seconds
            budget = max(BUDGET_MIN_CALLS, BUDGET_FACTOR * ref_stencil.calls) if ref is not None else None
            tick()

            for e, estimator in enumerate(estimators):
                for v, conserving in enumerate(variants):
                    label = f"{estimator} / mass_conservation={conserving} / {case_name}"
                    tick()
                    stencil = None
                    try:
                        operator = FittedOperator.from_dataset(fit, estimator, conserving)
                        stencil = _FittedStencil(operator, ratio, budget)
                        res = self._run(rho0, stencil, case.boundary, times)
                    except Exception as exc:  # noqa: BLE001 - a bad variant must not kill the stage
                        failed[e, v, c] = True
                        failures.append(f"{label}: {type(exc).__name__}: {exc}")
                    else:
                        rho[e, v, c] = _pad(res.rho, case.boundary)
                        mass[e, v, c] = res.mass()
                        dt[e, v, c], dt_min[e, v, c] = res.dt, res.dt_min
                        steps[e, v, c], wall[e, v, c] = res.steps, res.wall_seconds
                        if ref is not None:
                            err[e, v, c] = np.sqrt(_m_norm2(res.rho - ref.rho, m_mat)) / ref_norm
                    if stencil is not None and stencil.evaluations:
                        extrap[e, v, c] = stencil.outside_fraction
                        extrapolation.append(
                            f"{label}: {stencil.outside} of {stencil.evaluations} node-evaluations "
                            f"({stencil.outside_fraction:.4f}) outside rho in [{stencil.rho_lo:g}, {stencil.rho_hi:g}], "
                            f"slope in [{stencil.s_lo:g}, {stencil.s_hi:g}]"
                        )

        coords = {
            "estimator": np.array(estimators, dtype=object),
            "mass_conservation": np.array(variants, dtype=bool),
            "case": np.array(self.cases, dtype=object),
            "time": times,
            "x": x_all,
            "boundary": ("case", np.array([table[c].boundary for c in self.cases], dtype=object)),
        }
        run = ("estimator", "mass_conservation", "case")
        ds = xr.Dataset(
            {
                "rho": (run + ("time", "x"), rho),
                "rho_reference": (("case", "time", "x"), rho_ref),
                "rel_l2_error": (run + ("time",), err),
                "mass": (run + ("time",), mass),
                "mass_reference": (("case", "time"), mass_ref),
                "dt": (run, dt),
                "dt_min": (run, dt_min),
                "steps": (run, steps),
                "wall_seconds": (run, wall),
                "failed": (run, failed),
                "extrapolated_fraction": (run, extrap),
                "dt_reference": (("case",), dt_ref),
                "steps_reference": (("case",), steps_ref),
                "wall_seconds_reference": (("case",), wall_ref),
                "reference_time_error": (("case", "time"), time_err),
                "wall_seconds_time_check": (("case",), wall_check),
            },
            coords=coords,
        )
        _describe(ds)
        ds.attrs.update(
            {
                "description": "seed 000 Fig. 4: eq. (8) with the fitted operator and the analytic force F = -log phi "
                "(eq. (7)), against the same scheme with the exact operator of m(rho)",
                "method": self.method,
                "elements": int(self.elements),
                "t_end": float(self.t_end),
                "saves": int(self.saves),
                **({"rate_exponent": int(self.rate_exponent)} if self.rate_exponent is not None else {}),
                "fit_elements": fit_elements,
                "stencil_rescale": float(ratio),
                "stability_policy": _STABILITY_POLICY[self.method].format(safety=EXPLICIT_SAFETY),
                "reference_time_check": f"reference_time_error = ||rho_reference - rho_check||_M / ||rho_check||_M, "
                f"rho_check the reference's semi-discrete system integrated by BDF at rtol {CHECK_RTOL:g}, atol "
                f"{CHECK_ATOL:g} max|rho0|: the time-discretisation error of rho_reference (explicit: it agrees with "
                "the step-halving Richardson estimate 2||rho_h - rho_h/2|| to 0.3 % in the N = 20 test). The fitted "
                "runs use the same scheme and step policy, so this error largely cancels in rel_l2_error: on the "
                "quick workflow explicit runs (reference_time_error 2e-5) and implicit runs (1e-8) give every "
                "rel_l2_error to within 4.4e-4 of its size (benchmarks/bench_fdr_macro.py).",
                "reference_operator": getattr(self.micro, "reference_operator", "the model's exact_stencil and "
                                              "thermodynamic_force (cgflow.micro.contract)"),
                "norm": "rel_l2_error uses ||v||_M = sqrt(v^T M v), M the consistent P1 mass matrix on the case's "
                "own nodes (L2 norm of the P1 interpolant)",
                "periodic_x_end": "periodic cases have N nodes; the value at x = 1 repeats x = 0 (the same node)",
                "probed_region": {"rho_range": rho_range, "slope_range": slope_range},
                "case_descriptions": [f"{c}: {table[c].description}" for c in self.cases],
                "extrapolation": extrapolation,
                "failures": failures,
                "upstream": self.upstream,
                "model": self.model,
            }
        )
        return ds


# ----------------------------------------------------------------------------- small helpers
def _pad(rho_native: np.ndarray, boundary: str) -> np.ndarray:
    """(T, n) nodal values on the stage's N + 1 positions: periodic x = 1 repeats x = 0."""
    if boundary == "periodic":
        return np.concatenate([rho_native, rho_native[:, :1]], axis=1)
    return rho_native


def _m_norm2(v: np.ndarray, m_mat) -> np.ndarray:
    """v^T M v for every row of v (shape (T, n)) -> (T,)."""
    return np.einsum("ti,ti->t", v, np.asarray((m_mat @ v.T).T))


_DESCRIPTIONS = {
    "rho": "nodal density with the fitted operator, M drho/dt = K(rho, grad rho) F (seed eq. 8); NaN if the run failed",
    "rho_reference": "nodal density with the exact operator of m(rho) (zrp_hydro.exact_stencil), same scheme and step policy",
    "rel_l2_error": "||rho - rho_reference||_M / ||rho_reference||_M (L2 norm of the P1 interpolants)",
    "mass": "integral of the P1 interpolant, 1^T M rho",
    "mass_reference": "integral of the P1 interpolant of rho_reference",
    "dt": "largest time step taken (explicit: stability-limited Euler step; implicit: largest BDF step)",
    "dt_min": "smallest non-landing time step",
    "steps": "time steps taken (-1: failed)",
    "wall_seconds": "wall-clock seconds of the integration",
    "failed": "the run raised; its message is in attrs['failures']",
    "extrapolated_fraction": "fraction of the fitted operator's node-evaluations (all solver calls, Jacobian included) "
    "whose local state (rho_a, s_a) lies outside the probed rectangle of that fit (FittedOperator.rho_range x "
    "slope_range); NaN if no evaluation was made",
    "dt_reference": "largest time step of the reference run",
    "steps_reference": "time steps of the reference run (-1: failed)",
    "wall_seconds_reference": "wall-clock seconds of the reference integration",
    "reference_time_error": "time-discretisation error of rho_reference: ||rho_reference - rho_check||_M / "
    "||rho_check||_M, rho_check the same semi-discrete system by BDF at rtol 1e-10; it largely cancels in "
    "rel_l2_error (same scheme for fitted and reference runs; attrs['reference_time_check'])",
    "wall_seconds_time_check": "wall-clock seconds of the time-convergence check of the reference",
}


def _describe(ds: xr.Dataset) -> None:
    for name, text in _DESCRIPTIONS.items():
        ds[name].attrs["description"] = text
        if name.startswith("wall_seconds"):
            ds[name].attrs[TIMING_ATTR] = True  # measured, not computed: exempt from determinism checks
    ds["time"].attrs["units"] = "macroscopic time"
    ds["x"].attrs["description"] = "node positions a/N, a = 0..N"
