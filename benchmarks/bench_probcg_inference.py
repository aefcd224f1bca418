"""Paper-size runs of the probabilistic CG inference (seed 003) and their cost.

Synthetic case of REFERENCE-003 §1a/§5: n_c = 24, n_f = 4800, theta* (m = -1, +1 -> 0.5,
(1,1) -> -0.23, (-1,-1) -> 0.21), X0 from the random Fourier prior with K = 12 modes,
A = 0.4, v^-1 = 0. Prints, per N in {64, 128, 256} (M = 2, L = 30) and for M = 6
(L = 182, the AD feature set; same synthetic data): wall time, iterations, whether
the stopping rule fired, max |error| of the active and inactive coefficients and of
the ordered-pair sums, final 1/<v>, rms error of q(X) means, and seconds per outer
iteration. Also the posterior-predictive cost (S = 2000 samples, 8 steps).

Run:  .venv/bin/python benchmarks/bench_probcg_inference.py [--quick] [--restarts R] [--seeds S]
(one BLAS thread unless OPENBLAS_NUM_THREADS etc. are set in the environment)
Times are wall-clock on a shared machine; compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import os
import time

# One BLAS thread, as on a Dask worker: with OpenBLAS threads on the shared 2-core
# machine the 182 x 182 Cholesky and the (L x B) @ (B x L) products ran ~10x slower.
# Pass --blas-threads to compare.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from cgflow.methods.probcg import features as F  # noqa: E402
from cgflow.methods.probcg import inference as I  # noqa: E402
from cgflow.methods.probcg import predict as P  # noqa: E402

THETA_STAR = {"X[j-1]": 0.5, "X[j+1]": 0.5, "X[j+1]*X[j+1]": -0.23, "X[j-1]*X[j-1]": 0.21}


def make_rng(*seed):
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(seed))))


def fourier_states(rng, N, n_c, K=12, A=0.4):
    y = -1.0 + (np.arange(n_c) + 0.5) * 2.0 / n_c
    k = np.arange(1, K + 1)
    a = rng.normal(size=(N, K)) * A / k
    b = rng.normal(size=(N, K)) * A / k
    return a @ np.cos(np.pi * k[:, None] * y) + b @ np.sin(np.pi * k[:, None] * y)


def softmax(X):
    z = np.exp(X - X.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def data(N, seed, n_c=24, n_f=4800, A=0.4):
    rng = make_rng(seed)
    theta2 = F.theta_from_mapping(THETA_STAR, 2)
    X0 = fourier_states(rng, N, n_c, A=A)
    X1 = F.apply_law(theta2, X0, 2)
    counts = np.stack([rng.multinomial(n_f, p) for p in softmax(X1)])
    return X0, counts, X1


def run(N, M, seed, settings, restarts):
    X0, counts, X1 = data(N, seed)
    theta = F.theta_from_mapping(THETA_STAR, M)
    t0 = time.perf_counter()
    res = I.fit_vi(X0, counts, 4800, M, settings, lambda it, b: make_rng(seed, 1000 + it, b), restarts=restarts)
    wall = time.perf_counter() - t0
    st = res.best
    err = res.mu_theta - theta
    _, s = F.pair_sums(res.mu_theta, M)
    _, s0 = F.pair_sums(theta, M)
    iters = sum(x.iteration for x in res.states)
    print(
        f"N={N:4d} M={M} L={theta.size:3d} restarts={restarts} wall={wall:7.2f}s iters={st.iteration:3d} "
        f"converged={st.converged!s:5} s/iter={wall / iters:.3f} | max|err| active={np.abs(err[theta != 0]).max():.4f} "
        f"inactive={np.abs(err[theta == 0]).max():.4f} pair-sums={np.abs(s - s0).max():.4f} "
        f"1/<v>={st.trace_v_inv[-1]:.2e} rms q(X)={np.sqrt(np.mean((st.local.mu - X1) ** 2)):.4f} "
        f"mean s={np.exp(st.local.log_s).mean():.4f} ELBO={st.trace_elbo[-1]:.1f}",
        flush=True,
    )
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=64 only, 40 iterations")
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=1, help="data seeds per N")
    args = ap.parse_args()
    settings = I.VISettings(max_iter=40 if args.quick else 150)
    Ns = (64,) if args.quick else (64, 128, 256)
    for N in Ns:
        for seed in range(args.seeds):
            run(N, 2, 100 + seed, settings, args.restarts)
    res6 = run(64, 6, 100, settings if not args.quick else I.VISettings(max_iter=10), 1)

    # posterior predictive cost, from a training point's q(X) (eq. 2.39)
    st = res6.best if args.quick else run(256, 2, 100, I.VISettings(max_iter=60), 1).best
    M = 6 if args.quick else 2
    rng = make_rng(7)
    X_start = P.sample_q_state(st.local.mu[0], st.local.log_s[0], 2000, rng)
    t0 = time.perf_counter()
    pred = P.posterior_predictive(X_start, 8, 4800, M, rng, mu_theta=st.q.mu_theta, S_theta=st.q.S_theta,
                                  v_shape=st.q.gamma, v_rate=st.q.zeta)
    wall = time.perf_counter() - t0
    print(f"predictive: S=2000, 8 steps, M={M}: {wall:.2f}s, blown fraction at step 8 = {pred.blown_fraction[-1]:.3f}, "
          f"mean 95% width of the 24-bin density = {np.mean(pred.density_hi - pred.density_lo):.4f}")


if __name__ == "__main__":
    main()
