"""Error measures of learned right-hand sides and trajectories (seed 001 §5.1).

Everything is vectorised numpy; no I/O.
"""

from __future__ import annotations

import numpy as np

__all__ = ["relative_mse"]


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
