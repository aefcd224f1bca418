"""Gap-tooth scheme against the full-resolution lattice (seed 001, §5.2): cost and accuracy.

The detailed problem is the lattice of seed eq. (25)–(26) on [0, 2 pi)**2 with
n x n sites (paper: n = 480, h = 2 pi/480). Measured here, on one core, in one run:

* full resolution: the whole lattice integrated with explicit Euler at 0.9 of
  its stability limit (Gershgorin bound of the sparse operator) up to ``--t``;
  and, for an integrator-for-integrator comparison, with the same adaptive RKC2
  scheme as the gap-tooth ``"rkc"`` (numpy/scipy, one sparse product a stage);
* gap-tooth: 16 x 16 patches of 5 x 5 points (the paper's), over [0, t], by
  ``GapTooth2D.integrate`` with method ``"BDF"`` (scipy, sparse Jacobian),
  ``"euler"`` (explicit, 0.9 x the Gershgorin stability limit), ``"rkc"``
  (adaptive Runge–Kutta–Chebyshev, default rtol 1e-6 and a looser rtol 1e-4)
  and ``"exact"`` (the scheme's exact propagator, linear problems only);
  micro site x right-hand-side evaluations and CPU seconds;
* accuracy at t: the full lattice's 3 x 3 averages around the patch centres (one
  period of the medium, so the micro-scale corrector averages out), the gap-tooth
  patch averages, and the exact homogenized solution averaged over the same
  points; errors in the 2-norm relative to the homogenized field, against the
  homogenized solution and against the full lattice (Euler, which carries its
  O(dt) time error, and rkc, time error ~1e-6).

CPU ratios are taken between runs of the same process (``time.process_time``);
the numba kernels are compiled (or loaded from cache) before timing.

Run: ``python benchmarks/bench_gaptooth_cost.py [--t 0.05] [--n 480]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cgflow.methods.eqfree import gap_tooth as gt
from cgflow.methods.eqfree.gap_tooth import GapTooth2D
from cgflow.micro import lattice2d


def rkc_full(L, u, t_end, rho, rtol=1e-6, atol=1e-9):
    """Adaptive RKC2 on du/dt = L u, the algorithm of ``gap_tooth._rkc_run`` in numpy; returns (u, nfev)."""
    f0 = L @ u
    nfev = 1
    size = u.size
    fn, yn = np.sqrt(np.mean(f0**2)), np.sqrt(np.mean(u**2))
    dt = min(t_end, 1.0 / rho, 0.1 * (atol + rtol * yn) / fn if fn > 0 else np.inf)
    t = 0.0
    s_max = gt.RKC_MAX_STAGES
    mu, nu, mut, gam = (np.zeros(s_max + 1) for _ in range(4))
    s_cur = 0
    while t < t_end:
        last = t + dt * (1 + 1e-12) >= t_end
        h = t_end - t if last else dt
        s = gt._rkc_stages(h, rho, gt.RKC_SAFETY, gt.RKC_DAMPING, s_max)
        if s != s_cur:
            gt._rkc_coefficients(s, gt.RKC_DAMPING, mu, nu, mut, gam)
            s_cur = s
        y2, y1 = u, u + mut[1] * h * f0
        for j in range(2, s + 1):
            y2, y1 = y1, (1 - mu[j] - nu[j]) * u + mu[j] * y1 + nu[j] * y2 + (mut[j] * h) * (L @ y1) + (gam[j] * h) * f0
        f1 = L @ y1
        nfev += s
        est = (12.0 * (u - y1) + 6.0 * h * (f0 + f1)) / 15.0
        err = np.sqrt(np.sum((est / (atol + rtol * np.maximum(np.abs(u), np.abs(y1)))) ** 2) / size)
        fac = 10.0 if err == 0 else min(10.0, max(0.1, 0.8 * err ** (-1 / 3)))
        if err <= 1:
            u, f0 = y1, f1
            t = t_end if last else t + h
            dt = max(dt, h * fac) if last else h * fac
        else:
            dt = h * fac
    return u, nfev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=480, help="lattice sites per side (multiple of 48)")
    parser.add_argument("--t", type=float, default=0.05, help="horizon of the runs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n, t_end = args.n, args.t
    h = 2 * np.pi / n
    modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(args.seed), 10)
    A = lattice2d.homogenized_tensor("paper")
    scheme = GapTooth2D(patches=16, h=h, patch_points=5)
    times = np.array([0.0, t_end])
    for method in ("euler", "rkc"):  # compile or load the numba kernels outside the timings
        scheme.integrate(modes, [0.0, 1e-5], method=method)

    # ---------------------------------------------------------------- full lattice
    kx, ky = lattice2d.coefficient_fields(n, n, "paper")
    L = lattice2d.lattice_operator(kx, ky, h)
    bound = float(np.abs(L).sum(axis=1).max())  # Gershgorin: |lambda| <= max row sum
    dt = 0.9 * 2.0 / bound
    steps = int(np.ceil(t_end / dt))
    dt = t_end / steps
    x = np.arange(n) * h
    u0 = modes(x[:, None], x[None, :]).ravel()  # u[i, j] at (x_i, y_j), C order as the operator
    u = u0
    start = time.process_time()
    for _ in range(steps):
        u = u + dt * (L @ u)
    full_s = time.process_time() - start
    full_work = n * n * steps
    start = time.process_time()
    u_rkc, full_rkc_nfev = rkc_full(L, u0, t_end, bound)
    full_rkc_s = time.process_time() - start

    # ---------------------------------------------------------------- gap-tooth (the paper's patches)
    runs = {}
    for label, kw in (
        ("BDF", dict(method="BDF")),
        ("euler", dict(method="euler")),
        ("rkc", dict(method="rkc")),
        ("rkc rtol 1e-4", dict(method="rkc", rtol=1e-4, atol=1e-7)),
        ("exact", dict(method="exact")),
    ):
        start = time.process_time()
        sol = scheme.integrate(modes, times, **kw)
        runs[label] = (sol, time.process_time() - start)

    # ---------------------------------------------------------------- accuracy at t_end
    stride = n // 16
    centre = stride * np.arange(16) + stride // 2  # the site at each patch centre
    window = (centre[:, None] + np.arange(-1, 2)[None, :]).ravel()

    def averaged(v):
        return v.reshape(n, n)[np.ix_(window, window)].reshape(16, 3, 16, 3).mean(axis=(1, 3))

    pts = x[window]
    U_hom = lattice2d.homogenized_solution_2d(modes, A, pts, pts, np.array([t_end]))[0].reshape(16, 3, 16, 3).mean(axis=(1, 3))
    U_full, U_full_rkc = averaged(u), averaged(u_rkc)
    norm = np.linalg.norm(U_hom)

    def err(a, b):
        return np.linalg.norm(a - b) / norm

    print(f"lattice {n} x {n} (h = 2 pi/{n}), paper convention; eq. (28) initial condition, seed {args.seed}; horizon t = {t_end:g}")
    print(f"gap-tooth: {scheme.patches}^2 patches of {scheme.patch_points}^2 points, {scheme.size} unknowns "
          f"({scheme.size / n**2:.4f} of the {n * n} sites); stability bound rho = {scheme.stability_bound():.4g} "
          f"(exact spectral radius {-scheme._blocks[0].min():.4g}); full lattice rho = {bound:.4g}")
    print()
    header = (f"{'run':<28}{'CPU s':>9}{'full Euler/run':>16}{'site-evals':>12}{'nfev':>8}{'err vs hom.':>13}"
              f"{'vs full Euler':>15}{'vs full rkc':>13}")
    print(header)
    print("-" * len(header))
    rows = [
        ("full lattice, Euler", full_s, full_work, steps, U_full),
        ("full lattice, rkc", full_rkc_s, full_rkc_nfev * n * n, full_rkc_nfev, U_full_rkc),
    ]
    for label, (sol, cpu) in runs.items():
        rows.append((f"gap-tooth {label}", cpu, sol.work, sol.nfev, sol.U[-1]))
    for label, cpu, work, nfev, U in rows:
        ratio = full_s / cpu if cpu > 0 else np.inf
        print(f"{label:<28}{cpu:9.3f}{ratio:16.1f}{work:12.3g}{nfev:8d}{err(U, U_hom):13.3e}"
              f"{err(U, U_full):15.3e}{err(U, U_full_rkc):13.3e}")
    sol_rkc, cpu_rkc = runs["rkc"]
    print()
    print(f"CPU ratio full lattice (Euler) / gap-tooth rkc: {full_s / cpu_rkc:.1f}; "
          f"full lattice (rkc) / gap-tooth rkc (same integrator): {full_rkc_s / cpu_rkc:.1f}; "
          f"gap-tooth BDF / rkc: {runs['BDF'][1] / cpu_rkc:.1f}")
    print(f"gap-tooth rkc: {sol_rkc.steps} steps ({sol_rkc.rejected} rejected), up to {sol_rkc.stages} stages; "
          f"|rkc - exact| / |hom.| = {err(sol_rkc.U[-1], runs['exact'][0].U[-1]):.2e}")


if __name__ == "__main__":
    main()
