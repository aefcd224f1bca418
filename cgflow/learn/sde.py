"""A learned Itô SDE dz = b(z) dt + sigma(z) dW with the K-scaled loss of seed 002 (REFERENCE-002 §0, §4).

Optionally conditioned on external parameters c that do not evolve along a path,
dz = b(z, c) dt + sigma(z, c) dW (see "Conditioning" below).

The data are pairs (z0, z1_hat, dt). For partial-evolution pairs (one of K
patches evolved, REFERENCE-002 §2) the increment r = z1_hat - z0 has mean
b(z0) dt (unbiased) but covariance ~ K sigma sigma^T dt, K times the large
system's, because only 1/K of the system moved and the patch average is
divided by K only once. The loss per pair (REFERENCE-002 §0)

    r   = z1_hat - z0 - b(z0) dt
    Sig = lambda * sigma(z0) sigma(z0)^T dt + eps I
    l   = r^T Sig^{-1} r + log det Sig

(twice the Gaussian negative log-likelihood of one Euler-Maruyama step, up to
a constant), averaged over the batch, is minimised at
lambda sigma sigma^T dt = Cov(r | z0); with lambda = K the learned sigma sigma^T
is the *large* system's diffusion, with lambda = 1 (the baseline) it is K times
too large. ``loss_scaling`` is lambda.

Networks (REFERENCE-002 §4): drift MLP n_dim -> 64 -> 64 -> 64 -> n_dim (ReLU);
sigma one of

* ``"constant_diagonal"``: sigma = diag(v), v learnable, initialised to 1
  (the seed's Curie-Weiss model);
* ``"cholesky"`` (default): an MLP of the same shape with n_dim (n_dim + 1) / 2
  outputs filling a lower-triangular L with softplus on the diagonal, sigma = L.
  sigma sigma^T is then symmetric positive definite for every z, L is the
  unique Cholesky factor of sigma sigma^T (in the network coordinates; with
  ``standardize="whiten"`` sigma = diag(scale) R^(1/2) L is no longer triangular
  in z), and the Euler-Maruyama noise sigma dW has exactly the covariance the
  loss fitted;
* ``"arbitrary"``: the seed's parametrisation, an MLP with n_dim^2 outputs
  reshaped to a full matrix with no constraint. The loss only sees
  sigma sigma^T, so any sigma Q with Q orthogonal is an equally good optimum
  (a continuous family of minima), and sigma can become singular (eps I then
  keeps Sig invertible). It is kept for comparison with the seed's code.

Why cholesky is the default: same expressiveness for sigma sigma^T (every SPD
matrix has one such factor), no flat directions in the loss, and a positive
definite diffusion at every state of a rollout. For n_dim = 1 the two full
options differ only in |sigma| = softplus(.) versus sigma = (.), which gives the
same sigma^2 family.

Nearly collinear states (learned closure latents that are almost functions of m)
are whitened before the networks see them, and rollouts are confined to the box of
the training states in network coordinates: see ``standardize`` and ``confine`` of
:class:`SDEModel`.

Conditioning
------------
The NbMoTa alloy's SDE is conditioned on temperature (REFERENCE-002 §1c, §4): one
temperature per KMC run, a parameter that is constant along a path, not a state
variable; it has no drift or noise, and a rollout must keep it fixed.
``fit(..., conditions=c)`` with c of shape (n, n_cond) (one row per pair) learns
dz = b(z, c) dt + sigma(z, c) dW. Both MLPs take
concatenate(z', c') as input, n_dim + n_cond columns, where z' are the network
coordinates of z (standardised or whitened from the training z0 only: the
conditions never enter R or the rollout box) and c' = (c - condition_shift_) /
condition_scale_ with the mean and s.d. of the training conditions per column (an
s.d. of 0, e.g. a single training temperature, is replaced by 1). The outputs, the
loss and the rollout are as without conditions; ``constant_diagonal`` sigma = diag(v)
does not depend on c. Without conditions (the default) the computation is exactly
the unconditioned one (bitwise the same parameters as before conditioning existed).

Precision and threads: computations run in float64 inside
:func:`cgflow.learn._jax.x64` (scoped, never global), with the XLA thread
setting of :func:`cgflow.learn._jax.configure_single_thread`.
"""

from __future__ import annotations

import functools
import math
from numbers import Integral, Real

import numpy as np

from . import _jax
from ._estimator import ParamsMixin

__all__ = ["SDEModel", "SIGMA_KINDS", "sde_loss_numpy"]

#: Diffusion parametrisations (see the module docstring).
SIGMA_KINDS = ("constant_diagonal", "cholesky", "arbitrary")

#: Version of the :meth:`SDEModel.state_dict` layout.
STATE_FORMAT = 1

#: ``standardize="auto"`` whitens when the condition number of the training z0's correlation matrix exceeds this.
WHITEN_CONDITION = 100.0

#: Eigenvalues of the correlation matrix are floored at this fraction of the largest before R^(1/2) is formed.
WHITEN_FLOOR = 1e-12

#: Eigenvalues below this fraction of the largest are exact linear constraints among the state variables (the six
#: SRO parameters of a ternary alloy obey one per species, fixed by the composition): the whitened networks do not
#: see those directions and the SDE never moves the state along them (R^(1/2) and its pseudo-inverse are zero there).
CONSTRAINT_FLOOR = 1e-10

#: Accepted values of ``standardize``.
STANDARDIZE = ("auto", True, "whiten", False)


# ----------------------------------------------------------------------------- validation
def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(value, name, low, *, low_open=True):
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > low if low_open else value >= low):
        raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} {low}, got {value!r}")
    return float(value)


def _check_hidden(sizes, name):
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive integers, got {sizes!r}") from None
    for s in sizes:
        _check_int(s, f"each entry of {name}", 1)
    return tuple(int(s) for s in sizes)


def _as_states(z, name, n_dim=None):
    """(n, d) float64 array from (n, d), or (d,) for one state (flag returned)."""
    z = np.asarray(z, dtype=np.float64)
    single = z.ndim == 1 and n_dim is not None and z.shape[0] == n_dim
    if single:
        z = z[None]
    if z.ndim == 1 and n_dim in (None, 1):
        z = z[:, None]
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, n_dim), got {np.shape(z)}")
    if n_dim is not None and z.shape[1] != n_dim:
        raise ValueError(f"{name} has {z.shape[1]} columns, the model has n_dim={n_dim}")
    _check_finite(z, name)
    return z, single


def _check_finite(a, name):
    """ValueError naming ``name`` and the index of the first non-finite entry of ``a``."""
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} has a non-finite entry at index {idx}")


def _as_conditions(c, n, n_cond=None, single=False, name="conditions"):
    """(n, n_cond) float64 array of conditions for n states; (n,) means n_cond = 1.

    ``n_cond`` None (in ``fit``): taken from the array. ``single`` (one state of shape (n_dim,) was passed):
    a row (n_cond,) (or a scalar for n_cond = 1) is accepted as well.
    """
    c = np.asarray(c, dtype=np.float64)
    if c.ndim == 0 and single:
        c = c.reshape(1, 1)
    elif c.ndim == 1:
        c = c[None] if single and n_cond is not None and c.shape[0] == n_cond else c[:, None]
    want = "(n, n_cond) or (n,) for n_cond = 1" if n_cond is None else f"({n}, {n_cond})"
    if c.ndim != 2 or c.shape[0] != n or c.shape[1] == 0:
        raise ValueError(f"{name} must have shape {want} (one row per state, n = {n}), got {np.shape(c)}")
    if n_cond is not None and c.shape[1] != n_cond:
        raise ValueError(f"{name} has {c.shape[1]} columns, the model was fitted with n_conditions={n_cond}")
    _check_finite(c, name)
    return c


def _as_dt(dt, n, name="dt"):
    dt = np.asarray(dt, dtype=np.float64)
    if dt.ndim == 0:
        dt = np.full(n, float(dt))
    if dt.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {dt.shape}")
    if not (np.all(np.isfinite(dt)) and np.all(dt > 0)):
        raise ValueError(f"{name} must be finite and > 0 (min {float(np.min(dt))!r})")
    return dt


def _inverse(M):
    """M^-1 (the pseudo-inverse if M is singular: constraint directions) by one fixed NumPy computation (fit and
    load give bitwise the same matrix)."""
    M = np.asarray(M, dtype=np.float64)
    if np.linalg.matrix_rank(M, hermitian=True) < M.shape[0]:
        return np.linalg.pinv(M, hermitian=True)
    return np.linalg.inv(M)


def _correlation_sqrt(z0, shift, scale, force):
    """R^(1/2) of the correlation matrix R of the training z0 (symmetric square root), or None.

    None unless ``force`` or cond(R) > ``WHITEN_CONDITION``. Eigenvalues are floored at
    ``WHITEN_FLOOR`` x the largest (a nearly degenerate variable would otherwise make R^(-1/2) infinite);
    directions with eigenvalues below ``CONSTRAINT_FLOOR`` x the largest are exact linear constraints of the
    data and get a zero (R^(1/2) is then singular, :func:`_inverse` its pseudo-inverse): amplified by
    R^(-1/2) their rounding noise would be O(1) network inputs, and a drift feeding back along them grows
    without bound (measured: the alloy's six SRO, a conditioned fit whose deterministic flow reached 1e26).
    """
    u = (z0 - shift) / scale
    R = (u.T @ u) / len(u)
    w, V = np.linalg.eigh(R)
    constraint = w < CONSTRAINT_FLOOR * w[-1]
    w = np.maximum(w, WHITEN_FLOOR * w[-1])
    if not force and w[-1] / w[0] <= WHITEN_CONDITION:
        return None
    return (V * np.where(constraint, 0.0, np.sqrt(w))) @ V.T


# ----------------------------------------------------------------------------- pure functions (jax)
def _to_net(z, norm):
    """Network coordinates z' = W ((z - shift) / scale), norm = (shift, scale, M, W); W = M^-1, or identity if None."""
    shift, scale, _, W = norm
    u = (z - shift) / scale
    return u if W is None else u @ W.T


def _from_net(u, norm):
    """Inverse of :func:`_to_net`: z = shift + scale * (M z')."""
    shift, scale, M, _ = norm
    return shift + scale * (u if M is None else u @ M.T)


def _net_input(z, norm, cond):
    """The networks' input: z' = :func:`_to_net`, or concatenate(z', c') with c' the normalised conditions (n, n_cond).

    ``cond`` None (an unconditioned model) returns z' itself: the unconditioned computation is unchanged.
    """
    import jax.numpy as jnp

    u = _to_net(z, norm)
    return u if cond is None else jnp.concatenate([u, cond], axis=1)


def _sigma_matrix(params, z, kind, n_dim, norm, cond=None):
    """sigma(z, c), shape (n, n_dim, n_dim): diag(scale) M sigma'(z', c'), z' = :func:`_to_net` (M = I if None).

    ``constant_diagonal`` has no input: sigma = diag(v) in z's units, v initialised to 1 (the seed's); it ignores
    the conditions c' (``cond``, normalised, (n, n_cond) or None).
    """
    import jax
    import jax.numpy as jnp

    scale, M = norm[1], norm[2]
    if kind == "constant_diagonal":
        return jnp.broadcast_to(jnp.diag(params["sigma_diag"]), (z.shape[0], n_dim, n_dim))
    out = _jax.mlp_apply(params["sigma"], _net_input(z, norm, cond))
    if kind == "arbitrary":
        S = out.reshape(z.shape[0], n_dim, n_dim)
    else:
        rows, cols = np.tril_indices(n_dim)
        L = jnp.zeros((z.shape[0], n_dim, n_dim), out.dtype).at[:, rows, cols].set(out)
        d = np.arange(n_dim)
        S = L.at[:, d, d].set(jax.nn.softplus(L[:, d, d]))
    if M is not None:
        S = jnp.einsum("ij,njk->nik", M, S)
    return scale[:, None] * S


def _drift(layers, z, norm, cond=None):
    """b(z, c) = diag(scale) M MLP(z', c'), z' = :func:`_to_net` (M = I if None), c' = ``cond`` (or no c' if None)."""
    scale, M = norm[1], norm[2]
    out = _jax.mlp_apply(layers, _net_input(z, norm, cond))
    return scale * (out if M is None else out @ M.T)


def _per_pair_loss(params, z0, z1, dt, lam, eps, kind, n_dim, norm, cond=None):
    """l_i of REFERENCE-002 §0 for every pair, shape (n,); ``cond``: normalised conditions of the pairs, or None."""
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    b = _drift(params["drift"], z0, norm, cond)
    r = z1 - z0 - b * dt[:, None]
    if kind == "constant_diagonal" or n_dim == 1:
        if kind == "constant_diagonal":
            s2 = jnp.broadcast_to(params["sigma_diag"] ** 2, r.shape)
        else:
            s2 = _sigma_matrix(params, z0, kind, n_dim, norm, cond)[:, :, 0] ** 2
        var = lam * s2 * dt[:, None] + eps
        return jnp.sum(r * r / var + jnp.log(var), axis=1)
    s = _sigma_matrix(params, z0, kind, n_dim, norm, cond)
    cov = lam * jnp.einsum("nij,nkj->nik", s, s) * dt[:, None, None] + eps * jnp.eye(n_dim, dtype=r.dtype)
    chol = jnp.linalg.cholesky(cov)
    y = solve_triangular(chol, r[:, :, None], lower=True)[:, :, 0]
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    return jnp.sum(y * y, axis=1) + logdet


def sde_loss_numpy(drift, sigma, z0, z1, dt, loss_scaling, epsilon):
    """Direct NumPy evaluation of the REFERENCE-002 §0 loss (a test oracle).

    Parameters
    ----------
    drift : ndarray (n, d)
        b(z0).
    sigma : ndarray (n, d, d)
        sigma(z0).
    z0, z1 : ndarray (n, d)
    dt : ndarray (n,)
    loss_scaling, epsilon : float

    Returns
    -------
    float
        mean_i [ r_i^T Sig_i^{-1} r_i + log det Sig_i ], Sig_i = lambda sigma_i sigma_i^T dt_i + eps I,
        by ``np.linalg.solve`` and ``np.linalg.slogdet``.
    """
    r = z1 - z0 - drift * dt[:, None]
    d = r.shape[1]
    cov = loss_scaling * np.einsum("nij,nkj->nik", sigma, sigma) * dt[:, None, None] + epsilon * np.eye(d)
    quad = np.einsum("ni,ni->n", r, np.linalg.solve(cov, r[:, :, None])[:, :, 0])
    sign, logdet = np.linalg.slogdet(cov)
    if np.any(sign <= 0):
        raise ValueError("a covariance is not positive definite")
    return float(np.mean(quad + logdet))


# ----------------------------------------------------------------------------- compiled kernels
# One function object per static configuration, so JAX compiles each once per
# shape and process (not once per fit or per call); lambda and eps are traced.
@functools.lru_cache(maxsize=None)
def _batch_loss(kind, n_dim, whiten=False, conditioned=False):
    """loss_fn(params, batch, w, lam, eps, shift, scale[, M, M^-1]) for ``_jax.train_minibatch``.

    batch = (z0, z1, dt), or (z0, z1, dt, c') with the normalised conditions c' when ``conditioned``.
    """
    import jax.numpy as jnp

    def loss_fn(params, batch, w, lam, eps, shift, scale, *mats):
        z0, z1, dt, *cond = batch
        norm = (shift, scale, *mats) if whiten else (shift, scale, None, None)
        ell = _per_pair_loss(params, z0, z1, dt, lam, eps, kind, n_dim, norm, cond[0] if conditioned else None)
        return jnp.sum(w * ell) / jnp.sum(w)

    return loss_fn


def _mean_loss_impl(params, z0, z1, dt, lam, eps, norm, cond=None, *, kind, n_dim):
    import jax.numpy as jnp

    return jnp.mean(_per_pair_loss(params, z0, z1, dt, lam, eps, kind, n_dim, norm, cond))


def _rollout_impl(params, z, key, dt, norm, bounds, cond=None, *, kind, n_dim, n_saves, save_every):
    import jax
    import jax.numpy as jnp

    sqdt = jnp.sqrt(dt)

    def confine(z):
        # projected Euler-Maruyama: a state outside the box [lo, hi] of the network coordinates is moved to the
        # nearest point of the box; states inside are returned bit for bit
        lo, hi = bounds
        u = _to_net(z, norm)
        outside = jnp.any((u < lo) | (u > hi), axis=1, keepdims=True)
        if norm[2] is None:
            return jnp.where(outside, _from_net(jnp.clip(u, lo, hi), norm), z)
        # whitened: move z by the clipping's displacement, so that a component along an exact constraint
        # (invisible to z', see _correlation_sqrt) is kept rather than reset to the training mean's
        shift, scale, M, _ = norm
        return jnp.where(outside, z + scale * ((jnp.clip(u, lo, hi) - u) @ M.T), z)

    def step(z, kk):
        xi = jax.random.normal(kk, z.shape, z.dtype)
        # c' (cond) is constant along a path: a closed-over argument, not part of the scan's carry
        s = _sigma_matrix(params, z, kind, n_dim, norm, cond)
        z = z + _drift(params["drift"], z, norm, cond) * dt + sqdt * jnp.einsum("nij,nj->ni", s, xi)
        return (z if bounds is None else confine(z)), None

    def block(z, kb):
        z, _ = jax.lax.scan(step, z, jax.random.split(kb, save_every))
        return z, z

    _, zs = jax.lax.scan(block, z, jax.random.split(key, n_saves))
    return zs


@functools.lru_cache(maxsize=None)
def _compiled():
    import jax

    return {
        "mean_loss": jax.jit(_mean_loss_impl, static_argnames=("kind", "n_dim")),
        "grad": jax.jit(jax.grad(_mean_loss_impl), static_argnames=("kind", "n_dim")),
        "drift": jax.jit(_drift),
        "sigma": jax.jit(_sigma_matrix, static_argnames=("kind", "n_dim")),
        "rollout": jax.jit(_rollout_impl, static_argnames=("kind", "n_dim", "n_saves", "save_every")),
    }


# ----------------------------------------------------------------------------- the estimator
class SDEModel(ParamsMixin):
    """dz = b(z) dt + sigma(z) dW learned from (z0, z1_hat, dt) pairs with the loss of REFERENCE-002 §0.

    scikit-learn conventions: ``__init__`` stores parameters, ``fit`` returns
    self, fitted attributes end in ``_``; ``get_params`` / ``set_params``.

    Conditioned on constant external parameters c (the alloy's temperature,
    REFERENCE-002 §1c, §4) when fitted with ``fit(..., conditions=c)``: then
    dz = b(z, c) dt + sigma(z, c) dW, the networks take (z', c') with c'
    standardised by the training conditions, and ``drift``, ``sigma_matrix``,
    ``diffusion``, ``loss``, ``loss_grad`` and ``rollout`` all require a
    ``conditions`` argument with ``n_conditions_`` columns (one row per state, pair
    or path; constant along a rollout path). A model fitted without conditions
    rejects them (module docstring, "Conditioning").

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (64, 64, 64)
        ReLU layers of the drift MLP (REFERENCE-002 §4); its input is z' (n_dim columns),
        or (z', c') (n_dim + n_conditions_) for a conditioned model.
    sigma : {"cholesky", "arbitrary", "constant_diagonal"}, default "cholesky"
        Diffusion parametrisation (module docstring). The sigma MLP has the drift's
        inputs; ``"constant_diagonal"`` has none and ignores the conditions.
    sigma_hidden_layer_sizes : tuple of int or None, default None
        ReLU layers of the sigma MLP; None: the drift's.
    loss_scaling : float, default 1.0
        lambda in Sig = lambda sigma sigma^T dt + eps I: K (number of patches) for
        partial-evolution pairs, 1 for true full-system pairs (the baseline).
    epsilon : float, default 1e-4
        eps, added after the scaling (REFERENCE-002 §4 table: 1e-4, or 1e-5).
    learning_rate : float, default 1e-3
    epochs : int, default 100
    batch_size : int, default 1024
    weight_decay : float, default 0.0
        Decoupled (AdamW) decay; the seed uses 0.
    plateau_factor, plateau_patience, min_learning_rate : default 0.5, 5, 5e-6
        Reduce-on-plateau on the epoch training loss (``_jax.PlateauSchedule``).
    validation_loss_scaling : float, default 1.0
        lambda of the validation loss (the seed validates on true full-system
        pairs with lambda = 1).
    random_state : int, sequence of int, numpy Generator or JAX key, default 0
        Initialisation and shuffling key (``_jax.prng_key``): the engine passes
        ``(root_seed, stage_id, point, block)``. Same key, same data -> bitwise
        identical parameters.
    standardize : {"auto", True, "whiten", False}, default "auto"
        Let the networks work in standardised coordinates. True: z' = (z - shift) / scale
        (shift, scale: mean and s.d. of the training z0 per variable):
        b(z) = scale * b'(z'), sigma(z) = diag(scale) sigma'(z') (constant_diagonal: sigma
        stays diag(v)). An affine change of
        variables of the SDE, so the model family and the loss are unchanged (the loss
        is still evaluated in z); it only conditions the fit. Without it a closure
        variable with a small spread (Ising rho_dw: s.d. 0.07 against m's 0.5) is
        barely resolved by the first layer, and the drift of the slow variable near
        its fixed point (~1e-3 per unit time) is lost in the fit (measured: the
        stationary m of the rollouts moved from 0.687 to 0.715, truth 0.723).

        "whiten": also decorrelate, z' = R^(-1/2) (z - shift) / scale with R the
        correlation matrix of the training z0 (symmetric, "ZCA", whitening: each z'_i
        stays closest to z_i), b(z) = diag(scale) R^(1/2) b'(z'), sigma(z) =
        diag(scale) R^(1/2) sigma'(z'). Still an affine change of variables, and
        equivariant under per-variable affine maps of z (R does not change). It is
        needed when the state variables are nearly collinear: the learned closure
        latents of ising-closure-quick are (latent_0, latent_1) with correlation
        -0.9999 between them and 0.99 with m, so (z - shift) / scale lies on a sheet
        of thickness 0.003 in one direction, and the increment covariance is
        nearly singular (condition number ~1e3). With per-variable scaling alone the
        network never resolves the thin direction, the loss is dominated by it, and
        the fitted N sigma_mm^2 at the stationary state was 1.3-2.2 while the
        pairs' own residual variance gives 0.62 (large system: 0.642); whitened: 0.68.
        "auto" (default): "whiten" when the condition number of R exceeds
        ``WHITEN_CONDITION``, else True (well-conditioned states, e.g. (m, rho_dw)
        with correlation -0.2, are fitted exactly as with True).
        All of this concerns z only: conditions are always standardised per column
        (``condition_shift_``, ``condition_scale_``, also with False) and never whitened.
    confine : bool, default True
        Rollouts stay in the box of the training states: after each Euler-Maruyama
        step a state whose network coordinates z' leave [min, max] of the training
        z0' (``bounds_``, per coordinate) is moved to the nearest point of that box
        (projected Euler-Maruyama); the box is in z' only (the conditions, constant
        along a path, are not confined). The networks are informed only where the data
        are; outside, the ReLU networks extrapolate linearly, and a drift that
        points outward there sends paths to infinity (measured: ising-closure-quick
        rollouts reached |m| ~ 1e4). States inside the box are not changed, so
        rollouts that never reach it are bit for bit those of ``confine=False``.
        Models loaded from a state without bounds are never confined.

    Attributes
    ----------
    params_ : dict
        Fitted parameters as NumPy float64 arrays: ``{"drift": [{"W", "b"}, ...],
        "sigma": [...]}`` or ``{"drift": [...], "sigma_diag": (n_dim,)}``.
    shift_, scale_ : ndarray (n_dim,)
        The standardisation (0 and 1 with ``standardize=False``).
    decorrelation_ : ndarray (n_dim, n_dim) or None
        R^(1/2) of ``standardize="whiten"`` (z - shift = scale * R^(1/2) z'), else None.
    bounds_ : tuple (low, high) of ndarray (n_dim,)
        Per-coordinate min and max of the training z0 in network coordinates z'
        (the box of ``confine``).
    n_conditions_ : int
        Number of condition columns n_cond (0: an unconditioned model).
    condition_shift_, condition_scale_ : ndarray (n_cond,)
        Mean and s.d. (0 replaced by 1) of the training conditions per column:
        c' = (c - condition_shift_) / condition_scale_. Empty arrays when unconditioned.
    n_dim_ : int
    loss_curve_, lr_curve_ : list of float
        Per-epoch training loss (lambda = loss_scaling) and learning rate.
    validation_curve_ : list of float
        Per-epoch validation loss (only with ``validation_data``).
    n_iter_ : int
        Epochs run. ``n_steps_``: optimiser steps.
    """

    def __init__(
        self,
        hidden_layer_sizes=(64, 64, 64),
        *,
        sigma="cholesky",
        sigma_hidden_layer_sizes=None,
        loss_scaling=1.0,
        epsilon=1e-4,
        learning_rate=1e-3,
        epochs=100,
        batch_size=1024,
        weight_decay=0.0,
        plateau_factor=0.5,
        plateau_patience=5,
        min_learning_rate=5e-6,
        validation_loss_scaling=1.0,
        random_state=0,
        standardize="auto",
        confine=True,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.sigma = sigma
        self.sigma_hidden_layer_sizes = sigma_hidden_layer_sizes
        self.loss_scaling = loss_scaling
        self.epsilon = epsilon
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.min_learning_rate = min_learning_rate
        self.validation_loss_scaling = validation_loss_scaling
        self.random_state = random_state
        self.standardize = standardize
        self.confine = confine

    # ------------------------------------------------------------------ sklearn plumbing
    _PARAM_NAMES = (
        "hidden_layer_sizes",
        "sigma",
        "sigma_hidden_layer_sizes",
        "loss_scaling",
        "epsilon",
        "learning_rate",
        "epochs",
        "batch_size",
        "weight_decay",
        "plateau_factor",
        "plateau_patience",
        "min_learning_rate",
        "validation_loss_scaling",
        "random_state",
        "standardize",
        "confine",
    )

    def _validated(self):
        if self.sigma not in SIGMA_KINDS:
            raise ValueError(f"sigma must be one of {SIGMA_KINDS}, got {self.sigma!r}")
        hidden = _check_hidden(self.hidden_layer_sizes, "hidden_layer_sizes")
        if not any(self.standardize is v or (isinstance(v, str) and self.standardize == v) for v in STANDARDIZE):
            raise ValueError(f"standardize must be one of {STANDARDIZE}, got {self.standardize!r}")
        if not isinstance(self.confine, bool):
            raise ValueError(f"confine must be True or False, got {self.confine!r}")
        sig_hidden = (
            hidden
            if self.sigma_hidden_layer_sizes is None
            else _check_hidden(self.sigma_hidden_layer_sizes, "sigma_hidden_layer_sizes")
        )
        return dict(
            hidden=hidden,
            sigma_hidden=sig_hidden,
            lam=_check_real(self.loss_scaling, "loss_scaling", 0.0),
            eps=_check_real(self.epsilon, "epsilon", 0.0, low_open=False),
            lr=_check_real(self.learning_rate, "learning_rate", 0.0),
            epochs=_check_int(self.epochs, "epochs", 0),
            batch_size=_check_int(self.batch_size, "batch_size", 1),
            wd=_check_real(self.weight_decay, "weight_decay", 0.0, low_open=False),
            val_lam=_check_real(self.validation_loss_scaling, "validation_loss_scaling", 0.0),
            standardize=self.standardize,
            plateau=_jax.PlateauSchedule(
                factor=_check_real(self.plateau_factor, "plateau_factor", 0.0),
                patience=_check_int(self.plateau_patience, "plateau_patience", 0),
                min_lr=_check_real(self.min_learning_rate, "min_learning_rate", 0.0, low_open=False),
            ),
        )

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise ValueError("this SDEModel is not fitted yet: call fit() or load_state_dict() first")

    # ------------------------------------------------------------------ parameters
    def _init_params(self, key, n_dim, p, n_cond=0):
        """Initial parameters; the networks take n_dim + n_cond inputs (z', c')."""
        import jax
        import jax.numpy as jnp

        n_in = n_dim + n_cond
        kd, ks = jax.random.split(key)
        params = {"drift": _jax.mlp_init(kd, (n_in, *p["hidden"], n_dim), jnp.float64)}
        if self.sigma == "constant_diagonal":
            params["sigma_diag"] = jnp.ones(n_dim, jnp.float64)
        else:
            n_out = n_dim * n_dim if self.sigma == "arbitrary" else n_dim * (n_dim + 1) // 2
            params["sigma"] = _jax.mlp_init(ks, (n_in, *p["sigma_hidden"], n_out), jnp.float64)
        return params

    def _conditions(self, conditions, n, single=False, name="conditions"):
        """Normalised conditions c' = (c - condition_shift_) / condition_scale_ (NumPy (n, n_cond)), or None.

        Raises ValueError if ``conditions`` is given to an unconditioned model or missing for a conditioned one.
        """
        k = getattr(self, "n_conditions_", 0)
        if k == 0:
            if conditions is not None:
                raise ValueError(f"{name} were given, but this SDEModel was fitted without conditions "
                                 "(n_conditions_ = 0): pass conditions=None")
            return None
        if conditions is None:
            raise ValueError(f"this SDEModel was fitted with conditions: pass {name} of shape (n, {k}) "
                             f"(n_conditions_ = {k})")
        c = _as_conditions(conditions, n, k, single, name)
        return (c - self.condition_shift_) / self.condition_scale_

    def _norm(self):
        """(shift, scale, M, M^-1) as float64 JAX arrays (inside ``_jax.x64``); M = R^(1/2) or None."""
        import jax.numpy as jnp

        M = getattr(self, "decorrelation_", None)
        f = functools.partial(jnp.asarray, dtype=jnp.float64)
        return (f(self.shift_), f(self.scale_), None if M is None else f(M),
                None if M is None else f(_inverse(M)))

    def _bounds(self):
        """The rollout box (low, high) as JAX arrays, or None (``confine=False`` or no bounds)."""
        import jax.numpy as jnp

        b = getattr(self, "bounds_", None)
        if not self.confine or b is None:
            return None
        return (jnp.asarray(b[0], jnp.float64), jnp.asarray(b[1], jnp.float64))

    def _jax_params(self):
        import jax
        import jax.numpy as jnp

        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), self.params_)

    # ------------------------------------------------------------------ fit
    def fit(self, z0, z1, dt, *, conditions=None, validation_data=None):
        """Fit drift and diffusion to pairs.

        Parameters
        ----------
        z0 : array (n, n_dim) (or (n,) for n_dim = 1)
            Coarse states at the start of each pair.
        z1 : array like z0
            Targets z1_hat (for partial evolution: z0 + phi(patch after) - phi(patch before)).
        dt : float or array (n,)
            Elapsed time of each pair (> 0).
        conditions : array (n, n_cond) (or (n,) for n_cond = 1), optional
            External parameters of each pair that do not evolve (the alloy's temperature): the
            model becomes dz = b(z, c) dt + sigma(z, c) dW, and every later call (drift,
            sigma_matrix, diffusion, loss, loss_grad, rollout) needs conditions of n_cond
            columns. None (default): an unconditioned model, trained exactly as without
            the argument.
        validation_data : tuple (z0, z1, dt), or (z0, z1, dt, conditions) with ``conditions``, optional
            Evaluated after every epoch with lambda = ``validation_loss_scaling``
            (``validation_curve_``); does not influence training. A 4-tuple is required
            exactly when the fit has conditions.

        Returns
        -------
        self
        """
        import jax

        p = self._validated()
        z0, _ = _as_states(z0, "z0")
        n_dim = z0.shape[1]
        z1, _ = _as_states(z1, "z1", n_dim)
        if z1.shape != z0.shape:
            raise ValueError(f"z0 and z1 must have the same shape, got {z0.shape} and {z1.shape}")
        dt = _as_dt(dt, z0.shape[0])
        c = None if conditions is None else _as_conditions(conditions, z0.shape[0])
        n_cond = 0 if c is None else c.shape[1]
        if validation_data is not None:
            vc = None
            try:
                if n_cond:
                    v0, v1, vdt, vc = validation_data
                else:
                    v0, v1, vdt = validation_data
            except (TypeError, ValueError):
                if n_cond:
                    raise ValueError("validation_data must be a tuple (z0, z1, dt, conditions) for a fit with "
                                     "conditions") from None
                raise ValueError("validation_data must be a tuple (z0, z1, dt) (a 4-tuple with conditions only "
                                 "for a fit with conditions)") from None
            v0, _ = _as_states(v0, "validation z0", n_dim)
            v1, _ = _as_states(v1, "validation z1", n_dim)
            if v1.shape != v0.shape:
                raise ValueError(f"validation z0 and z1 differ in shape: {v0.shape}, {v1.shape}")
            vdt = _as_dt(vdt, v0.shape[0], "validation dt")
            if n_cond:
                if vc is None:
                    raise ValueError(f"validation conditions must have shape ({v0.shape[0]}, {n_cond}), got None")
                vc = _as_conditions(vc, v0.shape[0], n_cond, name="validation conditions")

        kind, lam, eps, val_lam = self.sigma, p["lam"], p["eps"], p["val_lam"]
        M = None
        if p["standardize"]:
            shift, scale = z0.mean(axis=0), z0.std(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
            if p["standardize"] in ("whiten", "auto") and n_dim > 1:
                M = _correlation_sqrt(z0, shift, scale, p["standardize"] == "whiten")
        else:
            shift, scale = np.zeros(n_dim), np.ones(n_dim)
        W = None if M is None else _inverse(M)
        u0 = (z0 - shift) / scale
        u0 = u0 if W is None else u0 @ W.T
        bounds = (u0.min(axis=0), u0.max(axis=0))
        norm = (shift, scale, M, W)
        # conditions: standardised per column by the training conditions only (never part of the whitening);
        # a column with one value (s.d. 0) keeps scale 1
        if n_cond:
            cshift, cscale = c.mean(axis=0), c.std(axis=0)
            cscale = np.where(cscale > 0, cscale, 1.0)
            cn = (c - cshift) / cscale
        else:
            cshift, cscale, cn = np.zeros(0), np.ones(0), None
        with _jax.x64():
            import jax.numpy as jnp

            key = _jax.prng_key(self.random_state)
            kinit, kshuffle = jax.random.split(key)
            params = self._init_params(kinit, n_dim, p, n_cond)

            validate = None
            if validation_data is not None:
                vargs = tuple(jnp.asarray(a) for a in (v0, v1, vdt))
                if n_cond:  # the normalised validation conditions, an extra argument after norm
                    vargs_c = (jnp.asarray((vc - cshift) / cscale),)
                else:
                    vargs_c = ()
                mean_loss = _compiled()["mean_loss"]

                def validate(prm):
                    return mean_loss(prm, *vargs, val_lam, eps, norm, *vargs_c, kind=kind, n_dim=n_dim)

            res = _jax.train_minibatch(
                _batch_loss(kind, n_dim, M is not None, True) if n_cond else _batch_loss(kind, n_dim, M is not None),
                params,
                (z0, z1, dt) if cn is None else (z0, z1, dt, cn),
                loss_args=(lam, eps, shift, scale) + (() if M is None else (M, W)),
                key=kshuffle,
                epochs=p["epochs"],
                batch_size=p["batch_size"],
                learning_rate=p["lr"],
                weight_decay=p["wd"],
                plateau=p["plateau"],
                validate=validate,
            )
            self.params_ = jax.tree_util.tree_map(lambda a: np.array(a, dtype=np.float64), res.params)
        self.n_dim_ = n_dim
        self.shift_, self.scale_ = shift, scale
        self.decorrelation_ = M
        self.bounds_ = bounds
        self.n_conditions_ = n_cond
        self.condition_shift_, self.condition_scale_ = cshift, cscale
        self.loss_curve_ = res.loss_curve
        self.lr_curve_ = res.lr_curve
        self.validation_curve_ = res.validation_curve
        self.n_iter_ = p["epochs"]
        self.n_steps_ = res.n_steps
        return self

    # ------------------------------------------------------------------ evaluation
    def drift(self, z, conditions=None):
        """b(z, c): array (n, n_dim) -> (n, n_dim); a single state (n_dim,) -> (n_dim,).

        Parameters
        ----------
        z : array (n, n_dim) (or (n,) for n_dim = 1), or one state (n_dim,)
        conditions : array (n, n_cond) (or (n,) for n_cond = 1; (n_cond,) for one state), optional
            Required exactly when the model was fitted with conditions.
        """
        self._check_fitted()
        z, single = _as_states(z, "z", self.n_dim_)
        cn = self._conditions(conditions, z.shape[0], single)
        with _jax.x64():
            extra = () if cn is None else (cn,)
            out = np.asarray(_compiled()["drift"](self._jax_params()["drift"], z, self._norm(), *extra))
        return out[0] if single else out

    def sigma_matrix(self, z, conditions=None):
        """sigma(z, c): (n, n_dim) -> (n, n_dim, n_dim); a single state -> (n_dim, n_dim).

        ``conditions`` as in :meth:`drift` (``sigma="constant_diagonal"`` does not depend on them,
        but a conditioned model still requires them).
        """
        self._check_fitted()
        z, single = _as_states(z, "z", self.n_dim_)
        cn = self._conditions(conditions, z.shape[0], single)
        with _jax.x64():
            import jax.numpy as jnp

            fn = _compiled()["sigma"]
            extra = {} if cn is None else {"cond": jnp.asarray(cn)}
            out = np.asarray(fn(self._jax_params(), jnp.asarray(z), kind=self.sigma, n_dim=self.n_dim_,
                                norm=self._norm(), **extra))
        return out[0] if single else out

    def diffusion(self, z, conditions=None):
        """sigma(z, c) sigma(z, c)^T: (n, n_dim) -> (n, n_dim, n_dim); a single state -> (n_dim, n_dim).

        With lambda = K on partial-evolution pairs this is the large system's
        diffusion matrix (covariance of an increment per unit time). ``conditions`` as in
        :meth:`drift`.
        """
        s = self.sigma_matrix(z, conditions)
        return s @ np.swapaxes(s, -1, -2)

    def loss(self, z0, z1, dt, loss_scaling=None, *, conditions=None):
        """The REFERENCE-002 §0 loss, mean over pairs, with lambda = ``loss_scaling`` (default: the model's).

        ``conditions``: (n, n_cond) (or (n,) for n_cond = 1), one row per pair; required exactly
        when the model was fitted with conditions.
        """
        self._check_fitted()
        p = self._validated()
        lam = p["lam"] if loss_scaling is None else _check_real(loss_scaling, "loss_scaling", 0.0)
        z0, _ = _as_states(z0, "z0", self.n_dim_)
        z1, _ = _as_states(z1, "z1", self.n_dim_)
        if z1.shape != z0.shape:
            raise ValueError(f"z0 and z1 must have the same shape, got {z0.shape} and {z1.shape}")
        dt = _as_dt(dt, z0.shape[0])
        cn = self._conditions(conditions, z0.shape[0])
        with _jax.x64():
            import jax.numpy as jnp

            extra = () if cn is None else (jnp.asarray(cn),)
            out = _compiled()["mean_loss"](
                self._jax_params(), jnp.asarray(z0), jnp.asarray(z1), jnp.asarray(dt), lam, p["eps"], self._norm(),
                *extra, kind=self.sigma, n_dim=self.n_dim_,
            )
            return float(out)

    def loss_grad(self, z0, z1, dt, *, conditions=None):
        """Gradient of :meth:`loss` (model's lambda) with respect to ``params_`` (same structure, NumPy).

        ``conditions`` as in :meth:`loss`.
        """
        import jax

        self._check_fitted()
        p = self._validated()
        z0, _ = _as_states(z0, "z0", self.n_dim_)
        z1, _ = _as_states(z1, "z1", self.n_dim_)
        dt = _as_dt(dt, z0.shape[0])
        cn = self._conditions(conditions, z0.shape[0])
        kind, n_dim = self.sigma, self.n_dim_
        with _jax.x64():
            import jax.numpy as jnp

            extra = () if cn is None else (jnp.asarray(cn),)
            g = _compiled()["grad"](
                self._jax_params(), jnp.asarray(z0), jnp.asarray(z1), jnp.asarray(dt), p["lam"], p["eps"], self._norm(),
                *extra, kind=kind, n_dim=n_dim,
            )
            return jax.tree_util.tree_map(lambda a: np.array(a, dtype=np.float64), g)

    def rollout(self, z0, dt, n_steps, key, *, save_every=1, conditions=None):
        """Euler-Maruyama paths z_{k+1} = z_k + b(z_k, c) dt + sigma(z_k, c) sqrt(dt) xi_k, xi ~ N(0, I).

        Vectorised over the batch; one ``lax.scan`` over steps (REFERENCE-002 §0). The
        conditions c of a path are constant in time (the scan carries z only).

        Parameters
        ----------
        z0 : array (n_paths, n_dim) (or (n_dim,) for one path)
        dt : float
            Time step (> 0), in the units of the training dt.
        n_steps : int
            Steps to take (>= 0); must be a multiple of ``save_every``.
        key : int, sequence of int, numpy Generator or JAX key
            Noise key (``_jax.prng_key``).
        save_every : int, default 1
            Record every ``save_every``-th state.
        conditions : array (n_paths, n_cond) (or (n_paths,) for n_cond = 1; (n_cond,) for one path), optional
            The conditions of each path; required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray (n_paths, n_steps // save_every + 1, n_dim)
            States at times 0, save_every dt, ..., n_steps dt (z0 included);
            for a single z0 of shape (n_dim,), shape (n_steps // save_every + 1, n_dim).
        """
        import jax

        self._check_fitted()
        z0, single = _as_states(z0, "z0", self.n_dim_)
        cn = self._conditions(conditions, z0.shape[0], single)
        dt = _check_real(dt, "dt", 0.0)
        n_steps = _check_int(n_steps, "n_steps", 0)
        save_every = _check_int(save_every, "save_every", 1)
        if n_steps % save_every:
            raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
        n_saves = n_steps // save_every
        kind, n_dim = self.sigma, self.n_dim_
        with _jax.x64():
            import jax.numpy as jnp

            k = _jax.prng_key(key)
            if n_saves:
                extra = () if cn is None else (jnp.asarray(cn),)
                zs = _compiled()["rollout"](
                    self._jax_params(), jnp.asarray(z0), k, jnp.float64(dt), self._norm(), self._bounds(), *extra,
                    kind=kind, n_dim=n_dim, n_saves=n_saves, save_every=save_every,
                )
                zs = np.asarray(zs)
            else:
                zs = np.empty((0, *z0.shape))
        out = np.concatenate([z0[:, None, :], np.swapaxes(zs, 0, 1)], axis=1)
        return out[0] if single else out

    # ------------------------------------------------------------------ persistence
    def state_dict(self):
        """Fitted parameters as a flat dict of NumPy float64 arrays (Zarr-ready, no pickle).

        Keys: ``"drift.<layer>.W"``, ``"drift.<layer>.b"``, then ``"sigma.<layer>.W"`` /
        ``"sigma.<layer>.b"`` or ``"sigma_diag"``, ``"shift"`` and ``"scale"`` (the
        standardisation; optional on loading, default 0 and 1), ``"decorrelation"`` (R^(1/2)
        of ``standardize="whiten"``, the identity without it, so that every fit has the same
        keys), ``"lower"`` and ``"upper"`` (``bounds_``; optional on loading: a model
        without them is never confined) and ``"format"`` (0-d int). A model fitted with
        conditions also has ``"condition_shift"`` and ``"condition_scale"`` (n_cond,); an
        unconditioned model has neither (its keys are those of unconditioned models before
        conditioning existed). Together with :meth:`get_params` (JSON-able except a Generator/key
        random_state) this rebuilds the model: ``SDEModel(**params).load_state_dict(d)``.
        """
        self._check_fitted()
        out = {"format": np.array(STATE_FORMAT), "shift": np.array(self.shift_, dtype=np.float64),
               "scale": np.array(self.scale_, dtype=np.float64)}
        M = getattr(self, "decorrelation_", None)
        out["decorrelation"] = np.eye(self.n_dim_) if M is None else np.array(M, dtype=np.float64)
        bounds = getattr(self, "bounds_", None)
        if bounds is not None:
            out["lower"], out["upper"] = (np.array(b, dtype=np.float64) for b in bounds)
        if getattr(self, "n_conditions_", 0) > 0:
            out["condition_shift"] = np.array(self.condition_shift_, dtype=np.float64)
            out["condition_scale"] = np.array(self.condition_scale_, dtype=np.float64)
        for i, layer in enumerate(self.params_["drift"]):
            out[f"drift.{i}.W"], out[f"drift.{i}.b"] = layer["W"].copy(), layer["b"].copy()
        if "sigma_diag" in self.params_:
            out["sigma_diag"] = self.params_["sigma_diag"].copy()
        else:
            for i, layer in enumerate(self.params_["sigma"]):
                out[f"sigma.{i}.W"], out[f"sigma.{i}.b"] = layer["W"].copy(), layer["b"].copy()
        return out

    def load_state_dict(self, state):
        """Load :meth:`state_dict` output (shapes are checked against the parameters). Returns self.

        The number of condition columns is the first drift layer's input width minus n_dim (the
        length of ``"shift"``); it must match ``"condition_shift"`` / ``"condition_scale"``, which
        are present exactly when it is > 0.
        """
        p = self._validated()
        state = dict(state)
        fmt = state.pop("format", None)
        if fmt is None or int(np.asarray(fmt)) != STATE_FORMAT:
            raise ValueError(f"unsupported SDEModel state format {fmt!r}, this version reads {STATE_FORMAT}")

        def layers(prefix, n_layers):
            out = []
            for i in range(n_layers):
                try:
                    W, b = state.pop(f"{prefix}.{i}.W"), state.pop(f"{prefix}.{i}.b")
                except KeyError as e:
                    raise ValueError(f"state is missing {e.args[0]!r}") from None
                out.append({"W": np.array(W, dtype=np.float64), "b": np.array(b, dtype=np.float64)})
            return out

        drift = layers("drift", len(p["hidden"]) + 1)
        n_in = drift[0]["W"].shape[0]
        if ("condition_shift" in state) != ("condition_scale" in state):
            raise ValueError("state must hold both 'condition_shift' and 'condition_scale' or neither")
        cshift, cscale = np.zeros(0), np.ones(0)
        if "condition_shift" in state:
            cshift = np.array(state.pop("condition_shift"), dtype=np.float64)
            cscale = np.array(state.pop("condition_scale"), dtype=np.float64)
            if (cshift.ndim != 1 or cshift.size == 0 or cscale.shape != cshift.shape or not np.all(np.isfinite(cshift))
                    or not np.all(np.isfinite(cscale) & (cscale > 0))):
                raise ValueError(f"condition_shift and condition_scale must be finite arrays of one shape (n_cond,), "
                                 f"n_cond >= 1, condition_scale > 0; got {cshift.shape} and {cscale.shape}")
        # n_dim: the length of shift (n_cond = n_in - n_dim), else the drift's input width less the conditions
        s0 = np.shape(state["shift"]) if "shift" in state else None
        n_dim = s0[0] if s0 is not None and len(s0) == 1 else n_in - cshift.size
        n_cond = n_in - n_dim
        if n_cond != cshift.size:
            raise ValueError(
                f"the drift's first layer takes {n_in} inputs and shift has length {n_dim}, so the model has "
                f"{n_cond} condition column(s), but the state's condition_shift / condition_scale have "
                f"{cshift.size} (a conditioned model's state needs both, an unconditioned one neither)")
        if n_dim < 1:
            raise ValueError(f"the state has n_dim = {n_dim} (drift input width {n_in}, {cshift.size} conditions)")
        shift = np.array(state.pop("shift", np.zeros(n_dim)), dtype=np.float64)
        scale = np.array(state.pop("scale", np.ones(n_dim)), dtype=np.float64)
        if shift.shape != (n_dim,) or scale.shape != (n_dim,) or not np.all(scale > 0):
            raise ValueError(f"shift and scale must have shape ({n_dim},), scale > 0")
        M = np.array(state.pop("decorrelation", np.eye(n_dim)), dtype=np.float64)
        if M.shape != (n_dim, n_dim) or not np.all(np.isfinite(M)):
            raise ValueError(f"decorrelation must be a finite ({n_dim}, {n_dim}) matrix")
        M = None if np.array_equal(M, np.eye(n_dim)) else M
        if ("lower" in state) != ("upper" in state):
            raise ValueError("state must hold both 'lower' and 'upper' or neither")
        bounds = None
        if "lower" in state:
            bounds = (np.array(state.pop("lower"), dtype=np.float64), np.array(state.pop("upper"), dtype=np.float64))
            if any(b.shape != (n_dim,) for b in bounds) or np.any(bounds[0] > bounds[1]):
                raise ValueError(f"lower and upper must have shape ({n_dim},) with lower <= upper")
        params = {"drift": drift}
        if self.sigma == "constant_diagonal":
            if "sigma_diag" not in state:
                raise ValueError("state is missing 'sigma_diag' (sigma='constant_diagonal')")
            params["sigma_diag"] = np.array(state.pop("sigma_diag"), dtype=np.float64)
            sig_sizes = None
        else:
            params["sigma"] = layers("sigma", len(p["sigma_hidden"]) + 1)
            n_out = n_dim * n_dim if self.sigma == "arbitrary" else n_dim * (n_dim + 1) // 2
            sig_sizes = (n_dim + n_cond, *p["sigma_hidden"], n_out)
        if state:
            raise ValueError(f"unexpected entries in state: {sorted(state)}")
        want = [(n_dim + n_cond, *p["hidden"], n_dim)] + ([sig_sizes] if sig_sizes else [])
        have = [params["drift"]] + ([params["sigma"]] if sig_sizes else [])
        for sizes, lay, name in zip(want, have, ("drift", "sigma")):
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                if lay[i]["W"].shape != (a, b) or lay[i]["b"].shape != (b,):
                    raise ValueError(
                        f"{name} layer {i} has shapes {lay[i]['W'].shape}, {lay[i]['b'].shape}; "
                        f"the parameters need ({a}, {b}), ({b},)"
                    )
        if sig_sizes is None and params["sigma_diag"].shape != (n_dim,):
            raise ValueError(f"sigma_diag has shape {params['sigma_diag'].shape}, need ({n_dim},)")
        self.params_ = params
        self.n_dim_ = n_dim
        self.shift_, self.scale_ = shift, scale
        self.decorrelation_ = M
        self.bounds_ = bounds
        self.n_conditions_ = n_cond
        self.condition_shift_, self.condition_scale_ = cshift, cscale
        return self
