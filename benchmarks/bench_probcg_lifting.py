"""How well can a Markov coarse law trained on one-step data predict 50 steps of the advection-diffusion walkers?

Seed 003 §3.2; REFERENCE-003 §6. Noise-free, exact expectations (no walkers are sampled):
``S`` prior states X0 (random Fourier prior, K modes, amplitude A, spectrum exponent p) are
lifted to a fine density in two ways (``fine.lifting``):

* ``uniform`` — walkers uniform inside their coarse bin (REFERENCE-003 §1);
* ``smooth`` — walkers from the continuous field exp X0(y) on sub-cells of width <= delta_y/4.

The exact mean evolves by the trinomial displacement law on the sub-cells
(:func:`cgflow.micro.walkers.ad_bin_kernel` at sub-cell resolution). Printed, per lifting:

1. the best one-step linear 24-bin law (the exact one-step kernel K for ``uniform``, the
   least-squares kernel over the states for ``smooth``) iterated 50 times: the fraction of
   states whose max |error| per bin stays <= 0.005 over steps 1..50 (the done-means
   tolerance), the median, 90 % and largest max error. ``uniform`` misses because after the
   first step the walkers are no longer uniform in their bins (K^(n) is not K^n);
2. with ``--store PATH [--store PATH ...]``: the same for the posterior-mean law of a
   ``probcg`` advection-diffusion run (noise-free, re-centred every step: the training
   gauge), on the lifting recorded in its fine stage, and (with ``infer.bootstrap``) the mean
   density of its bootstrap fits' laws (the bagged predictive's mean without noise);
3. with ``--ls N [N ...]``: how much of the miss is the information in the training data.
   A ridge (lambda = 1) least-squares fit of all L = 182 features (M = 6) to N smooth-lifted
   one-step experiments, (a) on exact targets (centred log of the exactly propagated bin
   masses) and (b) on the targets the walkers give, centred log(m + 1/2) of
   m ~ Mult(n_f, those masses) (exact in distribution: smooth-lifted walkers are i.i.d.
   and move independently); two training sets each (seeds 0, 1); the free law is iterated.

Run:  .venv/bin/python benchmarks/bench_probcg_lifting.py [--states 200] [--modes 6] [--decay 0.5] [--store S.zarr] [--ls 64 256 1024]
"""

from __future__ import annotations

import argparse

import numpy as np

from cgflow.methods.probcg.features import apply_law
from cgflow.methods.probcg.fine import prior_coefficients, prior_field
from cgflow.micro import walkers as wk

TOL = 0.005  # done-means tolerance on |predicted mean - fine-grained mean| per 24-bin density


def lifted(lift: str, n: int, modes: int, amplitude: float, decay: float, seed: int, params, nc: int = 24):
    """Fine densities (n, nc * s) of n prior states lifted ``lift``-wise, and s."""
    s = wk.smooth_subcells(nc, params.step)
    a, b, k = prior_coefficients(n, modes, amplitude, decay, np.random.default_rng(seed))
    if lift == "smooth":
        z = prior_field(a, b, k, wk.bin_centres(nc * s))
        r = np.exp(z - z.max(axis=-1, keepdims=True))
    else:
        z = prior_field(a, b, k, wk.bin_centres(nc))
        r = np.repeat(np.exp(z - z.max(axis=-1, keepdims=True)), s, axis=-1)
    return r / r.sum(axis=-1, keepdims=True), s


def exact_path(r, steps: int, params, nc: int = 24):
    """Exact 24-bin masses after 1..steps coarse steps, shape (steps, n, nc)."""
    G = r.shape[-1]
    rr = np.fft.rfft(r, axis=-1)
    out = []
    for n in range(1, steps + 1):
        fine = np.fft.irfft(rr * np.fft.rfft(wk.ad_bin_kernel(G, n, params)), n=G, axis=-1)
        out.append(fine.reshape(r.shape[0], nc, -1).sum(-1))
    return np.stack(out)


def summary(label: str, err: np.ndarray) -> None:
    mx = err.max(axis=0)
    print(f"{label:58s} met {np.mean(mx <= TOL):.2f}   max error median {np.median(mx):.4f}  90% {np.quantile(mx, 0.9):.4f}  max {mx.max():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, default=200)
    ap.add_argument("--modes", type=int, default=6)
    ap.add_argument("--amplitude", type=float, default=0.4)
    ap.add_argument("--decay", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--store", action="append", default=[])
    ap.add_argument("--ls", type=int, nargs="*", default=[])
    args = ap.parse_args()
    params = wk.WalkerParams(walkers=2400)
    nc = 24
    paths = {}
    for lift in ("uniform", "smooth"):
        r, s = lifted(lift, args.states, args.modes, args.amplitude, args.decay, args.seed, params)
        R0 = r.reshape(args.states, nc, s).sum(-1)
        truth = exact_path(r, args.steps, params)
        paths[lift] = (R0, truth)
        if lift == "uniform":
            K = wk.ad_bin_kernel(nc, 1, params)
        else:
            m = np.arange(-3, 4)
            idx = (np.arange(nc)[:, None] - m[None]) % nc
            k7, *_ = np.linalg.lstsq(R0[:, idx].reshape(-1, m.size), truth[0].reshape(-1), rcond=None)
            K = np.zeros(nc)
            K[m % nc] = k7
        q, err = R0.copy(), []
        for n in range(args.steps):
            q = np.fft.irfft(np.fft.rfft(q, axis=-1) * np.fft.rfft(K), n=nc, axis=-1)
            err.append(np.abs(q - truth[n]).max(axis=-1))
        summary(f"{lift} lifting: best one-step linear bin law iterated", np.array(err))
    for path in args.store:
        import xarray as xr

        tree = xr.open_datatree(path, engine="zarr")
        theta = tree["infer"]["theta_mean"].values
        M = int(tree["infer"].attrs["neighbours"])
        lift = tree["fine"].attrs.get("lifting", "uniform")
        R0, truth = paths[lift]

        def iterate(th):
            X = np.log(R0)
            X -= X.mean(axis=-1, keepdims=True)
            out = []
            for n in range(args.steps):
                with np.errstate(all="ignore"):
                    X = np.clip(np.nan_to_num(apply_law(th, X, M), nan=50.0, posinf=50.0, neginf=-50.0), -50.0, 50.0)
                X -= X.mean(axis=-1, keepdims=True)
                out.append(wk.softmax(X))
            return np.array(out)

        summary(f"{path} ({lift}, M = {M}): posterior-mean law", np.abs(iterate(theta) - truth).max(axis=-1))
        if "bootstrap_theta_mean" in tree["infer"]:
            boot = tree["infer"]["bootstrap_theta_mean"].values
            bag = np.mean([iterate(th) for th in boot], axis=0)
            summary(f"{path}: mean of the {len(boot)} bootstrap laws", np.abs(bag - truth).max(axis=-1))
    if args.ls:
        least_squares_scaling(args, params, *paths["smooth"])


def least_squares_scaling(args, params, R0, truth, nc: int = 24, M: int = 6, walkers: int = 2400, lam: float = 1.0) -> None:
    from cgflow.methods.probcg.features import centred_log_counts, design

    s = wk.smooth_subcells(nc, params.step)
    y = wk.bin_centres(nc * s)
    for N in args.ls:
        for seed in (0, 1):
            rng = np.random.default_rng(seed)
            a, b, k = prior_coefficients(N, args.modes, args.amplitude, args.decay, rng)
            z = prior_field(a, b, k, y)
            r = np.exp(z - z.max(axis=-1, keepdims=True))
            r /= r.sum(axis=-1, keepdims=True)
            X0 = wk.smooth_bin_state(z, nc)
            one = exact_path(r, 1, params)[0]
            exact = np.log(one)
            exact -= exact.mean(axis=-1, keepdims=True)
            noisy = centred_log_counts(np.stack([rng.multinomial(walkers, p / p.sum()) for p in one]))
            D = design(X0, M).reshape(N * nc, -1)
            for label, Y in (("exact targets", exact), (f"Mult({walkers}) targets", noisy)):
                theta = np.linalg.solve(D.T @ D + lam * np.eye(D.shape[1]), D.T @ Y.reshape(-1))
                X = np.log(R0)
                X -= X.mean(axis=-1, keepdims=True)
                err = []
                for n in range(args.steps):
                    with np.errstate(all="ignore"):
                        X = np.clip(np.nan_to_num(apply_law(theta, X, M), nan=50.0, posinf=50.0, neginf=-50.0), -50.0, 50.0)
                    err.append(np.abs(wk.softmax(X) - truth[n]).max(axis=-1))
                summary(f"ridge LS, N = {N}, seed {seed}, {label}", np.array(err))


if __name__ == "__main__":
    main()
