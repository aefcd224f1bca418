"""Tests of cgflow.learn.features: derivative features, stencil windows, the Grid plumbing."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow.learn.features import (
    FD_FEATURES,
    SPECTRAL_FEATURES_2D,
    Grid,
    finite_difference_features,
    spectral_features_2d,
    stencil_feature_names,
    stencil_windows,
)


# ----------------------------------------------------------------------------- finite differences
def test_finite_difference_features_hand_values():
    U = np.array([[0.0, 1.0, 4.0, 9.0, 16.0], [1.0, -1.0, 2.0, 0.0, 3.0]])
    F = finite_difference_features(U, dx=0.5)
    assert F.shape == (2, 3, 3) and FD_FEATURES == ("U", "U_x", "U_xx")
    # x = 0, .5, 1, 1.5, 2 and U = 4 x**2: U_x = 8 x, U_xx = 8 exactly for central differences
    np.testing.assert_allclose(F[0], [[1.0, 4.0, 8.0], [4.0, 8.0, 8.0], [9.0, 12.0, 8.0]], rtol=0, atol=1e-14)
    np.testing.assert_allclose(F[1, 0], [-1.0, (2.0 - 1.0) / 1.0, (2.0 + 2.0 + 1.0) / 0.25], rtol=0, atol=1e-14)


def test_finite_difference_features_periodic_wraps():
    U = np.arange(6.0)[None] ** 2
    F = finite_difference_features(U, dx=1.0, periodic=True)
    assert F.shape == (1, 6, 3)
    assert F[0, 0, 1] == (1.0 - 25.0) / 2 and F[0, 0, 2] == 1.0 - 0.0 + 25.0
    assert F[0, 5, 2] == 0.0 - 50.0 + 16.0
    np.testing.assert_array_equal(F[0, 1:-1], finite_difference_features(U, 1.0)[0])


# ----------------------------------------------------------------------------- spectral
@pytest.mark.parametrize("shape", [(16, 16), (12, 10), (9, 15)])
def test_spectral_features_exact_on_trig_polynomial(shape):
    n_x, n_y = shape
    x = np.arange(n_x) * 2 * np.pi / n_x
    y = np.arange(n_y) * 2 * np.pi / n_y
    X, Y = np.meshgrid(x, y, indexing="ij")
    terms = [(1.0, 1, 0, 0.3), (-0.7, 2, 3, 1.1), (0.4, 3, -4, -0.2), (0.25, 0, 4, 2.0), (0.6, -4, 1, 0.5)]
    U = np.zeros(shape)
    exact = np.zeros((*shape, 6))
    for a, kx, ky, ph in terms:
        th = kx * X + ky * Y + ph
        s, c = a * np.sin(th), a * np.cos(th)
        U += s
        exact += np.stack([s, kx * c, ky * c, -kx * kx * s, -kx * ky * s, -ky * ky * s], axis=-1)
    F = spectral_features_2d(np.stack([U, 2 * U]))
    assert F.shape == (2, *shape, 6) and SPECTRAL_FEATURES_2D[3:] == ("U_xx", "U_xy", "U_yy")
    np.testing.assert_allclose(F[0], exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(F[1], 2 * exact, rtol=0, atol=2e-10)


def test_spectral_features_nyquist_and_length():
    # cos(8 x) on 16 points is the resolved Nyquist mode: U_x = 0, U_xx = -64 U; period L = 3
    n, L = 16, 3.0
    x = np.arange(n) * L / n
    U = np.cos(2 * np.pi / L * 8 * x)[:, None] * np.cos(2 * np.pi / L * np.arange(n) * L / n)[None, :]
    F = spectral_features_2d(U[None], length=L)[0]
    k = 2 * np.pi / L
    np.testing.assert_allclose(F[..., 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(F[..., 3], -((8 * k) ** 2) * U, atol=1e-9)
    np.testing.assert_allclose(F[..., 4], 0.0, atol=1e-9)
    np.testing.assert_allclose(F[..., 5], -(k**2) * U, atol=1e-9)


# ----------------------------------------------------------------------------- windows
def test_stencil_windows_1d_hand_example():
    U = np.array([[10.0, 11.0, 12.0, 13.0, 14.0]])
    W = stencil_windows(U, 3)
    np.testing.assert_array_equal(W[0], [[10, 11, 12], [11, 12, 13], [12, 13, 14]])
    Wp = stencil_windows(U, 3, periodic=True)
    np.testing.assert_array_equal(Wp[0, [0, 4]], [[14, 10, 11], [13, 14, 10]])
    np.testing.assert_array_equal(stencil_windows(U, 5, periodic=True)[0, 1], [14, 10, 11, 12, 13])
    assert stencil_feature_names(3, 1) == ("U[-1]", "U[+0]", "U[+1]")


def test_stencil_windows_2d_hand_example():
    U = np.arange(12.0).reshape(1, 3, 4)  # U[i, j] = 4 i + j
    W = stencil_windows(U, 3, periodic=True)
    assert W.shape == (1, 3, 4, 3, 3)
    # window at (i, j) = (0, 0): rows i = 2, 0, 1; columns j = 3, 0, 1
    np.testing.assert_array_equal(W[0, 0, 0], [[11, 8, 9], [3, 0, 1], [7, 4, 5]])
    np.testing.assert_array_equal(W[0, 1, 2], [[1, 2, 3], [5, 6, 7], [9, 10, 11]])
    i, j, a, b = np.meshgrid(range(3), range(4), range(3), range(3), indexing="ij")
    np.testing.assert_array_equal(W[0], U[0, (i + a - 1) % 3, (j + b - 1) % 4])
    valid = stencil_windows(U, 3)
    assert valid.shape == (1, 1, 2, 3, 3)
    np.testing.assert_array_equal(valid[0, 0, 1], W[0, 1, 2])
    names = stencil_feature_names(3, 2)
    assert names[0] == "U[-1,-1]" and names[5] == "U[+0,+1]" and len(names) == 9


# ----------------------------------------------------------------------------- grid plumbing
def test_grid_dirichlet_round_trip():
    g = Grid.for_fields(np.zeros((2, 11)))
    assert (g.boundary, g.length, g.spacing, g.interior_shape, g.n_interior) == ("dirichlet", 1.0, (0.1,), (9,), 9)
    np.testing.assert_allclose(g.coordinates[0], np.linspace(0, 1, 11), atol=1e-15)
    U = np.arange(22.0).reshape(2, 11)
    inner = g.interior(U)
    assert inner.shape == (2, 9)
    back = g.to_field(inner.ravel(), fill=np.nan)
    np.testing.assert_array_equal(back[:, 1:-1], U[:, 1:-1])
    assert np.isnan(back[:, [0, -1]]).all()
    np.testing.assert_array_equal(g.to_field(inner)[:, [0, -1]], 0.0)


def test_grid_periodic_2d():
    g = Grid.for_fields(np.zeros((1, 16, 8)))
    assert g.boundary == "periodic" and g.length == pytest.approx(2 * np.pi)
    assert g.spacing == pytest.approx((2 * np.pi / 16, 2 * np.pi / 8)) and g.n_interior == 128
    v = np.arange(256.0)
    np.testing.assert_array_equal(g.to_field(v), v.reshape(2, 16, 8))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: finite_difference_features(np.zeros(11), 0.1), r"shape \(n_snapshots, n_x\).*got shape \(11,\)"),
        (lambda: finite_difference_features(np.zeros((3, 2)), 0.1), "n_x >= 3"),
        (lambda: finite_difference_features(np.zeros((3, 5)), 0.0), "dx must be"),
        (lambda: spectral_features_2d(np.zeros((16, 16))), r"\(n_snapshots, n_x, n_y\).*got shape \(16, 16\)"),
        (lambda: spectral_features_2d(np.zeros((1, 4, 4)), length=-1.0), "length must be"),
        (lambda: stencil_windows(np.zeros(5)), r"got shape \(5,\)"),
        (lambda: stencil_windows(np.zeros((1, 5)), width=2), "odd integer"),
        (lambda: stencil_windows(np.zeros((1, 2)), width=3), "no window of width 3"),
        (lambda: stencil_windows(np.zeros((1, 0, 3))), "empty axis"),
        (lambda: Grid((4, 4), 1.0, "dirichlet"), "1-D only"),
        (lambda: Grid((2,), 1.0, "dirichlet"), "n_x >= 3"),
        (lambda: Grid((8,), 1.0, "neumann"), "boundary must be one of"),
        (lambda: Grid.for_fields(np.zeros((2, 11))).to_field(np.zeros(10)), "whole number of snapshots"),
        (lambda: Grid.for_fields(np.zeros((2, 11))).check(np.zeros((2, 12))), r"shape \(11,\)"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
