"""Mergeable moments and the order-independent fold."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow.engine.keys import BlockKey, block_stream, stage_id
from cgflow.engine.stats import Moments, OrderedFold


def test_merge_equals_moments_of_union():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)) @ rng.normal(size=(4, 4)) + 3.0
    parts = np.split(x, [1, 100, 101, 640])
    merged = Moments.empty(4)
    for part in parts:
        merged = merged.merge(Moments.from_samples(part))
    whole = Moments.from_samples(x)
    assert merged.count == 1000
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(merged.comoment, whole.comoment, rtol=1e-11)
    np.testing.assert_allclose(merged.covariance, np.cov(x.T), rtol=1e-11)


def test_covariance_needs_two_samples():
    assert np.isnan(Moments.from_samples(np.ones((1, 2))).covariance).all()
    with pytest.raises(ValueError):
        Moments.from_samples(np.ones(3))


def test_ordered_fold_is_bitwise_independent_of_arrival_order():
    rng = np.random.default_rng(1)
    blocks = [Moments.from_samples(rng.normal(size=(7, 3)) * 10 ** rng.uniform(-3, 3)) for _ in range(40)]
    results = []
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(40)
        fold = OrderedFold(Moments.merge, Moments.empty(3), 40)
        for i in order:
            fold.push(int(i), blocks[i])
        assert fold.complete
        results.append(fold.value)
    for r in results[1:]:
        assert r.mean.tobytes() == results[0].mean.tobytes()
        assert r.comoment.tobytes() == results[0].comoment.tobytes()
    # while a naive fold in arrival order is not (this is why OrderedFold exists)
    naive = [Moments.empty(3)] * 2
    for k, order in enumerate([range(40), range(39, -1, -1)]):
        for i in order:
            naive[k] = naive[k].merge(blocks[i])
    assert naive[0].comoment.tobytes() != naive[1].comoment.tobytes()


def test_ordered_fold_rejects_duplicates():
    fold = OrderedFold(lambda a, b: a + b, 0, 3)
    fold.push(1, 1)
    with pytest.raises(ValueError):
        fold.push(1, 1)
    with pytest.raises(IndexError):
        fold.push(3, 1)


def test_streams_depend_only_on_the_key():
    a = block_stream(5, BlockKey("ensemble", 1, 2)).random(4)
    assert np.array_equal(a, block_stream(5, BlockKey("ensemble", 1, 2)).random(4))
    others = [block_stream(6, BlockKey("ensemble", 1, 2)), block_stream(5, BlockKey("ensemble", 2, 1)),
              block_stream(5, BlockKey("other", 1, 2)), block_stream(5, BlockKey("ensemble", 1, 2), purpose=1)]
    for g in others:
        assert not np.array_equal(a, g.random(4))
    assert stage_id("ensemble") == stage_id("ensemble") != stage_id("operator")


def test_diagonal_moments_merge_like_full_ones():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5)) * [1, 10, 100, 0.1, 3]
    diag = Moments.from_samples(x[:120], full=False).merge(Moments.from_samples(x[120:], full=False))
    full = Moments.from_samples(x)
    assert not diag.full and full.full
    np.testing.assert_allclose(diag.comoment, np.diag(full.comoment), rtol=1e-12)
    np.testing.assert_allclose(diag.covariance, x.var(axis=0, ddof=1), rtol=1e-12)
