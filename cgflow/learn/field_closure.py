"""Per-tile closure autoencoder for 1-D multi-species fields (REFERENCE-002 §5, predator–prey).

A state is S fields on n cells (predator–prey: S = 2, u and v). Its macroscopic
state is z = (z*, z_hat): the spatial means z* of the S species and ``latent``
learned closure variables per species. Both are *patch-additive*
(REFERENCE-002 §0): with the grid cut into K equal tiles x_J of ``tile_size``
cells,

    z*(x) = (1/K) sum_J mean(x_J),      z_hat_s(x) = (1/K) sum_J e_s(x_J,s),

one encoder e_s per species applied to every tile. Patch additivity makes the
partial-evolution target z1_hat = z(x_t) + z(x_{t+dt,I}) - z(x_{t,I}) an unbiased
increment; :meth:`FieldClosureAutoencoder.transform` with ``tile=I`` gives the
single-tile term.

Networks (REFERENCE-002 §5, PP): encoder per species and tile, an MLP
tile_size -> 32 -> 32 -> latent (ReLU); decoder an MLP (S + S latent) -> 32 ->
32 -> S n (ReLU), reconstructing the whole state from z. Loss: mean squared
error over cells, species and states; Adam with decoupled weight decay 1e-4,
lr 1e-4, betas (0.9, 0.95), batch 256, 10 epochs (the seed's). The latents are
z-scored over the training states afterwards (an affine map per dimension,
which keeps them patch-additive). float32 (the reconstruction needs no more);
deterministic given ``random_state`` (:mod:`cgflow.learn._jax`).
"""

from __future__ import annotations

import functools
from numbers import Integral

import numpy as np

from . import _jax
from ._estimator import ParamsMixin, check_int, check_real

__all__ = ["FieldClosureAutoencoder", "field_tiles"]

STATE_FORMAT = 1


def _check_fields(x, name="states") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 1 or x.shape[2] < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, species, cells), got {np.shape(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def field_tiles(states, tile_size: int) -> np.ndarray:
    """(n, S, cells) -> (n, K, S, tile_size), K = cells / tile_size, tiles left to right."""
    x = np.asarray(states)
    n, S, cells = x.shape
    if isinstance(tile_size, bool) or not isinstance(tile_size, Integral) or tile_size < 1 or cells % tile_size:
        raise ValueError(f"tile_size must be a positive integer dividing the {cells} cells, got {tile_size!r}")
    return x.reshape(n, S, cells // tile_size, tile_size).transpose(0, 2, 1, 3)


def _encode_tiles(params, tiles):
    """tiles (m, S, ts) -> raw encodings (m, S, latent): species s through its own MLP."""
    import jax.numpy as jnp

    return jnp.stack([_jax.mlp_apply(params["enc"][s], tiles[:, s]) for s in range(tiles.shape[1])], axis=1)


def _per_sample_mse(params, states, tile_size):
    import jax.numpy as jnp

    n, S, cells = states.shape
    tiles = states.reshape(n, S, cells // tile_size, tile_size).transpose(0, 2, 1, 3).reshape(-1, S, tile_size)
    z_hat = _encode_tiles(params, tiles).reshape(n, cells // tile_size, -1).mean(axis=1)
    z = jnp.concatenate([states.mean(axis=-1), z_hat], axis=1)
    recon = _jax.mlp_apply(params["dec"], z).reshape(n, S, cells)
    return ((recon - states) ** 2).mean(axis=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch_loss(tile_size: int):
    def loss_fn(params, batch, w):
        (states,) = batch
        per = _per_sample_mse(params, states, tile_size)
        return (per * w).sum() / w.sum()

    return loss_fn


@functools.lru_cache(maxsize=None)
def _compiled():
    import jax

    return {
        "encode": jax.jit(_encode_tiles),
        "mse": jax.jit(_per_sample_mse, static_argnames=("tile_size",)),
        "decode": jax.jit(lambda params, z: _jax.mlp_apply(params["dec"], z)),
    }


class FieldClosureAutoencoder(ParamsMixin):
    """Patch-additive closure variables of 1-D multi-species fields, learned by a per-tile MLP autoencoder.

    Parameters
    ----------
    tile_size : int, default 40
        Cells per tile (the seed's 200 cells / K = 5).
    latent : int, default 1
        Closure variables per species (the seed: 1, so 2 for predator–prey).
    hidden : tuple of int, default (32, 32)
        Hidden layers of each species' encoder.
    decoder_hidden : tuple of int, default (32, 32)
    learning_rate : float, default 1e-4
    epochs : int, default 10
    batch_size : int, default 256
    weight_decay : float, default 1e-4
    betas : tuple of float, default (0.9, 0.95)
    random_state : int, sequence of int, numpy Generator or JAX key, default 0

    Attributes
    ----------
    params_ : dict of NumPy float32 arrays (pytree)
    species_, cells_ : int
        Shape of the training states.
    latent_mean_, latent_scale_ : ndarray (species * latent,)
        The z-scoring of the raw encodings over the training states.
    loss_curve_ : list of float
        Mean squared reconstruction error per epoch.
    """

    _PARAM_NAMES = ("tile_size", "latent", "hidden", "decoder_hidden", "learning_rate", "epochs", "batch_size",
                    "weight_decay", "betas", "random_state")

    def __init__(self, tile_size=40, latent=1, *, hidden=(32, 32), decoder_hidden=(32, 32), learning_rate=1e-4,
                 epochs=10, batch_size=256, weight_decay=1e-4, betas=(0.9, 0.95), random_state=0):
        self.tile_size = tile_size
        self.latent = latent
        self.hidden = hidden
        self.decoder_hidden = decoder_hidden
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.betas = betas
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    _int = staticmethod(check_int)
    _real = staticmethod(check_real)

    def _layers(self, name):
        try:
            sizes = tuple(self._int(h, f"each entry of {name}", 1) for h in getattr(self, name))
        except TypeError:
            raise ValueError(f"{name} must be a sequence of positive integers, got {getattr(self, name)!r}") from None
        return sizes

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise ValueError("this FieldClosureAutoencoder is not fitted yet: call fit() first")

    def _init_params(self, key, species, cells):
        import jax
        import jax.numpy as jnp

        ts, latent = self._int(self.tile_size, "tile_size", 1), self._int(self.latent, "latent", 1)
        keys = jax.random.split(key, species + 1)
        enc = [_jax.mlp_init(keys[s], (ts, *self._layers("hidden"), latent), jnp.float32) for s in range(species)]
        dec = _jax.mlp_init(keys[-1], (species * (1 + latent), *self._layers("decoder_hidden"), species * cells),
                            jnp.float32)
        return {"enc": enc, "dec": dec}

    def _jax_params(self):
        import jax
        import jax.numpy as jnp

        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), self.params_)

    # ------------------------------------------------------------------ fit / transform
    def fit(self, states):
        """Train on states (n, species, cells); cells a multiple of tile_size. Returns self."""
        import jax

        x = _check_fields(states)
        ts = self._int(self.tile_size, "tile_size", 1)
        field_tiles(x[:1], ts)  # checks that the tiles fit
        betas = tuple(self._real(b, "each of betas", 0.0, strict=False) for b in self.betas)
        if len(betas) != 2 or not all(b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        key = _jax.prng_key(self.random_state)
        kinit, kshuffle = jax.random.split(key)
        params = self._init_params(kinit, x.shape[1], x.shape[2])
        res = _jax.train_minibatch(
            _batch_loss(ts), params, (x.astype(np.float32),), key=kshuffle,
            epochs=self._int(self.epochs, "epochs", 0), batch_size=self._int(self.batch_size, "batch_size", 1),
            learning_rate=self._real(self.learning_rate, "learning_rate", 0.0),
            weight_decay=self._real(self.weight_decay, "weight_decay", 0.0, strict=False),
            amsgrad=False, betas=betas, plateau=None,
        )
        self.params_ = jax.tree_util.tree_map(lambda a: np.array(a, dtype=np.float32), res.params)
        self.species_, self.cells_ = x.shape[1], x.shape[2]
        self.latent_mean_ = np.zeros(x.shape[1] * self.latent)
        self.latent_scale_ = np.ones(x.shape[1] * self.latent)
        raw = self.transform(x)
        self.latent_mean_ = raw.mean(axis=0)
        self.latent_scale_ = np.where(raw.std(axis=0) > 0, raw.std(axis=0), 1.0)
        self.loss_curve_ = res.loss_curve
        self.n_iter_ = self.epochs
        return self

    def transform(self, states, tile=None):
        """The z-scored closure variables, (n, species * latent), species-major.

        ``tile``: None for the patch-additive state encoding (1/K) sum_J e(x_J); an
        index I (one, or one per state) for the single-tile term e(x_I).
        """
        self._check_fitted()
        x = _check_fields(states)
        if x.shape[1] != self.species_:
            raise ValueError(f"states must have {self.species_} species (the training states'), got {x.shape[1]}")
        tiles = field_tiles(x, self.tile_size).astype(np.float32)  # (n, K, S, ts)
        n, K = tiles.shape[:2]
        enc = _compiled()["encode"]
        if tile is None:
            raw = np.asarray(enc(self._jax_params(), tiles.reshape(n * K, self.species_, -1))).reshape(n, K, -1).mean(axis=1)
        else:
            idx = np.broadcast_to(np.asarray(tile), (n,))
            if not np.issubdtype(idx.dtype, np.integer) or np.any((idx < 0) | (idx >= K)):
                raise ValueError(f"tile must be integer tile indices in [0, {K}), got {tile!r}")
            raw = np.asarray(enc(self._jax_params(), tiles[np.arange(n), idx])).reshape(n, -1)
        return (raw.astype(np.float64) - self.latent_mean_) / self.latent_scale_

    def features(self, states, tile=None):
        """The macroscopic state [species means, closures], (n, species * (1 + latent)); ``tile`` as in transform."""
        x = _check_fields(states)
        if tile is None:
            means = x.mean(axis=-1)
        else:
            tiles = field_tiles(x, self.tile_size)
            means = tiles[np.arange(x.shape[0]), np.broadcast_to(np.asarray(tile), (x.shape[0],))].mean(axis=-1)
        return np.concatenate([means, self.transform(x, tile)], axis=1)

    def reconstruction_loss(self, states):
        """The training objective on ``states``: :meth:`reconstruction_error` (the name the closure stage calls)."""
        return self.reconstruction_error(states)

    # ------------------------------------------------------------------ persistence
    def state_dict(self):
        """Fitted parameters as a flat dict of NumPy arrays (no pickle); reload with :meth:`load_state_dict`."""
        self._check_fitted()
        out = {"format": np.array(STATE_FORMAT), "species": np.array(self.species_), "cells": np.array(self.cells_),
               "latent_mean": self.latent_mean_.copy(), "latent_scale": self.latent_scale_.copy()}
        for s, layers in enumerate(self.params_["enc"]):
            for i, layer in enumerate(layers):
                out[f"enc.{s}.{i}.W"], out[f"enc.{s}.{i}.b"] = layer["W"].copy(), layer["b"].copy()
        for i, layer in enumerate(self.params_["dec"]):
            out[f"dec.{i}.W"], out[f"dec.{i}.b"] = layer["W"].copy(), layer["b"].copy()
        return out

    def load_state_dict(self, state):
        """Inverse of :meth:`state_dict` (shapes checked against a fresh initialisation). Returns self."""
        import jax

        state = dict(state)
        if int(np.asarray(state.pop("format", -1))) != STATE_FORMAT:
            raise ValueError(f"unsupported FieldClosureAutoencoder state format, this version reads {STATE_FORMAT}")
        try:
            species, cells = int(np.asarray(state.pop("species"))), int(np.asarray(state.pop("cells")))
            mean, scale = np.asarray(state.pop("latent_mean"), float), np.asarray(state.pop("latent_scale"), float)
        except KeyError as exc:
            raise ValueError(f"state is missing {exc.args[0]!r}") from None
        ref = jax.tree_util.tree_map(np.asarray, self._init_params(_jax.prng_key(0), species, cells))

        def take(name, like):
            if name not in state:
                raise ValueError(f"state is missing {name!r}")
            a = np.asarray(state.pop(name), np.float32)
            if a.shape != like.shape:
                raise ValueError(f"{name} has shape {a.shape}, this configuration expects {like.shape}")
            return a

        params = {"enc": [[{k: take(f"enc.{s}.{i}.{k}", layer[k]) for k in ("W", "b")} for i, layer in enumerate(enc)]
                          for s, enc in enumerate(ref["enc"])],
                  "dec": [{k: take(f"dec.{i}.{k}", layer[k]) for k in ("W", "b")} for i, layer in enumerate(ref["dec"])]}
        if state:
            raise ValueError(f"unexpected entries in state: {sorted(state)}")
        if mean.shape != (species * self.latent,) or scale.shape != mean.shape:
            raise ValueError(f"latent_mean/latent_scale must have shape ({species * self.latent},)")
        self.params_, self.species_, self.cells_ = params, species, cells
        self.latent_mean_, self.latent_scale_ = mean, scale
        return self

    def reconstruction_error(self, states):
        """Mean squared reconstruction error of states of the training shape."""
        self._check_fitted()
        x = _check_fields(states)
        if x.shape[1:] != (self.species_, self.cells_):
            raise ValueError(f"states must have shape (n, {self.species_}, {self.cells_}), got {x.shape}")
        mse = _compiled()["mse"](self._jax_params(), x.astype(np.float32), tile_size=self.tile_size)
        return float(np.mean(mse))
