"""Buffer-size accuracy and cost of 1-D patch dynamics (cgflow.methods.eqfree.patch_dynamics).

    python benchmarks/bench_patch_buffer.py [--buffers 4e-3 5e-3 6e-3 8e-3 1e-2 --repeats 5]

Accuracy. On the quadratic macro profile U = x**2 (D2 = 2 exactly; D1/D2 = x_i) the patch
estimate F of seed eq. (11) is compared with a* D2 for each buffer width H, with the
paper's other parameters (eps = 1e-5, dx = 1e-7, h = 1e-4, dt = 1e-6, a = 1.1 + sin 2 pi y,
a* = sqrt(0.21)). Reported: the relative error F/(a* D2) - 1 at x = 0.5 (D1/D2 = 1/2, the
case that reproduces REFERENCE §2), its range over the 9 nodes, REFERENCE's number, and
three controls at x = 0.5: the direct form (lifted values evolved as the authors did,
showing the rounding floor), a single backward-Euler step per burst, and a homogeneous
medium a = a* (no corrector: the pure buffer/Dirichlet effect).

Cost. Wall time of one burst (all 9 patches, 80,001 points each, default TR-BDF2 with 10
substeps) at H = 8e-3 on one core (median over repeats, after a warm-up that builds the
bond coefficients and factorisations), the projected core-minutes for the paper's 8
trajectories (1000 forward-Euler steps + 1 final estimate each over t in [0, 1]), and the
space-time cost ratio against a full-resolution run on the same micro grid and step.

Self-check (``patch_dynamics.buffer: auto``, issue 11 item 4). For the paper's medium and a
4x stiffer one (a = 4.4 + 4 sin 2 pi y, a* = 1.83), at the paper's scale and at the quick
workflow's (eps = 1e-4, dx = 1e-6, 4 substeps): the width :func:`select_buffer` chooses, its
estimated error (change of the estimate to the next rung), the true bias against a wide
buffer (H = 0.06) and against a* D2, the rungs walked and the wall time of the walk; and the
estimate :func:`check_buffer` gives the paper's explicit H = 8e-3 in each medium.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import warnings
from dataclasses import replace

from cgflow.methods.eqfree.patch_dynamics import PatchDynamics, check_buffer, relative_derivative_error, select_buffer
from cgflow.micro import heterodiffusion as hd

#: REFERENCE §2 "Buffer size matters" (an independent computation; no entry for 5e-3).
REFERENCE = {4e-3: -0.16, 6e-3: -0.007, 8e-3: -3.5e-4, 1e-2: -1.4e-4}


def errors(H: float, a_star: float, **kw) -> np.ndarray:
    pd = PatchDynamics(buffer=H, **kw)
    return relative_derivative_error(pd, pd.x**2, a_star)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buffers", type=float, nargs="+", default=[4e-3, 5e-3, 6e-3, 8e-3, 1e-2])
    ap.add_argument("--repeats", type=int, default=5, help="timed bursts at H = 8e-3")
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--macro-steps", type=int, default=1000)
    ap.add_argument("--no-controls", action="store_true", help="skip the three control columns")
    ap.add_argument("--no-auto", action="store_true", help="skip the buffer self-check section")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args(argv)

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    coef = hd.Coefficient()
    a_star = hd.effective_coefficient(coef)
    base = PatchDynamics()
    print(f"patch dynamics, a = 1.1 + sin(2 pi x/eps), a* = {a_star:.10f}; eps = {base.eps:g}, dx = {base.micro_dx:g}, "
          f"h = {base.tooth:g}, dt = {base.burst:g}, {base.substeps} x {base.micro_scheme} per burst")
    print("relative error F/(a* D2) - 1 on U = x**2 (x = 0.5: D1/D2 = 1/2)")
    head = f"{'H':>7} {'x=0.5':>10} {'min..max over nodes':>22} {'REFERENCE':>10}"
    if not args.no_controls:
        head += f" | {'direct':>10} {'1 BE step':>10} {'a = a*':>10}"
    print(head)
    for H in args.buffers:
        err = errors(H, a_star)
        ref = REFERENCE.get(round(H, 10))
        ref_s = "-" if ref is None else format(ref, "+.1e")
        line = f"{H:>7.0e} {err[4]:>+10.2e} {err.min():>+10.2e}..{err.max():<+10.2e} {ref_s:>10}"
        if not args.no_controls:
            direct = errors(H, a_star, deviation_form=False)[4]
            be1 = errors(H, a_star, micro_scheme="backward_euler", substeps=1)[4]
            homog = errors(H, a_star, coefficient=hd.Coefficient(table=(a_star,)))[4]
            line += f" | {direct:>+10.2e} {be1:>+10.2e} {homog:>+10.2e}"
        print(line)

    pd = PatchDynamics()
    U = np.sin(np.pi * pd.x) + pd.x
    start = time.perf_counter()
    pd.time_derivative(U)
    setup = time.perf_counter() - start
    times = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        pd.time_derivative(U)
        times.append(time.perf_counter() - start)
    burst = statistics.median(times)
    n_est = args.macro_steps + 1
    minutes = args.trajectories * n_est * burst / 60.0
    t_end = args.macro_steps * 1e-3
    print()
    print(f"one burst, H = 8e-3 ({pd.n_patches} patches x {pd.n_micro} points, {pd.substeps} steps): "
          f"{burst * 1e3:.0f} ms median (min {min(times) * 1e3:.0f}, first call incl. set-up {setup * 1e3:.0f} ms)")
    print(f"projected: {args.trajectories} trajectories x {n_est} bursts = {minutes:.1f} core-minutes")
    print(f"space fraction {pd.space_fraction:.3f}, time fraction {pd.time_fraction():.0e}; "
          f"work per trajectory {pd.patch_work(t_end):.3e} vs full resolution {pd.full_resolution_work(t_end):.3e} "
          f"grid-point updates: ratio {pd.cost_ratio(t_end):.3g}")

    if not args.no_auto:
        self_check()


def self_check(tolerance: float = 1e-3, wide: float = 0.06) -> None:
    """buffer: auto and the explicit-width estimate for the paper medium and four others (a* 4x, 2x, 0.5x the
    paper's, and a low-contrast one), at the paper's and the quick workflow's scale."""
    print()
    print(f"buffer self-check (tolerance {tolerance:g}; 'bias' = max over nodes |F(H)/F(H = {wide:g}) - 1|, "
          f"'vs a*' = max |F/(a* D2) - 1|, on U = x**2)")
    print(f"{'scale':>6} {'medium':>14} {'auto H':>9} {'est.':>8} {'bias':>8} {'vs a*':>8} {'rungs':>5} {'walk':>7}"
          f" | {'H = 8e-3 est.':>13} {'bias':>8}")
    media = {"paper": hd.Coefficient(), "4.4+4 sin": hd.Coefficient(mean=4.4, amplitude=4.0),
             "2.2+2 sin": hd.Coefficient(mean=2.2, amplitude=2.0), "1.1+0.5 sin": hd.Coefficient(mean=1.1, amplitude=0.5),
             "0.55+0.5 sin": hd.Coefficient(mean=0.55, amplitude=0.5)}
    scales = {"paper": {}, "quick": dict(eps=1e-4, micro_dx=1e-6, substeps=4)}
    for scale, kw in scales.items():
        for name, coef in media.items():
            pd = PatchDynamics(coefficient=coef, **kw)
            pd.time_derivative(pd.x**2)  # compile / load the kernel outside the timing
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                auto = select_buffer(pd, tolerance)
                fixed = check_buffer(replace(pd, buffer=8e-3), tolerance, warn=False)
            walk = time.perf_counter() - start
            F_wide = replace(pd, buffer=wide).time_derivative(pd.x**2)[0][1:-1]
            a = hd.effective_coefficient(coef)
            F = replace(pd, buffer=auto.buffer).time_derivative(pd.x**2)[0][1:-1]
            F8 = replace(pd, buffer=8e-3).time_derivative(pd.x**2)[0][1:-1]
            print(f"{scale:>6} {name:>14} {auto.buffer:>9.4g} {auto.error:>8.1e} {np.abs(F / F_wide - 1).max():>8.1e} "
                  f"{np.abs(F / (2 * a) - 1).max():>8.1e} {len(auto.ladder):>5} {walk:>6.2f}s"
                  f" | {fixed.error:>13.1e} {np.abs(F8 / F_wide - 1).max():>8.1e}")


if __name__ == "__main__":
    main()
