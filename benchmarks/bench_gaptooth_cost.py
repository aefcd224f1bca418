"""Gap-tooth scheme against the full-resolution lattice (seed 001, §5.2): cost and accuracy.

The detailed problem is the lattice of seed eq. (25)–(26) on [0, 2 pi)**2 with
n x n sites (paper: n = 480, h = 2 pi/480). Measured here, on one core:

* full resolution: the whole lattice integrated with explicit Euler at 0.9 of
  its stability limit (Gershgorin bound of the sparse operator) up to ``--t``;
  micro site x step updates and seconds, extrapolated to t = 1 (linear in steps);
* gap-tooth: 16 x 16 patches of 5 x 5 points (the paper's), integrated over
  [0, t] by scipy BDF with the sparse Jacobian and by the scheme's exact
  propagator; site x function-evaluation updates and seconds;
* accuracy: both from the same eq. (28) initial condition sampled on the sites;
  the full lattice's 3 x 3 averages around the patch centres (one period of the
  medium, so the micro-scale corrector averages out) against the gap-tooth
  patch averages at time t, relative to the field's norm; and the exact
  homogenized solution averaged the same way as a yardstick.

Run: ``python benchmarks/bench_gaptooth_cost.py [--t 0.05] [--n 480]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cgflow.methods.eqfree.gap_tooth import GapTooth2D
from cgflow.micro import lattice2d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=480, help="lattice sites per side (multiple of 48)")
    parser.add_argument("--t", type=float, default=0.05, help="horizon of the full-lattice run")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n, t_end = args.n, args.t
    h = 2 * np.pi / n
    modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(args.seed), 10)
    A = lattice2d.homogenized_tensor("paper")

    # ---------------------------------------------------------------- full lattice, explicit Euler
    kx, ky = lattice2d.coefficient_fields(n, n, "paper")
    L = lattice2d.lattice_operator(kx, ky, h)
    bound = float(np.abs(L).sum(axis=1).max())  # Gershgorin: |lambda| <= max row sum
    dt = 0.9 * 2.0 / bound
    steps = int(np.ceil(t_end / dt))
    dt = t_end / steps
    x = np.arange(n) * h
    u = modes(x[:, None], x[None, :]).ravel()  # u[i, j] at (x_i, y_j), C order as the operator
    start = time.process_time()
    for _ in range(steps):
        u = u + dt * (L @ u)
    full_s = time.process_time() - start
    full_work = n * n * steps
    per_unit_time = 1.0 / t_end

    # ---------------------------------------------------------------- gap-tooth (the paper's patches)
    scheme = GapTooth2D(patches=16, h=h, patch_points=5)
    times = np.array([0.0, t_end])
    start = time.process_time()
    bdf = scheme.integrate(modes, times, method="BDF")
    bdf_s = time.process_time() - start
    start = time.process_time()
    exact = scheme.integrate(modes, times, method="exact")
    exact_s = time.process_time() - start

    # ---------------------------------------------------------------- accuracy at t_end
    stride = n // 16
    centre = stride * np.arange(16) + stride // 2  # the site at each patch centre
    window = (centre[:, None] + np.arange(-1, 2)[None, :]).ravel()
    U_full = u.reshape(n, n)[np.ix_(window, window)].reshape(16, 3, 16, 3).mean(axis=(1, 3))
    pts = x[window]
    U_hom = lattice2d.homogenized_solution_2d(modes, A, pts, pts, np.array([t_end]))[0].reshape(16, 3, 16, 3).mean(axis=(1, 3))
    norm = np.linalg.norm(U_full)

    print(f"lattice {n} x {n} (h = 2 pi/{n}), paper convention; eq. (28) initial condition, seed {args.seed}; horizon t = {t_end:g}")
    print(f"full lattice, explicit Euler: dt = {dt:.3g} (0.9 x stability), {steps} steps, "
          f"{full_work:.3g} site-steps in {full_s:.2f} CPU s -> t = 1: {full_work * per_unit_time:.3g} site-steps, "
          f"{full_s * per_unit_time:.3g} CPU s")
    print(f"gap-tooth BDF: nfev {bdf.nfev}, nlu {bdf.nlu}, {bdf.work:.3g} site-evaluations in {bdf_s:.2f} CPU s")
    print(f"gap-tooth exact propagator: {exact_s:.3f} CPU s")
    print(f"space fraction of the patches: {scheme.size / n**2:.4f} ({scheme.size} of {n * n} sites)")
    print(f"cost ratio full / gap-tooth BDF over [0, {t_end:g}]: {full_work / bdf.work:.3g} (updates), {full_s / bdf_s:.3g} (CPU s)")
    for label, U in (("gap-tooth BDF", bdf.U[-1]), ("gap-tooth exact", exact.U[-1]), ("homogenized (exact)", U_hom)):
        print(f"|{label} - full lattice| / |full lattice| at t = {t_end:g}: {np.linalg.norm(U - U_full) / norm:.3e}")


if __name__ == "__main__":
    main()
