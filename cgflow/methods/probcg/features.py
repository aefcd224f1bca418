"""Feature functions of the probabilistic coarse-grained law (seed 003, eq. 2.18).

The coarse state of ``n_c`` periodic bins is ``X`` (``rho = softmax(X)``, eq. 2.12).
The evolution law (eq. 2.17) is ``X_{t+1, j} ~ N(theta^T phi^(j)(X_t), 1/v)`` with one
``theta`` for every bin ``j`` and the features of §3 of the paper (REFERENCE-003 §2):

* first order ``phi_m = X_{j+m}``, ``m = -M..M``;
* second order ``phi_{m1,m2} = X_{j+m1} X_{j+m2}`` over ORDERED pairs
  ``(m1, m2)``, ``m1, m2 = -M..M``,

indices taken mod ``n_c`` [D]. That gives ``L = (2M+1) + (2M+1)**2`` features (30 for
M = 2, 132 for M = 5, 182 for M = 6), the counts the paper quotes; they only work out
with ordered pairs, so ``(a, b)`` and ``(b, a)`` are duplicate columns and only their
sum is identified (ARD splits it; :func:`pair_sums` reports the sums).

Feature names are ``X[j-2]``, ``X[j-1]``, ``X[j]``, ``X[j+1]``, ... and
``X[j-1]*X[j+1]`` (first factor ``m1``, second ``m2``). The order of the feature
axis is: the ``2M+1`` first-order features by ``m``, then the pairs with ``m1``
outer and ``m2`` inner.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from numbers import Integral

import numpy as np

__all__ = [
    "apply_law",
    "centred_log_counts",
    "design",
    "feature_names",
    "n_features",
    "offsets",
    "pair_sums",
    "split_theta",
    "theta_from_mapping",
    "theta_to_mapping",
]


def _check_M(M) -> int:
    if isinstance(M, bool) or not isinstance(M, Integral) or M < 0:
        raise ValueError(f"neighbour range M must be a non-negative integer, got {M!r}")
    return int(M)


def offsets(M: int) -> np.ndarray:
    """The neighbour offsets ``-M..M`` (the order of the first-order features)."""
    M = _check_M(M)
    return np.arange(-M, M + 1)


def n_features(M: int) -> int:
    """``L = (2M+1) + (2M+1)**2`` (REFERENCE-003 §2)."""
    K = 2 * _check_M(M) + 1
    return K + K * K


def _site(m: int) -> str:
    return "X[j]" if m == 0 else f"X[j{m:+d}]"


@lru_cache(maxsize=32)
def _names(M: int) -> tuple[str, ...]:
    ms = range(-M, M + 1)
    first = [_site(m) for m in ms]
    second = [f"{_site(a)}*{_site(b)}" for a in ms for b in ms]
    return tuple(first + second)


def feature_names(M: int) -> tuple[str, ...]:
    """Names of the ``L`` features in the order of the feature axis."""
    return _names(_check_M(M))


def _check_state(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 1 or X.shape[-1] < 1:
        raise ValueError(f"{name} must have a bin axis (last), got shape {X.shape}")
    return X


def _shifts(X: np.ndarray, M: int) -> np.ndarray:
    """``X[..., (j + m) mod n_c]`` as an array ``(..., n_c, 2M+1)``."""
    n_c = X.shape[-1]
    idx = (np.arange(n_c)[:, None] + offsets(M)[None, :]) % n_c
    return X[..., idx]


def design(X, M: int) -> np.ndarray:
    """Feature matrix ``phi^(j)(X)`` for every bin (eq. 2.18).

    Parameters
    ----------
    X : array (..., n_c)
        Coarse states (any leading axes).
    M : int
        Neighbour range.

    Returns
    -------
    array (..., n_c, L)
        ``out[..., j, l] = phi_l^(j)(X)``; feature order as :func:`feature_names`.
    """
    M = _check_M(M)
    X = _check_state(X)
    lin = _shifts(X, M)
    K = lin.shape[-1]
    quad = (lin[..., :, None] * lin[..., None, :]).reshape(lin.shape[:-1] + (K * K,))
    return np.concatenate([lin, quad], axis=-1)


def split_theta(theta, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``theta (..., L)`` into first order ``(..., 2M+1)`` and the pair matrix ``(..., 2M+1, 2M+1)``.

    ``Q[..., a, b]`` is the coefficient of ``X_{j+m_a} X_{j+m_b}`` (ordered pair).
    """
    M = _check_M(M)
    theta = np.asarray(theta, dtype=np.float64)
    K = 2 * M + 1
    if theta.shape[-1:] != (K + K * K,):
        raise ValueError(f"theta must have {K + K * K} features (last axis) for M = {M}, got shape {theta.shape}")
    return theta[..., :K], theta[..., K:].reshape(theta.shape[:-1] + (K, K))


def apply_law(theta, X, M: int) -> np.ndarray:
    """The mean of the law, ``theta^T phi^(j)(X)`` for every bin, without forming ``phi``.

    Parameters
    ----------
    theta : array (..., L)
        Coefficients; leading axes broadcast against those of ``X``.
    X : array (..., n_c)
        Coarse states.
    M : int
        Neighbour range.

    Returns
    -------
    array (..., n_c)
    """
    M = _check_M(M)
    X = _check_state(X)
    lin1, Q = split_theta(theta, M)
    lin = _shifts(X, M)  # (..., n_c, K)
    first = np.einsum("...jk,...k->...j", lin, lin1)
    # sum_{a,b} Q_ab lin_a lin_b = lin . (Q lin)
    Ql = np.einsum("...ab,...jb->...ja", Q, lin)
    return first + np.einsum("...ja,...ja->...j", lin, Ql)


def pair_sums(theta, M: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Identifiable coefficients: first order as is, ordered pairs summed ``(a,b)+(b,a)``.

    Parameters
    ----------
    theta : array (..., L)
    M : int

    Returns
    -------
    names : tuple of str
        ``2M+1`` first-order names, then the unordered pairs ``m1 <= m2`` named
        ``X[j+m1]*X[j+m2]`` (diagonal pairs are not doubled).
    values : array (..., (2M+1) + (2M+1)(2M+2)/2)
    """
    M = _check_M(M)
    lin1, Q = split_theta(theta, M)
    K = 2 * M + 1
    a, b = np.triu_indices(K)
    sym = Q + np.swapaxes(Q, -1, -2)
    vals = np.where(a == b, Q[..., a, b], sym[..., a, b])
    ms = offsets(M)
    names = tuple(_site(m) for m in ms) + tuple(f"{_site(ms[i])}*{_site(ms[k])}" for i, k in zip(a, b))
    return names, np.concatenate([lin1, vals], axis=-1)


def theta_from_mapping(mapping: Mapping[str, float], M: int) -> np.ndarray:
    """Coefficient vector from ``{feature name: value}``; unnamed features are 0.

    Raises
    ------
    ValueError
        Naming an unknown feature, or a value that is not a finite number.
    """
    names = feature_names(M)
    index = {n: i for i, n in enumerate(names)}
    theta = np.zeros(len(names))
    if not isinstance(mapping, Mapping):
        raise ValueError(f"theta must be a mapping {{feature name: value}}, got {type(mapping).__name__}")
    for key, value in mapping.items():
        k = str(key).replace(" ", "")
        if k not in index:
            raise ValueError(
                f"unknown feature {key!r} for M = {M}; features are named like "
                f"{names[0]!r}, {names[M]!r}, {names[2 * M + 1 + 1]!r} (ordered pairs)"
            )
        try:
            val = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"theta[{key!r}] must be a number, got {value!r}") from None
        if not np.isfinite(val):
            raise ValueError(f"theta[{key!r}] must be finite, got {value!r}")
        theta[index[k]] = val
    return theta


def theta_to_mapping(theta, M: int, skip_zero: bool = False) -> dict[str, float]:
    """Inverse of :func:`theta_from_mapping` (for one coefficient vector)."""
    theta = np.asarray(theta, dtype=np.float64)
    names = feature_names(M)
    if theta.shape != (len(names),):
        raise ValueError(f"theta must have shape ({len(names)},) for M = {M}, got {theta.shape}")
    return {n: float(t) for n, t in zip(names, theta) if not (skip_zero and t == 0.0)}


def centred_log_counts(counts) -> np.ndarray:
    """MAP-like coarse state of bin counts in the training gauge: centred ``log(m + 1/2)``.

    The likelihood ``p_cf(x|X)`` (eq. 2.13) is invariant to ``X -> X + c 1``
    (REFERENCE-003 §2 gauge caveat), so the mean is fixed at zero, the gauge of the
    training states; the quadratic features make predictions depend on it.
    """
    m = np.asarray(counts)
    if m.ndim < 1:
        raise ValueError(f"counts must have a bin axis, got shape {m.shape}")
    if (m < 0).any():
        raise ValueError("counts must be non-negative")
    x = np.log(m.astype(np.float64) + 0.5)
    return x - x.mean(axis=-1, keepdims=True)
