"""Finite-size-scaling numerics of the 2-D Ising critical point (seed 002, issue 10 "Ising criticality").

REFERENCE-002 §1 "Phase transition": at h = 0 the authors simulate (or roll out)
L x L Ising lattices at T in {2.25, ..., 2.29}, keep |m| (the magnetisation per
spin, sign discarded) and compute

    chi = (L**2 / T) (<M**2> - <|M|>**2),     U = 1 - <M**4> / (3 <M**2>**2),

then fit <|M|> ~ L**(-beta/nu), chi ~ L**(gamma/nu) and |dU/dT| at T_c ~ L**(1/nu)
(their numbers at T = 2.27, L = 16..128: -0.1199, 1.7918, 1.055). REFERENCE-002 §9
gives the exact values beta/nu = 1/8, gamma/nu = 7/4, 1/nu = 1 and
T_c = 2/ln(1 + sqrt 2) = 2.269185.

Here ``M`` is the magnetisation *per spin* m (as the authors'); all functions are
pure NumPy/SciPy (no Dask, no stores) so a pipeline stage can call them.

Error model. Samples come as ``(..., runs, samples)``: independent runs (the
statistical unit) each holding a time series of correlated samples. Every
estimate is the pooled one over all samples; its standard error is the jackknife
over runs (leave one run out), which for a plain mean equals the standard
deviation of the per-run means over sqrt(runs) and handles the non-linear chi and
U correctly. No assumption on the autocorrelation inside a run is needed, only
that the runs are independent and equilibrated (:func:`integrated_autocorr_time`
measures the autocorrelation so the sampling times can be checked).

Functions
---------
moments                 <|M|>, chi, U with jackknife SEs (optionally weighted / reweighted).
binder_derivative       dU/dT at the simulated T from energy fluctuations (no fit).
reweighting_weights     single-histogram reweighting weights T0 -> T, with the Kish ESS.
poly_at                 weighted polynomial fit in T: value and slope at T0 with SEs.
binder_slope            dU/dT at T_c from U on a temperature grid (wraps poly_at).
fit_exponent            weighted log-log fit y ~ L**p.
exponents               beta/nu, gamma/nu, 1/nu from a (L, T) grid of moments vs the exact ones.
integrated_autocorr_time  Sokal-windowed tau_int of a (runs, samples) series.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real

import numpy as np
from scipy import stats

__all__ = [
    "EXACT_EXPONENTS",
    "ISING_TC",
    "Moments",
    "binder_derivative",
    "binder_slope",
    "exponents",
    "fit_exponent",
    "integrated_autocorr_time",
    "moments",
    "poly_at",
    "reweighting_weights",
]

#: T_c = 2/ln(1 + sqrt 2) (Onsager; REFERENCE-002 §9).
ISING_TC = 2.0 / math.log(1.0 + math.sqrt(2.0))
#: Exact 2-D Ising FSS exponents (REFERENCE-002 §9).
EXACT_EXPONENTS = {"beta_over_nu": 0.125, "gamma_over_nu": 1.75, "one_over_nu": 1.0}


# ----------------------------------------------------------------------------- validation
def _check_size(L, name="L") -> int:
    if isinstance(L, bool) or not isinstance(L, Integral) or L < 1:
        raise ValueError(f"{name} must be a positive integer, got {L!r}")
    return int(L)


def _check_temperature(T, batch_shape, name="T") -> np.ndarray:
    arr = np.asarray(T, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {T!r}")
    try:
        return np.broadcast_to(arr, batch_shape)
    except ValueError:
        raise ValueError(f"{name} of shape {arr.shape} does not broadcast to the batch shape {batch_shape}") from None


def _check_samples(x, name, bound=None) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., runs, samples) with samples >= 1, got {arr.shape}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    if bound is not None and np.any(np.abs(arr) > bound + 1e-12):
        raise ValueError(f"{name} must lie in [-{bound}, {bound}] (a per-spin quantity)")
    return arr


def _check_weights(weights, shape) -> np.ndarray:
    if weights is None:
        return np.ones(shape)
    w = np.asarray(weights, dtype=float)
    if w.ndim == 1 and len(shape) == 2:
        w = w[None, :]
    if w.shape != shape:
        raise ValueError(f"weights must have the samples' shape {shape}, got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w.sum(axis=-1) <= 0):
        raise ValueError("weights must be finite, >= 0, with a positive sum in every run")
    return w


def _check_1d(x, name, n=None, positive=False) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f"shape ({n},)" if n is not None else "a 1-D array"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0")
    return arr


# ----------------------------------------------------------------------------- jackknife
def _jackknife(sums, func):
    """Pooled estimate and jackknife SE over runs.

    ``sums``: list of arrays (..., R) of per-run weighted sums (the first is the
    weight total). ``func(*pooled_means, loo=...)`` maps pooled means (divided by the
    weight total; shape (...) for the estimate, (..., R) for the leave-one-out values
    when ``loo`` is True) to the estimate. Returns (estimate, se); se is NaN for R = 1.
    """
    tot = [s.sum(axis=-1) for s in sums]
    est = func(*[t / tot[0] for t in tot[1:]], loo=False)
    R = sums[0].shape[-1]
    if R < 2:
        return est, np.full(np.shape(est), np.nan)
    loo = [t[..., None] - s for t, s in zip(tot, sums)]
    f = func(*[lo / loo[0] for lo in loo[1:]], loo=True)
    se = np.sqrt((R - 1) / R * ((f - f.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1))
    return est, se


def _scalar(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


# ----------------------------------------------------------------------------- moments
@dataclass(frozen=True)
class Moments:
    """FSS moments of |m| (arrays over the batch axes, floats for a single set).

    abs_m, abs_m_se : <|M|> and its SE.
    m2, m4 : <M**2>, <M**4> (SEs not needed downstream).
    chi, chi_se : (L**2/T)(<M**2> - <|M|>**2) and its jackknife SE.
    binder, binder_se : 1 - <M**4>/(3 <M**2>**2) and its jackknife SE.
    n_runs, n_samples : runs and samples per run.
    """

    abs_m: np.ndarray
    abs_m_se: np.ndarray
    m2: np.ndarray
    m4: np.ndarray
    chi: np.ndarray
    chi_se: np.ndarray
    binder: np.ndarray
    binder_se: np.ndarray
    n_runs: int
    n_samples: int

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def moments(m_samples, L, T, weights=None) -> Moments:
    """<|M|>, chi and the Binder cumulant U with jackknife-over-runs SEs (REFERENCE-002 §1 "Phase transition").

    Parameters
    ----------
    m_samples : array_like, shape (..., runs, samples)
        Magnetisation per spin m in [-1, 1] (the sign is discarded: |m| as the
        authors). The second-to-last axis holds *independent* runs, the last the
        (correlated) samples of each run; leading axes are a batch (e.g. sizes or
        temperatures). A 1-D array is one run (SEs are NaN).
    L : int
        Lattice side (N = L**2 spins).
    T : float or array_like broadcastable to the batch shape
        Temperature of each batch entry.
    weights : array_like, optional
        Non-negative sample weights of the samples' shape: exact probabilities of a
        law (pass its support as one "run"), or single-histogram reweighting weights
        (:func:`reweighting_weights`). Default: all 1.

    Returns
    -------
    Moments
        Pooled estimates <x> = sum w x / sum w over all runs and samples, with

        * chi = (L**2/T)(<M**2> - <|M|>**2),
        * U = 1 - <M**4>/(3 <M**2>**2),

        and SEs from the jackknife over runs (leave one run out). For the
        unweighted <|M|> with equal run lengths this is exactly
        std(per-run means, ddof=1)/sqrt(runs).

    Notes
    -----
    The estimates of chi and U are the plug-in (ratio) ones the authors use; their
    O(1/(runs x samples/tau)) bias is far below the SE for the run lengths used here.
    """
    m = _check_samples(m_samples, "m_samples", bound=1.0)
    L = _check_size(L)
    Tb = _check_temperature(T, m.shape[:-2])
    w = _check_weights(weights, m.shape)
    a = np.abs(m)
    m2 = m * m
    sums = [w.sum(-1), (w * a).sum(-1), (w * m2).sum(-1), (w * m2 * m2).sum(-1)]
    N = float(L * L)
    Tx = Tb[..., None]  # broadcasts against the leave-one-out axis

    abs_m, abs_se = _jackknife(sums[:2], lambda A, loo: A)
    mean2 = sums[2].sum(-1) / sums[0].sum(-1)
    mean4 = sums[3].sum(-1) / sums[0].sum(-1)
    chi_est, chi_se = _jackknife(sums[:3], lambda A, B, loo: (N / (Tx if loo else Tb)) * (B - A**2))
    binder, binder_se = _jackknife([sums[0], sums[2], sums[3]], lambda B, C, loo: 1.0 - C / (3.0 * B**2))
    return Moments(abs_m=_scalar(abs_m), abs_m_se=_scalar(abs_se), m2=_scalar(mean2), m4=_scalar(mean4),
                   chi=_scalar(chi_est), chi_se=_scalar(chi_se), binder=_scalar(binder),
                   binder_se=_scalar(binder_se), n_runs=int(m.shape[-2]), n_samples=int(m.shape[-1]))


def binder_derivative(m_samples, e_samples, L, T, weights=None):
    """dU/dT at the simulated temperature from energy fluctuations, with jackknife SE.

    Canonical identity: d<X>/d beta = -N (<X e> - <X><e>) for any observable X, with
    e the energy per spin (E = N e; Ising at h = 0: e = 4 rho_dw - 2). With
    U = 1 - <m4>/(3<m2>**2),

        dU/d beta = -(<m2> d<m4>/d beta - 2 <m4> d<m2>/d beta) / (3 <m2>**3),
        dU/dT = -dU/d beta / T**2.

    This is the exact derivative of the finite-L Binder cumulant at T (no fit, no
    grid); it cross-checks :func:`binder_slope` (REFERENCE-002 §1 "Phase transition").

    Parameters
    ----------
    m_samples, e_samples : array_like, shape (..., runs, samples)
        Magnetisation and energy per spin of the same samples.
    L : int
    T : float or array_like broadcastable to the batch shape
    weights : array_like, optional
        As in :func:`moments`.

    Returns
    -------
    (dU_dT, se) : floats or arrays over the batch axes
    """
    m = _check_samples(m_samples, "m_samples", bound=1.0)
    e = _check_samples(e_samples, "e_samples")
    if e.shape != m.shape:
        raise ValueError(f"e_samples must have the shape of m_samples {m.shape}, got {e.shape}")
    L = _check_size(L)
    Tb = _check_temperature(T, m.shape[:-2])
    w = _check_weights(weights, m.shape)
    m2 = m * m
    m4 = m2 * m2
    N = float(L * L)
    sums = [w.sum(-1), (w * m2).sum(-1), (w * m4).sum(-1), (w * e).sum(-1), (w * m2 * e).sum(-1),
            (w * m4 * e).sum(-1)]

    def f(B, C, E, BE, CE, T_):
        dB = -N * (BE - B * E)
        dC = -N * (CE - C * E)
        dU_dbeta = -(B * dC - 2.0 * C * dB) / (3.0 * B**3)
        return -dU_dbeta / T_**2

    est, se = _jackknife(sums, lambda *a, loo: f(*a, Tb[..., None] if loo else Tb))
    return _scalar(est), _scalar(se)


def reweighting_weights(e_samples, L, T0, T):
    """Single-histogram (Ferrenberg–Swendsen) weights from T0 to T, and the Kish effective sample fraction.

    w = exp(-(1/T - 1/T0) N e), e the energy per spin at h = 0, normalised by the
    global maximum (pass ``weights=w`` to :func:`moments` / :func:`binder_derivative`).

    Validity range. The reweighted average at T only uses configurations the T0
    run visited. Changing T by dT shifts the mean energy by N c dT (c the specific
    heat per spin) while the histogram's width is T0 sqrt(N c); reweighting is
    reliable while the shift stays below about one width,
    |T - T0| <~ T0 / sqrt(N c) = T0 / (L sqrt c). At T_c, c grows only
    logarithmically (Ferdinand–Fisher: c ~ 0.4945 ln L + 0.19, i.e. 1.6 at L = 16,
    2.2 at L = 64), so the window shrinks like 1/L: about +-0.11 at L = 16 and
    +-0.024 at L = 64, i.e. it barely covers the authors' grid (+-0.02) at L = 64
    and not beyond. The returned Kish fraction
    (sum w)**2 / (n sum w**2) measures it: below ~0.1 the result is unreliable. The
    jackknife SE over runs stays valid (weights are per sample) but does not catch
    the bias of an under-sampled tail.

    Returns
    -------
    w : ndarray, the shape of ``e_samples``
    kish_fraction : float
    """
    e = _check_samples(e_samples, "e_samples")
    L = _check_size(L)
    for name, v in (("T0", T0), ("T", T)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    logw = -(1.0 / T - 1.0 / T0) * (L * L) * e
    w = np.exp(logw - logw.max())
    kish = float(w.sum() ** 2 / (w.size * (w * w).sum()))
    return w, kish


# ----------------------------------------------------------------------------- fits
def _wls(X, y, sig):
    """Weighted least squares: coefficients, covariance (absolute sigma), chi2."""
    A = X / sig[:, None]
    b = y / sig
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    cov = np.linalg.inv(A.T @ A)
    chi2 = float(((A @ coef - b) ** 2).sum())
    return coef, cov, chi2


def poly_at(x, y, y_se, x0, degree="auto", max_degree=2):
    """Weighted polynomial fit of y(x) and its value and slope at x0 with SEs.

    Parameters
    ----------
    x, y, y_se : array_like, shape (n,)
        Grid (distinct values), values, standard errors (> 0, independent).
    x0 : float
        Evaluation point (the fit is in powers of x - x0, so value and slope are
        the first two coefficients and their SEs come straight from the covariance).
    degree : int or "auto"
        ``"auto"``: linear if n <= 3; otherwise the lowest degree in
        1..min(max_degree, n - 2) whose chi**2 has p >= 0.05 (the highest one if none
        passes). This keeps >= 1 degree of freedom so the choice is tested.
    max_degree : int
        Cap of the ``"auto"`` choice (default 2: linear or quadratic; with 5
        temperatures a cubic leaves one degree of freedom and, with SEs estimated
        from few runs, chases noise).

    Returns
    -------
    dict with value, value_se, slope, slope_se, degree, chi2, dof, chi2_dof, p_value
        SEs from the weighted covariance with the given y_se (not rescaled by chi2);
        chi2_dof tells whether they are credible.
    """
    x = _check_1d(x, "x")
    n = x.shape[0]
    y = _check_1d(y, "y", n)
    s = _check_1d(y_se, "y_se", n, positive=True)
    if n < 2 or np.unique(x).size != n:
        raise ValueError(f"x must hold >= 2 distinct values, got {x.tolist()}")
    if isinstance(x0, bool) or not isinstance(x0, Real) or not math.isfinite(x0):
        raise ValueError(f"x0 must be a finite number, got {x0!r}")
    if degree == "auto":
        hi = max(1, min(int(max_degree), n - 2))
        candidates = list(range(1, hi + 1))
    elif isinstance(degree, Integral) and not isinstance(degree, bool) and 1 <= degree <= n - 1:
        candidates = [int(degree)]
    else:
        raise ValueError(f"degree must be 'auto' or an integer in [1, {n - 1}], got {degree!r}")
    dx = x - float(x0)
    for d in candidates:
        coef, cov, chi2 = _wls(np.vander(dx, d + 1, increasing=True), y, s)
        dof = n - d - 1
        p = float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan")
        if not (dof > 0 and p < 0.05):
            break
    return {"value": float(coef[0]), "value_se": float(math.sqrt(cov[0, 0])), "slope": float(coef[1]),
            "slope_se": float(math.sqrt(cov[1, 1])), "degree": d, "chi2": chi2, "dof": dof,
            "chi2_dof": chi2 / dof if dof > 0 else float("nan"), "p_value": p}


def binder_slope(T_grid, U, U_se, T_c=ISING_TC, degree="auto"):
    """dU/dT at T_c from U on a temperature grid by a weighted polynomial fit (REFERENCE-002 §1 "Phase transition").

    The authors fit linear (L = 16) or cubic polynomials over T in {2.25, ..., 2.29}
    and read the slope at T_c = 2.269. Here the degree is chosen by :func:`poly_at`
    (``"auto"``: linear for <= 3 temperatures, else the lowest acceptable degree,
    keeping one degree of freedom), and the SE propagates the independent U SEs.
    The U values must come from independent simulations at each T (values
    reweighted from one run are correlated; then the fit SE is not valid).

    Returns
    -------
    dict: slope, slope_se, value (U at T_c), value_se, degree, chi2, dof, chi2_dof, p_value
    """
    for name, v in (("T_c", T_c),):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    T = _check_1d(T_grid, "T_grid", positive=True)
    n = T.shape[0]
    Uv = _check_1d(U, "U", n)
    Us = _check_1d(U_se, "U_se", n, positive=True)
    return poly_at(T, Uv, Us, float(T_c), degree=degree)


def fit_exponent(L, y, y_se):
    """Weighted log-log fit y = A L**p (REFERENCE-002 §1 "Phase transition").

    Fits log y = log A + p log L with sigma(log y) = y_se / y (first-order error
    propagation; fine for y_se/y << 1).

    Parameters
    ----------
    L : array_like, shape (n,), n >= 2, distinct sizes > 0
    y : array_like, shape (n,), > 0
    y_se : array_like, shape (n,), > 0

    Returns
    -------
    dict: exponent, exponent_se, amplitude, amplitude_rel_se, chi2, dof, chi2_dof
        SEs with absolute sigma (not rescaled); chi2_dof >> 1 flags corrections to
        scaling or underestimated errors.
    """
    Lv = _check_1d(L, "L", positive=True)
    n = Lv.shape[0]
    yv = _check_1d(y, "y", n, positive=True)
    sv = _check_1d(y_se, "y_se", n, positive=True)
    if n < 2 or np.unique(Lv).size != n:
        raise ValueError(f"L must hold >= 2 distinct sizes, got {Lv.tolist()}")
    X = np.stack([np.ones(n), np.log(Lv)], axis=1)
    coef, cov, chi2 = _wls(X, np.log(yv), sv / yv)
    dof = n - 2
    return {"exponent": float(coef[1]), "exponent_se": float(math.sqrt(cov[1, 1])),
            "amplitude": float(math.exp(coef[0])), "amplitude_rel_se": float(math.sqrt(cov[0, 0])),
            "chi2": chi2, "dof": dof, "chi2_dof": chi2 / dof if dof > 0 else float("nan")}


def exponents(L, T_grid, mom: Moments, T_c=ISING_TC, degree="auto", L_min=None, dU_dT=None, dU_dT_se=None):
    """beta/nu, gamma/nu and 1/nu from a (size, temperature) grid of moments (REFERENCE-002 §1, §9).

    At every L: <|M|>, chi and U at T_c from weighted polynomial fits over the
    temperature grid (:func:`poly_at`; T_c need not be a grid point), dU/dT at T_c
    from the same fit of U (:func:`binder_slope`) or, if given, from per-temperature
    fluctuation derivatives ``dU_dT`` (:func:`binder_derivative`) fitted the same
    way. Then log-log fits over L >= L_min:

    * <|M|>(T_c) ~ L**(-beta/nu)  (exact 1/8),
    * chi(T_c) ~ L**(gamma/nu)    (exact 7/4),
    * |dU/dT|(T_c) ~ L**(1/nu)    (exact 1).

    Parameters
    ----------
    L : array_like of int, shape (nL,)
    T_grid : array_like, shape (nT,)
    mom : Moments
        Fields of shape (nL, nT) (:func:`moments` on samples (nL, nT, runs, samples)).
    T_c : float
    degree : int or "auto"
        Polynomial degree in T (see :func:`poly_at`).
    L_min : int, optional
        Smallest size in the exponent fits (corrections to scaling are largest at
        small L); default all.
    dU_dT, dU_dT_se : array_like (nL, nT), optional

    Returns
    -------
    dict with "per_size" (list of per-L values at T_c with SEs and fit degrees) and
    "beta_over_nu", "gamma_over_nu", "one_over_nu": each a dict of value, se, exact,
    deviation_in_se, chi2_dof, sizes.
    """
    Lv = _check_1d(L, "L", positive=True)
    T = _check_1d(T_grid, "T_grid", positive=True)
    nL, nT = Lv.shape[0], T.shape[0]
    fields = {}
    for name in ("abs_m", "abs_m_se", "chi", "chi_se", "binder", "binder_se"):
        arr = np.asarray(getattr(mom, name), dtype=float)
        if arr.shape != (nL, nT):
            raise ValueError(f"mom.{name} must have shape (len(L), len(T_grid)) = {(nL, nT)}, got {arr.shape}")
        fields[name] = arr
    if (dU_dT is None) != (dU_dT_se is None):
        raise ValueError("dU_dT and dU_dT_se must be given together")
    if dU_dT is not None:
        dU = np.asarray(dU_dT, dtype=float)
        dUs = np.asarray(dU_dT_se, dtype=float)
        if dU.shape != (nL, nT) or dUs.shape != (nL, nT):
            raise ValueError(f"dU_dT and dU_dT_se must have shape {(nL, nT)}")
    if L_min is None:
        keep = np.ones(nL, bool)
    else:
        keep = Lv >= _check_size(L_min, "L_min")
        if keep.sum() < 2:
            raise ValueError(f"L_min = {L_min} leaves fewer than 2 sizes")
    per = []
    for i in range(nL):
        am = poly_at(T, fields["abs_m"][i], fields["abs_m_se"][i], T_c, degree)
        ch = poly_at(T, fields["chi"][i], fields["chi_se"][i], T_c, degree)
        if dU_dT is None:
            bs = binder_slope(T, fields["binder"][i], fields["binder_se"][i], T_c, degree)
            slope, slope_se, sdeg, schi = bs["slope"], bs["slope_se"], bs["degree"], bs["chi2_dof"]
        else:
            bs = poly_at(T, dU[i], dUs[i], T_c, degree)
            slope, slope_se, sdeg, schi = bs["value"], bs["value_se"], bs["degree"], bs["chi2_dof"]
        per.append({"L": float(Lv[i]), "abs_m": am["value"], "abs_m_se": am["value_se"], "abs_m_degree": am["degree"],
                    "chi": ch["value"], "chi_se": ch["value_se"], "chi_degree": ch["degree"],
                    "dU_dT": slope, "dU_dT_se": slope_se, "dU_dT_degree": sdeg, "dU_dT_fit_chi2_dof": schi})
    col = lambda k: np.array([p[k] for p in per])[keep]  # noqa: E731
    out = {"T_c": float(T_c), "per_size": per, "sizes_fitted": Lv[keep].tolist()}
    fits = {
        "beta_over_nu": (fit_exponent(Lv[keep], col("abs_m"), col("abs_m_se")), -1.0),
        "gamma_over_nu": (fit_exponent(Lv[keep], col("chi"), col("chi_se")), 1.0),
        "one_over_nu": (fit_exponent(Lv[keep], np.abs(col("dU_dT")), col("dU_dT_se")), 1.0),
    }
    for name, (fit, sign) in fits.items():
        val = sign * fit["exponent"]
        exact = EXACT_EXPONENTS[name]
        out[name] = {"value": val, "se": fit["exponent_se"], "exact": exact,
                     "deviation_in_se": (val - exact) / fit["exponent_se"], "chi2_dof": fit["chi2_dof"],
                     "amplitude": fit["amplitude"]}
    return out


# ----------------------------------------------------------------------------- autocorrelation
def integrated_autocorr_time(x, dt=1.0, c=6.0):
    """Integrated autocorrelation time of a stationary series, Sokal's automatic window.

    tau_int = 1/2 + sum_{t=1}^{W} rho(t), W the smallest lag with W >= c tau_int(W);
    rho is the autocovariance averaged over runs (each run centred on the global
    mean) normalised at lag 0. The variance of a mean of n samples is
    2 tau_int var/n (tau_int in sample spacings), so N_eff = n / (2 tau_int).

    Parameters
    ----------
    x : array_like, shape (runs, samples) or (samples,)
    dt : float
        Sample spacing (the result is in these units, e.g. attempts per spin).
    c : float
        Window factor (Sokal: 4-10).

    Returns
    -------
    dict: tau_int (units of dt), tau_int_se (Madras–Sokal, sqrt(2(2W+1)/n) tau), window (units of dt),
    reliable (W < n/10 per run)
    """
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] < 4 or not np.all(np.isfinite(a)):
        raise ValueError(f"x must be a finite (runs, samples) array with >= 4 samples, got shape {a.shape}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be finite and > 0, got {dt!r}")
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"c must be finite and > 0, got {c!r}")
    R, n = a.shape
    z = a - a.mean()
    nfft = 1 << int(math.ceil(math.log2(2 * n)))
    f = np.fft.rfft(z, nfft, axis=1)
    acov = np.fft.irfft(f * np.conj(f), nfft, axis=1)[:, :n].sum(axis=0) / (R * np.arange(n, 0, -1))
    if acov[0] <= 0:
        raise ValueError("x has zero variance")
    rho = acov / acov[0]
    tau = 0.5
    W = n - 1
    for t in range(1, n):
        tau += rho[t]
        if t >= c * tau:
            W = t
            break
    tau = max(tau, 0.5)
    se = tau * math.sqrt(2.0 * (2 * W + 1) / (R * n))
    return {"tau_int": tau * dt, "tau_int_se": se * dt, "window": W * dt, "reliable": bool(W < n / 10)}
