"""Tests of cgflow.learn.metrics.relative_mse (seed 001 eq. (24))."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from cgflow.learn.metrics import relative_mse


def test_hand_example():
    ref = np.array([[1.0, 2.0], [3.0, 6.0]])  # mean snapshot (2, 4); denominator 1 + 4 + 1 + 4 = 10
    v = np.array([[1.0, 3.0], [3.0, 4.0]])  # numerator 1 + 4 = 5
    assert relative_mse(v, ref) == 0.5
    assert relative_mse(ref, ref) == 0.0
    assert relative_mse(np.broadcast_to(ref.mean(axis=0), ref.shape), ref) == 1.0


def test_mean_is_over_snapshots_not_grand_mean():
    # a per-node offset that is constant in time is part of vbar_h: predicting it scores 1, not 0
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(50, 7, 3)) * 0.1 + np.arange(21.0).reshape(7, 3)
    assert relative_mse(np.broadcast_to(ref.mean(axis=0), ref.shape), ref) == pytest.approx(1.0, abs=1e-14)


def test_equals_one_minus_variance_weighted_r2():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(40, 9))
    v = ref + 0.3 * rng.normal(size=ref.shape)
    expected = 1.0 - r2_score(ref, v, multioutput="variance_weighted")
    assert relative_mse(v, ref) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "v, ref, match",
    [
        (np.zeros((3, 4)), np.zeros((3, 5)), "same shape"),
        (np.zeros((1, 4)), np.zeros((1, 4)), "at least two snapshots"),
        (np.zeros((3, 2)), np.ones((3, 2)), "all reference snapshots are identical"),
        (
            np.array([[0.0, np.nan], [1.0, 2.0]]),
            np.array([[0.0, 1.0], [1.0, 2.0]]),
            r"v has a non-finite entry nan at index \(0, 1\)",
        ),
    ],
)
def test_errors(v, ref, match):
    with pytest.raises(ValueError, match=match):
        relative_mse(v, ref)


def test_mmd2_biased_matches_brute_force_and_is_zero_for_equal_samples():
    from cgflow.learn.metrics import mmd2_biased

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    brute = 0.0
    for s in (0.5, 2.0):
        k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * s**2))  # noqa: E731
        xx = np.mean([[k(a, b) for b in x] for a in x])
        yy = np.mean([[k(a, b) for b in y] for a in y])
        xy = np.mean([[k(a, b) for b in y] for a in x])
        brute += (xx + yy - 2 * xy) / 2
    assert mmd2_biased(x, y, (0.5, 2.0)) == pytest.approx(brute, rel=1e-12)
    assert abs(mmd2_biased(x, x)) < 1e-12
    batched = mmd2_biased(np.stack([x, x + 1]), np.stack([y, y + 1]), (0.5, 2.0))
    np.testing.assert_allclose(batched, [brute, brute], rtol=1e-12)  # a common shift changes nothing
    with pytest.raises(ValueError, match="bandwidths must be positive"):
        mmd2_biased(x, y, (0.0,))
    with pytest.raises(ValueError, match="equal leading axes and d"):
        mmd2_biased(x, y[:, :2])


def test_mmd2_biased_expectation_for_two_gaussians():
    """E MMD²_b = MMD² + (1/n + 1/m)(1 - E k(x, x')) for N(mu1, s² I) vs N(mu2, s² I), in closed form; mean of
    400 independent estimates within 4 SE of it (the paper's sample sizes: 50 vs 50 four-d latents)."""
    from cgflow.learn.metrics import MMD_BANDWIDTHS, mmd2_biased

    rng = np.random.default_rng(1)
    d, n, s, shift = 4, 50, 0.5, 0.3
    mu2 = np.full(d, shift / np.sqrt(d))
    x = rng.normal(0.0, s, size=(400, n, d))
    y = rng.normal(mu2, s, size=(400, n, d))
    est = mmd2_biased(x, y)
    expected = 0.0
    for sig in MMD_BANDWIDTHS:
        same = (sig**2 / (sig**2 + 2 * s**2)) ** (d / 2)
        cross = same * np.exp(-shift**2 / (2 * (sig**2 + 2 * s**2)))
        expected += (2 * same - 2 * cross + 2 / n * (1 - same)) / len(MMD_BANDWIDTHS)
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - expected) < 4 * se
    assert expected > 10 * se  # the test can tell a shift of 0.3 from none
