"""The fdr macro stage, old path against new path, on a store of the quick workflow (seed 000 Fig. 4).

Usage::

    cgflow run workflows/zrp-fdr-quick.yaml --store q.zarr     # once, ~4 min
    python benchmarks/bench_fdr_macro.py --store q.zarr [--spec workflows/zrp-fdr-quick.yaml]
        [--old-rev HEAD] [--no-old] [--repeats 1]

What is compared, in one run of this script, on the store's ``/fit`` group:

* **old**: :class:`cgflow.methods.fdr.macro.MacroSimulation` as it is in git
  revision ``--old-rev`` (default ``HEAD``; exported with ``git archive`` into a
  temporary directory and run in a subprocess with that package first on
  ``PYTHONPATH``): the exact reference by Newton inversion of the fugacity at
  every quadrature point, the explicit Jacobian bound from three stencil calls
  and a scipy.sparse matrix per step;
* **new**: the working tree's stage (fugacity table, one stacked stencil call per
  explicit step, dense Jacobian, and the reference's time-convergence check);
* **new, implicit**: the same stage with ``method='implicit'`` (BDF rtol 1e-8).

Printed: wall seconds of ``compute`` (best of ``--repeats``) and their ratio;
the maximum difference of ``rho_reference`` and of ``rho`` between old and new;
every variant's relative L2 error at t_end (old, new, implicit) and the largest
relative change of these figures; the reference's time-discretisation error
(``reference_time_error`` at t_end). Wall seconds on a shared machine are
noisy: compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

_OLD_DRIVER = r"""
import pickle, sys, time
import cgflow
from cgflow.spec import load_spec
from cgflow.methods import fdr
spec_path, store, out, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
assert cgflow.__file__.startswith(sys.argv[5]), cgflow.__file__  # the exported package, not the working tree
stage = [s for s in fdr.build_stages(load_spec(spec_path)) if s.name == "macro"][0]
tree = cgflow.open_run(store)
best = None
for _ in range(repeats):
    t0 = time.perf_counter()
    ds = stage.compute(tree)
    wall = time.perf_counter() - t0
    best = wall if best is None else min(best, wall)
pickle.dump({"wall": best, "ds": ds}, open(out, "wb"))
"""


def _macro_stage(spec_path: str):
    from cgflow.methods import fdr
    from cgflow.spec import load_spec

    return [s for s in fdr.build_stages(load_spec(spec_path)) if s.name == "macro"][0]


def _timed(stage, tree, repeats: int):
    best, ds = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = stage.compute(tree)
        wall = time.perf_counter() - t0
        best = wall if best is None else min(best, wall)
    return best, ds


def run_old(spec: str, store: str, rev: str, repeats: int) -> tuple[float, object]:
    """The stage of git revision ``rev`` in a subprocess; returns (wall seconds, Dataset)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "cgflow"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        out = os.path.join(tmp, "old.pkl")
        env = dict(os.environ, PYTHONPATH=tmp)
        subprocess.run(
            [sys.executable, "-c", _OLD_DRIVER, spec, store, out, str(repeats), os.path.join(tmp, "cgflow")],
            check=True,
            env=env,
        )
        with open(out, "rb") as fh:
            res = pickle.load(fh)
    return res["wall"], res["ds"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="store of the quick workflow (with a /fit group)")
    ap.add_argument("--spec", default=str(REPO / "workflows" / "zrp-fdr-quick.yaml"))
    ap.add_argument("--old-rev", default="HEAD", help="git revision of the old path")
    ap.add_argument("--no-old", action="store_true", help="skip the old path (about a minute)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)

    import cgflow

    spec = str(Path(args.spec).resolve())
    store = str(Path(args.store).resolve())
    tree = cgflow.open_run(store)
    stage = _macro_stage(spec)
    print(f"macro stage: N = {stage.elements}, t_end = {stage.t_end:g}, cases {stage.cases}, method {stage.method}")
    _timed(dataclasses.replace(stage, t_end=stage.t_end / 100), tree, 1)  # warm-up: numba, table, imports

    wall_new, new = _timed(stage, tree, args.repeats)
    wall_imp, imp = _timed(dataclasses.replace(stage, method="implicit"), tree, args.repeats)
    old = None
    if not args.no_old:
        wall_old, old = run_old(spec, store, args.old_rev, args.repeats)

    print("\nwall seconds of MacroSimulation.compute (best of %d)" % args.repeats)
    if old is not None:
        print(f"  old ({args.old_rev}, {stage.method}) {wall_old:8.2f}")
    faster = (lambda w: f"   {wall_old / w:5.1f}x faster") if old is not None else (lambda w: "")
    print(f"  new ({stage.method})           {wall_new:8.2f}" + faster(wall_new))
    print(f"  new (implicit)           {wall_imp:8.2f}" + faster(wall_imp))
    print(f"  reference runs (new): {np.round(new.wall_seconds_reference.values, 3)} s, steps "
          f"{new.steps_reference.values}; time checks {np.round(new.wall_seconds_time_check.values, 3)} s")  # fmt: skip

    print("\nreference_time_error at t_end (distance from BDF rtol 1e-10):")
    for c in new.case.values:
        print(f"  {c:22s} {stage.method}: {float(new.reference_time_error.sel(case=c)[-1]):.3e}   implicit: "
              f"{float(imp.reference_time_error.sel(case=c)[-1]):.3e}")  # fmt: skip

    if old is not None:
        print("\nold vs new (same method):")
        print(f"  max |rho_reference old - new| = {float(np.abs(old.rho_reference - new.rho_reference).max()):.3e}")
        print(f"  max |rho old - new|           = {float(np.abs(old.rho - new.rho).max()):.3e}")
        same = bool((old.steps == new.steps).all() and (old.steps_reference == new.steps_reference).all())
        print(f"  steps equal: {same}")

    e_new = new.rel_l2_error.isel(time=-1)
    e_imp = imp.rel_l2_error.isel(time=-1)
    e_old = old.rel_l2_error.isel(time=-1) if old is not None else None
    header = "   old           new           implicit" if old is not None else "   new           implicit"
    print("\nrel_l2_error at t_end" + header)
    for est in e_new.estimator.values:
        for mc in e_new.mass_conservation.values:
            for c in e_new.case.values:
                sel = dict(estimator=est, mass_conservation=mc, case=c)
                cols = [float(e_new.sel(sel)), float(e_imp.sel(sel))]
                if e_old is not None:
                    cols.insert(0, float(e_old.sel(sel)))
                label = f"{est} / mc={bool(mc)} / {c}"
                print(f"  {label:55s}" + "".join(f"{v:14.6e}" for v in cols))
    if e_old is not None:
        print(f"  largest relative change old -> new:      {float((np.abs(e_new - e_old) / e_old).max()):.2e}")
        print(f"  largest relative change old -> implicit: {float((np.abs(e_imp - e_old) / e_old).max()):.2e}")
    print(f"  largest relative change new -> implicit: {float((np.abs(e_imp - e_new) / e_new).max()):.2e}")


if __name__ == "__main__":
    main()
