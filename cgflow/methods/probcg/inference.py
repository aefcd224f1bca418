"""Mean-field variational inference of the probabilistic CG model (seed 003, §2.4, App. A/B).

Model (REFERENCE-003 §2). For experiment ``i`` the known initial coarse state is
``X0_i`` (``n_c`` bins) and the data are the counts ``m_i`` of the ``n_f`` walkers
one coarse step later. The hidden coarse state ``X_i`` has

* ``p_cf(m_i | X_i) = Mult(m_i; n_f, softmax X_i)`` (eq. 2.13),
* ``X_ij ~ N(theta^T phi_ij, 1/v)``, ``phi_ij = phi^(j)(X0_i)`` (eq. 2.17, 2.18),
* ``theta_l ~ N(0, 1/tau_l)``, ``tau_l ~ Gamma(alpha0, beta0)`` (ARD, eq. 2.19, 2.20),
* ``v ~ Gamma(gamma0, zeta0)`` shared by all bins (or one ``v_j`` per bin, eq. 2.21),

with rate-parametrised Gammas and ``alpha0 = beta0 = gamma0 = zeta0 = 1e-10``.

Approximation (eq. 2.28, with the diagonal ``S_i`` of App. B [G])::

    q = prod_i N(X_i; mu_i, diag s_i^2) N(theta; mu_theta, S_theta) prod_l Gamma(tau_l) Gamma(v)

Closed-form updates (eq. 2.33-2.35), written with per-bin sufficient statistics
summed over experiments, ``A_j = sum_i phi_ij phi_ij^T``, ``b_j = sum_i phi_ij mu_ij``,
``c_j = sum_i (mu_ij^2 + s_ij^2)``::

    S_theta^-1 = sum_j <v_j> A_j + diag <tau>,     mu_theta = S_theta sum_j <v_j> b_j
    alpha_l = alpha0 + 1/2,                         beta_l = beta0 + (mu_theta_l^2 + S_theta_ll)/2
    gamma = gamma0 + N n_c/2,                       zeta = zeta0 + sum_j R_j / 2
    R_j = c_j - 2 mu_theta^T b_j + tr((mu_theta mu_theta^T + S_theta) A_j)

(per-bin ``v_j``: ``gamma_j = gamma0 + N/2``, ``zeta_j = zeta0 + R_j/2``). ``R_j`` is the
form of the "general case" of REFERENCE-003 §3 (``A_j -> E_q[phi phi^T]``,
``b_j -> E_q[phi X_{t+1,j}]``), so multi-step sequences only change how the local
statistics are computed, not the global update.

``q(X_i)`` is updated by stochastic variational inference (eq. 2.36, App. B): Adam on
``(mu_i, log s_i)`` with reparametrised gradients ``X = mu + s * eps``::

    F_i = E[m^T X - n_f lse X] - <v>/2 sum_j (mu_j^2 + s_j^2 - 2 mu_j mu_theta^T phi_ij) + sum_j log s_j
    dF_i/dmu     = E[m - n_f softmax X] - <v> (mu - Phi_i mu_theta)
    dF_i/dlog s  = s * E[(m - n_f softmax X) * eps] - <v> s^2 + 1

ELBO (eq. 2.27/2.38): :func:`elbo` evaluates the complete bound for ANY ``q`` (all
constants kept, multinomial coefficient included); right after the ``tau`` and
``v`` updates it equals eq. 2.38 plus a constant. Its first term is a Monte Carlo
estimate made by the local update.

Distribution. :func:`update_block` is a pure function of one block of experiments
(data, local variational state, global moments, a ``np.random.Generator``) returning
the new local state and the block's :class:`LocalStats`; the global update consumes
the sum of the blocks' statistics added in block order, so a fit is bitwise the same
whatever the number of workers. Random streams come from ``rng_factory(iteration,
block)`` (never one running generator), so a fit resumed from a saved
:class:`VIState` equals the uninterrupted fit bitwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg
from scipy.special import digamma, gammaln

from .features import _check_M, centred_log_counts, design, feature_names, n_features

__all__ = [
    "FitResult",
    "GlobalMoments",
    "GlobalQ",
    "LocalState",
    "LocalStats",
    "Priors",
    "VISettings",
    "VIState",
    "block_slices",
    "elbo",
    "fit_vi",
    "init_block",
    "init_local",
    "local_objective",
    "local_gradients",
    "plateau",
    "run_iteration",
    "start_state",
    "stopping_rule_text",
    "update_block",
    "update_q_tau",
    "update_q_theta",
    "update_q_v",
    "update_globals",
]

_LOG2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Priors:
    """Hyper-parameters of the ARD prior and of the precision prior (eq. 2.20, 2.21), rate form."""

    alpha0: float = 1e-10
    beta0: float = 1e-10
    gamma0: float = 1e-10
    zeta0: float = 1e-10

    def __post_init__(self):
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            if not (isinstance(val, (int, float)) and np.isfinite(val) and val > 0):
                raise ValueError(f"prior {f.name} must be a positive finite number, got {val!r}")


@dataclass(frozen=True)
class VISettings:
    """Settings of the VI loop; defaults are the working settings of REFERENCE-003 §3 [C], [G].

    Parameters
    ----------
    lr : Adam learning rate on ``(mu_i, log s_i)``.
    mc_samples : Monte Carlo samples per Adam step.
    adam_steps : Adam steps per experiment per outer iteration (a partial E-step, §2.4).
    elbo_samples : Monte Carlo samples of ``E_q log p_cf`` per experiment for the ELBO.
    max_iter : largest number of outer iterations.
    window, theta_tol, theta_rel_tol, elbo_tol, stop_z : stopping rule (:func:`plateau`).
        A straight line is fitted by least squares to the last ``window`` values of
        the ELBO and of every ``mu_theta_l``; its drift over the window (slope x
        ``window``) must be at most the tolerance plus ``stop_z`` standard errors of
        that drift (from the residual scatter: SVI noise moves ``mu_theta`` by
        ~1e-4-5e-4 per iteration, so a per-iteration ``|Delta mu_theta|`` test never
        fires). Tolerances: ``max(theta_tol, theta_rel_tol * sd_l)`` for
        ``mu_theta_l`` (``sd_l = sqrt(S_theta_ll)``: a change well inside the
        posterior s.d. is no change), ``elbo_tol * N`` for the ELBO.
    init_s, init_tau, init_v : initial ``s_ij``, ``<tau_l>`` and ``<v>``.
    block_size : experiments per block (one cluster task each); part of the fit's
        identity, like the engine's block size (the MC streams are per block).
    per_bin_v : one precision ``v_j`` per bin instead of one shared ``v``.
    beta1, beta2, adam_eps : Adam constants.
    restart_jitter, restart_tau_factor : restarts ``r >= 1`` start ``mu_i`` at the
        MAP-like state plus ``restart_jitter / sqrt(m_ij + 1/2)`` times a standard normal
        (the width of the count likelihood) and ``<tau> = init_tau * restart_tau_factor**r``;
        restart 0 starts at the MAP-like state and ``init_tau`` itself. (Jitter alone
        led every restart to the same ARD optimum; the initial ``<tau>`` decides which
        features enter first.)
    select_window : restarts are ranked by the mean of their last ``select_window``
        ELBO values (the single last value carries MC noise of several units).
    priors : :class:`Priors`.
    """

    lr: float = 0.02
    mc_samples: int = 16
    adam_steps: int = 40
    elbo_samples: int = 16
    max_iter: int = 150
    window: int = 10
    theta_tol: float = 1e-4
    theta_rel_tol: float = 0.1
    elbo_tol: float = 0.1
    stop_z: float = 3.0
    init_s: float = 0.1
    init_tau: float = 1e-2
    init_v: float = 1.0
    block_size: int = 16
    per_bin_v: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    restart_jitter: float = 1.0
    restart_tau_factor: float = 100.0
    select_window: int = 5
    priors: Priors = field(default_factory=Priors)

    def __post_init__(self):
        ints = ("mc_samples", "adam_steps", "elbo_samples", "max_iter", "window", "block_size", "select_window")
        for name in ints:
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < (0 if name in ("adam_steps", "max_iter") else 1):
                raise ValueError(f"VISettings.{name} must be a {'non-negative' if name in ('adam_steps', 'max_iter') else 'positive'} integer, got {val!r}")
        if self.window < 3:
            raise ValueError(f"VISettings.window must be at least 3 (a line and its scatter), got {self.window}")
        for name in ("lr", "init_s", "init_tau", "init_v", "theta_tol", "adam_eps", "restart_tau_factor"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float)) and np.isfinite(val) and val > 0):
                raise ValueError(f"VISettings.{name} must be a positive finite number, got {val!r}")
        for name in ("elbo_tol", "restart_jitter", "theta_rel_tol", "stop_z"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float)) and np.isfinite(val) and val >= 0):
                raise ValueError(f"VISettings.{name} must be a non-negative finite number, got {val!r}")
        for name in ("beta1", "beta2"):
            val = getattr(self, name)
            if not (0.0 <= val < 1.0):
                raise ValueError(f"VISettings.{name} must be in [0, 1), got {val!r}")
        if not isinstance(self.priors, Priors):
            raise ValueError(f"VISettings.priors must be a Priors, got {type(self.priors).__name__}")


# ----------------------------------------------------------------------------- state


@dataclass
class LocalState:
    """Variational and Adam state of a set of experiments (leading axis ``B``).

    ``adam_m``/``adam_v`` hold the first/second moments for ``mu`` (index 0) and
    ``log s`` (index 1); ``adam_t`` counts each experiment's Adam steps so far.
    """

    mu: np.ndarray  # (B, n_c)
    log_s: np.ndarray  # (B, n_c)
    adam_m: np.ndarray  # (B, 2, n_c)
    adam_v: np.ndarray  # (B, 2, n_c)
    adam_t: np.ndarray  # (B,) int64

    def take(self, sl: slice) -> LocalState:
        return LocalState(*(np.array(getattr(self, f.name)[sl]) for f in dataclasses.fields(self)))

    @staticmethod
    def concat(parts: Sequence[LocalState]) -> LocalState:
        return LocalState(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(LocalState)))


@dataclass(frozen=True)
class GlobalMoments:
    """What a local update needs of the globals: ``<v_j>`` (n_c,), ``mu_theta`` (L,), ``S_theta`` (L, L)."""

    v_mean: np.ndarray
    mu_theta: np.ndarray
    S_theta: np.ndarray


@dataclass
class LocalStats:
    """Sufficient statistics of a set of experiments for the global update and the ELBO.

    ``phiphi[j] = sum_i E[phi_ij phi_ij^T]``, ``phix[j] = sum_i E[phi_ij X_ij]``,
    ``xx[j] = sum_i E[X_ij^2]``, ``e_log_pcf = sum_i E_q log p_cf(m_i|X_i)`` (MC, with the
    multinomial coefficient), ``sum_log_s = sum_ij log s_ij``, ``n`` experiments.
    Addition is in the order written (block order), so sums are reproducible.
    """

    n: int
    phiphi: np.ndarray  # (n_c, L, L)
    phix: np.ndarray  # (n_c, L)
    xx: np.ndarray  # (n_c,)
    e_log_pcf: float
    sum_log_s: float

    def __add__(self, other: LocalStats) -> LocalStats:
        return LocalStats(
            self.n + other.n,
            self.phiphi + other.phiphi,
            self.phix + other.phix,
            self.xx + other.xx,
            float(self.e_log_pcf + other.e_log_pcf),
            float(self.sum_log_s + other.sum_log_s),
        )

    @staticmethod
    def total(parts: Iterable[LocalStats]) -> LocalStats:
        """Sum in the given (block) order."""
        it = iter(parts)
        acc = next(it)
        for p in it:
            acc = acc + p
        return acc


@dataclass
class GlobalQ:
    """Parameters of ``q(theta) q(tau) q(v)``; ``gamma``/``zeta`` have 1 entry (shared v) or n_c."""

    mu_theta: np.ndarray  # (L,)
    S_theta: np.ndarray  # (L, L)
    alpha: np.ndarray  # (L,)
    beta: np.ndarray  # (L,)
    gamma: np.ndarray  # (1,) or (n_c,)
    zeta: np.ndarray  # (1,) or (n_c,)

    @property
    def tau_mean(self) -> np.ndarray:
        return self.alpha / self.beta

    @property
    def v_mean(self) -> np.ndarray:
        """``<v>`` per component of ``q(v)`` (shape of ``gamma``)."""
        return self.gamma / self.zeta

    def v_bins(self, n_c: int) -> np.ndarray:
        """``<v_j>`` broadcast to the ``n_c`` bins."""
        return np.broadcast_to(self.v_mean, (n_c,)).copy()

    def moments(self, n_c: int) -> GlobalMoments:
        return GlobalMoments(self.v_bins(n_c), self.mu_theta, self.S_theta)


@dataclass
class VIState:
    """Checkpointable state of one restart of the outer loop (all arrays; see :meth:`to_arrays`).

    ``iteration`` outer iterations are done; ``stats`` are the statistics of the
    current ``local`` (what iteration ``iteration + 1`` consumes); the traces have one
    entry per iteration: ELBO, ``mu_theta``, ``1/<v>`` (mean over bins when per-bin).
    """

    restart: int
    iteration: int
    converged: bool
    local: LocalState
    q: GlobalQ
    stats: LocalStats
    trace_elbo: np.ndarray  # (T,)
    trace_mu_theta: np.ndarray  # (T, L)
    trace_v_inv: np.ndarray  # (T,)

    def copy(self) -> VIState:
        return VIState.from_arrays(self.to_arrays())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` (copies) for a Zarr group; inverse :meth:`from_arrays`."""
        out = {
            "restart": np.array(self.restart, dtype=np.int64),
            "iteration": np.array(self.iteration, dtype=np.int64),
            "converged": np.array(self.converged, dtype=bool),
            "trace_elbo": np.array(self.trace_elbo),
            "trace_mu_theta": np.array(self.trace_mu_theta),
            "trace_v_inv": np.array(self.trace_v_inv),
            "stats_n": np.array(self.stats.n, dtype=np.int64),
            "stats_e_log_pcf": np.array(self.stats.e_log_pcf, dtype=np.float64),
            "stats_sum_log_s": np.array(self.stats.sum_log_s, dtype=np.float64),
        }
        for f in dataclasses.fields(LocalState):
            out["local_" + f.name] = np.array(getattr(self.local, f.name))
        for f in dataclasses.fields(GlobalQ):
            out["q_" + f.name] = np.array(getattr(self.q, f.name))
        for name in ("phiphi", "phix", "xx"):
            out["stats_" + name] = np.array(getattr(self.stats, name))
        return out

    @staticmethod
    def from_arrays(arrays: dict) -> VIState:
        a = {k: np.array(v) for k, v in arrays.items()}
        return VIState(
            restart=int(a["restart"]),
            iteration=int(a["iteration"]),
            converged=bool(a["converged"]),
            local=LocalState(*(a["local_" + f.name] for f in dataclasses.fields(LocalState))),
            q=GlobalQ(*(a["q_" + f.name] for f in dataclasses.fields(GlobalQ))),
            stats=LocalStats(
                int(a["stats_n"]), a["stats_phiphi"], a["stats_phix"], a["stats_xx"],
                float(a["stats_e_log_pcf"]), float(a["stats_sum_log_s"]),
            ),
            trace_elbo=a["trace_elbo"],
            trace_mu_theta=a["trace_mu_theta"],
            trace_v_inv=a["trace_v_inv"],
        )


# ----------------------------------------------------------------------------- local (per experiment)


def _softmax(X: np.ndarray) -> np.ndarray:
    z = X - X.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _lse(X: np.ndarray) -> np.ndarray:
    mx = X.max(axis=-1)
    return mx + np.log(np.exp(X - mx[..., None]).sum(axis=-1))


def _log_multinomial_coef(counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=-1)
    return gammaln(n + 1.0) - gammaln(counts + 1.0).sum(axis=-1)


def local_objective(mu, log_s, counts, pred, v_mean, eps) -> np.ndarray:
    """Monte Carlo estimate of ``F_i`` (eq. 2.36, constants dropped) with fixed ``eps``.

    Parameters
    ----------
    mu, log_s : (B, n_c)
    counts : (B, n_c)
    pred : (B, n_c) the law's mean ``Phi_i mu_theta``
    v_mean : (n_c,) or scalar ``<v_j>``
    eps : (B, S, n_c) standard normal draws

    Returns
    -------
    (B,) ``mean_s[m^T X - n_f lse X] - <v>/2 sum_j (mu^2 + s^2 - 2 mu pred) + sum_j log s``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    s = np.exp(log_s)
    X = mu[:, None, :] + s[:, None, :] * eps
    n_f = counts.sum(axis=-1)
    like = (np.einsum("bj,bsj->bs", counts, X) - n_f[:, None] * _lse(X)).mean(axis=1)
    prior = -0.5 * (v_mean * (mu**2 + s**2 - 2.0 * mu * pred)).sum(axis=-1)
    return like + prior + log_s.sum(axis=-1)


def local_gradients(mu, log_s, counts, pred, v_mean, eps) -> tuple[np.ndarray, np.ndarray]:
    """Exact gradients of :func:`local_objective` in ``mu`` and ``log s`` (App. B, REFERENCE-003 §3)."""
    counts = np.asarray(counts, dtype=np.float64)
    s = np.exp(log_s)
    X = mu[:, None, :] + s[:, None, :] * eps
    n_f = counts.sum(axis=-1)
    g = counts[:, None, :] - n_f[:, None, None] * _softmax(X)
    g_mu = g.mean(axis=1) - v_mean * (mu - pred)
    g_ls = s * (g * eps).mean(axis=1) - v_mean * s * s + 1.0
    return g_mu, g_ls


def _check_block(X0, counts, M):
    X0 = np.asarray(X0, dtype=np.float64)
    counts = np.asarray(counts)
    if X0.ndim != 2:
        raise ValueError(f"X0 must have shape (experiments, n_c), got {X0.shape}")
    if counts.shape != X0.shape:
        raise ValueError(f"counts must have the shape of X0 {X0.shape}, got {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        if not np.all(np.asarray(counts) == np.round(counts)):
            raise ValueError("counts must be integers")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    if not np.isfinite(X0).all():
        raise ValueError("X0 must be finite")
    return X0, counts.astype(np.float64)


def block_stats(X0, counts, local: LocalState, M: int, rng: np.random.Generator, elbo_samples: int) -> LocalStats:
    """The :class:`LocalStats` of a block at its current ``q(X_i)`` (one-step data).

    ``E_q log p_cf`` is estimated with ``elbo_samples`` fresh draws from ``rng``, less
    the first- and second-order Taylor terms of ``m^T X - n_f lse X`` about ``mu``
    (control variates of known mean: unbiased, and ~30x less noisy at the fitted q).
    """
    X0, counts = _check_block(X0, counts, M)
    Phi = design(X0, M)  # (B, n_c, L)
    mu, log_s = local.mu, local.log_s
    s2 = np.exp(2.0 * log_s)
    B, n_c = mu.shape
    eps = rng.standard_normal((B, elbo_samples, n_c))
    d = np.exp(log_s)[:, None, :] * eps  # X - mu
    X = mu[:, None, :] + d
    n_f = counts.sum(axis=-1)
    f = np.einsum("bj,bsj->bs", counts, X) - n_f[:, None] * _lse(X)
    # Control variates with known means (the second-order Taylor terms of f at mu): the
    # estimate stays unbiased and its noise drops from ~±3 to ~±0.1 (N = 64), so ELBO
    # windows can tell a plateau from a rise and restarts can be ranked.
    rho = _softmax(mu)
    g = counts - n_f[:, None] * rho  # gradient of f at mu
    lin = np.einsum("bj,bsj->bs", g, d)
    quad = (rho[:, None, :] * d * d).sum(axis=-1) - np.einsum("bj,bsj->bs", rho, d) ** 2  # d^T (diag rho - rho rho^T) d
    quad_mean = (rho * (1.0 - rho) * s2).sum(axis=-1)  # its expectation
    like = (f - lin + 0.5 * n_f[:, None] * (quad - quad_mean[:, None])).mean(axis=1)
    e_log_pcf = float(np.sum(like + _log_multinomial_coef(counts)))
    PhiT = np.ascontiguousarray(Phi.transpose(1, 2, 0))  # (n_c, L, B)
    phiphi = np.matmul(PhiT, PhiT.transpose(0, 2, 1))  # (n_c, L, L)
    phix = np.einsum("bjl,bj->jl", Phi, mu)
    xx = (mu * mu + s2).sum(axis=0)
    return LocalStats(B, phiphi, phix, xx, e_log_pcf, float(log_s.sum()))


def update_block(
    X0,
    counts,
    local: LocalState,
    moments: GlobalMoments,
    M: int,
    rng: np.random.Generator,
    n_steps: int,
    settings: VISettings,
) -> tuple[LocalState, LocalStats]:
    """SVI update of ``q(X_i)`` for a block of experiments given the globals (App. B); pure.

    ``n_steps`` Adam ascent steps on ``(mu_i, log s_i)`` with ``settings.mc_samples``
    fresh reparametrised draws each, then the block's statistics at the new state.

    Parameters
    ----------
    X0, counts : (B, n_c)
        Known initial states and the counts one coarse step later.
    local : LocalState
        The block's current variational and Adam state (not modified).
    moments : GlobalMoments
        ``<v_j>``, ``mu_theta``, ``S_theta`` (the last is unused for one-step data).
    M : int
        Neighbour range of the features.
    rng : np.random.Generator
        The block's stream for this iteration.
    n_steps : int
    settings : VISettings

    Returns
    -------
    (LocalState, LocalStats)
    """
    M = _check_M(M)
    X0, countsf = _check_block(X0, counts, M)
    if local.mu.shape != X0.shape:
        raise ValueError(f"local state has shape {local.mu.shape}, data {X0.shape}")
    pred = design(X0, M) @ moments.mu_theta  # (B, n_c)
    v = np.asarray(moments.v_mean, dtype=np.float64)
    mu = local.mu.copy()
    log_s = local.log_s.copy()
    m1 = local.adam_m.copy()
    m2 = local.adam_v.copy()
    t = local.adam_t.copy()
    b1, b2, lr, ae = settings.beta1, settings.beta2, settings.lr, settings.adam_eps
    B, n_c = mu.shape
    for _ in range(int(n_steps)):
        eps = rng.standard_normal((B, settings.mc_samples, n_c))
        g_mu, g_ls = local_gradients(mu, log_s, countsf, pred, v, eps)
        g = np.stack([g_mu, g_ls], axis=1)  # (B, 2, n_c)
        t += 1
        m1 = b1 * m1 + (1.0 - b1) * g
        m2 = b2 * m2 + (1.0 - b2) * g * g
        c1 = (1.0 - b1 ** t.astype(np.float64))[:, None, None]
        c2 = (1.0 - b2 ** t.astype(np.float64))[:, None, None]
        step = lr * (m1 / c1) / (np.sqrt(m2 / c2) + ae)  # ascent
        mu = mu + step[:, 0]
        log_s = log_s + step[:, 1]
    new = LocalState(mu, log_s, m1, m2, t)
    if not (np.isfinite(mu).all() and np.isfinite(log_s).all()):
        raise FloatingPointError("SVI produced a non-finite q(X_i); lower VISettings.lr")
    return new, block_stats(X0, countsf, new, M, rng, settings.elbo_samples)


def init_local(counts, settings: VISettings, rng: np.random.Generator | None = None, jitter: bool = False) -> LocalState:
    """Initial ``q(X_i)``: ``mu = centred log(m + 1/2)`` (training gauge), ``s = init_s``, zero Adam state.

    With ``jitter``, ``mu`` gets ``restart_jitter / sqrt(m + 1/2)`` standard normals
    (re-centred), drawn from ``rng``.
    """
    counts = np.asarray(counts)
    mu = centred_log_counts(counts)
    if jitter:
        if rng is None:
            raise ValueError("init_local with jitter needs an rng")
        mu = mu + settings.restart_jitter * rng.standard_normal(mu.shape) / np.sqrt(counts + 0.5)
        mu = mu - mu.mean(axis=-1, keepdims=True)
    B, n_c = mu.shape
    return LocalState(
        mu, np.full((B, n_c), math.log(settings.init_s)), np.zeros((B, 2, n_c)), np.zeros((B, 2, n_c)),
        np.zeros(B, dtype=np.int64),
    )


def init_block(X0, counts, M: int, settings: VISettings, rng: np.random.Generator, jitter: bool) -> tuple[LocalState, LocalStats]:
    """Initial local state of a block and its statistics (pure; one task per block)."""
    local = init_local(counts, settings, rng, jitter)
    return local, block_stats(X0, counts, local, M, rng, settings.elbo_samples)


# ----------------------------------------------------------------------------- global (closed forms)


def _residual(stats: LocalStats, mu_theta, S_theta) -> np.ndarray:
    """``R_j = sum_i E[(X_ij - theta^T phi_ij)^2]`` under q (REFERENCE-003 §3 general case)."""
    A = stats.phiphi
    quad = np.einsum("l,jlk,k->j", mu_theta, A, mu_theta) + np.einsum("lk,jlk->j", S_theta, A)
    return stats.xx - 2.0 * stats.phix @ mu_theta + quad


def update_q_theta(stats: LocalStats, tau_mean, v_bins) -> tuple[np.ndarray, np.ndarray, float]:
    """Eq. 2.33: ``S_theta^-1 = sum_j <v_j> A_j + diag<tau>``, ``mu_theta = S_theta sum_j <v_j> b_j``.

    Returns ``(mu_theta, S_theta, log|S_theta|)``.
    """
    P = np.einsum("j,jlk->lk", v_bins, stats.phiphi)
    P[np.diag_indices_from(P)] += tau_mean
    P = 0.5 * (P + P.T)
    try:
        cf = linalg.cho_factor(P, lower=True, check_finite=True)
    except linalg.LinAlgError as exc:
        raise FloatingPointError(f"precision of q(theta) is not positive definite: {exc}") from None
    rhs = v_bins @ stats.phix
    mu = linalg.cho_solve(cf, rhs)
    S = linalg.cho_solve(cf, np.eye(P.shape[0]))
    S = 0.5 * (S + S.T)
    logdet = -2.0 * float(np.log(np.diag(cf[0])).sum())
    return mu, S, logdet


def update_q_tau(mu_theta, S_theta, priors: Priors) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 2.34: ``alpha_l = alpha0 + 1/2``, ``beta_l = beta0 + (mu_l^2 + S_ll)/2``."""
    alpha = np.full(mu_theta.shape, priors.alpha0 + 0.5)
    beta = priors.beta0 + 0.5 * (mu_theta**2 + np.diag(S_theta))
    return alpha, beta


def update_q_v(stats: LocalStats, mu_theta, S_theta, priors: Priors, per_bin: bool) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 2.35: ``gamma = gamma0 + N n_c/2``, ``zeta = zeta0 + sum_j R_j/2`` (per bin: no sum, N/2)."""
    R = _residual(stats, mu_theta, S_theta)
    if per_bin:
        return np.full(R.shape, priors.gamma0 + 0.5 * stats.n), priors.zeta0 + 0.5 * R
    return np.array([priors.gamma0 + 0.5 * stats.n * R.size]), np.array([priors.zeta0 + 0.5 * R.sum()])


def update_globals(stats: LocalStats, q: GlobalQ, settings: VISettings) -> GlobalQ:
    """One global sweep theta -> tau -> v (coordinate ascent; the ELBO does not decrease)."""
    n_c = stats.xx.shape[0]
    mu, S, _ = update_q_theta(stats, q.tau_mean, q.v_bins(n_c))
    alpha, beta = update_q_tau(mu, S, settings.priors)
    gamma, zeta = update_q_v(stats, mu, S, settings.priors, settings.per_bin_v)
    return GlobalQ(mu, S, alpha, beta, gamma, zeta)


def _gamma_entropy(a, b):
    return a - np.log(b) + gammaln(a) + (1.0 - a) * digamma(a)


def _gamma_log_prior(a, b, a0, b0):
    """``E_{Gamma(a,b)}[log Gamma(x; a0, b0)]``."""
    e_log = digamma(a) - np.log(b)
    return a0 * math.log(b0) - gammaln(a0) + (a0 - 1.0) * e_log - b0 * a / b


def elbo(stats: LocalStats, q: GlobalQ, priors: Priors) -> float:
    """The ELBO ``F`` (eq. 2.27) for any ``q``, all constants kept; eq. 2.38 + const after the closed forms.

    The ``E_q log p_cf`` term is the MC estimate in ``stats``; everything else is exact.
    """
    N = stats.n
    n_c = stats.xx.shape[0]
    L = q.mu_theta.shape[0]
    # E log p(X | theta, v)
    R = _residual(stats, q.mu_theta, q.S_theta)
    e_log_v = digamma(q.gamma) - np.log(q.zeta)
    e_log_v_bins = np.broadcast_to(e_log_v, (n_c,))
    v_bins = q.v_bins(n_c)
    f = stats.e_log_pcf
    f += float(np.sum(0.5 * N * e_log_v_bins - 0.5 * N * _LOG2PI - 0.5 * v_bins * R))
    # E log p(theta | tau)
    e_log_tau = digamma(q.alpha) - np.log(q.beta)
    f += float(np.sum(0.5 * e_log_tau - 0.5 * _LOG2PI - 0.5 * q.tau_mean * (q.mu_theta**2 + np.diag(q.S_theta))))
    # E log p(tau) + E log p(v)
    f += float(np.sum(_gamma_log_prior(q.alpha, q.beta, priors.alpha0, priors.beta0)))
    f += float(np.sum(_gamma_log_prior(q.gamma, q.zeta, priors.gamma0, priors.zeta0)))
    # entropies
    f += 0.5 * N * n_c * (1.0 + _LOG2PI) + stats.sum_log_s
    sign, logdet = np.linalg.slogdet(q.S_theta)
    if sign <= 0:
        raise FloatingPointError("S_theta is not positive definite")
    f += 0.5 * logdet + 0.5 * L * (1.0 + _LOG2PI)
    f += float(np.sum(_gamma_entropy(q.alpha, q.beta))) + float(np.sum(_gamma_entropy(q.gamma, q.zeta)))
    return float(f)


# ----------------------------------------------------------------------------- driver


def block_slices(n_experiments: int, block_size: int) -> list[slice]:
    """Contiguous blocks of ``block_size`` experiments (the last may be shorter)."""
    return [slice(a, min(a + block_size, n_experiments)) for a in range(0, n_experiments, block_size)]


def _check_data(X0, counts, n_walkers, M):
    M = _check_M(M)
    X0 = np.asarray(X0, dtype=np.float64)
    counts = np.asarray(counts)
    if X0.ndim != 2 or X0.shape[0] < 1 or X0.shape[1] < 3:
        raise ValueError(f"X0 must have shape (experiments, n_c) with n_c >= 3, got {X0.shape}")
    if counts.shape != X0.shape:
        raise ValueError(f"counts must have the shape of X0 {X0.shape}, got {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be integers, got dtype {counts.dtype}")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    if isinstance(n_walkers, bool) or not isinstance(n_walkers, (int, np.integer)) or n_walkers < 1:
        raise ValueError(f"n_walkers must be a positive integer, got {n_walkers!r}")
    sums = counts.sum(axis=1)
    if (sums != n_walkers).any():
        i = int(np.flatnonzero(sums != n_walkers)[0])
        raise ValueError(f"counts of experiment {i} sum to {sums[i]}, not n_walkers = {n_walkers}")
    if not np.isfinite(X0).all():
        raise ValueError("X0 must be finite")
    if 2 * M + 1 > X0.shape[1]:
        raise ValueError(f"neighbour range M = {M} needs at least 2M+1 = {2 * M + 1} bins, got n_c = {X0.shape[1]}")
    return X0, counts.astype(np.int64), M


def start_state(X0, counts, M: int, settings: VISettings, rng_factory, restart: int = 0, map_blocks=map) -> VIState:
    """Iteration-0 state of a restart: MAP-like ``q(X_i)`` (jittered for ``restart >= 1``),
    ``<tau> = init_tau * restart_tau_factor**restart``, ``<v> = init_v``, and the
    statistics of that ``q(X)``.

    Block ``b`` of restart ``r`` draws from ``rng_factory(0, r * n_blocks + b)``.
    """
    N, n_c = X0.shape
    L = n_features(M)
    slices = block_slices(N, settings.block_size)
    nb = len(slices)

    def task(b):
        sl = slices[b]
        return init_block(X0[sl], counts[sl], M, settings, rng_factory(0, restart * nb + b), restart > 0)

    results = list(map_blocks(task, range(nb)))
    local = LocalState.concat([r[0] for r in results])
    stats = LocalStats.total(r[1] for r in results)
    n_v = n_c if settings.per_bin_v else 1
    tau0 = settings.init_tau * settings.restart_tau_factor**restart
    q = GlobalQ(
        np.zeros(L), np.eye(L), np.ones(L), np.full(L, 1.0 / tau0),
        np.ones(n_v), np.full(n_v, 1.0 / settings.init_v),
    )
    return VIState(restart, 0, False, local, q, stats, np.zeros(0), np.zeros((0, L)), np.zeros(0))


def _drift(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line through the columns of ``y (w, ...)``: drift over the window (slope x w) and its s.e."""
    w = y.shape[0]
    t = np.arange(w, dtype=np.float64) - 0.5 * (w - 1)
    stt = float(t @ t)
    slope = np.tensordot(t, y, axes=(0, 0)) / stt
    resid = y - y.mean(axis=0) - np.multiply.outer(t, slope)
    dof = max(w - 2, 1)
    se = np.sqrt((resid * resid).sum(axis=0) / dof / stt)
    return slope * w, se * w


def plateau(trace_elbo, trace_mu_theta, theta_sd, n_experiments: int, settings: VISettings) -> bool:
    """The stopping rule: the fit has stopped improving over the last ``settings.window`` iterations.

    For the ELBO and for every ``mu_theta_l`` a least-squares line through the last
    ``window`` values gives the drift over the window and its standard error (from the
    scatter about the line: the SVI and Monte Carlo noise). The rule holds when, for
    the ELBO, ``drift <= elbo_tol * N + stop_z * se`` (a fall is no reason to go on),
    and for every feature, ``|drift_l| <= max(theta_tol, theta_rel_tol * sd_l) + stop_z * se_l``
    with ``sd_l`` the posterior s.d. of ``theta_l``. A trend larger than the tolerance
    and clear of the noise keeps the fit going; noise about a constant does not.
    """
    w = settings.window
    e = np.asarray(trace_elbo, dtype=np.float64)
    th = np.asarray(trace_mu_theta, dtype=np.float64)
    if e.size < w or th.shape[0] < w:
        return False
    de, se_e = _drift(e[-w:])
    if not float(de) <= settings.elbo_tol * n_experiments + settings.stop_z * float(se_e):
        return False
    dth, se_th = _drift(th[-w:])
    tol = np.maximum(settings.theta_tol, settings.theta_rel_tol * np.asarray(theta_sd, dtype=np.float64))
    return bool(np.all(np.abs(dth) <= tol + settings.stop_z * se_th))


def stopping_rule_text(settings: VISettings) -> str:
    """The stopping rule in words, with its settings (stored in the infer stage's attributes)."""
    return (f"least-squares drift over the last {settings.window} iterations within tolerance + {settings.stop_z:g} s.e. "
            f"(s.e. from the scatter about the line): ELBO rise <= {settings.elbo_tol:g} x N, every |mu_theta_l| drift "
            f"<= max({settings.theta_tol:g}, {settings.theta_rel_tol:g} x posterior s.d. of theta_l); "
            f"at most {settings.max_iter} iterations")


def _stop(state: VIState, settings: VISettings) -> bool:
    return plateau(state.trace_elbo, state.trace_mu_theta, np.sqrt(np.diag(state.q.S_theta)), state.stats.n, settings)


def run_iteration(state: VIState, X0, counts, M: int, settings: VISettings, rng_factory, map_blocks=map) -> VIState:
    """One outer iteration (REFERENCE-003 §3 order): theta -> tau -> v -> ELBO -> q(X_i).

    Block ``b`` of restart ``r`` at iteration ``k`` (1-based) draws from
    ``rng_factory(k, r * n_blocks + b)``; the blocks' statistics are added in block
    order whatever order ``map_blocks`` computes them in.
    """
    N, n_c = X0.shape
    q = update_globals(state.stats, state.q, settings)
    F = elbo(state.stats, q, settings.priors)
    it = state.iteration + 1
    slices = block_slices(N, settings.block_size)
    nb = len(slices)
    moments = q.moments(n_c)
    local = state.local

    def task(b):
        sl = slices[b]
        rng = rng_factory(it, state.restart * nb + b)
        return update_block(X0[sl], counts[sl], local.take(sl), moments, M, rng, settings.adam_steps, settings)

    results = list(map_blocks(task, range(nb)))
    new_local = LocalState.concat([r[0] for r in results])
    stats = LocalStats.total(r[1] for r in results)
    new = VIState(
        state.restart, it, False, new_local, q, stats,
        np.append(state.trace_elbo, F),
        np.vstack([state.trace_mu_theta, q.mu_theta[None, :]]),
        np.append(state.trace_v_inv, float(np.mean(1.0 / q.v_mean))),
    )
    new.converged = _stop(new, settings)
    return new


@dataclass
class FitResult:
    """Result of :func:`fit_vi`: the restart with the highest final ELBO and all restarts' states."""

    best: VIState
    states: list[VIState]
    M: int

    @property
    def best_restart(self) -> int:
        return self.best.restart

    @property
    def mu_theta(self) -> np.ndarray:
        return self.best.q.mu_theta

    @property
    def S_theta(self) -> np.ndarray:
        return self.best.q.S_theta

    @property
    def v_mean(self) -> np.ndarray:
        return self.best.q.v_mean

    @property
    def names(self) -> tuple[str, ...]:
        return feature_names(self.M)


def fit_vi(
    X0,
    counts,
    n_walkers: int,
    features: int,
    settings: VISettings | None = None,
    rng_factory: Callable[[int, int], np.random.Generator] | None = None,
    restarts: int = 1,
    callback: Callable[[VIState], object] | None = None,
    *,
    states: Sequence[VIState | None] | None = None,
    map_blocks=map,
) -> FitResult:
    """Serial driver of the VI loop (Algorithm 1, order of REFERENCE-003 §3), with restarts.

    Parameters
    ----------
    X0 : (N, n_c) float
        Known initial coarse states (training gauge).
    counts : (N, n_c) int
        Walker counts one coarse step later; rows sum to ``n_walkers``.
    n_walkers : int
    features : int
        Neighbour range ``M`` of the features (``L = (2M+1) + (2M+1)**2``).
    settings : VISettings
    rng_factory : callable ``(iteration, block) -> np.random.Generator``
        Key scheme: iteration 0 is the initialisation, ``k >= 1`` the k-th outer
        iteration; ``block = r * n_blocks + b`` for block ``b`` of restart ``r``.
    restarts : int
        Independent runs (restart 0 from the MAP-like state, others jittered, with
        other initial ``<tau>``); the one with the highest final ELBO (mean of the last
        ``select_window`` values) is ``best``.
    callback : callable ``(state) -> bool | None``
        Called after every iteration (e.g. to checkpoint ``state.to_arrays()``); a
        true return value stops that restart.
    states : list of VIState or None, optional
        Saved states to resume (one per restart; None starts that restart afresh).
        Resuming gives bitwise the result of the uninterrupted fit.
    map_blocks : callable like builtin ``map``
        How block tasks are run (``ThreadPoolExecutor.map`` etc.); results must come back
        in block order.

    Returns
    -------
    FitResult
    """
    settings = VISettings() if settings is None else settings
    if not isinstance(settings, VISettings):
        raise ValueError(f"settings must be a VISettings, got {type(settings).__name__}")
    if rng_factory is None or not callable(rng_factory):
        raise ValueError("rng_factory must be a callable (iteration, block) -> np.random.Generator")
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    X0, counts, M = _check_data(X0, counts, n_walkers, features)
    if states is not None and len(states) != restarts:
        raise ValueError(f"states must have one entry per restart ({restarts}), got {len(states)}")
    out = []
    for r in range(restarts):
        st = None if states is None else states[r]
        if st is None:
            st = start_state(X0, counts, M, settings, rng_factory, r, map_blocks)
        else:
            if st.restart != r:
                raise ValueError(f"states[{r}] belongs to restart {st.restart}")
            if st.local.mu.shape != X0.shape:
                raise ValueError(f"states[{r}] has q(X) of shape {st.local.mu.shape}, data {X0.shape}")
            if st.q.mu_theta.shape != (n_features(M),) or st.q.gamma.size != (X0.shape[1] if settings.per_bin_v else 1):
                raise ValueError(f"states[{r}] does not match features M = {M} / per_bin_v = {settings.per_bin_v}")
            st = st.copy()
        while st.iteration < settings.max_iter and not st.converged:
            st = run_iteration(st, X0, counts, M, settings, rng_factory, map_blocks)
            if callback is not None and callback(st):
                break
        out.append(st)
    finals = [s.trace_elbo[-settings.select_window:].mean() if s.trace_elbo.size else -np.inf for s in out]
    best = out[int(np.argmax(finals))]
    return FitResult(best, out, M)
