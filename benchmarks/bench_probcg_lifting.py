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
   gauge), on the lifting recorded in its fine stage.

Run:  .venv/bin/python benchmarks/bench_probcg_lifting.py [--states 200] [--modes 6] [--decay 0.5] [--store S.zarr]
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
        X = np.log(R0)
        X -= X.mean(axis=-1, keepdims=True)
        err = []
        for n in range(args.steps):
            X = apply_law(theta, X, M)
            X -= X.mean(axis=-1, keepdims=True)
            err.append(np.abs(wk.softmax(X) - truth[n]).max(axis=-1))
        summary(f"{path} ({lift}, M = {M}): posterior-mean law", np.array(err))


if __name__ == "__main__":
    main()
