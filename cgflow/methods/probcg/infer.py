"""The ``infer`` stage: mean-field variational inference as an iterative engine stage (seed 003, §2.4).

Each outer iteration of a restart ("chain") is one cluster task per block of
experiments — the SVI update of q(X_i) (App. B; :func:`.inference.update_block`)
given the current q(θ), q(v) — followed on the client by the closed forms for
q(θ), q(τ), q(v) and the ELBO from the blocks' statistics, added in block order
(:func:`.inference.update_globals`, :func:`.inference.elbo`). The engine
(:mod:`cgflow.engine.iterate`) checkpoints every iteration in the store, so an
interrupted or killed fit resumes and ends bitwise equal to an uninterrupted one.

Order per iteration k (REFERENCE-003 §3: θ → τ → v → ELBO → q(X)): the global
state committed after iteration k − 1 holds q_k = update(stats_{k−1}, q_{k−1})
and its ELBO F_k; the block tasks update q(X_i) with q_k; the client then forms
q_{k+1} and F_{k+1} from the new statistics. The stopping rule
(:func:`.inference.plateau`: the least-squares drift of the ELBO and of every μ_θ,l
over the last ``infer.window`` iterations within its tolerance plus
``infer.stop_z`` standard errors of the noise) ends a restart early; the restart
with the highest final ELBO is reported.

``infer.bootstrap`` B > 0 adds B chains after the restarts, each fitted (from restart
0's start) to a bootstrap resample of the experiments (N drawn with replacement from
their own stream). They do not take part in the choice of the reported fit; their
q(θ), q(v) are stored (``bootstrap_*``) for ``predict.theta: bootstrap``, a predictive
that mixes the B fits (the bagged posterior, "BayesBag": Bühlmann 2014; Huggins &
Miller 2023). Reason: the law is misspecified (a quadratic polynomial of log-density
for log Σ K_m e^X) and ARD picks correlated substitutes that change from one
training set to the next; q(θ) of one fit is then too narrow (on the paper's
advection-diffusion set the drift θ₋₁ − θ₊₁ varies over training sets by ~4× its
posterior s.d.), and the resampling puts that training-set variability into the intervals.

Training pairs come from the ``fine`` stage, or from a user's dataset
(``infer.data``, :mod:`.data`): consecutive steps of each experiment, minus
the last ``infer.holdout`` steps, with the start state in the training gauge.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache

import numpy as np
import xarray as xr

from ...engine import BlockKey, block_stream
from .data import load_count_data
from .features import centred_log_counts, feature_names, n_features, pair_sums
from .inference import GlobalQ, LocalState, LocalStats, VISettings, elbo, init_block, update_block, update_globals
from .inference import plateau, stopping_rule_text

__all__ = ["VariationalFit", "PRUNE_PRECISION"]

#: A coefficient whose ARD precision <τ_l> exceeds this (prior s.d. below 0.01) is reported as pruned.
PRUNE_PRECISION = 1.0e4

_Q = tuple(f.name for f in fields(GlobalQ))
_LOCAL = tuple(f.name for f in fields(LocalState))
_STATS = ("n", "phiphi", "phix", "xx", "e_log_pcf", "sum_log_s")


@lru_cache(maxsize=4)
def _external_pairs(path: str, holdout: int) -> tuple[np.ndarray, np.ndarray, int]:
    data = load_count_data(path, holdout=holdout)
    counts = data.counts[:, : data.counts.shape[1] - holdout]
    start = counts[:, :-1].reshape(-1, data.bins)
    end = counts[:, 1:].reshape(-1, data.bins)
    return centred_log_counts(start), end.astype(np.int64), data.walkers


def _pack_stats(stats: LocalStats) -> dict[str, np.ndarray]:
    return {f"stats_{k}": np.asarray(getattr(stats, k)) for k in _STATS}


def _unpack_stats(state: dict) -> LocalStats:
    a = {k: state[f"stats_{k}"] for k in _STATS}
    return LocalStats(int(a["n"]), a["phiphi"], a["phix"], a["xx"], float(a["e_log_pcf"]), float(a["sum_log_s"]))


@dataclass(frozen=True)
class VariationalFit:
    """The ``infer`` stage (implements :class:`cgflow.engine.IterativeStage`)."""

    seed: int
    neighbours: int
    bins: int
    settings: VISettings
    chains: int = 2  # restarts + bootstrap
    data: str | None = None  # external dataset; None: the fine stage
    holdout: int = 0
    upstream: str = ""  # fingerprint of the fine stage (empty with external data)
    bootstrap: int = 0  # the last ``bootstrap`` chains fit bootstrap resamples of the experiments
    name: str = field(default="infer", kw_only=True)

    @property
    def max_iterations(self) -> int:
        return self.settings.max_iter

    @classmethod
    def from_spec(cls, spec, fine=None) -> "VariationalFit":
        from ...engine import fingerprint

        i = spec["infer"]
        settings = VISettings(lr=i["learning_rate"], mc_samples=i["samples"], adam_steps=i["svi_steps"], max_iter=i["iterations"],
                              window=i["window"], theta_tol=i["tolerance"], theta_rel_tol=i["relative_tolerance"],
                              stop_z=i["stop_z"], block_size=i["block"])
        data = i.get("data")
        boot = int(i.get("bootstrap", 0))
        return cls(seed=spec.seed, neighbours=spec["coarse.neighbours"], bins=spec["coarse.bins"], settings=settings,
                   chains=i["restarts"] + boot, data=None if data is None else str(data), holdout=i["holdout"],
                   upstream="" if fine is None or data is not None else fingerprint(fine), bootstrap=boot)

    @property
    def restarts(self) -> int:
        return self.chains - self.bootstrap

    def resample(self, chain: int, n: int) -> np.ndarray | None:
        """Experiment indices of a bootstrap chain (sorted; drawn with replacement), None for a restart."""
        if chain < self.restarts:
            return None
        rng = block_stream(self.seed, BlockKey(f"{self.name}-bootstrap", chain - self.restarts, 0))
        return np.sort(rng.integers(0, n, size=n))

    def chain_pairs(self, tree: xr.DataTree, chain: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The training pairs a chain fits: all of them, or its bootstrap resample."""
        X0, counts, n_f = self.pairs(tree)
        idx = self.resample(chain, X0.shape[0])
        return (X0, counts, n_f) if idx is None else (X0[idx], counts[idx], n_f)

    # ------------------------------------------------------------------ data
    def pairs(self, tree: xr.DataTree) -> tuple[np.ndarray, np.ndarray, int]:
        """Training pairs ``(X0 (N, n_c), counts (N, n_c), n_f)``."""
        if self.data is not None:
            return _external_pairs(self.data, self.holdout)
        fine = tree["fine"]
        return np.asarray(fine["X0"].values[0]), np.asarray(fine["counts"].values[0], dtype=np.int64), int(fine.attrs["walkers"])

    def blocks(self, tree):
        n = self.pairs(tree)[0].shape[0]
        size = self.settings.block_size
        return [(a, min(a + size, n)) for a in range(0, n, size)]

    def _rng(self, iteration: int, chain: int, block: int) -> np.random.Generator:
        return block_stream(self.seed, BlockKey(self.name, iteration, chain * 100_000 + block))

    # ------------------------------------------------------------------ the loop
    def _next_global(self, stats: LocalStats, q: GlobalQ, trace: dict) -> dict:
        """q_{k+1} and F_{k+1} from the statistics of iteration k; the traces grow by one entry."""
        q_new = update_globals(stats, q, self.settings)
        F = elbo(stats, q_new, self.settings.priors)
        out = {k: np.asarray(getattr(q_new, k)) for k in _Q}
        out.update(_pack_stats(stats))
        out["trace_elbo"] = np.append(trace["trace_elbo"], F)
        out["trace_mu_theta"] = np.vstack([trace["trace_mu_theta"], q_new.mu_theta[None, :]])
        out["trace_v_inv"] = np.append(trace["trace_v_inv"], float(np.mean(1.0 / q_new.v_mean)))
        return out

    def initial_state(self, tree, chain):
        X0, counts, _ = self.chain_pairs(tree, chain)
        restart = chain if chain < self.restarts else 0  # bootstrap chains start like restart 0
        parts = []
        for b, (a, z) in enumerate(self.blocks(tree)):
            parts.append(init_block(X0[a:z], counts[a:z], self.neighbours, self.settings, self._rng(0, chain, b), restart > 0))
        local = LocalState.concat([p[0] for p in parts])
        stats = LocalStats.total(p[1] for p in parts)
        L, s = n_features(self.neighbours), self.settings
        n_v = self.bins if s.per_bin_v else 1
        tau0 = s.init_tau * s.restart_tau_factor**restart  # restarts also start from other ARD precisions (one optimum may trap jitter alone)
        q0 = GlobalQ(np.zeros(L), np.eye(L), np.ones(L), np.full(L, 1.0 / tau0), np.ones(n_v), np.full(n_v, 1.0 / s.init_v))
        empty = {"trace_elbo": np.zeros(0), "trace_mu_theta": np.zeros((0, L)), "trace_v_inv": np.zeros(0)}
        return self._next_global(stats, q0, empty), {k: getattr(local, k) for k in _LOCAL}

    def step(self, tree, chain, iteration, block, state, local):
        X0, counts, _ = self.chain_pairs(tree, chain)
        a, z = self.blocks(tree)[block]
        q = GlobalQ(*(state[k] for k in _Q))
        new, stats = update_block(X0[a:z], counts[a:z], LocalState(*(local[k] for k in _LOCAL)), q.moments(self.bins),
                                  self.neighbours, self._rng(iteration, chain, block), self.settings.adam_steps, self.settings)
        return {k: getattr(new, k) for k in _LOCAL}, stats

    def update(self, tree, chain, iteration, state, stats):
        total = LocalStats.total(stats)  # block order
        new = self._next_global(total, GlobalQ(*(state[k] for k in _Q)), state)
        return new, self._converged(new)

    def _converged(self, state: dict) -> bool:
        return plateau(state["trace_elbo"], state["trace_mu_theta"], np.sqrt(np.diag(state["S_theta"])),
                       int(state["stats_n"]), self.settings)

    # ------------------------------------------------------------------ result
    def finalize(self, tree, states, locals_, iterations):
        window = self.settings.select_window  # single ELBO values carry Monte Carlo noise of a few units
        boot_states, boot_iterations = states[self.restarts:], iterations[self.restarts:]
        states, iterations = states[: self.restarts], iterations[: self.restarts]
        final = np.array([s["trace_elbo"][-window:].mean() for s in states])
        best = int(np.argmax(final))
        s = states[best]
        q = GlobalQ(*(s[k] for k in _Q))
        names = feature_names(self.neighbours)
        sd = np.sqrt(np.diag(q.S_theta))
        tau = q.tau_mean
        pair_names, pairs = pair_sums(q.mu_theta, self.neighbours)
        # s.d. of the pair sums from the full covariance: c^T S c for each (a,b)+(b,a) combination
        C = np.array([pair_sums(e, self.neighbours)[1] for e in np.eye(len(names))]).T  # (pairs, L)
        pair_sd = np.sqrt(np.einsum("pl,lk,pk->p", C, q.S_theta, C))
        T = max(len(x["trace_elbo"]) for x in states)

        def padded(key, shape=()):
            out = np.full((len(states), T) + shape, np.nan)
            for c, x in enumerate(states):
                out[c, : len(x[key])] = x[key]
            return out

        ds = xr.Dataset(
            coords={"feature": np.array(names, dtype=object), "feature_b": np.array(names, dtype=object),
                    "pair": np.array(pair_names, dtype=object), "restart": np.arange(len(states)),
                    "iteration": np.arange(1, T + 1), "bound": np.array(["low", "high"], dtype=object)},
        )
        ds["theta_mean"] = ("feature", q.mu_theta)
        ds["theta_sd"] = ("feature", sd)
        ds["theta_interval"] = (("feature", "bound"), np.stack([q.mu_theta - 1.959964 * sd, q.mu_theta + 1.959964 * sd], axis=1))
        ds["theta_cov"] = (("feature", "feature_b"), q.S_theta)
        ds["ard_precision"] = ("feature", tau)
        ds["pruned"] = ("feature", tau > PRUNE_PRECISION)
        ds["pair_sum_mean"] = ("pair", pairs)
        ds["pair_sum_sd"] = ("pair", pair_sd)
        ds["v_gamma"] = ("v_component", q.gamma)
        ds["v_zeta"] = ("v_component", q.zeta)
        ds["v_inv_mean"] = ((), float(np.mean(1.0 / q.v_mean)))
        ds["elbo"] = (("restart", "iteration"), padded("trace_elbo"))
        ds["mu_theta_trace"] = (("restart", "iteration", "feature"), padded("trace_mu_theta", (len(names),)))
        ds["v_inv_trace"] = (("restart", "iteration"), padded("trace_v_inv"))
        ds["iterations"] = ("restart", np.array(iterations))
        ds["converged"] = ("restart", np.array([self._converged(x) for x in states]))
        ds["converged"].attrs["description"] = (
            "the stopping rule held at the last iteration; False: the restart stopped at infer.iterations "
            "(raise it, or read the traces before trusting the coefficients)")
        ds["final_elbo"] = ("restart", final)
        ds["final_elbo"].attrs["description"] = f"mean ELBO of the last {window} iterations: the restart with the highest is reported"
        ds["best_restart"] = ((), best)
        if boot_states:
            ds.coords["replicate"] = np.arange(len(boot_states))
            ds["bootstrap_theta_mean"] = (("replicate", "feature"), np.stack([b["mu_theta"] for b in boot_states]))
            ds["bootstrap_theta_cov"] = (("replicate", "feature", "feature_b"), np.stack([b["S_theta"] for b in boot_states]))
            ds["bootstrap_v_gamma"] = (("replicate", "v_component"), np.stack([b["gamma"] for b in boot_states]))
            ds["bootstrap_v_zeta"] = (("replicate", "v_component"), np.stack([b["zeta"] for b in boot_states]))
            ds["bootstrap_iterations"] = ("replicate", np.array(boot_iterations))
            ds["bootstrap_converged"] = ("replicate", np.array([self._converged(b) for b in boot_states]))
            ds["bootstrap_theta_mean"].attrs["description"] = (
                "mu_theta of fits to bootstrap resamples of the experiments (infer.bootstrap; from restart 0's start): "
                "their spread is the training-set variability of the fit, which q(theta) of one fit does not carry")
        ds["q_mu"] = (("experiment", "bin"), locals_[best]["mu"])
        ds["q_s"] = (("experiment", "bin"), np.exp(locals_[best]["log_s"]))
        descriptions = {
            "theta_mean": "posterior mean of theta (q(theta) = N(mu_theta, S_theta)), seed eq. 2.33",
            "theta_sd": "posterior standard deviation sqrt(diag S_theta)",
            "theta_interval": "95% credible interval mu +- 1.96 sd",
            "ard_precision": "<tau_l> of the ARD prior (seed eq. 2.20)",
            "pruned": f"ARD switched the feature off: <tau_l> > {PRUNE_PRECISION:g} (prior s.d. < 0.01)",
            "pair_sum_mean": "identifiable coefficients: first order as is, ordered pairs (a,b)+(b,a) summed (ARD splits duplicates)",
            "v_inv_mean": "1/<v>: the coarse law's noise variance (mean over bins if per bin)",
            "elbo": "ELBO after each iteration's closed-form update (all restarts; NaN after a restart stopped)",
            "q_mu": "q(X_i) means of the training experiments (best restart)",
        }
        for k, d in descriptions.items():
            ds[k].attrs["description"] = d
        ds.attrs.update(neighbours=self.neighbours, bins=self.bins, restarts=len(states), best_restart=best, bootstrap=self.bootstrap,
                        stopping_rule=stopping_rule_text(self.settings),
                        svi=f"Adam lr {self.settings.lr:g}, {self.settings.mc_samples} samples, {self.settings.adam_steps} steps per iteration",
                        data=self.data or "fine stage")
        return ds
