"""Tests of cgflow.learn.closure: patch-additive observables and the per-tile closure autoencoder."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from cgflow.learn.closure import ClosureAutoencoder, ising_observables, tile_view  # noqa: E402

SMALL = dict(channels=(4, 8), decoder_channels=16)


def lattices(n, L, seed):
    """Half structured (one straight domain wall pair: k rows up, rest down, random orientation), half iid."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, L, L), np.int8)
    half = n // 2
    k = rng.integers(1, L, half)
    s = np.where(np.arange(L)[None, :, None] < k[:, None, None], 1, -1) * np.ones((1, 1, L), np.int8)
    flip = rng.random(half) < 0.5
    s[flip] = np.swapaxes(s[flip], 1, 2)
    x[:half] = s
    p = rng.uniform(0.1, 0.9, n - half)
    x[half:] = np.where(rng.random((n - half, L, L)) < p[:, None, None], 1, -1)
    return x


# ----------------------------------------------------------------------------- exact observables
def test_observables_on_known_lattices():
    L = 8
    up = np.ones((L, L), int)
    checker = np.where(np.add.outer(np.arange(L), np.arange(L)) % 2 == 0, 1, -1)
    stripes = np.where(np.arange(L)[None, :] % 2 == 0, 1, -1) * np.ones((L, 1), int)  # alternating columns
    obs = ising_observables(np.stack([up, -up, checker, stripes]))
    np.testing.assert_array_equal(obs, [[1, 0], [-1, 0], [0, 1], [0, 0.5]])
    # a half-up/half-down lattice: 2 walls of L bonds among 2 L^2 bonds
    half = np.where(np.arange(L)[:, None] < L // 2, 1, -1) * np.ones((1, L), int)
    np.testing.assert_allclose(ising_observables(half), [[0.0, 2 * L / (2 * L * L)]])
    # with tiles of 4 the walls lie on tile edges: every 4x4 tile is uniform, so rho = 0
    np.testing.assert_allclose(ising_observables(half, tile_size=4), [[0.0, 0.0]])


def test_observables_are_the_mean_of_per_tile_observables():
    x = lattices(6, 16, 3)
    tiles = tile_view(x, 4)
    per_tile = ising_observables(tiles.reshape(-1, 4, 4)).reshape(6, 16, 2).mean(axis=1)
    np.testing.assert_allclose(ising_observables(x, tile_size=4), per_tile, rtol=1e-14)
    # and differ from the whole-lattice values (bonds across tile edges are not counted)
    assert np.abs(ising_observables(x)[:, 1] - per_tile[:, 1]).max() > 1e-2


def test_tile_view_is_row_major():
    x = np.arange(16).reshape(1, 4, 4)
    t = tile_view(x, 2)
    np.testing.assert_array_equal(t[0, 1], [[2, 3], [6, 7]])
    np.testing.assert_array_equal(t[0, 2], [[8, 9], [12, 13]])
    with pytest.raises(ValueError, match="tile_size"):
        tile_view(x, 3)


# ----------------------------------------------------------------------------- the autoencoder
@pytest.fixture(scope="module")
def trained():
    x = lattices(512, 16, 0)
    kw = dict(SMALL, epochs=20, batch_size=64, learning_rate=3e-3, random_state=(1, 2, 3))
    return ClosureAutoencoder(8, 2, **kw).fit(x), ClosureAutoencoder(8, 2, **dict(kw, epochs=0)).fit(x)


def test_reconstruction_loss_decreases(trained):
    model, untrained = trained
    held_out = lattices(256, 16, 1)
    structured = held_out[:128]
    assert model.loss_curve_[-1] < model.loss_curve_[0] - 0.2
    # at init the decoder outputs ~1/2 everywhere: BCE ~ ln 2
    assert untrained.reconstruction_loss(structured) == pytest.approx(np.log(2), abs=1e-2)
    assert model.reconstruction_loss(structured) < 0.5 * untrained.reconstruction_loss(structured)
    # iid lattices carry no structure beyond m: their BCE cannot beat the mean site entropy
    iid = held_out[128:]
    p = (1 + iid.mean(axis=(1, 2))) / 2
    entropy = -np.mean(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert model.reconstruction_loss(iid) > entropy - 0.02
    assert model.reconstruction_loss(structured) < model.reconstruction_loss(iid)


def test_encoding_is_exactly_the_mean_of_per_tile_encodings(trained):
    model, _ = trained
    x = lattices(8, 32, 5)  # a larger lattice than trained on: K = 16 tiles of 8
    z = model.transform(x)
    per = np.stack([model.transform(x, tile=k) for k in range(16)], axis=1)
    np.testing.assert_allclose(z, per.mean(axis=1), rtol=1e-5, atol=1e-6)
    # each tile as its own lattice gives the same per-tile encoding
    tiles = tile_view(x, 8)
    np.testing.assert_allclose(model.transform(tiles[:, 5]), per[:, 5], rtol=1e-5, atol=1e-6)
    # patch additivity: permuting the tiles of a lattice leaves the encoding unchanged...
    perm = np.random.default_rng(6).permutation(16)
    shuffled = tiles[:, perm].reshape(8, 4, 4, 8, 8).transpose(0, 1, 3, 2, 4).reshape(8, 32, 32)
    np.testing.assert_allclose(model.transform(shuffled), z, rtol=1e-5, atol=1e-6)
    # ...while the encoding is not trivial: different lattices, different latents
    assert np.ptp(z, axis=0).min() > 1e-3
    # per-snapshot tile indices
    idx = np.arange(8) % 16
    np.testing.assert_allclose(model.transform(x, tile=idx), per[np.arange(8), idx], rtol=1e-5, atol=1e-6)
    f = model.features(x)
    assert f.shape == (8, 4)
    np.testing.assert_allclose(f[:, :2], ising_observables(x, 8))


def test_fit_is_deterministic_for_a_seed():
    x = lattices(64, 8, 2)
    kw = dict(channels=(4,), decoder_channels=8, epochs=2, batch_size=32)
    a = ClosureAutoencoder(4, 2, random_state=7, **kw).fit(x).state_dict()
    b = ClosureAutoencoder(4, 2, random_state=7, **kw).fit(x).state_dict()
    c = ClosureAutoencoder(4, 2, random_state=8, **kw).fit(x).state_dict()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert any(a[k].tobytes() != c[k].tobytes() for k in a if k not in ("format", "lattice_size"))


def test_state_dict_round_trip_and_errors(trained):
    model, _ = trained
    x = lattices(4, 16, 9)
    r = ClosureAutoencoder(8, 2, **SMALL).load_state_dict(model.state_dict())
    assert r.transform(x).tobytes() == model.transform(x).tobytes()
    with pytest.raises(ValueError, match="shape"):
        ClosureAutoencoder(8, 3, **SMALL).load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="tile_size"):
        ClosureAutoencoder(6).fit(lattices(4, 12, 0))
    with pytest.raises(ValueError, match="spins"):
        ClosureAutoencoder(4, channels=(4,)).fit(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="channels"):
        ClosureAutoencoder(8, channels=(4,)).fit(lattices(4, 16, 0))
    with pytest.raises(ValueError, match="tile"):
        model.transform(x, tile=4)  # a 16-lattice has 4 tiles of 8: indices 0..3
    with pytest.raises(ValueError, match="not fitted"):
        ClosureAutoencoder().transform(x)
