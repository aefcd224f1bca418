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
