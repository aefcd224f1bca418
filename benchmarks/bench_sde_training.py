"""Training cost and full-size accuracy of the K-scaled SDE learner (cgflow.learn.sde, seed 002).

Prints, with one XLA CPU thread (cgflow.learn._jax.configure_single_thread):

1. Seconds per training epoch for 200,000 pairs (the seed's CW/IS pair count),
   batch 1024, the seed's networks (drift 64-64-64, sigma MLP of the same shape),
   n_dim 1 and 4, each sigma parametrisation; the first epoch (which includes
   XLA compilation) separately.
2. The seed's central claim at full network size on synthetic Curie-Weiss pairs
   (REFERENCE-002 §9: exact drift, K = 16 times the N = 4096 diffusion): lambda = K
   recovers the large system's sigma^2, lambda = 1 gives ~K times it.
3. Euler-Maruyama rollout cost per step (n_dim 4, 160 paths, the PT evaluation batch).
4. The two epoch drivers of ``_jax.train_minibatch`` (one ``lax.scan`` per epoch vs a
   Python loop of jitted steps), measured in the same run, for the SDE (n_dim 4)
   and for the closure autoencoder at the seed's Ising size (L = 64, L_s = 16).

Run:  .venv/bin/python benchmarks/bench_sde_training.py [--pairs 200000] [--epochs 4] [--cw-epochs 30]
"""

from __future__ import annotations

import argparse
import time

from cgflow.learn._jax import configure_single_thread

configure_single_thread()  # before the first JAX computation

import numpy as np  # noqa: E402

from cgflow.learn import _jax  # noqa: E402
from cgflow.learn import closure, sde  # noqa: E402
from cgflow.learn.sde import SDEModel  # noqa: E402

BETA, H, N, K = 1 / 1.1, 0.1, 4096, 16


def cw_drift(m):
    return -m + np.tanh(BETA * (m + H))


def cw_sigma2(m):
    return (2.0 / N) * (1.0 - m * np.tanh(BETA * (m + H)))


def synthetic(n, n_dim, seed):
    rng = np.random.default_rng(seed)
    z0 = rng.uniform(-1, 1, (n, n_dim))
    dt = rng.uniform(0.1, 0.3, n)
    z1 = z0 - z0 * dt[:, None] + 0.05 * np.sqrt(dt)[:, None] * rng.standard_normal((n, n_dim))
    return z0, z1, dt


def time_epochs(n_pairs, n_dim, sigma, epochs):
    z0, z1, dt = synthetic(n_pairs, n_dim, 0)
    t0 = time.perf_counter()
    SDEModel(sigma=sigma, loss_scaling=K, epochs=1, random_state=1).fit(z0, z1, dt)
    first = time.perf_counter() - t0  # includes compilation (cached afterwards for these shapes)
    t0 = time.perf_counter()
    m = SDEModel(sigma=sigma, loss_scaling=K, epochs=epochs, random_state=1).fit(z0, z1, dt)
    per = (time.perf_counter() - t0) / epochs
    return first, per, m.n_steps_ // epochs


def cw_claim(n_pairs, epochs, sigma, epsilon):
    rng = np.random.default_rng(20251112)
    z0 = rng.uniform(-0.8, 0.8, n_pairs)
    dt = rng.uniform(0.1, 0.3, n_pairs)
    z1 = z0 + cw_drift(z0) * dt + np.sqrt(K * cw_sigma2(z0) * dt) * rng.standard_normal(n_pairs)
    grid = np.linspace(-0.75, 0.75, 31)
    out = {}
    for lam in (K, 1.0):
        t0 = time.perf_counter()
        m = SDEModel(sigma=sigma, loss_scaling=lam, epsilon=epsilon, learning_rate=1e-2, epochs=epochs,
                     random_state=(7, 1, 0, 0)).fit(z0[:, None], z1[:, None], dt)
        secs = time.perf_counter() - t0
        drift_err = np.abs(m.drift(grid[:, None])[:, 0] - cw_drift(grid)).max() / np.abs(cw_drift(grid)).max()
        ratio = m.diffusion(grid[:, None])[:, 0, 0] / cw_sigma2(grid)
        out[lam] = (secs, drift_err, ratio.min(), ratio.max(), m.lr_curve_[-1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=4, help="timed epochs per configuration")
    ap.add_argument("--cw-epochs", type=int, default=30)
    ap.add_argument("--cw-pairs", type=int, default=200_000)
    args = ap.parse_args()

    print(f"1. training cost, {args.pairs} pairs, batch 1024, drift 64-64-64, float64, 1 XLA thread")
    print(f"{'n_dim':>5} {'sigma':>18} {'steps/epoch':>11} {'1st epoch s':>11} {'s/epoch':>8} {'ms/step':>8}")
    for n_dim, sigma in [(1, "constant_diagonal"), (1, "cholesky"), (4, "constant_diagonal"), (4, "cholesky"),
                         (4, "arbitrary")]:
        first, per, steps = time_epochs(args.pairs, n_dim, sigma, args.epochs)
        print(f"{n_dim:>5} {sigma:>18} {steps:>11} {first:>11.2f} {per:>8.2f} {1e3 * per / steps:>8.2f}")

    print(f"\n2. Curie-Weiss synthetic pairs ({args.cw_pairs}, K = {K}, N = {N}), full-size nets, "
          f"{args.cw_epochs} epochs, lr 1e-2")
    print("   sigma^2 ratio = learned / exact large-system (2/N)(1 - m tanh(beta(m+h))) on m in [-0.75, 0.75]")
    for sigma, eps in [("cholesky", 1e-6), ("constant_diagonal", 1e-6)]:
        res = cw_claim(args.cw_pairs, args.cw_epochs, sigma, eps)
        for lam, (secs, derr, rmin, rmax, lr) in res.items():
            print(f"   sigma={sigma:<17} lambda={lam:>4g}: drift max err / max|a| = {derr:.4f}, "
                  f"sigma^2 ratio in [{rmin:.3f}, {rmax:.3f}], final lr {lr:.2e}, {secs:.1f} s")

    print("\n3. rollout, n_dim 4, cholesky, 160 paths")
    m = SDEModel(sigma="cholesky", epochs=0).fit(*synthetic(64, 4, 1))
    z0 = np.zeros((160, 4))
    m.rollout(z0, 0.01, 2000, key=0, save_every=100)  # compile (same static shape as below)
    t0 = time.perf_counter()
    m.rollout(z0, 0.01, 2000, key=1, save_every=100)
    per = (time.perf_counter() - t0) / 2000
    print(f"   {1e6 * per:.1f} us per step -> {32000 * per:.1f} s for the PT evaluation's 32,000 steps")

    print("\n4. epoch drivers (same run)")
    driver_ratio(args.pairs, 2, 32)


def driver_ratio(n_pairs, epochs, closure_lattices):
    import jax

    z0, z1, dt = synthetic(n_pairs, 4, 0)
    m = SDEModel(sigma="cholesky", epochs=0, random_state=1).fit(z0[:8], z1[:8], dt[:8])
    times = {}
    with _jax.x64():
        p0 = m._jax_params()
        for scan in (True, False, True, False):  # interleaved: the machine is shared
            kw = dict(loss_args=(16.0, 1e-4), key=jax.random.key(0), batch_size=1024, learning_rate=1e-3, scan=scan)
            _jax.train_minibatch(sde._batch_loss("cholesky", 4), p0, (z0, z1, dt), epochs=1, **kw)  # compile
            t0 = time.perf_counter()
            _jax.train_minibatch(sde._batch_loss("cholesky", 4), p0, (z0, z1, dt), epochs=epochs, **kw)
            times.setdefault(scan, []).append((time.perf_counter() - t0) / epochs)
    print(f"   SDE n_dim 4 cholesky, {n_pairs} pairs: s/epoch scan {min(times[True]):.2f}, "
          f"python loop {min(times[False]):.2f} (ratio scan/loop {min(times[True]) / min(times[False]):.2f})")

    rng = np.random.default_rng(0)
    x = np.where(rng.random((closure_lattices, 64, 64)) < 0.7, 1, -1).astype(np.float32)
    ae = closure.ClosureAutoencoder(16, 2, epochs=0).fit(x[:1].astype(np.int8))
    p0 = ae._jax_params()
    obs = closure.ising_observables(x, 16).astype(np.float32)
    times = {}
    for scan in (False, True):
        kw = dict(key=jax.random.key(0), batch_size=16, learning_rate=2e-4, amsgrad=False, plateau=None, scan=scan)
        _jax.train_minibatch(closure._batch_loss(16), p0, (x, obs), epochs=1, **kw)  # compile
        t0 = time.perf_counter()
        _jax.train_minibatch(closure._batch_loss(16), p0, (x, obs), epochs=1, **kw)
        times[scan] = (time.perf_counter() - t0) / closure_lattices
    print(f"   closure AE L=64, L_s=16, channels 32/64/128, batch 16: ms per lattice per epoch: "
          f"python loop {1e3 * times[False]:.1f}, scan {1e3 * times[True]:.1f} "
          f"(ratio {times[True] / times[False]:.1f}); 200,000 lattices -> "
          f"{times[False] * 2e5 / 3600:.1f} h per epoch on one thread")


if __name__ == "__main__":
    main()
