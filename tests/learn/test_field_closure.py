"""The per-tile closure autoencoder of 1-D multi-species fields (REFERENCE-002 §5, predator-prey)."""

from __future__ import annotations

import numpy as np
import pytest

from cgflow.learn.field_closure import FieldClosureAutoencoder, field_tiles
from cgflow.micro.predator_prey import initial_state


def pp_states(n, seed):
    """Predator-prey-like states: u = m + k cos(10 pi x) + noise. The means carry m only (cos has 5 full
    periods on [0, 1], one per tile), so k must come from the learned closures."""
    rng = np.random.default_rng(seed)
    m, k = rng.uniform(0.45, 0.55, n), rng.uniform(0.05, 0.15, n)
    return initial_state(200, m, k) + 0.005 * rng.standard_normal((n, 2, 200)), m, k


@pytest.fixture(scope="module")
def fitted():
    x, m, k = pp_states(1500, 0)
    # the seed's lr 1e-4 and 10 epochs suit its 150,000 states; 1500 states need more steps
    ae = FieldClosureAutoencoder(learning_rate=3e-3, epochs=80, batch_size=128, random_state=1).fit(x)
    return ae, x, k


def test_latents_are_patch_additive_and_z_scored(fitted):
    ae, x, _ = fitted
    z = ae.transform(x)
    assert z.shape == (1500, 2)
    per_tile = np.stack([ae.transform(x, tile=I) for I in range(5)], axis=1)
    np.testing.assert_allclose(per_tile.mean(axis=1), z, atol=1e-5)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-5)
    feats = ae.features(x, tile=np.arange(1500) % 5)
    np.testing.assert_allclose(feats[:, :2], field_tiles(x, 40)[np.arange(1500), np.arange(1500) % 5].mean(-1))


def test_the_closures_learn_what_the_means_miss(fitted):
    ae, _, _ = fitted
    x, m, k = pp_states(500, 7)  # held out
    z = ae.features(x)
    np.testing.assert_allclose(z[:, 0], m, atol=2e-3)  # the means: m, nothing of k
    design = np.column_stack([np.ones(500), z[:, 2:]])
    coef = np.linalg.lstsq(design, k, rcond=None)[0]
    r2 = 1 - np.sum((design @ coef - k) ** 2) / np.sum((k - k.mean()) ** 2)
    assert r2 > 0.9, r2
    # reconstruction beats the best the means alone can do (the k cos(10 pi x) shape is unknown to them)
    means_only = np.mean((x - x.mean(axis=-1, keepdims=True)) ** 2)
    assert ae.reconstruction_error(x) < 0.5 * means_only


def test_deterministic_and_validated():
    x, _, _ = pp_states(64, 3)
    a = FieldClosureAutoencoder(epochs=2, random_state=5).fit(x)
    b = FieldClosureAutoencoder(epochs=2, random_state=5).fit(x)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    with pytest.raises(ValueError, match="tile_size must be a positive integer dividing the 200 cells"):
        FieldClosureAutoencoder(tile_size=30).fit(x)
    with pytest.raises(ValueError, match="not fitted"):
        FieldClosureAutoencoder().transform(x)
    with pytest.raises(ValueError, match=r"states must have shape \(n, species, cells\)"):
        a.transform(x[0])
    with pytest.raises(ValueError, match=r"tile must be integer tile indices in \[0, 5\)"):
        a.transform(x, tile=5)


def test_state_dict_round_trip_is_exact_and_checked():
    rng = np.random.default_rng(3)
    x = initial_state(40, rng.uniform(0.45, 0.55, 64), rng.uniform(0.05, 0.15, 64))
    ae = FieldClosureAutoencoder(tile_size=8, latent=1, epochs=2, batch_size=32, random_state=1).fit(x)
    state = ae.state_dict()
    back = FieldClosureAutoencoder(tile_size=8, latent=1).load_state_dict(state)
    np.testing.assert_array_equal(back.transform(x), ae.transform(x))
    np.testing.assert_array_equal(back.transform(x, tile=3), ae.transform(x, tile=3))
    assert back.reconstruction_loss(x) == ae.reconstruction_error(x)
    with pytest.raises(ValueError, match="enc.0.0.W has shape"):
        FieldClosureAutoencoder(tile_size=10, latent=1).load_state_dict(state)
    with pytest.raises(ValueError, match="missing 'cells'"):
        FieldClosureAutoencoder(tile_size=8, latent=1).load_state_dict({k: v for k, v in state.items() if k != "cells"})
