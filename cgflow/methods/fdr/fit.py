"""Fit stage: a polynomial operator K(rho_a, s) in V from its values on V_discr.

Seed 000, eq. (6)/(8), Fig. 3 and Appendix A. The operator stage tabulates, at
every V_discr point (rho_a, s = grad rho|_a), the column a of the discretised
operator frozen at the affine profile rho_a + s (x - x_a),

    E(rho_a, s) = (E_{-1}, E_0, E_{+1}) = (K_{a,a-1}, K_aa, K_{a,a+1})

(``offset`` = -1, 0, +1; the frozen operator is symmetric, so the row stencil of
the operator stage is this column). Appendix A extends it to all of V by "a least
square fit with second order polynomials in (rho_a, grad rho|_a) for each of the
three matrix entries, the sum of which we enforce to vanish identically":

    E_o(rho, s) = sum_t c_{o,t} x_t(rho, s),  x = (1, rho, s, rho^2, rho s, s^2)  (order 2),

weighted by 1/SE^2 and, with mass conservation, constrained by
E_{-1} + E_0 + E_{+1} == 0 for every (rho, s), i.e. c_0 = -(c_{-1} + c_{+1}) term by
term. The constraint is imposed exactly by eliminating c_0: one stacked weighted
least-squares problem in (c_{-1}, c_{+1}), solved by SVD of the whitened,
column-equilibrated design (never by normal equations).

Seed eq. (9) splits the fitted operator as K = K(1)(rho) + K(2)(rho, s) with
K(1)(rho) = E(rho, 0) (Laplacian stencil) and K(2) = E(rho, s) - E(rho, 0)
(gradient stencil). The paper reports the normalised stencils
K(1) ~ (-1, 1.999936, -0.999936) and K(2) ~ (-1, 0.003763, 0.996237); here
K(1) is E(rho_c, 0) and K(2) is dE/ds(rho_c, 0), both divided by minus their
offset -1 entry, at the centre rho_c of the probed density range, with standard
errors by the delta method.

Sign convention of K(2). REFERENCE §1: E ~ (m/Delta + m'' s^2 Delta/6)(-1, 2, -1)
+ (m' s/2)(1, 0, -1) in our order (K_{a,a-1}, K_aa, K_{a,a+1}); so the raw
dE/ds(rho, 0) = (m'/2)(+1, 0, -1) (a positive slope moves mobility to the right
element, making K_{a,a+1} more negative). Dividing by minus the offset -1 entry
(-m'/2) gives (-1, 0, +1), the shape of the paper's (-1, 0.003763, 0.996237).
The normalisation is insensitive to the ordering convention: the paper lists
K_ba for a in {b-1, b, b+1} at fixed b, i.e. our offsets in reversed order, whose
raw derivative (m'/2)(-1, 0, +1) normalises to the same (-1, 0, +1). The raw
scale (``stencil_gradient_scale`` = -dE_{-1}/ds) carries the sign: -m'/2 here.

Standard errors. ``K_stderr`` is an estimate, so the coefficient covariance is
the *unscaled* (X^T W X)^{-1}, W = diag(1/SE^2), not multiplied by chi^2/dof;
chi^2/dof is reported separately as the adequacy check (multiply the covariance
by it yourself if you prefer the scaled version). Only the standard errors of
the entries are known, so the three entries at one point are treated as
independent -- except for estimators whose entries sum to zero sample by sample
(carré du champ, realised quadratic variation: K_aa = -(K_{a,a-1} + K_{a,a+1})
exactly), where the middle entry carries no information of its own. Counting it
would make the constrained fit's standard errors too small by ~1.45 (K(2)
middle entry, measured); such data are detected and handled as described in
:func:`fit_stencil` (flag ``data_zero_sum``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import xarray as xr

from ...engine.types import fingerprint

__all__ = [
    "ExtrapolationWarning",
    "FitResult",
    "FittedOperator",
    "OperatorFit",
    "design_matrix",
    "fit_stencil",
    "fitted_operator",
    "normalized_stencil",
    "polynomial_terms",
]

OFFSETS = (-1, 0, 1)
#: |normalised residual| above which a point/entry counts as an outlier.
OUTLIER_THRESHOLD = 3.0
#: Relative tolerance of |K_-1 + K_0 + K_+1| / sum |K_o| for data that sum to zero point by point.
ZERO_SUM_RTOL = 1e-9
#: Relative tolerance (of the range width) before a point counts as outside the probed rectangle.
_RANGE_TOL = 1e-9


class ExtrapolationWarning(UserWarning):
    """A fitted operator was evaluated outside the rectangle of (rho, slope) it was fitted on."""


# ----------------------------------------------------------------------------- design
def polynomial_terms(order: int) -> tuple[tuple[int, int, str], ...]:
    """Monomials rho^i s^j with i + j <= order, as (i, j, name).

    Ordered by total degree, then by decreasing power of rho: for order 2,
    ``1, rho, slope, rho^2, rho*slope, slope^2`` (seed Appendix A: second-order
    polynomials in (rho_a, grad rho|_a)).
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")

    def power(var: str, k: int) -> str | None:
        return None if k == 0 else var if k == 1 else f"{var}^{k}"

    out = []
    for degree in range(int(order) + 1):
        for j in range(degree + 1):
            i = degree - j
            parts = [p for p in (power("rho", i), power("slope", j)) if p]
            out.append((i, j, "*".join(parts) or "1"))
    return tuple(out)


def design_matrix(rho, slope, order: int = 2) -> tuple[np.ndarray, tuple[str, ...]]:
    """Polynomial design matrix of the fit in (rho_a, s) (seed Appendix A).

    Parameters
    ----------
    rho, slope : array_like
        Density rho_a and slope s = grad rho|_a, broadcast together.
    order : int, default 2
        Total polynomial degree; 2 gives the paper's second-order polynomials.

    Returns
    -------
    X : ndarray, shape broadcast(rho, slope).shape + (n_terms,)
        Monomials evaluated at the points.
    terms : tuple of str
        Their names, e.g. ``("1", "rho", "slope", "rho^2", "rho*slope", "slope^2")``.
    """
    terms = polynomial_terms(order)
    r, s = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(slope, dtype=np.float64))
    X = np.stack([r**i * s**j for i, j, _ in terms], axis=-1)
    return X, tuple(name for _, _, name in terms)


def _slope_derivative_row(rho, order: int) -> np.ndarray:
    """d/ds of the monomials at s = 0: rho^i for the terms linear in s, else 0; shape rho.shape + (n_terms,)."""
    r = np.asarray(rho, dtype=np.float64)
    return np.stack([r**i if j == 1 else np.zeros_like(r) for i, j, _ in polynomial_terms(order)], axis=-1)


def _constraint_map(mass_conservation: bool) -> np.ndarray:
    """T (3, k): entry o's coefficients are sum_l T[o, l] theta_l; with mass conservation c_0 = -(c_-1 + c_+1)."""
    if mass_conservation:
        return np.array([[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0]])
    return np.eye(3)


# ----------------------------------------------------------------------------- normalised stencils
def normalized_stencil(values, covariance) -> tuple[np.ndarray, np.ndarray]:
    """Stencil divided by minus its offset -1 entry, with delta-method standard errors.

    Parameters
    ----------
    values : array_like, shape (..., 3)
        (v_{-1}, v_0, v_{+1}).
    covariance : array_like, shape (..., 3, 3)
        Covariance of ``values``.

    Returns
    -------
    stencil, stderr : ndarray, shape (..., 3)
        n = v / (-v_{-1}), so n_{-1} = -1 exactly (standard error 0); the
        Jacobian is dn_j/dv_k = -delta_jk / v_{-1} + v_j delta_{k,-1} / v_{-1}^2.
        This is how the paper quotes K(1) and K(2) of seed eq. (9).
    """
    v = np.asarray(values, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    v0 = v[..., :1]
    n = -v / v0
    n[..., 0] = -1.0
    J = -np.eye(3) / v0[..., None]  # (..., 3, 3): -delta_jk / v0
    J[..., :, 0] += v / v0**2
    var = np.einsum("...jk,...kl,...jl->...j", J, cov, J)
    se = np.sqrt(np.clip(var, 0.0, None))
    se[..., 0] = 0.0
    return n, se


# ----------------------------------------------------------------------------- fitted operator
@dataclass(frozen=True, eq=False)
class FittedOperator:
    """The fitted operator E(rho, s) = (K_{a,a-1}, K_aa, K_{a,a+1}) on V (seed eqs. (8), (9), Appendix A).

    Immutable: the arrays are read-only copies. Build it with :meth:`from_dataset`
    (a ``/fit`` group), :func:`fitted_operator` (a store) or :meth:`FitResult.operator`.

    Attributes
    ----------
    coefficients : ndarray, shape (3, n_terms)
        c_{o,t}, offsets -1, 0, +1 by terms ``terms``.
    covariance : ndarray, shape (3 n_terms, 3 n_terms)
        Covariance of the flattened (offset-major) coefficients, unscaled.
    terms : tuple of str
        Term names (:func:`polynomial_terms`).
    order : int
        Polynomial order.
    mass_conservation : bool
        Whether E_{-1} + E_0 + E_{+1} == 0 was imposed; then :meth:`stencil`
        computes the middle entry as -(E_{-1} + E_{+1}) so the identity holds
        everywhere by construction.
    rho_range, slope_range : tuple of float
        The probed rectangle [min, max] of the fitted data.
    estimator : str
        Label of the operator estimator the fit was made on.
    """

    coefficients: np.ndarray
    covariance: np.ndarray
    terms: tuple[str, ...]
    order: int
    mass_conservation: bool
    rho_range: tuple[float, float]
    slope_range: tuple[float, float]
    estimator: str = ""

    def __post_init__(self):
        names = tuple(name for _, _, name in polynomial_terms(self.order))
        if tuple(self.terms) != names:
            raise ValueError(f"terms {tuple(self.terms)} do not match order {self.order} ({names})")
        c = np.array(self.coefficients, dtype=np.float64)
        p = len(names)
        if c.shape != (3, p):
            raise ValueError(f"coefficients must have shape (3, {p}), got {c.shape}")
        cov = np.array(self.covariance, dtype=np.float64)
        if cov.shape != (3 * p, 3 * p):
            raise ValueError(f"covariance must have shape ({3 * p}, {3 * p}), got {cov.shape}")
        if self.mass_conservation:
            scale = np.abs(c).max(axis=0) + np.finfo(float).tiny
            if np.any(np.abs(c.sum(axis=0)) > 1e-9 * scale):
                raise ValueError("coefficients do not satisfy c_-1 + c_0 + c_+1 = 0 (mass conservation)")
        for arr in (c, cov):
            arr.setflags(write=False)
        object.__setattr__(self, "coefficients", c)
        object.__setattr__(self, "covariance", cov)
        object.__setattr__(self, "terms", names)
        object.__setattr__(self, "mass_conservation", bool(self.mass_conservation))
        object.__setattr__(self, "rho_range", (float(self.rho_range[0]), float(self.rho_range[1])))
        object.__setattr__(self, "slope_range", (float(self.slope_range[0]), float(self.slope_range[1])))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, fit_ds: xr.Dataset, estimator: str = "carre_du_champ", mass_conservation: bool = True) -> "FittedOperator":
        """The fitted operator of one (estimator, variant) of a ``/fit`` Dataset (:class:`OperatorFit`).

        The probed rectangle is that of the points this estimator's fit used
        (``point_used``), falling back to the group attrs ``rho_range``/``slope_range``.
        """
        estimators = [str(e) for e in fit_ds["estimator"].values]
        if estimator not in estimators:
            raise KeyError(f"estimator {estimator!r} not in the fit (has {estimators})")
        variants = [bool(v) for v in fit_ds["mass_conservation"].values]
        if bool(mass_conservation) not in variants:
            raise KeyError(f"mass_conservation={mass_conservation!r} not in the fit (has {variants})")
        sel = {"estimator": estimators.index(estimator), "mass_conservation": variants.index(bool(mass_conservation))}
        coef = fit_ds["coefficients"].isel(sel).transpose("offset", "term")
        if [int(o) for o in coef["offset"].values] != list(OFFSETS):
            coef = coef.sel(offset=list(OFFSETS))
        cov = fit_ds["coefficients_covariance"].isel(sel).transpose("param", "param_b").values
        rho_range = tuple(fit_ds.attrs["rho_range"])
        slope_range = tuple(fit_ds.attrs["slope_range"])
        if "point_used" in fit_ds:
            used = fit_ds["point_used"].isel(estimator=sel["estimator"]).values.astype(bool)
            if used.any():
                r, s = fit_ds["rho"].values[used], fit_ds["slope"].values[used]
                rho_range, slope_range = (r.min(), r.max()), (s.min(), s.max())
        return cls(
            coefficients=coef.values,
            covariance=cov,
            terms=tuple(str(t) for t in coef["term"].values),
            order=int(fit_ds.attrs["order"]),
            mass_conservation=bool(mass_conservation),
            rho_range=rho_range,
            slope_range=slope_range,
            estimator=estimator,
        )

    @classmethod
    def from_store(cls, tree_or_path, estimator: str = "carre_du_champ", mass_conservation: bool = True) -> "FittedOperator":
        """Alias of :func:`fitted_operator`."""
        return fitted_operator(tree_or_path, estimator, mass_conservation)

    # ------------------------------------------------------------------ evaluation
    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def rho_centre(self) -> float:
        """Centre of the probed density range, where the normalised stencils are quoted."""
        return 0.5 * (self.rho_range[0] + self.rho_range[1])

    def _check_region(self, rho: np.ndarray, slope: np.ndarray, on_extrapolation: str) -> None:
        if on_extrapolation not in ("warn", "ignore", "raise"):
            raise ValueError(f"on_extrapolation must be 'warn', 'ignore' or 'raise', got {on_extrapolation!r}")
        if on_extrapolation == "ignore":
            return
        problems = []
        for name, x, (lo, hi) in (("rho", rho, self.rho_range), ("slope", slope, self.slope_range)):
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            tol = _RANGE_TOL * max(hi - lo, abs(lo), abs(hi), 1.0)
            xmin, xmax = float(x.min()), float(x.max())
            if xmin < lo - tol or xmax > hi + tol:
                problems.append(f"{name} in [{xmin:.6g}, {xmax:.6g}] outside the probed [{lo:.6g}, {hi:.6g}]")
        if problems:
            msg = f"fitted operator ({self.estimator or 'fit'}) evaluated outside the probed region: " + "; ".join(problems)
            if on_extrapolation == "raise":
                raise ValueError(msg)
            warnings.warn(msg, ExtrapolationWarning, stacklevel=3)

    def stencil(self, rho, slope, on_extrapolation: str = "warn") -> np.ndarray:
        """E(rho, s) = (K_{a,a-1}, K_aa, K_{a,a+1}) of the fit (seed eq. (8)).

        Parameters
        ----------
        rho, slope : array_like
            Broadcast together; any shape.
        on_extrapolation : {"warn", "ignore", "raise"}
            What to do when a finite input lies outside the probed rectangle;
            "warn" emits one :class:`ExtrapolationWarning` per call naming the
            offending range.

        Returns
        -------
        ndarray, shape broadcast + (3,)
            With mass conservation the middle entry is -(E_{-1} + E_{+1}).
        """
        r, s = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(slope, dtype=np.float64))
        self._check_region(r, s, on_extrapolation)
        X, _ = design_matrix(r, s, self.order)
        E = X @ self.coefficients.T
        if self.mass_conservation:
            E[..., 1] = -(E[..., 0] + E[..., 2])
        return E

    __call__ = stencil

    def stencil_stderr(self, rho, slope, on_extrapolation: str = "warn") -> np.ndarray:
        """Standard error of :meth:`stencil` from the coefficient covariance, shape broadcast + (3,)."""
        r, s = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(slope, dtype=np.float64))
        self._check_region(r, s, on_extrapolation)
        X, _ = design_matrix(r, s, self.order)
        p = self.n_terms
        blocks = self.covariance.reshape(3, p, 3, p)
        var = np.stack([np.einsum("...i,ij,...j->...", X, blocks[o, :, o, :], X) for o in range(3)], axis=-1)
        return np.sqrt(np.clip(var, 0.0, None))

    def column_sums(self, rho, slope, on_extrapolation: str = "warn") -> np.ndarray:
        """E_{-1} + E_0 + E_{+1} at (rho, s): identically 0 with mass conservation (seed Appendix A)."""
        return self.stencil(rho, slope, on_extrapolation).sum(axis=-1)

    def decompose(self, rho, slope, on_extrapolation: str = "warn") -> tuple[np.ndarray, np.ndarray]:
        """Seed eq. (9): K = K(1)(rho) + K(2)(rho, s), K(1) = E(rho, 0), K(2) = E(rho, s) - E(rho, 0)."""
        r, s = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(slope, dtype=np.float64))
        self._check_region(r, s, on_extrapolation)
        k1 = self.stencil(r, np.zeros_like(s), "ignore")
        return k1, self.stencil(r, s, "ignore") - k1

    def _linear_functional(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """v_o = rows . c_o for rows (..., n_terms); returns v (..., 3) and its covariance (..., 3, 3)."""
        p = self.n_terms
        v = rows @ self.coefficients.T
        blocks = self.covariance.reshape(3, p, 3, p)
        cov = np.einsum("...i,oipj,...j->...op", rows, blocks, rows)
        return v, cov

    def laplacian_stencil(self, rho=None) -> tuple[np.ndarray, np.ndarray]:
        """Normalised K(1)(rho) = E(rho, 0) / (-E_{-1}(rho, 0)) and its delta-method SE (seed eq. (9)).

        ``rho`` defaults to the centre of the probed range. Exact hydrodynamics:
        (m/Delta)(-1, 2, -1), normalised (-1, 2, -1) (REFERENCE §1); the paper
        reports (-1, 1.999936, -0.999936).
        """
        r = np.asarray(self.rho_centre if rho is None else rho, dtype=np.float64)
        X, _ = design_matrix(r, np.zeros_like(r), self.order)
        return normalized_stencil(*self._linear_functional(X))

    def gradient_stencil(self, rho=None) -> tuple[np.ndarray, np.ndarray]:
        """Normalised K(2): dE/ds(rho, 0) / (-dE_{-1}/ds(rho, 0)) and its delta-method SE (seed eq. (9)).

        Only the terms linear in s contribute (``slope``, ``rho*slope``, ...).
        Exact hydrodynamics: dE/ds = (m'/2)(1, 0, -1), normalised (-1, 0, +1);
        the paper reports (-1, 0.003763, 0.996237). See the module docstring for
        the sign convention.
        """
        r = np.asarray(self.rho_centre if rho is None else rho, dtype=np.float64)
        return normalized_stencil(*self._linear_functional(_slope_derivative_row(r, self.order)))

    def laplacian_scale(self, rho=None) -> tuple[np.ndarray, np.ndarray]:
        """-E_{-1}(rho, 0) and its SE: the factor of the K(1) stencil (m(rho)/Delta exactly)."""
        r = np.asarray(self.rho_centre if rho is None else rho, dtype=np.float64)
        X, _ = design_matrix(r, np.zeros_like(r), self.order)
        v, cov = self._linear_functional(X)
        return -v[..., 0], np.sqrt(np.clip(cov[..., 0, 0], 0.0, None))

    def gradient_scale(self, rho=None) -> tuple[np.ndarray, np.ndarray]:
        """-dE_{-1}/ds(rho, 0) and its SE: the factor of the K(2) stencil (-m'(rho)/2 exactly)."""
        r = np.asarray(self.rho_centre if rho is None else rho, dtype=np.float64)
        v, cov = self._linear_functional(_slope_derivative_row(r, self.order))
        return -v[..., 0], np.sqrt(np.clip(cov[..., 0, 0], 0.0, None))


# ----------------------------------------------------------------------------- the fit
@dataclass(frozen=True, eq=False)
class FitResult:
    """Weighted least-squares fit of the operator on V_discr (:func:`fit_stencil`).

    Attributes
    ----------
    coefficients, stderr : ndarray, shape (3, n_terms)
        c_{o,t} and sqrt of the diagonal of ``covariance``.
    covariance : ndarray, shape (3 n_terms, 3 n_terms)
        Unscaled (X^T W X)^{-1} of the flattened offset-major coefficients
        (singular, rank 2 n_terms, with mass conservation).
    terms, order, mass_conservation
        As given.
    zero_sum_data : bool
        Whether the data were treated as summing to zero point by point (:func:`fit_stencil`).
    chi2, dof, chi2_dof : float, int, float
        Sum of squared normalised residuals of the entries that carry weight,
        their number minus the free parameters (3 n_used - k p, or 2 n_used - 2 p for
        zero-sum data with mass conservation), and their ratio (NaN if dof = 0);
        ~1 when the model and the standard errors are right.
    residual : ndarray, shape (n_points, 3)
        (K - E)/SE at the used points, NaN at dropped ones.
    fitted : ndarray, shape (n_points, 3)
        E at every point with finite (rho, s).
    used : ndarray of bool, shape (n_points,)
        Points that entered the fit (finite rho, s, K and SE > 0 for all three entries).
    n_outliers : int
        Count of |residual| > 3 (point, entry) pairs.
    condition_number : float
        Of the whitened, column-equilibrated design.
    rho_range, slope_range : tuple of float
        Probed rectangle of the used points.
    """

    coefficients: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    terms: tuple[str, ...]
    order: int
    mass_conservation: bool
    zero_sum_data: bool
    chi2: float
    dof: int
    chi2_dof: float
    residual: np.ndarray
    fitted: np.ndarray
    used: np.ndarray
    n_outliers: int
    condition_number: float
    rho_range: tuple[float, float]
    slope_range: tuple[float, float]

    @property
    def n_used(self) -> int:
        return int(self.used.sum())

    @property
    def n_dropped(self) -> int:
        return int(self.used.size - self.used.sum())

    def operator(self, estimator: str = "", rho_range=None, slope_range=None) -> FittedOperator:
        """The :class:`FittedOperator` of this fit (probed rectangle of the used points unless given)."""
        return FittedOperator(
            coefficients=self.coefficients,
            covariance=self.covariance,
            terms=self.terms,
            order=self.order,
            mass_conservation=self.mass_conservation,
            rho_range=self.rho_range if rho_range is None else rho_range,
            slope_range=self.slope_range if slope_range is None else slope_range,
            estimator=estimator,
        )


def _zero_sum_rows(K: np.ndarray) -> bool:
    """Whether every row of K sums to zero to rounding (estimators that are zero-sum sample by sample)."""
    return bool(np.all(np.abs(K.sum(axis=1)) <= ZERO_SUM_RTOL * np.abs(K).sum(axis=1)))


def fit_stencil(rho, slope, K, K_stderr, order: int = 2, mass_conservation: bool = True,
                zero_sum_data: bool | None = None) -> FitResult:
    """Weighted least-squares polynomial fit of the three operator entries on V_discr (seed Appendix A).

    Parameters
    ----------
    rho, slope : array_like, shape (n_points,)
        V_discr coordinates (rho_a, s).
    K, K_stderr : array_like, shape (n_points, 3)
        Measured (K_{a,a-1}, K_aa, K_{a,a+1}) and their standard errors.
    order : int, default 2
        Polynomial order in (rho, s) (:func:`design_matrix`).
    mass_conservation : bool, default True
        Impose E_{-1} + E_0 + E_{+1} == 0 identically, by c_0 = -(c_{-1} + c_{+1}).
    zero_sum_data : bool or None, default None
        Whether the measured entries sum to zero point by point (K_aa =
        -(K_{a,a-1} + K_{a,a+1}) sample by sample, as for the carré du champ and
        the realised quadratic variation); None detects it (relative 1e-9 at every
        used point). See Notes.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        On shape mismatch, when fewer usable points than terms per entry remain,
        or when the design is rank deficient (e.g. a single slope value).

    Notes
    -----
    Minimises chi^2 = sum_{p, o} (K_{p,o} - x_p . c_o)^2 / SE_{p,o}^2 jointly over
    the three entries. With the free parameters theta (c_{-1}, c_{+1}, [c_0]) and
    c_o = sum_l T_{ol} theta_l, the stacked whitened design has rows
    (T_o kron x_p)/SE_{p,o}; its columns are equilibrated (divided by max |x_t|) and
    it is solved by SVD, which also gives the unscaled covariance
    V S^-2 V^T = (A^T A)^-1 (module docstring). Points with a non-finite rho, s,
    K or SE, or SE <= 0, in any entry are dropped as a whole.

    Zero-sum data. If K_0 = -(K_{-1} + K_{+1}) at every point, the middle entry is
    no independent measurement: its noise is minus the sum of the outer ones.
    Treating it as independent would count the outer noise twice and make the
    constrained fit's standard errors too small (by ~1.45 for the K(2) middle
    entry, measured on synthetic data). Then, with mass conservation, the middle
    entry gets weight 0 (its residual is still reported) and dof = 2 n - 2 p;
    this is exact when the outer entries are independent (they are, up to the one
    shared node site, for the carré du champ and the quadratic variation). Without
    mass conservation each entry is still fitted on its own (the paper's
    independent fits), chi^2 is the plain sum (correct in expectation), and the
    coefficient covariance is the sandwich H Sigma H^T with the implied per-point
    noise covariance Sigma_p = [[v-, -v-, 0], [-v-, v- + v+, -v+], [0, -v+, v+]],
    v+- = SE_{+-1}^2, which supplies the cross-entry covariances.
    """
    rho = np.asarray(rho, dtype=np.float64)
    slope = np.asarray(slope, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    se = np.asarray(K_stderr, dtype=np.float64)
    if rho.ndim != 1 or slope.shape != rho.shape:
        raise ValueError(f"rho and slope must be 1-D of equal length, got {rho.shape} and {slope.shape}")
    n_pts = rho.size
    if K.shape != (n_pts, 3) or se.shape != (n_pts, 3):
        raise ValueError(f"K and K_stderr must have shape ({n_pts}, 3), got {K.shape} and {se.shape}")
    terms = polynomial_terms(order)
    names = tuple(name for _, _, name in terms)
    p = len(terms)
    mass_conservation = bool(mass_conservation)
    T = _constraint_map(mass_conservation)
    k = T.shape[1]

    used = (np.isfinite(rho) & np.isfinite(slope) & np.all(np.isfinite(K), axis=1)
            & np.all(np.isfinite(se) & (se > 0), axis=1))
    n = int(used.sum())
    if n < p:
        raise ValueError(
            f"only {n} usable V_discr points ({n_pts - n} dropped: non-finite rho, slope, K or K_stderr, or "
            f"K_stderr <= 0), fewer than the {p} terms per entry of the order-{order} polynomial "
            f"({k * p} free parameters)"
        )
    Ku, seu = K[used], se[used]
    zero_sum = _zero_sum_rows(Ku) if zero_sum_data is None else bool(zero_sum_data)
    X, _ = design_matrix(rho[used], slope[used], order)
    scale = np.abs(X).max(axis=0)
    if np.any(scale == 0):
        zero = [names[t] for t in np.flatnonzero(scale == 0)]
        raise ValueError(f"rank-deficient design: terms {zero} vanish at every usable point")
    Xs = X / scale
    w = 1.0 / seu  # (n, 3)
    if zero_sum and mass_conservation:
        w = w.copy()
        w[:, 1] = 0.0  # the middle entry is minus the sum of the outer ones: no information of its own
    A = np.concatenate([w[:, o, None] * np.kron(T[o][None, :], Xs) for o in range(3)], axis=0)  # (3n, k p)
    y = np.concatenate([w[:, o] * Ku[:, o] for o in range(3)])
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    rank = int(np.sum(S > S[0] * max(A.shape) * np.finfo(float).eps))
    if rank < k * p:
        raise ValueError(
            f"rank-deficient design ({rank} < {k * p} parameters): the {n} usable points do not determine "
            f"all terms {names} (e.g. too few distinct rho or slope values)"
        )
    theta = Vt.T @ ((U.T @ y) / S)
    cov_theta = (Vt.T / S**2) @ Vt
    # back to raw coefficients: c = (T kron I_p) theta, then undo the column scaling
    M = np.kron(T, np.eye(p)) * np.tile(1.0 / scale, 3)[:, None]  # (3p, k p)
    c = (M @ theta).reshape(3, p)
    cov = M @ cov_theta @ M.T
    if mass_conservation:
        c[1] = -(c[0] + c[2])  # exact, not just to rounding of the matrix product
    elif zero_sum:
        # sandwich: c_o = G_o X^T W_o K_o, Cov(c_o, c_o') = G_o X^T diag(w_o^2 w_o'^2 Sigma_oo') X G_o'
        v = seu**2
        sigma = np.zeros((3, 3, n))
        sigma[0, 0], sigma[2, 2] = v[:, 0], v[:, 2]
        sigma[1, 1] = v[:, 0] + v[:, 2]
        sigma[0, 1] = sigma[1, 0] = -v[:, 0]
        sigma[1, 2] = sigma[2, 1] = -v[:, 2]
        H = [cov[o * p:(o + 1) * p, o * p:(o + 1) * p] @ (X.T * w[:, o] ** 2) for o in range(3)]  # (p, n)
        cov = np.block([[(H[o] * sigma[o, q]) @ H[q].T for q in range(3)] for o in range(3)])
    cov = 0.5 * (cov + cov.T)

    fitted = np.full((n_pts, 3), np.nan)
    finite = np.isfinite(rho) & np.isfinite(slope)
    Xall, _ = design_matrix(rho[finite], slope[finite], order)
    fitted[finite] = Xall @ c.T
    residual = np.full((n_pts, 3), np.nan)
    residual[used] = (Ku - fitted[used]) / seu
    counted = w > 0
    chi2 = float(np.sum(residual[used][counted] ** 2))
    dof = int(counted.sum()) - k * p
    return FitResult(
        coefficients=c,
        stderr=np.sqrt(np.clip(np.diag(cov), 0.0, None)).reshape(3, p),
        covariance=cov,
        terms=names,
        order=int(order),
        mass_conservation=mass_conservation,
        zero_sum_data=zero_sum,
        chi2=chi2,
        dof=dof,
        chi2_dof=chi2 / dof if dof > 0 else float("nan"),
        residual=residual,
        fitted=fitted,
        used=used,
        n_outliers=int(np.sum(np.abs(residual[used]) > OUTLIER_THRESHOLD)),
        condition_number=float(S[0] / S[-1]),
        rho_range=(float(rho[used].min()), float(rho[used].max())),
        slope_range=(float(slope[used].min()), float(slope[used].max())),
    )


# ----------------------------------------------------------------------------- the reduce stage
_DESCRIPTIONS = {
    "estimator": "operator estimator the fit was made on (as in /operator)",
    "mass_conservation": "fit variant: True imposes E_-1 + E_0 + E_+1 == 0 identically (seed Appendix A), False fits the three entries freely",
    "offset": "b - a: entries (K_a,a-1, K_aa, K_a,a+1) of column a of the operator frozen at (rho_a, s) (seed eq. (8))",
    "term": "monomial of the polynomial in (rho_a, s = grad rho|_a) (seed Appendix A: second-order polynomials)",
    "param": "flattened (offset, term) index of the coefficients, '<offset>|<term>'",
    "param_b": "second index of coefficients_covariance (same labels as param)",
    "param_offset": "offset of param",
    "param_term": "term of param",
    "rho_end": "ends of the probed density range (attrs rho_range)",
    "point": "V_discr point (as in /operator)",
    "rho": "measured local density rho_a of the V_discr point (copied from /operator)",
    "slope": "slope s = grad rho|_a of the V_discr point (copied from /operator)",
    "coefficients": "c_{o,t}: E_o(rho, s) = sum_t c_{o,t} term_t(rho, s), weighted least-squares fit with weights 1/K_stderr^2 (seed Appendix A; eq. (8))",
    "coefficients_stderr": "sqrt of the diagonal of coefficients_covariance",
    "coefficients_covariance": "unscaled covariance (X^T W X)^-1 of the flattened coefficients (not multiplied by chi2_dof); singular with mass conservation (c_0 = -(c_-1 + c_+1))",
    "chi2_dof": "chi^2 / degrees of freedom of the fit; ~1 if the polynomial model and the standard errors are adequate",
    "dof": "degrees of freedom: weighted entries (3 per point; 2 for zero-sum data with mass conservation) - free parameters (2 or 3 per term)",
    "n_points_used": "V_discr points in the fit",
    "n_points_dropped": "points dropped for non-finite rho, slope, K or K_stderr, or K_stderr <= 0 (any entry)",
    "n_outliers": "(point, entry) pairs with |residual| > 3",
    "condition_number": "condition number of the whitened, column-equilibrated design",
    "data_zero_sum": "whether the estimator's entries sum to zero point by point (K_aa = -(K_a,a-1 + K_a,a+1)); then the middle entry is not counted as an independent measurement (fit_stencil)",
    "point_used": "whether the point entered the fits of this estimator",
    "residual": "normalised residual (K - E)/K_stderr at the used points, NaN at dropped ones",
    "fitted": "fitted E(rho_a, s) at every V_discr point",
    "column_sum_max": "max over the used V_discr points of |E_-1 + E_0 + E_+1| of the fit (absolute; 0 to rounding with mass conservation)",
    "column_sum_max_relative": "max over the used V_discr points of |E_-1 + E_0 + E_+1| / |E_0|",
    "stencil_laplacian": "normalised K(1) of seed eq. (9): E(rho_c, 0) / (-E_-1(rho_c, 0)) at the centre rho_c of rho_range; exact (-1, 2, -1); paper (-1, 1.999936, -0.999936)",
    "stencil_laplacian_stderr": "delta-method standard error of stencil_laplacian from coefficients_covariance",
    "stencil_laplacian_scale": "-E_-1(rho_c, 0), the factor of the K(1) stencil (exact m(rho_c)/Delta)",
    "stencil_laplacian_scale_stderr": "standard error of stencil_laplacian_scale",
    "stencil_gradient": "normalised K(2) of seed eq. (9): dE/ds(rho_c, 0) / (-dE_-1/ds(rho_c, 0)); exact (-1, 0, +1) in either ordering convention; paper (-1, 0.003763, 0.996237)",
    "stencil_gradient_stderr": "delta-method standard error of stencil_gradient from coefficients_covariance",
    "stencil_gradient_scale": "-dE_-1/ds(rho_c, 0), the factor of the K(2) stencil (exact -m'(rho_c)/2: dE/ds = (m'/2)(1, 0, -1), REFERENCE §1)",
    "stencil_gradient_scale_stderr": "standard error of stencil_gradient_scale",
    "stencil_laplacian_ends": "stencil_laplacian evaluated at the ends of rho_range",
    "stencil_laplacian_ends_stderr": "standard error of stencil_laplacian_ends",
    "stencil_gradient_ends": "stencil_gradient evaluated at the ends of rho_range",
    "stencil_gradient_ends_stderr": "standard error of stencil_gradient_ends",
}


def _param_labels(terms: Sequence[str]) -> list[str]:
    return [f"{o:+d}|{t}" for o in OFFSETS for t in terms]


@dataclass(frozen=True)
class OperatorFit:
    """The ``fit`` reduce stage (implements ``ReduceStage``): polynomial fits of /operator (seed Appendix A).

    Parameters
    ----------
    upstream : str
        Fingerprint of the operator stage it reads.
    order : int
        Polynomial order in (rho_a, s); the paper uses 2.
    mass_conservation : tuple of bool
        Fit variants, e.g. ``(True, False)`` (seed main text and Appendix A, Fig. A.5).
    name : str
        Store group, ``"fit"``.
    """

    upstream: str
    order: int
    mass_conservation: tuple[bool, ...]
    name: str = "fit"

    def __post_init__(self):
        polynomial_terms(self.order)  # validates
        mc = tuple(self.mass_conservation)
        if not mc or any(not isinstance(v, (bool, np.bool_)) for v in mc) or len(set(mc)) != len(mc):
            raise ValueError(f"mass_conservation must be a non-empty tuple of distinct bools, got {self.mass_conservation!r}")
        object.__setattr__(self, "mass_conservation", tuple(bool(v) for v in mc))

    @classmethod
    def from_spec(cls, spec: Any, operator: Any) -> "OperatorFit":
        """From the spec's ``fit`` section (defaults: order 2, variants (True, False)) and the operator stage."""
        fit = spec["fit"]
        return cls(upstream=fingerprint(operator), order=fit["order"], mass_conservation=tuple(fit["mass_conservation"]))

    def compute(self, tree: xr.DataTree) -> xr.Dataset:
        """The ``/fit`` group from ``tree["operator"]`` (variables: module ``_DESCRIPTIONS``).

        Raises
        ------
        ValueError
            If a fit has fewer usable points than terms, or a rank-deficient design
            (the message names the estimator and variant).
        """
        op = tree["operator"].ds
        estimators = [str(e) for e in op["estimator"].values]
        K_all = op["K"].transpose("estimator", "point", "offset")
        if [int(o) for o in K_all["offset"].values] != list(OFFSETS):
            K_all = K_all.sel(offset=list(OFFSETS))
        K_all = K_all.values
        se_all = op["K_stderr"].transpose("estimator", "point", "offset").sel(offset=list(OFFSETS)).values
        rho = np.asarray(op["rho"].values, dtype=np.float64)
        slope = np.asarray(op["slope"].values, dtype=np.float64)
        terms = tuple(name for _, _, name in polynomial_terms(self.order))
        p, n_pts, n_e, n_m = len(terms), rho.size, len(estimators), len(self.mass_conservation)

        fits: dict[tuple[int, int], FitResult] = {}
        for e, est in enumerate(estimators):
            for m, mc in enumerate(self.mass_conservation):
                try:
                    fits[e, m] = fit_stencil(rho, slope, K_all[e], se_all[e], self.order, mc)
                except ValueError as exc:
                    raise ValueError(f"fit of estimator {est!r}, mass_conservation={mc}: {exc}") from exc
        used_any = np.any([f.used for f in fits.values()], axis=0)
        rho_range = (float(rho[used_any].min()), float(rho[used_any].max()))
        slope_range = (float(slope[used_any].min()), float(slope[used_any].max()))
        rho_c = 0.5 * (rho_range[0] + rho_range[1])
        ends = np.array(rho_range)

        def full(*shape):
            return np.full((n_e, n_m) + shape, np.nan)

        out = {name: full() for name in ("chi2_dof", "column_sum_max", "column_sum_max_relative", "condition_number",
                                         "stencil_laplacian_scale", "stencil_laplacian_scale_stderr",
                                         "stencil_gradient_scale", "stencil_gradient_scale_stderr")}
        ints = {name: np.zeros((n_e, n_m), dtype=np.int64) for name in ("dof", "n_points_used", "n_points_dropped", "n_outliers")}
        coef, coef_se = full(3, p), full(3, p)
        cov = full(3 * p, 3 * p)
        residual, fitted = full(n_pts, 3), full(n_pts, 3)
        stencils = {name: full(3) for name in ("stencil_laplacian", "stencil_laplacian_stderr",
                                               "stencil_gradient", "stencil_gradient_stderr")}
        ends_out = {name: full(2, 3) for name in ("stencil_laplacian_ends", "stencil_laplacian_ends_stderr",
                                                  "stencil_gradient_ends", "stencil_gradient_ends_stderr")}
        point_used = np.zeros((n_e, n_pts), dtype=bool)
        zero_sum = np.zeros(n_e, dtype=bool)
        for (e, m), f in fits.items():
            fo = f.operator(estimators[e], rho_range, slope_range)
            coef[e, m], coef_se[e, m], cov[e, m] = f.coefficients, f.stderr, f.covariance
            residual[e, m], fitted[e, m] = f.residual, f.fitted
            point_used[e], zero_sum[e] = f.used, f.zero_sum_data
            out["chi2_dof"][e, m], out["condition_number"][e, m] = f.chi2_dof, f.condition_number
            ints["dof"][e, m], ints["n_points_used"][e, m] = f.dof, f.n_used
            ints["n_points_dropped"][e, m], ints["n_outliers"][e, m] = f.n_dropped, f.n_outliers
            E = fo.stencil(rho[f.used], slope[f.used], "ignore") if f.mass_conservation else f.fitted[f.used]
            sums = np.abs(E.sum(axis=1))
            out["column_sum_max"][e, m] = sums.max()
            out["column_sum_max_relative"][e, m] = (sums / np.abs(E[:, 1])).max()
            for kind, fn in (("laplacian", fo.laplacian_stencil), ("gradient", fo.gradient_stencil)):
                stencils[f"stencil_{kind}"][e, m], stencils[f"stencil_{kind}_stderr"][e, m] = fn(rho_c)
                ends_out[f"stencil_{kind}_ends"][e, m], ends_out[f"stencil_{kind}_ends_stderr"][e, m] = fn(ends)
            out["stencil_laplacian_scale"][e, m], out["stencil_laplacian_scale_stderr"][e, m] = fo.laplacian_scale(rho_c)
            out["stencil_gradient_scale"][e, m], out["stencil_gradient_scale_stderr"][e, m] = fo.gradient_scale(rho_c)

        em = ("estimator", "mass_conservation")
        data = {
            "coefficients": (em + ("offset", "term"), coef),
            "coefficients_stderr": (em + ("offset", "term"), coef_se),
            "coefficients_covariance": (em + ("param", "param_b"), cov),
            "residual": (em + ("point", "offset"), residual),
            "fitted": (em + ("point", "offset"), fitted),
            "point_used": (("estimator", "point"), point_used),
            "data_zero_sum": (("estimator",), zero_sum),
            **{k: (em, v) for k, v in out.items()},
            **{k: (em, v) for k, v in ints.items()},
            **{k: (em + ("offset",), v) for k, v in stencils.items()},
            **{k: (em + ("rho_end", "offset"), v) for k, v in ends_out.items()},
        }
        labels = _param_labels(terms)
        ds = xr.Dataset(
            data,
            coords={
                "estimator": np.array(estimators, dtype=object),
                "mass_conservation": np.array(self.mass_conservation, dtype=bool),
                "offset": np.array(OFFSETS),
                "term": np.array(terms, dtype=object),
                "param": np.array(labels, dtype=object),
                "param_b": np.array(labels, dtype=object),
                "param_offset": ("param", np.repeat(np.array(OFFSETS), p)),
                "param_term": ("param", np.array(list(terms) * 3, dtype=object)),
                "rho_end": ends,
                "point": op["point"].values if "point" in op.coords else np.arange(n_pts),
                "rho": ("point", rho),
                "slope": ("point", slope),
            },
        )
        for name in list(ds.variables):
            ds[name].attrs["description"] = _DESCRIPTIONS[name]
        elements = op.attrs.get("elements")
        ds.attrs.update({
            "order": int(self.order),
            "terms": list(terms),
            "rho_range": list(rho_range),
            "slope_range": list(slope_range),
            "rho_centre": rho_c,
            "elements": int(elements) if elements is not None else -1,
            "upstream": self.upstream,
            "covariance": "unscaled (X^T W X)^-1, W = 1/K_stderr^2; multiply by chi2_dof for the scaled version",
            "description": (
                "Polynomial fit of the discretised operator <K gamma_a, gamma_b> over V (seed 000 eq. (8), Fig. 3, "
                "Appendix A): weighted least squares of second-order (attrs order) polynomials in (rho_a, s) for the "
                "three entries, with and without the mass-conservation constraint E_-1 + E_0 + E_+1 == 0; "
                "decomposition K = K(1)(rho) + K(2)(rho, s) of seed eq. (9) as normalised stencils."
            ),
        })
        return ds


# ----------------------------------------------------------------------------- access
def fitted_operator(tree_or_path, estimator: str = "carre_du_champ", mass_conservation: bool = True) -> FittedOperator:
    """A :class:`FittedOperator` from a store path, an opened DataTree, or a ``/fit`` Dataset.

    Parameters
    ----------
    tree_or_path : str, os.PathLike, xarray.DataTree or xarray.Dataset
        A cgflow store (opened with :func:`cgflow.engine.store.open_run`), a tree
        holding the ``fit`` group, or that group itself.
    estimator : str, default "carre_du_champ"
    mass_conservation : bool, default True
    """
    if isinstance(tree_or_path, xr.Dataset):
        ds = tree_or_path
    elif isinstance(tree_or_path, xr.DataTree):
        ds = tree_or_path["fit"].ds
    elif isinstance(tree_or_path, (str, os.PathLike)):
        from ...engine.store import open_run

        ds = open_run(tree_or_path)["fit"].ds
    else:
        raise TypeError(f"expected a store path, DataTree or Dataset, got {type(tree_or_path).__name__}")
    return FittedOperator.from_dataset(ds.load(), estimator, mass_conservation)
