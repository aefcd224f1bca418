"""The ZRP ensemble stage: projections, nesting, and exact static fluctuations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cgflow.methods.fdr.ensemble import ZRPEnsemble, project
from cgflow.micro import zrp
from cgflow.spec import load_spec


def dense_hats(sites: int, elements: int, periodic: bool) -> np.ndarray:
    """gamma_a(x_i) = max(0, 1 - N |x_i - a/N|) as a dense (nodes, sites) matrix (Algorithm 1 line 12)."""
    x = np.arange(sites) / sites
    nodes = np.arange(elements if periodic else elements + 1) / elements
    d = np.abs(x[None, :] - nodes[:, None])
    if periodic:
        d = np.minimum(d, 1 - d)
    return np.maximum(0.0, 1 - elements * d)


@pytest.mark.parametrize("periodic", [False, True])
def test_projection_matches_dense_hats(periodic):
    rng = np.random.default_rng(3)
    eta = rng.integers(0, 20, size=(4, 120))
    expected = eta @ dense_hats(120, 6, periodic).T / np.sqrt(120)
    np.testing.assert_allclose(project(eta, 6, periodic), expected, rtol=1e-13)


@pytest.fixture
def stage(tiny_spec) -> ZRPEnsemble:
    return ZRPEnsemble.from_spec(load_spec(tiny_spec))


def test_sweep_and_template(stage):
    sw = stage.sweep
    assert (sw.n_points, sw.n_blocks, sw.block_size) == (3, 8, 8)
    ds = stage.template()
    assert ds.projection.dims == ("point", "replica", "time", "node")
    assert ds.projection.shape == (3, 64, 2, 11)
    assert ds.projection.data.chunksize == (1, 8, 2, 11)
    np.testing.assert_allclose(ds.x_node, np.linspace(0, 1, 11))
    assert list(ds.profile.values) == ["flat", "flat", "affine"]


def test_block_is_a_pure_function_of_its_key(stage):
    a, b = stage.compute_block(1, 3), stage.compute_block(1, 3)
    assert a.work == b.work > 0
    assert a.arrays["projection"].tobytes() == b.arrays["projection"].tobytes()
    c = stage.compute_block(1, 4)
    assert c.arrays["projection"].tobytes() != a.arrays["projection"].tobytes()


def test_blocks_smaller_than_a_preparation_share_it(stage):
    # 4 continuations, blocks of 2: blocks 0 and 1 continue the same preparation
    nested = dataclasses.replace(stage, block_size=2, t_decorrelate=0.0)
    p0 = nested.compute_block(0, 0).arrays["projection"][:, 0]
    p1 = nested.compute_block(0, 1).arrays["projection"][:, 0]
    p2 = nested.compute_block(0, 2).arrays["projection"][:, 0]
    assert np.array_equal(p0[0], p1[0]) and np.array_equal(p0[0], p0[1])  # same state at t0
    assert not np.array_equal(p0[0], p2[0])  # the next preparation


def test_static_fluctuations_match_the_product_measure(stage):
    """Var P_a(t0) = chi(rho) sum_i gamma_a(x_i)^2 / L for independent sites (flat profile, no evolution)."""
    st = dataclasses.replace(stage, t_equilibrate=0.0, t_decorrelate=0.0, continuations=1, block_size=64,
                             preparations=256, store_replicas=False)
    blocks = [st.compute_block(1, b).stats["state"] for b in range(4)]
    m = blocks[0]
    for other in blocks[1:]:
        m = m.merge(other)
    n = m.count
    var = np.diag(m.covariance)[1:-1]
    rho = st.rho_mid[1]
    hats = dense_hats(st.sites, st.elements, st.periodic)[1:-1]
    exact = zrp.compressibility(rho, st.rate_exponent) * (hats**2).sum(axis=1) / st.sites
    se = exact * np.sqrt(2.0 / (n - 1))  # P_a is a sum of ~20 independent sites: nearly Gaussian
    assert np.all(np.abs(var - exact) <= 4 * se), (var, exact, se)
    np.testing.assert_allclose(m.mean[1:-1] * np.sqrt(st.sites) / (st.sites / st.elements), rho, rtol=0.02)
