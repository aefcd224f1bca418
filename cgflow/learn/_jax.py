"""Shared JAX + optax machinery for the learned models of seed 002 (DESIGN: "one learning backend").

Used by :mod:`cgflow.learn.sde` and :mod:`cgflow.learn.closure`; nothing here knows
about physics.

What this module does, and what it deliberately does not do
-----------------------------------------------------------
* **Threads.** :func:`configure_single_thread` puts
  ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` into
  ``os.environ["XLA_FLAGS"]``. XLA reads the variable when the CPU backend is
  created, i.e. at the first JAX computation of the process, not at import; so a
  Dask worker must call it before it runs anything with JAX (a worker plugin or
  the first line of the task function is enough). Importing cgflow never sets
  it: other code in the same process (tests, notebooks) keeps its own choice.
  If the backend already exists the call changes nothing and says so
  (``RuntimeWarning``, return value ``False``).
* **Precision.** Importing cgflow never flips ``jax_enable_x64``. The SDE learner
  runs its computations inside :func:`x64`, a context manager
  (``jax.enable_x64(True)``) that is scoped to the call: parameters, data, loss and
  gradients are float64 inside, and everything handed back to the caller is a
  NumPy array. Code outside the block sees JAX's default (float32) unchanged. The
  closure autoencoder is float32 (convolutions; its BCE loss needs no more).
* **Randomness.** :func:`prng_key` turns the integers the caller passes (the
  engine passes ``(root_seed, stage_id, point, block[, purpose])``) into a JAX key
  through :class:`numpy.random.SeedSequence` (``entropy=root_seed,
  spawn_key=rest``, the engine's own scheme, :mod:`cgflow.engine.keys`), so a
  key depends on those integers only. A :class:`numpy.random.Generator` is also
  accepted (two 32-bit words are drawn from it: same generator state, same key).
* **Training.** :func:`train_minibatch` is the one training loop: shuffled
  minibatches (the last, shorter batch included, as PyTorch's
  ``DataLoader(drop_last=False)``), AdamW with the AMSGrad second moment
  (optax's ``scale_by_amsgrad`` + decoupled weight decay), and reduce-on-plateau
  on the epoch's training loss with PyTorch's default semantics. One epoch is one
  jitted ``lax.scan`` over batches (dense networks), or a Python loop of jitted
  steps (``scan=False``, for convolutions, which XLA:CPU runs ~13x slower
  inside a scan body; measured by ``benchmarks/bench_sde_training.py``). Jitted
  functions are cached per (loss function, data shape), so repeated fits of the
  same configuration compile once per process.

Reproducibility: a fit with the same key, data and parameters gives bitwise
identical parameters in the same environment (tested with the single-thread
flags; the two epoch drivers agree only to rounding).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

__all__ = [
    "XLA_SINGLE_THREAD_FLAGS",
    "PlateauSchedule",
    "TrainResult",
    "configure_single_thread",
    "mlp_apply",
    "mlp_init",
    "prng_key",
    "train_minibatch",
    "x64",
]

#: The flags :func:`configure_single_thread` adds to ``XLA_FLAGS``.
XLA_SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


def _backend_initialised() -> bool:
    if "jax" not in sys.modules:
        return False
    try:  # private, but the only way to know whether XLA_FLAGS can still take effect
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # pragma: no cover - API moved: be conservative
        return True


def configure_single_thread(environ=None) -> bool:
    """Ask XLA:CPU for one compute thread: add :data:`XLA_SINGLE_THREAD_FLAGS` to ``XLA_FLAGS``.

    Call it in every Dask worker (or at the top of a script) before the first JAX
    computation. Flags already present are not repeated; other flags are kept.

    Parameters
    ----------
    environ : mapping, optional
        The environment to edit (default ``os.environ``).

    Returns
    -------
    bool
        True if the flags will take effect (the JAX backend of this process has
        not been created yet, or ``environ`` is not this process's environment),
        False otherwise (a ``RuntimeWarning`` is issued as well).
    """
    env = os.environ if environ is None else environ
    present = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(present + [f for f in XLA_SINGLE_THREAD_FLAGS if f not in present])
    if env is os.environ and _backend_initialised():
        warnings.warn(
            "the JAX backend is already initialised in this process: XLA_FLAGS changed now take effect only in "
            "new processes; call configure_single_thread() before the first JAX computation",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def x64():
    """Context manager: JAX in float64 inside the block only (``jax.enable_x64(True)``)."""
    import jax

    return jax.enable_x64(True)


# ----------------------------------------------------------------------------- keys
def prng_key(seed):
    """A JAX PRNG key (threefry) from integers, a NumPy Generator, or a JAX key.

    Parameters
    ----------
    seed : int, sequence of int, numpy.random.Generator or jax key
        * int ``s`` or sequence ``(s, k1, k2, ...)`` of non-negative integers: the
          key is the first two 32-bit words of
          ``SeedSequence(s, spawn_key=(k1, k2, ...)).generate_state(2)``, so the
          engine's ``(root_seed, stage_id(stage), point, block, purpose)`` maps to
          the same spawn tree as its NumPy streams (different bits, same inputs).
        * Generator: two uint32 words are drawn from it (advances it).
        * a JAX key (typed, or raw uint32[2]) is returned as a typed key.

    Raises
    ------
    ValueError
        For anything else (negative integers, floats, bools, empty sequences).
    """
    import jax
    import jax.numpy as jnp

    if isinstance(seed, np.random.Generator):
        words = seed.integers(0, 2**32, size=2, dtype=np.uint32)
    elif isinstance(seed, jax.Array):
        if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
            return seed
        if seed.dtype == jnp.uint32 and seed.shape == (2,):
            return jax.random.wrap_key_data(seed, impl="threefry2x32")
        raise ValueError(f"a raw JAX key must be uint32 of shape (2,), got {seed.dtype} {seed.shape}")
    else:
        ints = (seed,) if isinstance(seed, Integral) else tuple(seed) if _is_seq(seed) else None
        if not ints or any(isinstance(i, bool) or not isinstance(i, Integral) or i < 0 for i in ints):
            raise ValueError(
                f"random_state must be a non-negative int, a non-empty sequence of non-negative ints, "
                f"a numpy Generator or a JAX key; got {seed!r}"
            )
        ss = np.random.SeedSequence(int(ints[0]), spawn_key=tuple(int(i) for i in ints[1:]))
        words = ss.generate_state(2, dtype=np.uint32)
    return jax.random.wrap_key_data(jnp.asarray(words, dtype=jnp.uint32), impl="threefry2x32")


def _is_seq(x) -> bool:
    return isinstance(x, (tuple, list, np.ndarray)) and not isinstance(x, str)


# ----------------------------------------------------------------------------- MLPs
def mlp_init(key, sizes, dtype):
    """Dense layers ``sizes[0] -> ... -> sizes[-1]`` with PyTorch's default ``nn.Linear`` init.

    Weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``kaiming_uniform(a=sqrt 5)``),
    the initialisation the seed's networks start from. Returns a list of
    ``{"W": (fan_in, fan_out), "b": (fan_out,)}``.
    """
    import jax

    layers = []
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1.0 / math.sqrt(fan_in)
        W = jax.random.uniform(keys[2 * k], (fan_in, fan_out), dtype, -bound, bound)
        b = jax.random.uniform(keys[2 * k + 1], (fan_out,), dtype, -bound, bound)
        layers.append({"W": W, "b": b})
    return layers


def mlp_apply(layers, x, activation=None):
    """ReLU (or ``activation``) after every layer but the last, which is affine."""
    import jax

    act = jax.nn.relu if activation is None else activation
    for layer in layers[:-1]:
        x = act(x @ layer["W"] + layer["b"])
    return x @ layers[-1]["W"] + layers[-1]["b"]


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class PlateauSchedule:
    """PyTorch ``ReduceLROnPlateau(mode="min", threshold_mode="rel", cooldown=0)`` on the epoch loss.

    An epoch improves if its loss < best - threshold * |best|. After more than
    ``patience`` consecutive epochs without improvement the rate is multiplied
    by ``factor`` (not below ``min_lr``; reductions smaller than 1e-8 are
    skipped) and the count restarts. For a positive best this is PyTorch's rule
    (``a < best * (1 - threshold)``); the SDE loss is usually negative (log det of
    a small covariance), where PyTorch's literal rule would count slightly worse
    epochs (up to threshold * |best|) as improvements; we use the sign-correct
    relative rule there.
    """

    factor: float = 0.5
    patience: int = 5
    min_lr: float = 5e-6
    threshold: float = 1e-4

    def __post_init__(self):
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"plateau factor must be in (0, 1), got {self.factor!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, Integral) or self.patience < 0:
            raise ValueError(f"plateau patience must be an integer >= 0, got {self.patience!r}")
        if not (math.isfinite(self.min_lr) and self.min_lr >= 0.0):
            raise ValueError(f"min_lr must be a finite number >= 0, got {self.min_lr!r}")
        if not (math.isfinite(self.threshold) and self.threshold >= 0.0):
            raise ValueError(f"plateau threshold must be a finite number >= 0, got {self.threshold!r}")


@dataclass
class _PlateauState:
    schedule: PlateauSchedule
    lr: float
    best: float = math.inf
    bad: int = 0

    def step(self, loss: float) -> float:
        s = self.schedule
        # best = inf at the start: any finite loss improves.
        if loss < self.best - s.threshold * abs(self.best) or self.best == math.inf:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > s.patience:
            new = max(self.lr * s.factor, s.min_lr)
            if self.lr - new > 1e-8:  # PyTorch's eps: tiny reductions are skipped
                self.lr = new
            self.bad = 0
        return self.lr


@dataclass
class TrainResult:
    """What :func:`train_minibatch` returns.

    Attributes
    ----------
    params : pytree of jax arrays
        Parameters after the last epoch (no early stopping, as in the seed).
    loss_curve : list of float
        Per epoch: mean over all samples of the loss of the batch they were in
        (each batch's mean weighted by its size), the quantity the plateau rule sees.
    lr_curve : list of float
        Learning rate used in each epoch.
    validation_curve : list of float
        Per epoch, ``validate(params)`` after the epoch (empty without ``validate``).
    n_steps : int
        Optimiser steps taken.
    """

    params: object
    loss_curve: list = field(default_factory=list)
    lr_curve: list = field(default_factory=list)
    validation_curve: list = field(default_factory=list)
    n_steps: int = 0


def _amsgradw(learning_rate, b1, b2, eps, weight_decay):
    import optax

    return optax.chain(
        optax.scale_by_amsgrad(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def _adamw(learning_rate, b1, b2, eps, weight_decay):
    import optax

    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


@functools.lru_cache(maxsize=None)
def _optimizer(amsgrad: bool = True):
    """One optax transformation per variant: all its numbers live in the state (inject_hyperparams).

    A single (hashable, long-lived) object lets the jitted epoch below be
    compiled once per (loss, shapes) instead of once per fit.
    """
    import optax

    factory = _amsgradw if amsgrad else _adamw
    return optax.inject_hyperparams(factory)(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)


def _batches(ekey, n, bs, dtype):
    """Shuffled batch indices (n_batches, bs) and 0/1 weights; the last batch is padded with weight 0."""
    import jax
    import jax.numpy as jnp

    n_batches = -(-n // bs)
    pad = n_batches * bs - n
    weights = (jnp.arange(n_batches * bs) < n).astype(dtype).reshape(n_batches, bs)
    perm = jax.random.permutation(ekey, n)
    # Padding rows repeat the first samples of the permutation with weight 0.
    idx = jnp.concatenate([perm, perm[:pad]]).reshape(n_batches, bs)
    return idx, weights


def _step_impl(params, opt_state, data, loss_args, bidx, w, *, loss_fn, amsgrad):
    import jax
    import jax.numpy as jnp
    import optax

    batch = tuple(jnp.take(a, bidx, axis=0) for a in data)
    value, grads = jax.value_and_grad(loss_fn)(params, batch, w, *loss_args)
    updates, opt_state = _optimizer(amsgrad).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value * jnp.sum(w)


def _epoch_impl(params, opt_state, data, loss_args, ekey, *, loss_fn, n, bs, amsgrad):
    import jax
    import jax.numpy as jnp

    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    idx, weights = _batches(ekey, n, bs, dtype)

    def step(carry, xs):
        p, s = carry
        p, s, v = _step_impl(p, s, data, loss_args, *xs, loss_fn=loss_fn, amsgrad=amsgrad)
        return (p, s), v

    (params, opt_state), sums = jax.lax.scan(step, (params, opt_state), (idx, weights))
    return params, opt_state, jnp.sum(sums) / n


@functools.lru_cache(maxsize=None)
def _epoch_jit():
    import jax

    return jax.jit(_epoch_impl, static_argnames=("loss_fn", "n", "bs", "amsgrad"))


@functools.lru_cache(maxsize=None)
def _loop_jits():
    import jax

    return (
        jax.jit(_batches, static_argnames=("n", "bs", "dtype")),
        jax.jit(_step_impl, static_argnames=("loss_fn", "amsgrad")),
    )


def _epoch_python(params, opt_state, data, loss_args, ekey, *, loss_fn, n, bs, amsgrad):
    """Same epoch as ``_epoch_impl`` with the loop over batches in Python (one jitted step per batch)."""
    import jax
    import jax.numpy as jnp

    batches, step = _loop_jits()
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    idx, weights = batches(ekey, n=n, bs=bs, dtype=jnp.dtype(dtype))
    total = 0.0
    for b in range(idx.shape[0]):
        params, opt_state, v = step(params, opt_state, data, loss_args, idx[b], weights[b], loss_fn=loss_fn,
                                    amsgrad=amsgrad)
        total = total + v
    return params, opt_state, total / n


def train_minibatch(
    loss_fn,
    params,
    data,
    *,
    key,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    loss_args=(),
    weight_decay: float = 0.0,
    amsgrad: bool = True,
    scan: bool = True,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    plateau: PlateauSchedule | None = PlateauSchedule(),
    validate=None,
) -> TrainResult:
    """Minibatch AdamW(AMSGrad) with reduce-on-plateau: the training loop of cgflow's JAX models.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, batch, weights, *loss_args) -> scalar``: the weighted
        mean ``sum(w_i l_i) / sum(w_i)`` of the per-sample losses of ``batch`` (a
        tuple of arrays, one row per sample). ``weights`` are 1 for real samples
        and 0 for the padding that fills the last batch; the loss must ignore
        rows of weight 0 (they hold copies of real samples, so they are finite).
        It is a static argument of the jitted epoch: pass the *same* function
        object for every fit (a module-level function, or one from an
        ``lru_cache`` factory) and put numbers that vary between fits in
        ``loss_args``, so that the epoch compiles once per data shape.
    params : pytree
        Initial parameters.
    data : tuple of arrays
        Training arrays with a common leading dimension n.
    key : jax key
        Shuffling key; epoch ``e`` uses ``fold_in(key, e)``.
    epochs, batch_size : int
    learning_rate : float
        Initial rate; the plateau rule lowers it.
    loss_args : tuple of arrays/scalars
        Extra dynamic arguments of ``loss_fn``.
    weight_decay : float
        Decoupled (AdamW) decay, applied as ``lr * weight_decay * param``.
    amsgrad : bool, default True
        AMSGrad second moment (the seed's SDE training) or plain Adam (its
        closure autoencoder).
    scan : bool, default True
        Run an epoch as one jitted ``lax.scan`` over batches (fastest for small
        dense networks: one dispatch per epoch), or loop over batches in Python
        with one jitted step each. Use ``scan=False`` for convolutional models:
        measured with jax 0.10 on CPU, convolution gradients inside a scanned
        loop body run ~15x slower than in a top-level jitted step.
    betas, eps
        Adam/AMSGrad moment decays and denominator guard (optax ``scale_by_amsgrad``:
        the running maximum is taken over bias-corrected second moments; PyTorch
        takes it before the correction, a difference of order b2**step).
    plateau : PlateauSchedule or None
        None keeps the rate constant.
    validate : callable, optional
        ``validate(params) -> float`` evaluated after every epoch.

    Returns
    -------
    TrainResult
    """
    import jax
    import jax.numpy as jnp

    n = int(data[0].shape[0])
    if any(int(a.shape[0]) != n for a in data):
        raise ValueError(f"all training arrays need the same number of rows, got {[a.shape[0] for a in data]}")
    if n == 0:
        raise ValueError("no training samples")
    bs = min(int(batch_size), n)
    n_batches = -(-n // bs)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype

    opt_state = _optimizer(bool(amsgrad)).init(params)
    hyper = dict(learning_rate=learning_rate, b1=betas[0], b2=betas[1], eps=eps, weight_decay=weight_decay)
    opt_state = opt_state._replace(
        hyperparams={k: jnp.asarray(hyper[k], dtype=v.dtype) for k, v in opt_state.hyperparams.items()}
    )
    data = tuple(jnp.asarray(a) for a in data)
    loss_args = tuple(jnp.asarray(a, dtype=dtype) for a in loss_args)
    epoch = _epoch_jit() if scan else _epoch_python

    result = TrainResult(params=params)
    state = _PlateauState(plateau, float(learning_rate)) if plateau is not None else None
    lr = float(learning_rate)
    for e in range(int(epochs)):
        params, opt_state, loss = epoch(
            params, opt_state, data, loss_args, jax.random.fold_in(key, e), loss_fn=loss_fn, n=n, bs=bs,
            amsgrad=bool(amsgrad),
        )
        loss = float(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged in epoch {e + 1} (loss {loss!r}); lower the learning rate or raise epsilon"
            )
        result.loss_curve.append(loss)
        result.lr_curve.append(lr)
        if validate is not None:
            result.validation_curve.append(float(validate(params)))
        if state is not None:
            new = state.step(loss)
            if new != lr:
                lr = new
                hp = dict(opt_state.hyperparams)
                hp["learning_rate"] = jnp.asarray(lr, dtype=hp["learning_rate"].dtype)
                opt_state = opt_state._replace(hyperparams=hp)
    result.params = params
    result.n_steps = int(epochs) * n_batches
    return result
