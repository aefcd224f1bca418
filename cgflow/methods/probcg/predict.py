"""Posterior predictive of the probabilistic CG model (seed 003, §2.5, eq. 2.39-2.41).

For each of ``S`` samples (REFERENCE-003 §4):

1. ``theta ~ q(theta) = N(mu_theta, S_theta)``;
2. a start state ``X_0`` (a draw of ``q(X_I)`` of a training point, eq. 2.39, or the
   MAP-like state of a new fine state, eq. 2.40/2.41, see :func:`start_from_counts`);
3. ``X_{k+1} = theta^T phi(X_k) + N(0, 1/v)`` with ``v = <v>`` or ``v ~ q(v)`` (option [G]);
4. ``m_k ~ Mult(n_f, softmax X_k)`` (eq. 2.13); walkers are uniform inside their
   coarse bin [D], so the counts of ``fine`` equal sub-bins are a multinomial split.

Observables per step ``k = 0..n_steps`` (step 0 are counts of the start state):
bin density ``m/n_f`` at ``n_c`` and ``fine * n_c`` bins, and the 2-bin probability
``P(k1, k2) = m_k1 (m_k2 - delta_k1k2) / (n_f (n_f - 1))`` [G], each as the sample
mean and the 2.5/97.5 percentiles.

The quadratic law can blow up (REFERENCE-003 §1a). Everything is float64; a sample
whose state leaves ``|X| <= blowup`` is flagged at that step, its state clipped to
``[-blowup, blowup]`` and frozen (its walkers then sit in one or a few bins, the
paper's Fig. 7). ``blown_fraction[k]`` reports the flagged fraction; with
``drop_blown`` the statistics use only the samples not (yet) flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import _check_M, apply_law, centred_log_counts, n_features

__all__ = [
    "Predictive",
    "bootstrap_draws",
    "posterior_predictive",
    "sample_law",
    "sample_q_state",
    "sample_theta",
    "start_from_counts",
]


@dataclass
class Predictive:
    """Summaries of the posterior predictive at steps ``0..n_steps`` (leading axis ``T``)."""

    steps: np.ndarray  # (T,)
    density_mean: np.ndarray  # (T, n_c)
    density_lo: np.ndarray
    density_hi: np.ndarray
    fine_mean: np.ndarray  # (T, fine * n_c)
    fine_lo: np.ndarray
    fine_hi: np.ndarray
    pair_mean: np.ndarray | None  # (T, n_c, n_c)
    pair_lo: np.ndarray | None
    pair_hi: np.ndarray | None
    blown_fraction: np.ndarray  # (T,)
    counts: np.ndarray | None = None  # (T, S, n_c) when keep_samples
    states: np.ndarray | None = None  # (T, S, n_c) when keep_samples


def _softmax(X):
    z = X - X.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def sample_theta(mu_theta, S_theta, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` draws of ``N(mu_theta, S_theta)`` (``S_theta = None``: the point ``mu_theta``).

    Uses the symmetric square root from ``eigh`` (tiny negative eigenvalues of a
    near-singular ``S_theta`` clipped to 0); with ``S_theta = None`` nothing is drawn.
    """
    mu = np.asarray(mu_theta, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu_theta must be a vector, got shape {mu.shape}")
    if S_theta is None:
        return np.broadcast_to(mu, (n_samples, mu.size)).copy()
    S = np.asarray(S_theta, dtype=np.float64)
    if S.shape != (mu.size, mu.size):
        raise ValueError(f"S_theta must have shape {(mu.size, mu.size)}, got {S.shape}")
    w, V = np.linalg.eigh(0.5 * (S + S.T))
    if w.min() < -1e-8 * max(w.max(), 1e-300):
        raise ValueError(f"S_theta is not positive semi-definite (eigenvalue {w.min():.3g})")
    root = V * np.sqrt(np.clip(w, 0.0, None))
    return mu + rng.standard_normal((n_samples, mu.size)) @ root.T


def bootstrap_draws(mu_theta, S_theta, v_shape, v_rate, n_samples: int, rng: np.random.Generator, sample_v: bool = False):
    """θ and 1/v of the bagged posterior (``predict.theta: bootstrap``): sample ``s`` uses bootstrap fit ``b = s mod B``.

    Parameters
    ----------
    mu_theta : (B, L); S_theta : (B, L, L)
        q_b(θ) of the B fits to bootstrap resamples of the experiments.
    v_shape, v_rate : (B, k), k = 1 (shared v) or n_c
        q_b(v).
    sample_v : draw v ~ q_b(v) instead of v = <v>_b.

    Returns
    -------
    theta : (n_samples, L); v_inv : (n_samples, k)
    """
    mu = np.asarray(mu_theta, dtype=np.float64)
    S = np.asarray(S_theta, dtype=np.float64)
    a = np.asarray(v_shape, dtype=np.float64)
    b = np.asarray(v_rate, dtype=np.float64)
    if mu.ndim != 2 or S.shape != mu.shape + (mu.shape[1],) or a.ndim != 2 or a.shape != b.shape or a.shape[0] != mu.shape[0]:
        raise ValueError(f"bootstrap fits need mu (B, L), S (B, L, L), v_shape and v_rate (B, k); got {mu.shape}, {S.shape}, {a.shape}, {b.shape}")
    B = mu.shape[0]
    which = np.arange(int(n_samples)) % B
    theta = np.empty((int(n_samples), mu.shape[1]))
    v = np.empty((int(n_samples), a.shape[1]))
    for r in range(B):
        sel = which == r
        theta[sel] = sample_theta(mu[r], S[r], int(sel.sum()), rng)
        v[sel] = rng.gamma(a[r], 1.0 / b[r], size=(int(sel.sum()), a.shape[1])) if sample_v else a[r] / b[r]
    return theta, 1.0 / v


def sample_q_state(mu, log_s, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of ``q(X_I) = N(mu, diag exp(2 log_s))`` as start states ``(n_samples, n_c)``."""
    mu = np.asarray(mu, dtype=np.float64)
    s = np.exp(np.asarray(log_s, dtype=np.float64))
    if mu.ndim != 1 or s.shape != mu.shape:
        raise ValueError(f"mu and log_s must be vectors of the same length, got {mu.shape}, {s.shape}")
    return mu + s * rng.standard_normal((n_samples, mu.size))


def start_from_counts(counts, n_samples: int, rng: np.random.Generator | None = None, laplace: bool = False) -> np.ndarray:
    """Start states for a new fine state ``x0`` with bin counts ``counts`` (eq. 2.40).

    Default: the MAP-like state centred ``log(m + 1/2)`` in the training gauge for every
    sample. ``laplace=True`` adds the Laplace width of the count likelihood,
    ``N(0, 1/(m_j + 1/2))`` per bin (re-centred), drawn from ``rng``.
    """
    x = centred_log_counts(counts)
    if x.ndim != 1:
        raise ValueError(f"counts must be one vector of bin counts, got shape {x.shape}")
    out = np.broadcast_to(x, (n_samples, x.size)).copy()
    if laplace:
        if rng is None:
            raise ValueError("laplace start states need an rng")
        out += rng.standard_normal(out.shape) / np.sqrt(np.asarray(counts, dtype=np.float64) + 0.5)
        out -= out.mean(axis=-1, keepdims=True)
    return out


def sample_law(X_start, theta, v_inv, n_steps: int, M: int, rng: np.random.Generator, blowup: float = 50.0):
    """Iterate ``X_{k+1} = theta^T phi(X_k) + sqrt(v_inv) N(0, 1)`` (eq. 2.17), vectorised over samples.

    Parameters
    ----------
    X_start : (S, n_c)
    theta : (S, L) or (L,)
    v_inv : scalar or array broadcastable to (S, n_c) (e.g. (S, 1)): noise variance ``1/v``
    n_steps : int
    M : int
    rng : np.random.Generator
        ``(S, n_c)`` normals per step are drawn for every sample (blown ones included),
        so streams do not depend on blow-ups.
    blowup : float
        Guard on ``|X|`` (see module docstring).

    Returns
    -------
    X : (n_steps + 1, S, n_c)
    blown : (n_steps + 1, S) bool, flagged at or before that step
    """
    M = _check_M(M)
    X = np.array(X_start, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X_start must have shape (samples, n_c), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X_start must be finite")
    if not (np.isfinite(blowup) and blowup > 0):
        raise ValueError(f"blowup must be a positive number, got {blowup!r}")
    S, n_c = X.shape
    vinv = np.asarray(v_inv, dtype=np.float64)
    try:
        vinv = np.broadcast_to(vinv, (S, n_c))
    except ValueError:
        raise ValueError(f"v_inv of shape {vinv.shape} does not broadcast to (samples, n_c) = {(S, n_c)}") from None
    if not (np.isfinite(vinv).all() and (vinv >= 0).all()):
        raise ValueError("v_inv must be finite and non-negative")
    sd = np.sqrt(vinv)
    out = np.empty((n_steps + 1, S, n_c))
    blown = np.zeros((n_steps + 1, S), dtype=bool)
    bad = np.abs(X).max(axis=-1) > blowup
    X[bad] = np.clip(X[bad], -blowup, blowup)
    out[0] = X
    blown[0] = bad
    for k in range(n_steps):
        noise = rng.standard_normal((S, n_c))
        with np.errstate(over="ignore", invalid="ignore"):
            new = apply_law(theta, X, M) + sd * noise
        new = np.nan_to_num(new, nan=blowup, posinf=blowup, neginf=-blowup)
        now = ~bad & (np.abs(new).max(axis=-1) > blowup)
        new = np.clip(new, -blowup, blowup)
        X = np.where(bad[:, None], X, new)
        bad = bad | now
        out[k + 1] = X
        blown[k + 1] = bad
    return out, blown


def posterior_predictive(
    X_start,
    n_steps: int,
    n_walkers: int,
    M: int,
    rng: np.random.Generator,
    *,
    mu_theta,
    S_theta=None,
    v_shape=None,
    v_rate=None,
    v_inv=None,
    sample_v: bool = False,
    n_samples: int | None = None,
    fine: int = 4,
    pairs: bool = True,
    blowup: float = 50.0,
    drop_blown: bool = False,
    percentiles=(2.5, 97.5),
    keep_samples: bool = False,
    theta_draws=None,
) -> Predictive:
    """Posterior predictive summaries (eq. 2.39/2.41; REFERENCE-003 §4).

    Parameters
    ----------
    X_start : (n_c,) or (S, n_c)
        One start state for all samples (then ``n_samples`` is required) or one per sample.
    n_steps : int
        Coarse steps to predict.
    n_walkers : int
        ``n_f``.
    M : int
        Neighbour range of the features.
    rng : np.random.Generator
    mu_theta, S_theta : q(theta); ``S_theta=None`` keeps ``theta = mu_theta``.
    v_shape, v_rate : q(v) = Gamma(shape, rate) (scalars, or (n_c,) for per-bin v).
    v_inv : noise variance ``1/v`` given directly instead of ``q(v)`` (e.g. 0 for the
        noiseless law).
    sample_v : draw ``v ~ q(v)`` per sample instead of ``v = <v> = shape/rate``.
    fine : sub-bins per coarse bin for the fine-bin density (4 in the paper: 96 bins).
    pairs : compute the 2-bin probability.
    blowup, drop_blown : overflow guard of the quadratic law (module docstring).
    percentiles : the credible interval.
    keep_samples : also return the counts and states ``(T, S, n_c)``.
    theta_draws : (S, L) θ per sample given directly (e.g. :func:`bootstrap_draws`); then
        ``mu_theta`` only fixes L and ``S_theta`` is not used.

    Returns
    -------
    Predictive
    """
    M = _check_M(M)
    X_start = np.asarray(X_start, dtype=np.float64)
    if X_start.ndim == 1:
        if n_samples is None:
            raise ValueError("n_samples is required when X_start is one state")
        X_start = np.broadcast_to(X_start, (int(n_samples), X_start.size)).copy()
    elif X_start.ndim != 2 or (n_samples is not None and X_start.shape[0] != n_samples):
        raise ValueError(f"X_start must be (n_c,) or (n_samples, n_c), got {X_start.shape}")
    S, n_c = X_start.shape
    if S < 1 or n_c < 3:
        raise ValueError(f"need at least one sample and 3 bins, got X_start of shape {X_start.shape}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    if isinstance(n_walkers, bool) or not isinstance(n_walkers, (int, np.integer)) or n_walkers < 2:
        raise ValueError(f"n_walkers must be an integer >= 2, got {n_walkers!r}")
    if isinstance(fine, bool) or not isinstance(fine, (int, np.integer)) or fine < 1:
        raise ValueError(f"fine must be a positive integer, got {fine!r}")
    L = n_features(M)
    mu_theta = np.asarray(mu_theta, dtype=np.float64)
    if mu_theta.shape != (L,):
        raise ValueError(f"mu_theta must have shape ({L},) for M = {M}, got {mu_theta.shape}")
    if (v_inv is None) == (v_shape is None or v_rate is None):
        raise ValueError("give either v_inv, or v_shape and v_rate (q(v))")
    if theta_draws is not None:
        theta = np.asarray(theta_draws, dtype=np.float64)
        if theta.shape != (S, L) or not np.isfinite(theta).all():
            raise ValueError(f"theta_draws must be finite with shape ({S}, {L}), got {theta.shape}")
    else:
        theta = sample_theta(mu_theta, S_theta, S, rng)
    if v_inv is not None:
        if sample_v:
            raise ValueError("sample_v needs q(v) (v_shape, v_rate), not v_inv")
        vinv = np.asarray(v_inv, dtype=np.float64)
        if (vinv < 0).any() or not np.isfinite(vinv).all():
            raise ValueError(f"v_inv must be finite and non-negative, got {v_inv!r}")
        vinv = np.broadcast_to(vinv, (S, n_c))
    else:
        a = np.asarray(v_shape, dtype=np.float64).reshape(-1)
        b = np.asarray(v_rate, dtype=np.float64).reshape(-1)
        if a.shape != b.shape or a.size not in (1, n_c):
            raise ValueError(f"v_shape and v_rate must both have 1 (shared v) or n_c = {n_c} entries, got {a.size}, {b.size}")
        if not ((a > 0).all() and (b > 0).all() and np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError("v_shape and v_rate must be positive and finite")
        width = 1 if a.size == 1 else n_c  # one v per sample, shared by the bins, or one per bin
        if sample_v:
            v = rng.gamma(a, 1.0 / b, size=(S, width))
        else:
            v = np.broadcast_to(a / b, (S, width))
        vinv = np.broadcast_to(1.0 / v, (S, n_c))
    X, blown = sample_law(X_start, theta, vinv, int(n_steps), M, rng, blowup)

    T = int(n_steps) + 1
    nf = float(n_walkers)
    lo_q, hi_q = percentiles
    dm, dl, dh = (np.empty((T, n_c)) for _ in range(3))
    fm, fl, fh = (np.empty((T, fine * n_c)) for _ in range(3))
    pm = pl = ph = None
    if pairs:
        pm, pl, ph = (np.empty((T, n_c, n_c)) for _ in range(3))
    all_counts = np.empty((T, S, n_c), dtype=np.int64) if keep_samples else None
    split = np.full(fine, 1.0 / fine)
    eye = np.eye(n_c)

    def summarise(vals, keep):
        v = vals[keep] if drop_blown else vals
        if v.shape[0] == 0:
            nan = np.full(vals.shape[1:], np.nan)
            return nan, nan, nan
        lo, hi = np.percentile(v, [lo_q, hi_q], axis=0)
        return v.mean(axis=0), lo, hi

    for k in range(T):
        m = rng.multinomial(n_walkers, _softmax(X[k]))  # (S, n_c)
        sub = rng.multinomial(m, split).reshape(S, fine * n_c)  # uniform inside the bin
        keep = ~blown[k]
        dm[k], dl[k], dh[k] = summarise(m / nf, keep)
        fm[k], fl[k], fh[k] = summarise(sub / nf, keep)
        if pairs:
            mf = m.astype(np.float64)
            P = mf[:, :, None] * (mf[:, None, :] - eye) / (nf * (nf - 1.0))
            pm[k], pl[k], ph[k] = summarise(P, keep)
        if keep_samples:
            all_counts[k] = m
    return Predictive(
        np.arange(T), dm, dl, dh, fm, fl, fh, pm, pl, ph, blown.mean(axis=1),
        all_counts, X if keep_samples else None,
    )
