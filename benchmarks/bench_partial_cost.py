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

NbMoTa alloy (``--model bcc_alloy``, the vacancy KMC with the stand-in barriers of
``micro.model: bcc_alloy``; defaults are ``workflows/nbmota-quick.yaml``: 2000 K,
``--size 16`` cells = 8192 sites, ``--small 8`` = 1024 sites with one vacancy, so 8
vacancies in the large lattice, ``--pair-duration 1.0`` and ``--interval 8.0`` in units of
``--time-scale 1e-9`` s, 16 snapshots per run, ``--tiling independent`` (K small systems side
by side, each tile run its own small system: the workflows'; ``replicate``: exact replicas;
``mixed``: the authors' tiling with seam relaxation ``--relax-jumps 7``),
``random_fraction`` 0 and ``--tiles-per-pair 1`` (the workflows evolve ``all``))::

    python benchmarks/bench_partial_cost.py --model bcc_alloy --pairs 1024 \
        --json benchmarks/results/partial_cost_alloy.json

The method's block is 1024-site runs from random equimolar states (a snapshot every
``interval``), the upsampling to 8192 sites (``--tiling``), and one vacancy's
16^3-voxel window run for ``pair_duration`` per pair (``--tiles-per-pair all``: all 8).
Direct: n/spr whole 8192-site KMC runs (all 8 vacancies) from random equimolar states,
a snapshot every ``interval`` (the first is the random start, as in the small runs),
each snapshot evolved whole for ``pair_duration`` (``bcc_alloy.run_time``, the pair's SRO
recorded by the kernel at 0 and ``pair_duration`` as ``sro_trajectory`` does). Same training
volume, same sampling protocol: the direct runs start from random states like the
method's small runs, so the direct side has to equilibrate the same way (no
pre-equilibrated large states are assumed). The run also reports the KMC throughput
(jumps per CPU second, one core) at 8192 sites with 8 vacancies, from one long run and
as the direct side's effective rate (per-call set-up included), and at 1024 sites with
one vacancy (the small runs' lattice). The method's z0 (the SRO of every tile of each
upsampled state, ``tile_observables``) is timed as its own part ("z0 observables").
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cgflow.methods.partial.stages import PairSweep, upsampled_per_block
from cgflow.methods.partial.systems import AlloySystem, PredatorPreySystem, SpinSystem
from cgflow.micro import bcc_alloy, glauber
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
    for ``pair_duration``, observed inside as the stage does); also the z0 observables of every tile of the
    snapshots (``tile_observables``, which ``partial_evolution_pairs`` computes once per pair)."""
    start = time.process_time()
    stage.compute_block(point, 0)
    total = time.process_time() - start
    rng = np.random.default_rng(0)
    system, Ls = stage.system, stage.small_sizes[point]
    n_up = upsampled_per_block(stage.block, stage.random_fraction)
    parts = {}
    t0 = time.process_time()
    pool = system.small_snapshots(-(-n_up // stage.snapshots_per_run), stage.snapshots_per_run,
                                  stage.snapshot_interval, Ls, rng, burn_in=stage.burn_in)[:n_up] if n_up else None
    parts["small_runs"] = time.process_time() - t0
    t0 = time.process_time()
    x = system.upsample(pool, rng) if n_up else None
    parts["upsampling"] = time.process_time() - t0
    x = np.concatenate([a for a in (x, system.random_states(stage.block - n_up, rng) if stage.block > n_up else None)
                        if a is not None])
    model, tile, rec = system.patch_model, system.tile_size(Ls), stage.record_times
    K = stage.n_tiles(Ls)
    t0 = time.process_time()
    model.tile_observables(x, tile, system.boundary)  # z0: every tile's observables (partial_evolution_pairs)
    parts["observables"] = time.process_time() - t0
    t0 = time.process_time()
    for j in range(stage.tiles_used(Ls)):
        model.evolve_tiles(x, tile, np.full(len(x), j % K), tile**2, system.boundary, rng,
                           duration=stage.pair_duration, **({} if rec is None else {"record_times": rec}))
    parts["tile_runs"] = time.process_time() - t0
    return dict(total=total, **parts)


def direct_cost_alloy(system: AlloySystem, pairs: int, spr: int, interval: float, duration: float,
                      seed: int) -> tuple[float, int]:
    """Direct large-lattice pairs: pairs/spr whole-lattice KMC runs (all vacancies) from random equimolar states,
    a snapshot every ``interval`` (the first the random start, as :meth:`AlloySystem.small_snapshots`), each
    snapshot evolved whole for ``duration`` (stage units), its SRO recorded by the kernel at 0 and ``duration``
    (``record_times``, as :func:`~cgflow.micro.bcc_alloy.sro_trajectory`: the pair's z0, z1 come with the run).
    Returns (CPU seconds, jumps made)."""
    rng = np.random.default_rng(seed)
    p, ts = system.params(), system.time_scale
    start = time.process_time()
    n_runs = -(-pairs // spr)
    done = jumps = 0
    for x in bcc_alloy.random_configuration(system.cells, system.large_vacancies, rng, n_configs=n_runs):
        for k in range(spr):
            if done == pairs:
                break
            if k:
                x, _, j = bcc_alloy.run_time(x, interval * ts, p, rng)  # on to the next snapshot
                jumps += j
            # the pair: the whole lattice evolved for dt, (z0, z1) = SRO at 0 and dt
            _, _, j, _ = bcc_alloy.run_time(x, duration * ts, p, rng, record_times=[0.0, duration * ts])
            jumps += j
            done += 1
    return time.process_time() - start, jumps


def alloy_throughput(system: AlloySystem, cells: int, vacancies: int, duration: float, seed: int) -> dict:
    """KMC jumps per CPU second of one ``duration``-long run (stage units) from a random equimolar state."""
    rng = np.random.default_rng(seed)
    p = system.params(cells)
    x = bcc_alloy.random_configuration(cells, vacancies, rng)
    t0 = time.process_time()
    _, _, jumps = bcc_alloy.run_time(x, duration * system.time_scale, p, rng)
    cpu = time.process_time() - t0
    return dict(sites=2 * cells**3, vacancies=vacancies, duration=duration, jumps=jumps, cpu_s=cpu,
                events_per_cpu_s=jumps / cpu)


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
    ap.add_argument("--model", default="ising2d", choices=glauber.MODELS + ("predator_prey", "bcc_alloy"))
    ap.add_argument("--temperature", type=float, default=None, help="default 2.5 (spins), 2000 K (bcc_alloy)")
    ap.add_argument("--field", type=float, default=0.1)
    ap.add_argument("--size", type=int, default=None, help="L (default 64); bcc_alloy: cells per side (default 16)")
    ap.add_argument("--small", default=None, help="default 8,16,32; bcc_alloy: 8")
    ap.add_argument("--pairs", type=int, default=2048)
    ap.add_argument("--pair-duration", type=float, default=None, help="default 0.25; bcc_alloy: 1.0")
    ap.add_argument("--snapshots-per-run", type=int, default=16)
    ap.add_argument("--interval", type=float, default=None, help="default 2.0; bcc_alloy: 8.0")
    ap.add_argument("--window-time", type=float, default=1.0)
    ap.add_argument("--tiles-per-pair", default=None, help="default all; bcc_alloy: 1 (the workflow's)")
    ap.add_argument("--time-scale", type=float, default=1e-9, help="bcc_alloy: seconds per stage time unit")
    ap.add_argument("--lam", type=float, default=0.5, help="bcc_alloy: micro.barrier.lambda")
    ap.add_argument("--relax-jumps", type=int, default=7, help="bcc_alloy: partial.relax_jumps")
    ap.add_argument("--tiling", default="independent", choices=("independent", "replicate", "mixed"),
                    help="bcc_alloy: partial.tiling (default independent, the workflows'; replicate; mixed, the "
                         "authors')")
    ap.add_argument("--throughput-time", type=float, default=4000.0,
                    help="bcc_alloy: length of the large-lattice throughput run (stage units; the small-lattice "
                         "one runs K times longer)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    alloy = a.model == "bcc_alloy"
    for key, spin, ba_default in (("temperature", 2.5, 2000.0), ("size", 64, 16), ("small", "8,16,32", "8"),
                                  ("pair_duration", 0.25, 1.0), ("interval", 2.0, 8.0),
                                  ("tiles_per_pair", "all", "1")):
        if getattr(a, key) is None:
            setattr(a, key, ba_default if alloy else spin)
    sizes = tuple(int(s) for s in a.small.split(","))
    if alloy:
        if len(sizes) != 1:
            raise SystemExit("bcc_alloy: one small size (--small)")
        system = AlloySystem(a.temperature, cells=a.size, lam=a.lam, relax_jumps=a.relax_jumps,
                             time_scale=a.time_scale, small_cells=sizes[0], snapshots_per_run=a.snapshots_per_run,
                             tiling=a.tiling)
        random_fraction = 0.0
        system.warmup()
    else:
        glauber.warmup()
    if a.model == "predator_prey":
        system = PredatorPreySystem(PredatorPreyParams(), size=a.size)
        random_fraction = 0.0
    elif not alloy:
        system = SpinSystem(a.model, a.temperature, a.field, a.size, window_time=a.window_time)
        random_fraction = 0.5
    stage = PairSweep(system, seed=1, small_sizes=sizes, pairs=a.pairs, block=a.pairs, pair_duration=a.pair_duration,
                      snapshots_per_run=a.snapshots_per_run, snapshot_interval=a.interval,
                      random_fraction=random_fraction, tiles_per_pair=a.tiles_per_pair)
    if alloy:  # compile everything first, on a small block (a full one costs as much as the measurement)
        warm = min(a.pairs, 2 * a.snapshots_per_run)
        PairSweep(system, seed=3, small_sizes=sizes, pairs=warm, block=warm, pair_duration=a.pair_duration,
                  snapshots_per_run=a.snapshots_per_run, snapshot_interval=a.interval,
                  random_fraction=random_fraction, tiles_per_pair=a.tiles_per_pair).compute_block(0, 0)
    else:
        stage.compute_block(0, 0)  # compile everything first
    throughput = None
    if a.model == "predator_prey":
        direct = direct_cost_fields(system, a.pairs, a.snapshots_per_run, a.interval, seed=2)
    elif alloy:
        direct, direct_jumps = direct_cost_alloy(system, a.pairs, a.snapshots_per_run, a.interval, a.pair_duration,
                                                 seed=2)
        throughput = dict(
            large=alloy_throughput(system, a.size, system.large_vacancies, a.throughput_time, seed=4),
            small=alloy_throughput(system, sizes[0], system.small_vacancies,  # about as many jumps
                                   a.throughput_time * system.large_vacancies / system.small_vacancies, seed=5),
            direct_effective=dict(sites=system.n_sites(), vacancies=system.large_vacancies, jumps=direct_jumps,
                                  cpu_s=direct, events_per_cpu_s=direct_jumps / direct))
    else:
        p = glauber.GlauberParams(a.model, a.temperature, a.field, a.size)
        direct = direct_cost(p, a.pairs, a.snapshots_per_run, a.interval, a.pair_duration, seed=2)
    rows = []
    what = "" if a.model == "predator_prey" else f" T = {a.temperature} h = {a.field},"
    if alloy:
        what = f" T = {a.temperature} K, {system.n_sites()} sites ({system.large_vacancies} vacancies),"
    print(f"{a.model}{what} L = {a.size}, {a.pairs} pairs, dt = {a.pair_duration}, "
          f"{a.snapshots_per_run} snapshots per run every {a.interval}")
    print(f"direct large-system pairs: {direct:.2f} CPU s")
    if throughput:
        for key, t in throughput.items():
            print(f"KMC {key}: {t['sites']} sites, {t['vacancies']} vacancies: {t['jumps']} jumps in "
                  f"{t['cpu_s']:.2f} CPU s = {t['events_per_cpu_s']:.3g} jumps per CPU s")
    for j, Ls in enumerate(sizes):
        c = method_cost(stage, j)
        rows.append(dict(small_size=Ls, tiles_per_pair=stage.tiles_used(Ls), method_cpu_s=c["total"],
                         small_runs_cpu_s=c["small_runs"], upsampling_cpu_s=c["upsampling"],
                         tile_runs_cpu_s=c["tile_runs"],
                         observables_cpu_s=c["observables"],
                         other_cpu_s=c["total"] - c["small_runs"] - c["upsampling"] - c["tile_runs"]
                         - c["observables"],
                         direct_cpu_s=direct,
                         ratio_direct_over_method=direct / c["total"]))
        print(f"L_s = {Ls:3d}: method {c['total']:.2f} CPU s (small runs {c['small_runs']:.2f}, upsampling "
              f"{c['upsampling']:.2f}, {stage.tiles_used(Ls)} tile runs per pair {c['tile_runs']:.2f}, z0 observables "
              f"{c['observables']:.2f}, rest "
              f"{rows[-1]['other_cpu_s']:.2f}); "
              f"direct / method = {direct / c['total']:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), rows=rows, **({"kmc_throughput": throughput} if throughput else {})),
                      f, indent=1)


if __name__ == "__main__":
    main()
