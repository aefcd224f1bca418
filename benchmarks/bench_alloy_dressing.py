"""The offset of the alloy's window increments and the vacancy dressing that removes it (seed 002, issue 12).

    python benchmarks/bench_alloy_dressing.py [--temperature 2000 --pairs 4096 --dress 0,32,64,256]

The mixed-tiling upsampling (:func:`cgflow.micro.bcc_alloy_patches.upsample`) puts one
vacancy at each block centre after the seam relaxation; ``partial.dress_jumps`` then lets
it run inside its block for the time of about that many jumps in a random alloy
(:func:`~cgflow.micro.bcc_alloy_patches.dress_vacancies`; a fixed number of jumps left an
offset of its own, the jump chain's rate-weighted law). For each
dressing this runs one real ``pairs`` block of nbmota-quick's settings (pair duration
1 unit = 1e-9 s at 2000 K, Arrhenius-scaled at other T) and prints the mean window
increment of delta_NbMo and delta_MoMo at dt/4, dt/2 and dt with its standard error, and
the dt-halving ratio E[Delta(dt)] / (2 E[Delta(dt/2)]): an offset of the first jumps
shows as an increment at dt/4 that is more than a quarter of the one at dt (ratio < 1).
"""

from __future__ import annotations

import argparse

import numpy as np

from cgflow.methods.partial.stages import PairSweep
from cgflow.methods.partial.systems import AlloySystem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--temperature", type=float, default=2000.0)
    ap.add_argument("--pairs", type=int, default=4096)
    ap.add_argument("--dress", default="0,32,64,256")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    for dress in (int(x) for x in a.dress.split(",")):
        system = AlloySystem(2000.0, temperatures=(2000.0, a.temperature), dress_jumps=dress)
        system = system.at_temperature(a.temperature) if a.temperature != 2000.0 else \
            AlloySystem(2000.0, dress_jumps=dress)
        stage = PairSweep(system, seed=a.seed, small_sizes=(8,), pairs=a.pairs, block=a.pairs, pair_duration=1.0,
                          snapshots_per_run=16, snapshot_interval=8.0, random_fraction=0.0, tiles_per_pair="1")
        out = stage.compute_block(0, 0).arrays
        full, half, quarter = out["z1"] - out["z0"], out["increment_half"], out["increment_quarter"]
        for k, name in ((1, "NbMo"), (3, "MoMo")):
            f, h, q = full[:, k], half[:, k], quarter[:, k]
            se = lambda x: x.std(ddof=1) / np.sqrt(len(x))  # noqa: E731
            print(f"T = {a.temperature:g} K, dress {dress:4d} jumps, delta_{name}: increment at dt/4 "
                  f"{q.mean():+.5f} +- {se(q):.5f}, dt/2 {h.mean():+.5f} +- {se(h):.5f}, dt {f.mean():+.5f} +- "
                  f"{se(f):.5f}; ratio {f.mean() / (2 * h.mean()):.3f}")


if __name__ == "__main__":
    main()
