"""Statistical helpers shared by the tests: random streams as the engine makes them, and chi-square p-values."""

from __future__ import annotations

import numpy as np
from scipy import stats


def make_rng(*seed) -> np.random.Generator:
    """The project's RNG scheme: Generator(Philox(SeedSequence(seed)))."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(seed))))


def chi2_pvalue(counts, probs, min_expected: float = 5.0) -> float:
    """Pearson chi-square p-value; cells with expected count < min_expected are pooled."""
    counts = np.asarray(counts, dtype=float)
    probs = np.asarray(probs, dtype=float)
    n = counts.sum()
    big = probs * n >= min_expected
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(probs[big], max(1.0 - probs[big].sum(), 0.0)) * n
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    return float(stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), keep.sum() - 1))


def assert_operator_matches_exact(op, estimator: str) -> None:
    """Operator table vs the exact operator: z = (K - K_exact)/SE ~ Student t(clusters - 1) for every stencil entry.

    Every other node (independent elements) passes a KS test at 1e-3; the mean z is within 4 SE (neighbours
    correlated: x2); no |z| beyond the t quantile of 1e-4 / entries.
    """
    dof = op.attrs["clusters_per_profile"] - 1
    assert dof >= 10
    for offset in (-1, 0, 1):
        sel = op.sel(estimator=estimator, offset=offset)
        assert np.all(sel.K_stderr > 0)
        z = ((sel.K - sel.K_reference) / sel.K_stderr).values
        for start in (0, 1):  # every other node: independent elements
            assert stats.kstest(z[start::2], stats.t(dof).cdf).pvalue > 1e-3, (offset, np.round(z[start::2], 2))
        assert abs(z.mean()) <= 4 * np.sqrt(dof / (dof - 2) * 2 / len(z))
        assert np.abs(z).max() < stats.t(dof).ppf(1 - 1e-4 / len(z))


def mlp_numpy(layers, u):
    """A ReLU MLP (``[{"W", "b"}, ...]``, no activation after the last layer) in NumPy: the networks' oracle."""
    for i, layer in enumerate(layers):
        u = u @ layer["W"] + layer["b"]
        if i < len(layers) - 1:
            u = np.maximum(u, 0.0)
    return u
