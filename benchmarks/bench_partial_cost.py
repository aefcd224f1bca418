"""The headline trade of seed 002: CPU seconds for training pairs from small systems vs the large system directly.

Method (the ``pairs`` stage, one real block, and its three parts timed alone): small L_s x L_s runs from the
authors' random magnetisations, snapshots upsampled to L, r tiles evolved for
``pair_duration`` (``--tiles-per-pair``, the stage's default ``all``: r = K; the
tile runs' share is reported separately).

Direct: the same training volume at L: n/spr large-system runs from random
magnetisations, spr snapshots each ``snapshot_interval`` apart (the same design
as the small runs), every snapshot evolved whole for ``pair_duration``.

Both measured in one process, one after the other, with ``time.process_time``
(single-threaded numba kernels). Usage::

    python benchmarks/bench_partial_cost.py --model ising2d --size 64 --pairs 2048
    python benchmarks/bench_partial_cost.py --model predator_prey --size 200 --small 100 --pairs 30000 \
        --pair-duration 0.01 --snapshots-per-run 3000 --interval 0.01

Predator-prey (``--model predator_prey``, the authors' settings by default with the
flags above): the method's block is n_s-cell runs, interpolation to n and
one Euler-Maruyama step of one 40-cell tile per pair; direct: n-cell runs with the
same snapshots, each advanced one whole-grid step.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cgflow.methods.partial.stages import PairSweep
from cgflow.methods.partial.systems import PredatorPreySystem, SpinSystem
from cgflow.micro import glauber
from cgflow.micro.predator_prey import PredatorPreyParams


def direct_cost(p: glauber.GlauberParams, pairs: int, spr: int, interval: float, duration: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    start = time.process_time()
    n_runs = -(-pairs // spr)
    done = 0
    for s in glauber.random_spins(n_runs, p.size, rng):
        for _ in range(spr):
            if done == pairs:
                break
            glauber.run_time(s, [duration], p, rng)  # the pair: the whole lattice evolved for dt
            done += 1
            s, _ = glauber.run_time(s, [interval], p, rng)  # on to the next snapshot
    return time.process_time() - start


def method_cost(stage: PairSweep, point: int) -> dict:
    """CPU seconds of one real block of the stage, and of its three parts timed alone on the stage's own calls:
    the small-system runs, the upsampling, and the r tile runs per pair (each evolving one tile of every snapshot
    for ``pair_duration``, observed inside as the stage does)."""
    start = time.process_time()
    stage.compute_block(point, 0)
    total = time.process_time() - start
    rng = np.random.default_rng(0)
    system, Ls = stage.system, stage.small_sizes[point]
    n_up = stage.block - int(round(stage.random_fraction * stage.block))
    parts = {}
    t0 = time.process_time()
    pool = system.small_snapshots(-(-n_up // stage.snapshots_per_run), stage.snapshots_per_run,
                                  stage.snapshot_interval, Ls, rng)[:n_up] if n_up else None
    parts["small_runs"] = time.process_time() - t0
    t0 = time.process_time()
    x = system.upsample(pool, rng) if n_up else None
    parts["upsampling"] = time.process_time() - t0
    x = np.concatenate([a for a in (x, system.random_states(stage.block - n_up, rng) if stage.block > n_up else None)
                        if a is not None])
    model, tile, rec = system.patch_model, system.tile_size(Ls), stage.record_times
    K = stage.n_tiles(Ls)
    t0 = time.process_time()
    for j in range(stage.tiles_used(Ls)):
        model.evolve_tiles(x, tile, np.full(len(x), j % K), tile**2, system.boundary, rng,
                           duration=stage.pair_duration, **({} if rec is None else {"record_times": rec}))
    parts["tile_runs"] = time.process_time() - t0
    return dict(total=total, **parts)


def direct_cost_fields(system: PredatorPreySystem, pairs: int, spr: int, interval: float, seed: int) -> float:
    """Direct n-cell data: pairs/spr runs of spr snapshots every ``interval``, each snapshot stepped once whole."""
    rng = np.random.default_rng(seed)
    start = time.process_time()
    n_runs = -(-pairs // spr)
    every = system.steps(interval)
    x = system.random_states(n_runs, rng)
    states = system.params.simulate(x, every * (spr - 1), rng, save_every=every).reshape(-1, 2, system.size)[:pairs]
    system.params.step(states, rng)  # the pairs: one whole-grid step of every snapshot
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ising2d", choices=glauber.MODELS + ("predator_prey",))
    ap.add_argument("--temperature", type=float, default=2.5)
    ap.add_argument("--field", type=float, default=0.1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--small", default="8,16,32")
    ap.add_argument("--pairs", type=int, default=2048)
    ap.add_argument("--pair-duration", type=float, default=0.25)
    ap.add_argument("--snapshots-per-run", type=int, default=16)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--window-time", type=float, default=1.0)
    ap.add_argument("--tiles-per-pair", default="all")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    glauber.warmup()
    sizes = tuple(int(s) for s in a.small.split(","))
    if a.model == "predator_prey":
        system = PredatorPreySystem(PredatorPreyParams(), size=a.size)
        random_fraction = 0.0
    else:
        system = SpinSystem(a.model, a.temperature, a.field, a.size, window_time=a.window_time)
        random_fraction = 0.5
    stage = PairSweep(system, seed=1, small_sizes=sizes, pairs=a.pairs, block=a.pairs, pair_duration=a.pair_duration,
                      snapshots_per_run=a.snapshots_per_run, snapshot_interval=a.interval,
                      random_fraction=random_fraction, tiles_per_pair=a.tiles_per_pair)
    stage.compute_block(0, 0)  # compile everything first
    if a.model == "predator_prey":
        direct = direct_cost_fields(system, a.pairs, a.snapshots_per_run, a.interval, seed=2)
    else:
        p = glauber.GlauberParams(a.model, a.temperature, a.field, a.size)
        direct = direct_cost(p, a.pairs, a.snapshots_per_run, a.interval, a.pair_duration, seed=2)
    rows = []
    what = "" if a.model == "predator_prey" else f" T = {a.temperature} h = {a.field},"
    print(f"{a.model}{what} L = {a.size}, {a.pairs} pairs, dt = {a.pair_duration}, "
          f"{a.snapshots_per_run} snapshots per run every {a.interval}")
    print(f"direct large-system pairs: {direct:.2f} CPU s")
    for j, Ls in enumerate(sizes):
        c = method_cost(stage, j)
        rows.append(dict(small_size=Ls, tiles_per_pair=stage.tiles_used(Ls), method_cpu_s=c["total"],
                         small_runs_cpu_s=c["small_runs"], upsampling_cpu_s=c["upsampling"],
                         tile_runs_cpu_s=c["tile_runs"], direct_cpu_s=direct,
                         ratio_direct_over_method=direct / c["total"]))
        print(f"L_s = {Ls:3d}: method {c['total']:.2f} CPU s (small runs {c['small_runs']:.2f}, upsampling "
              f"{c['upsampling']:.2f}, {stage.tiles_used(Ls)} tile runs per pair {c['tile_runs']:.2f}); "
              f"direct / method = {direct / c['total']:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
