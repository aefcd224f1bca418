"""Error measures of learned right-hand sides and trajectories (seed 001 §5.1; seed 002 §6 MMD).

Everything is vectorised numpy; no I/O.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MMD_BANDWIDTHS", "mmd2_biased", "relative_mse"]

#: RBF bandwidths of the multi-scale MMD of seed 002's predator-prey evaluation (REFERENCE-002 §6).
MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def mmd2_biased(x, y, bandwidths=MMD_BANDWIDTHS) -> np.ndarray:
    """Biased (V-statistic) MMD² between two samples, averaged over RBF bandwidths (REFERENCE-002 §6).

    MMD²_b = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j),
    k(a, b) = exp(-|a - b|² / (2 sigma²)), averaged over ``bandwidths``.

    Parameters
    ----------
    x : array_like, shape (..., n, d)
        First sample (e.g. predicted latents at one step); leading axes are batched.
    y : array_like, shape (..., m, d)
        Second sample (e.g. true latents at the same step).
    bandwidths : sequence of float
        sigma of the kernels (default: the authors' 0.25 ... 8).

    Returns
    -------
    ndarray, shape (...)
        >= 0 up to rounding; 0 for identical samples. Its expectation exceeds the
        population MMD² by (1/n)(1 - E k(x, x')) + (1/m)(1 - E k(y, y')) (the
        diagonal terms): compare methods at equal sample sizes.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim < 2 or y.ndim != x.ndim or x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(f"x and y must have shapes (..., n, d) and (..., m, d) with equal leading axes and d, "
                         f"got {x.shape} and {y.shape}")
    if min(x.shape[-2], y.shape[-2]) < 1 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be non-empty and finite")
    sig = np.asarray(bandwidths, dtype=np.float64).ravel()
    if sig.size == 0 or np.any(~np.isfinite(sig) | (sig <= 0)):
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths!r}")

    def sq_dist(a, b):
        return np.maximum((a**2).sum(-1)[..., :, None] + (b**2).sum(-1)[..., None, :] - 2 * a @ np.swapaxes(b, -1, -2), 0.0)

    total = 0.0
    dxx, dyy, dxy = sq_dist(x, x), sq_dist(y, y), sq_dist(x, y)
    for s in sig:
        g = -0.5 / s**2
        total = total + np.exp(g * dxx).mean((-2, -1)) + np.exp(g * dyy).mean((-2, -1)) - 2 * np.exp(g * dxy).mean((-2, -1))
    return total / sig.size


def relative_mse(v, v_ref) -> float:
    """Relative mean squared error of a set of snapshots, seed eq. (24).

    rMSE(v) = sum_j ||v^j - v_h^j||^2 / sum_j ||v_h^j - vbar_h||^2.

    Parameters
    ----------
    v : array_like, shape (n_snapshots, ...)
        Predicted snapshots v^j (a field of any shape per snapshot, e.g. the
        learned dU/dt at the interior nodes, or a rolled-out trajectory).
    v_ref : array_like, same shape as ``v``
        Reference snapshots v_h^j (the homogenized model).

    Returns
    -------
    float
        0 for a perfect prediction; 1 for predicting the mean reference snapshot
        every time.

    Raises
    ------
    ValueError
        If the shapes differ, there are fewer than two snapshots, an entry is not
        finite, or all reference snapshots are identical (the denominator is 0).

    Notes
    -----
    Reading of vbar_h: the mean *over snapshots* of the reference, a field
    vbar_h = (1/n) sum_j v_h^j, not a scalar grand mean. The denominator is then
    the total variance of the reference snapshots about their mean snapshot, so
    rMSE = 1 - R^2 with R^2 the variance-weighted multi-output coefficient of
    determination of scikit-learn (snapshots as samples, nodes as outputs:
    ``r2_score(v_ref, v, multioutput="variance_weighted")`` on arrays flattened to
    (n_snapshots, n_nodes)). Snapshots are indexed by j along axis 0; ||.|| is the
    Euclidean norm over all remaining axes (no grid-spacing weight: it would cancel).
    """
    v = np.asarray(v, dtype=np.float64)
    v_ref = np.asarray(v_ref, dtype=np.float64)
    if v.shape != v_ref.shape:
        raise ValueError(f"v and v_ref must have the same shape, got {v.shape} and {v_ref.shape}")
    if v.ndim < 1 or v.shape[0] < 2:
        raise ValueError(f"relative_mse needs at least two snapshots along axis 0, got shape {v.shape}")
    for name, arr in (("v", v), ("v_ref", v_ref)):
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} has a non-finite entry {float(arr[idx])!r} at index {idx}")
    den = float(np.sum((v_ref - v_ref.mean(axis=0)) ** 2))
    if den == 0.0:
        raise ValueError("all reference snapshots are identical: the denominator of eq. (24) is 0")
    return float(np.sum((v - v_ref) ** 2)) / den
