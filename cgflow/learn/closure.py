"""Per-tile closure autoencoder for 2-D spin lattices (REFERENCE-002 §5, Ising).

The macroscopic state of a lattice x (side L, spins +-1) is
z = (m, rho_dw, z_hat): the magnetisation, the broken-bond (domain-wall)
fraction and ``latent`` learned closure variables. All three are
*patch-additive* (REFERENCE-002 §0): with the lattice cut into K = (L / L_s)^2
aligned tiles x_J of side L_s,

    phi(x) = (1/K) sum_J phi(x_J),

where for m and rho_dw each tile is treated as a periodic torus (the bond
between a tile's last and first column is counted inside the tile, as in the
seed's partial-evolution code) and the closure is z_hat = (1/K) sum_J e(x_J) with
one encoder e applied to every tile. Patch additivity is what makes the
partial-evolution target z1_hat = phi(x_t) + phi(x_{t+dt, I}) - phi(x_{t, I})
(REFERENCE-002 §0) an unbiased increment: :meth:`ClosureAutoencoder.transform`
with ``tile=I`` gives phi(x_I), the single-tile term.

Networks (REFERENCE-002 §5, IS):

* encoder e (per tile): ``n_blocks`` blocks [Conv 3x3 (zero "same" padding) ->
  LeakyReLU(0.2) -> MaxPool 2], ``n_blocks = log2(L_s / 2)`` by default, so the
  tile shrinks to 2 x 2; then Linear -> ``latent``. Channels 32, 64, 128, 256...
  by default. **No BatchNorm** (the seed has Conv -> BN -> LeakyReLU): batch
  statistics would couple the tiles of a batch and the train/eval switch would
  add state; the encoder here is a pure function of one tile, which keeps
  e(x_J) exactly tile-local.
* decoder: [m, rho_dw, z_hat] -> Linear -> 128 x 4 x 4 -> log2(L/4) stages of
  ConvTranspose 3x3 stride 2 ("same": doubles the side; LeakyReLU between
  stages), channels 128 -> 64 -> ... -> 1, logits of (s + 1)/2.
* loss: binary cross-entropy of the logits against (s + 1)/2, mean over sites
  and snapshots; AdamW (plain Adam moments, decoupled decay), lr 2e-4, batch
  512, 10 epochs; weights ~ N(0, 0.02), biases 0 (the seed's init).

float32 throughout (XLA:CPU convolutions; BCE needs no more). Deterministic
given ``random_state`` (see :mod:`cgflow.learn._jax`).

Not done here: the seed's post-processing of the latents (m raw, the other
dims min-max scaled over validation latents) belongs to the pipeline stage.
"""

from __future__ import annotations

import functools
import math
from numbers import Integral

import numpy as np

from . import _jax
from ._estimator import ParamsMixin, check_int, check_real

__all__ = ["ClosureAutoencoder", "ising_observables", "tile_view"]

STATE_FORMAT = 1


# ----------------------------------------------------------------------------- exact, patch-additive observables
def _check_lattices(x, name="snapshots"):
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != x.shape[2] or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, L, L) (square lattices), got {np.shape(x)}")
    if not np.all(np.abs(x) == 1):
        raise ValueError(f"{name} must hold spins +1/-1")
    return x


def tile_view(snapshots, tile_size):
    """Aligned tiles: (n, L, L) -> (n, K, L_s, L_s), K = (L / L_s)^2, row-major tile order.

    Tile k covers rows (k // (L/L_s)) L_s ... and columns (k % (L/L_s)) L_s ....
    """
    x = np.asarray(snapshots)
    n, L = x.shape[0], x.shape[1]
    if isinstance(tile_size, bool) or not isinstance(tile_size, Integral) or tile_size < 1 or L % tile_size:
        raise ValueError(f"tile_size must be a positive integer dividing L={L}, got {tile_size!r}")
    q = L // tile_size
    return x.reshape(n, q, tile_size, q, tile_size).transpose(0, 1, 3, 2, 4).reshape(n, q * q, tile_size, tile_size)


def ising_observables(snapshots, tile_size=None):
    """(m, rho_dw) per snapshot, patch-additive over aligned tiles (REFERENCE-002 §1(b)).

    Parameters
    ----------
    snapshots : array (n, L, L) or (L, L) of +-1
    tile_size : int or None
        L_s; None means the whole lattice is one (periodic) tile.

    Returns
    -------
    ndarray (n, 2), float64
        m = mean spin; rho_dw = (1/2N) sum_i sum_{d=x,y} (1 - s_i s_{i+d})/2 with
        neighbours taken periodically inside each tile, averaged over tiles.
    """
    x = _check_lattices(snapshots)
    t = tile_view(x, x.shape[1] if tile_size is None else tile_size).astype(np.float64)
    m = t.mean(axis=(1, 2, 3))
    bx = (1.0 - t * np.roll(t, -1, axis=3)) / 2.0
    by = (1.0 - t * np.roll(t, -1, axis=2)) / 2.0
    rho = (bx + by).mean(axis=(1, 2, 3)) / 2.0
    return np.stack([m, rho], axis=1)


# ----------------------------------------------------------------------------- networks (jax, NHWC)
_DN = ("NHWC", "HWIO", "NHWC")


def _leaky(x):
    import jax

    return jax.nn.leaky_relu(x, 0.2)


def _encode_tiles(params, t):
    """e(x_J) for tiles t (B, L_s, L_s) -> (B, latent)."""
    import jax

    h = t[..., None]
    for blk in params["enc_conv"]:
        h = jax.lax.conv_general_dilated(h, blk["W"], (1, 1), "SAME", dimension_numbers=_DN) + blk["b"]
        h = _leaky(h)
        h = jax.lax.reduce_window(h, -np.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = h.reshape(h.shape[0], -1)
    return h @ params["enc_out"]["W"] + params["enc_out"]["b"]


def _encode(params, x, tile_size):
    """(1/K) sum_J e(x_J) for lattices x (B, L, L) -> (B, latent)."""
    B, L = x.shape[0], x.shape[1]
    q = L // tile_size
    t = x.reshape(B, q, tile_size, q, tile_size).transpose(0, 1, 3, 2, 4).reshape(B * q * q, tile_size, tile_size)
    return _encode_tiles(params, t).reshape(B, q * q, -1).mean(axis=1)


def _decode_logits(params, z):
    """[m, rho_dw, z_hat] (B, 2 + latent) -> logits (B, L, L)."""
    import jax

    h = z @ params["dec_in"]["W"] + params["dec_in"]["b"]
    c0 = params["dec_conv"][0]["W"].shape[2]
    h = h.reshape(z.shape[0], 4, 4, c0)
    for blk in params["dec_conv"]:
        h = _leaky(h)
        h = jax.lax.conv_transpose(h, blk["W"], (2, 2), "SAME", dimension_numbers=_DN) + blk["b"]
    return h[..., 0]


def _bce_per_sample(params, x, obs, tile_size):
    import jax
    import jax.numpy as jnp

    zhat = _encode(params, x, tile_size)
    logits = _decode_logits(params, jnp.concatenate([obs, zhat], axis=1))
    target = (x + 1.0) / 2.0
    # BCE with logits: softplus(l) - target * l
    return jnp.mean(jax.nn.softplus(logits) - target * logits, axis=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch_loss(tile_size):
    import jax.numpy as jnp

    def loss_fn(params, batch, w):
        x, obs = batch
        ell = _bce_per_sample(params, x, obs, tile_size)
        return jnp.sum(w * ell) / jnp.sum(w)

    return loss_fn


@functools.lru_cache(maxsize=None)
def _compiled():
    import jax

    return {
        "encode_tiles": jax.jit(_encode_tiles),
        "bce": jax.jit(_bce_per_sample, static_argnames=("tile_size",)),
        "decode": jax.jit(lambda p, z: jax.nn.sigmoid(_decode_logits(p, z))),
    }


def _is_pow2(v):
    return v >= 1 and (v & (v - 1)) == 0


# ----------------------------------------------------------------------------- estimator
class ClosureAutoencoder(ParamsMixin):
    """Patch-additive closure variables of spin lattices, learned by a per-tile CNN autoencoder.

    Parameters
    ----------
    tile_size : int, default 16
        L_s, side of the encoder's tiles (a power of 2, >= 4).
    latent : int, default 2
        Number of closure variables.
    n_blocks : int or None, default None
        Encoder conv blocks; None: log2(L_s / 2) (tile reduced to 2 x 2).
    channels : tuple of int or None, default None
        Encoder channels per block; None: 32, 64, 128, ... (doubling).
    decoder_channels : int, default 128
        Channels after the decoder's Linear layer (halved at each stage, last 1).
    learning_rate : float, default 2e-4
    epochs : int, default 10
    batch_size : int, default 512
    weight_decay : float, default 0.01
        Decoupled decay (PyTorch AdamW's default; the seed states none).
    init_std : float, default 0.02
    random_state : int, sequence of int, numpy Generator or JAX key, default 0

    Attributes
    ----------
    params_ : dict of NumPy float32 arrays (pytree)
    lattice_size_ : int
        L of the training lattices (the decoder's output side).
    loss_curve_ : list of float
        Mean BCE per epoch.
    """

    _PARAM_NAMES = (
        "tile_size",
        "latent",
        "n_blocks",
        "channels",
        "decoder_channels",
        "learning_rate",
        "epochs",
        "batch_size",
        "weight_decay",
        "init_std",
        "random_state",
    )

    def __init__(
        self,
        tile_size=16,
        latent=2,
        *,
        n_blocks=None,
        channels=None,
        decoder_channels=128,
        learning_rate=2e-4,
        epochs=10,
        batch_size=512,
        weight_decay=0.01,
        init_std=0.02,
        random_state=0,
    ):
        self.tile_size = tile_size
        self.latent = latent
        self.n_blocks = n_blocks
        self.channels = channels
        self.decoder_channels = decoder_channels
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    _int = staticmethod(check_int)
    _real = staticmethod(check_real)

    def _architecture(self):
        ts = self._int(self.tile_size, "tile_size", 4)
        if not _is_pow2(ts):
            raise ValueError(f"tile_size must be a power of 2 (>= 4), got {ts}")
        nb = int(math.log2(ts // 2)) if self.n_blocks is None else self._int(self.n_blocks, "n_blocks", 1)
        if ts >> nb < 1:
            raise ValueError(f"n_blocks={nb} halves a tile of side {ts} below 1")
        if self.channels is None:
            ch = tuple(32 * 2**i for i in range(nb))
        else:
            try:
                ch = tuple(self._int(c, "each entry of channels", 1) for c in self.channels)
            except TypeError:
                raise ValueError(f"channels must be a sequence of positive integers, got {self.channels!r}") from None
            if len(ch) != nb:
                raise ValueError(f"channels has {len(ch)} entries, n_blocks is {nb}")
        return ts, nb, ch, self._int(self.latent, "latent", 1), self._int(self.decoder_channels, "decoder_channels", 1)

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise ValueError("this ClosureAutoencoder is not fitted yet: call fit() first")

    # ------------------------------------------------------------------ parameters
    def _init_params(self, key, L):
        import jax
        import jax.numpy as jnp

        ts, nb, ch, latent, dc = self._architecture()
        std = self._real(self.init_std, "init_std", 0.0)
        n_stages = int(math.log2(L // 4))
        dec_ch = [max(dc >> i, 1) for i in range(n_stages)] + [1]
        keys = iter(jax.random.split(key, nb + n_stages + 2))
        f32 = jnp.float32

        def normal(shape):
            return std * jax.random.normal(next(keys), shape, f32)

        enc, cin = [], 1
        for c in ch:
            enc.append({"W": normal((3, 3, cin, c)), "b": jnp.zeros(c, f32)})
            cin = c
        side = ts >> nb
        params = {
            "enc_conv": enc,
            "enc_out": {"W": normal((side * side * cin, latent)), "b": jnp.zeros(latent, f32)},
            "dec_in": {"W": normal((2 + latent, 16 * dec_ch[0])), "b": jnp.zeros(16 * dec_ch[0], f32)},
            "dec_conv": [
                {"W": normal((3, 3, a, b)), "b": jnp.zeros(b, f32)} for a, b in zip(dec_ch[:-1], dec_ch[1:])
            ],
        }
        return params

    def _jax_params(self):
        import jax
        import jax.numpy as jnp

        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), self.params_)

    # ------------------------------------------------------------------ fit / transform
    def fit(self, snapshots):
        """Train on lattices (n, L, L) of +-1 (L a power of 2, a multiple of tile_size, >= 4). Returns self."""
        import jax

        ts, *_ = self._architecture()
        x = _check_lattices(snapshots)
        L = x.shape[1]
        if not _is_pow2(L) or L < 4 or L % ts:
            raise ValueError(f"lattice side L={L} must be a power of 2, >= 4 and a multiple of tile_size={ts}")
        lr = self._real(self.learning_rate, "learning_rate", 0.0)
        wd = self._real(self.weight_decay, "weight_decay", 0.0, strict=False)
        epochs = self._int(self.epochs, "epochs", 0)
        bs = self._int(self.batch_size, "batch_size", 1)
        obs = ising_observables(x, ts).astype(np.float32)
        key = _jax.prng_key(self.random_state)
        kinit, kshuffle = jax.random.split(key)
        params = self._init_params(kinit, L)
        res = _jax.train_minibatch(
            _batch_loss(ts),
            params,
            (x.astype(np.float32), obs),
            key=kshuffle,
            epochs=epochs,
            batch_size=bs,
            learning_rate=lr,
            weight_decay=wd,
            amsgrad=False,
            scan=False,  # convolution gradients are ~15x slower inside lax.scan on XLA:CPU (measured)
            plateau=None,
        )
        self.params_ = jax.tree_util.tree_map(lambda a: np.array(a, dtype=np.float32), res.params)
        self.lattice_size_ = L
        self.loss_curve_ = res.loss_curve
        self.n_iter_ = epochs
        return self

    def transform(self, snapshots, tile=None):
        """Closure variables z_hat.

        Parameters
        ----------
        snapshots : array (n, L, L) of +-1
            Any L that is a multiple of tile_size (not only the training L).
        tile : None, int or int array (n,)
            None: the patch-additive lattice encoding (1/K) sum_J e(x_J).
            An index I (row-major, 0 <= I < K), one for all snapshots or one per
            snapshot: the single-tile term e(x_I) of the partial-evolution target.

        Returns
        -------
        ndarray (n, latent), float32
        """
        self._check_fitted()
        ts = self._architecture()[0]
        x = _check_lattices(snapshots)
        tiles = tile_view(x, ts).astype(np.float32)
        K = tiles.shape[1]
        fn = _compiled()["encode_tiles"]
        params = self._jax_params()
        if tile is None:
            return np.asarray(fn(params, tiles.reshape(-1, ts, ts))).reshape(x.shape[0], K, -1).mean(axis=1)
        idx = np.broadcast_to(np.asarray(tile), (x.shape[0],))
        if not np.issubdtype(idx.dtype, np.integer) or np.any((idx < 0) | (idx >= K)):
            raise ValueError(f"tile must be integer tile indices in [0, {K}), got {tile!r}")
        return np.asarray(fn(params, tiles[np.arange(x.shape[0]), idx]))

    def features(self, snapshots, tile=None):
        """The full macroscopic state [m, rho_dw, z_hat], (n, 2 + latent), float64; ``tile`` as in transform."""
        x = _check_lattices(snapshots)
        ts = self._architecture()[0]
        if tile is None:
            obs = ising_observables(x, ts)
        else:
            tiles = tile_view(x, ts)
            idx = np.broadcast_to(np.asarray(tile), (x.shape[0],))
            obs = ising_observables(tiles[np.arange(x.shape[0]), idx])
        return np.concatenate([obs, self.transform(x, tile).astype(np.float64)], axis=1)

    def reconstruction_loss(self, snapshots):
        """Mean BCE of the reconstruction of lattices of the training size."""
        self._check_fitted()
        x = _check_lattices(snapshots)
        if x.shape[1] != self.lattice_size_:
            raise ValueError(f"lattices must have side {self.lattice_size_} (the training L), got {x.shape[1]}")
        ts = self._architecture()[0]
        obs = ising_observables(x, ts).astype(np.float32)
        return float(np.mean(_compiled()["bce"](self._jax_params(), x.astype(np.float32), obs, tile_size=ts)))

    def reconstruct(self, snapshots):
        """P(s = +1) per site from the decoder, (n, L, L) (training L)."""
        feats = self.features(snapshots).astype(np.float32)
        return np.asarray(_compiled()["decode"](self._jax_params(), feats))

    def state_dict(self):
        """Fitted parameters as a flat dict of NumPy arrays (no pickle); reload with :meth:`load_state_dict`."""
        self._check_fitted()
        out = {"format": np.array(STATE_FORMAT), "lattice_size": np.array(self.lattice_size_)}
        for group in ("enc_conv", "dec_conv"):
            for i, blk in enumerate(self.params_[group]):
                out[f"{group}.{i}.W"], out[f"{group}.{i}.b"] = blk["W"].copy(), blk["b"].copy()
        for group in ("enc_out", "dec_in"):
            out[f"{group}.W"], out[f"{group}.b"] = self.params_[group]["W"].copy(), self.params_[group]["b"].copy()
        return out

    def load_state_dict(self, state):
        """Inverse of :meth:`state_dict` (shapes checked against a fresh initialisation). Returns self."""
        import jax

        state = dict(state)
        if int(np.asarray(state.pop("format", -1))) != STATE_FORMAT:
            raise ValueError(f"unsupported ClosureAutoencoder state format, this version reads {STATE_FORMAT}")
        if "lattice_size" not in state:
            raise ValueError("state is missing 'lattice_size'")
        L = int(np.asarray(state.pop("lattice_size")))
        ref = jax.tree_util.tree_map(np.asarray, self._init_params(_jax.prng_key(0), L))

        def take(name):
            if name not in state:
                raise ValueError(f"state is missing {name!r}")
            return np.asarray(state.pop(name), np.float32)

        params = {}
        for group in ("enc_conv", "dec_conv"):
            params[group] = [
                {"W": take(f"{group}.{i}.W"), "b": take(f"{group}.{i}.b")} for i in range(len(ref[group]))
            ]
        for group in ("enc_out", "dec_in"):
            params[group] = {"W": take(f"{group}.W"), "b": take(f"{group}.b")}
        if state:
            raise ValueError(f"unexpected entries in state: {sorted(state)}")
        for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(params)):
            if a.shape != b.shape:
                raise ValueError(f"parameter shape {b.shape} does not match the architecture's {a.shape}")
        self.params_ = params
        self.lattice_size_ = L
        return self
