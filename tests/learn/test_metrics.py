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
