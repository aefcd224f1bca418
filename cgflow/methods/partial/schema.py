"""Spec sections of method ``partial`` (seed 002), read by :mod:`cgflow.spec`.

The sections depend on the system (``micro.model``, :mod:`.systems`):

* spins (``curie_weiss``, ``ising2d``; issue 10): ``micro.temperature``,
  ``micro.field``, ``micro.size`` (L of the large system, N = L**2),
  ``partial.small_size`` (one L_s or a list), ``partial.large_size`` (optional;
  must equal ``micro.size``), ``partial.boundary`` (frozen | periodic), the
  ``upsampling`` windows, ``truth.initial`` (m0 of the test runs); times in
  attempts per spin.
* ``predator_prey`` (issue 12): ``micro.size`` (n cells of the large grid),
  ``micro.a``, ``micro.b``, ``micro.noise``, ``micro.dt``, ``micro.diffusion``,
  ``micro.laplacian``, ``micro.train_m``/``train_k`` (ranges of the small runs'
  initial states), ``partial.small_size`` (n_s), ``partial.tile_size`` (cells per
  tile, K = n / tile_size), ``truth.m`` x ``truth.k`` (the test starts); times in
  the SPDE's units.

Common: ``loss.scaling`` (``K``, ``1`` or a number), ``loss.sweep`` (extra
lambdas, each a variant ``lambda=<x>``), ``closure.latent`` (learned closure
dimensions; Ising only; 0 skips the closure stage), ``sde``, ``rollout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...spec import Field

#: The stages of method partial, in execution order.
STAGES: tuple[str, ...] = ("pairs", "truth", "closure", "sde", "rollout", "evaluation")

_POS = dict(minimum=0, exclusive_minimum=True)

#: ``micro.model`` values, by system (:data:`.systems.SYSTEMS`).
SPIN_MODELS = ("curie_weiss", "ising2d")
MODELS = SPIN_MODELS + ("predator_prey", "bcc_alloy")
_MODEL = Field("str", choices=MODELS, doc="the system: spins (mean field or the 2-D periodic Ising lattice) or the "
                                          "predator-prey SPDE")

#: Sections of a spin system's spec (nested dicts of cgflow.spec.Field).
SCHEMA: dict[str, Any] = {
    "micro": {
        "model": _MODEL,
        "temperature": Field("floats", **_POS, doc="T (J = k_B = 1); a list: the SDE is conditioned on T, trained on "
                                                   "pairs at every one (blocks take them in turn)"),
        "field": Field("float", doc="external field h"),
        "size": Field("int", minimum=2, doc="L of the large system, N = L**2"),
    },
    "partial": {
        "small_size": Field("floats", doc="L_s (one or a list): the small systems trained on"),
        "large_size": Field("int", required=False, minimum=2, doc="L of the upsampled snapshots; must equal micro.size"),
        "boundary": Field("str", required=False, default="frozen", choices=("frozen", "periodic"),
                          doc="patch boundary of the tile runs and relaxation windows"),
        "pairs": Field("int", required=False, default=4096, minimum=1, doc="training pairs per small size"),
        "block": Field("int", required=False, default=512, minimum=1, doc="pairs per task (divides partial.pairs)"),
        "pair_duration": Field("float", required=False, default=0.2, **_POS,
                               doc="fixed time of each tile run (attempts per spin); small against the spin relaxation time 1"),
        "snapshots_per_run": Field("int", required=False, default=16, minimum=1,
                                   doc="snapshots saved per small-system run (the first is the random initial state, "
                                       "or the state after partial.burn_in)"),
        "snapshot_interval": Field("float", required=False, default=1.0, **_POS,
                                   doc="time between saved small-system snapshots"),
        "burn_in": Field("float", required=False, default=0.0, minimum=0,
                         doc="time each small-system run evolves before its first saved snapshot (0: the first "
                             "snapshot is the random initial state, the authors'); > 0 trains on states nearer the "
                             "small system's stationary law"),
        "tiles_per_pair": Field("strnum", required=False, default="auto",
                                doc="tiles of a snapshot evolved (each alone, the rest frozen) and averaged per pair: all "
                                    "(r = K), an integer r, or 1 (the authors'); the method's lambda is K/r; auto: all, "
                                    "or 1 (the authors') with closure.latent > 0"),
        "random_fraction": Field("float", required=False, default=0.5, minimum=0, maximum=1,
                                 doc="share of the pairs started from random large configurations, m0 ~ U(-1, 1) (authors: 1/2)"),
    },
    "upsampling": {
        "window": Field("int", required=False, default=16, minimum=2, doc="relaxation window side"),
        "stride": Field("int", required=False, default=8, minimum=1, doc="offset between relaxation windows"),
        "window_time": Field("float", required=False, default=1.0, **_POS,
                             doc="relaxation time per window (attempts per spin): long enough to heal the replication "
                                 "seams, short against the slow variables (checked: evaluation.upsampling_shift)"),
    },
    "loss": {
        "scaling": Field("strnum", required=False, default="K",
                         doc="lambda of the method: K (= (L/L_s)**2), or a number; the baseline always uses 1"),
        "sweep": Field("floats", required=False, default=(), **_POS,
                       doc="further lambdas, each fitted on the method's pairs as variant lambda=<x> (the paper's "
                           "lambda sweep)"),
    },
    "closure": {
        "latent": Field("int", required=False, default=0, minimum=0, maximum=8,
                        doc="learned closure variables beside the patch-additive observables (ising2d; 2 in the "
                            "paper); 0: none, and the closure stage is skipped"),
        "epochs": Field("int", required=False, default=10, minimum=1, doc="autoencoder epochs (the authors': 10)"),
        "batch_size": Field("int", required=False, default=128, minimum=1, doc="autoencoder minibatch"),
        "learning_rate": Field("float", required=False, default=2e-4, **_POS, doc="AdamW step (the authors': 2e-4)"),
        "snapshots": Field("int", required=False, default=2048, minimum=1,
                           doc="large snapshots the autoencoder of each L_s trains on (at most partial.pairs)"),
    },
    "sde": {
        "sigma": Field("str", required=False, default="cholesky", choices=("cholesky", "constant_diagonal", "arbitrary"),
                       doc="diffusion parametrisation (cgflow.learn.sde)"),
        "epochs": Field("int", required=False, default=100, minimum=1),
        "batch_size": Field("int", required=False, default=1024, minimum=1),
        "learning_rate": Field("float", required=False, default=1e-2, **_POS, doc="the authors' CW value"),
        "epsilon": Field("strnum", required=False, default="auto",
                         doc="eps in Sig = lambda sigma sigma^T dt + eps I: auto (1e-3 x the smallest increment "
                             "variance of the training pairs, per fit) or a number >= 0 (keep it below that variance)"),
        "hidden": Field("floats", required=False, default=(64.0, 64.0, 64.0), doc="hidden layer sizes"),
        "grid": Field("int", required=False, default=101, minimum=3, doc="points of the m grid in [-1, 1] for drift/diffusion"),
        "drift_estimator": Field("str", required=False, default="richardson", choices=("richardson", "euler", "late_half"),
                                 doc="richardson: fit 4 Delta(dt/2) - Delta(dt) of the same run (bias O(dt**2), 5x noise, "
                                     "loss uses 5 lambda); euler: Delta(dt) as one Euler step (the authors'; bias O(dt)); "
                                     "late_half: 2 (Delta(dt) - Delta(dt/2)) (blind to a first-jumps offset, 2x noise)"),
    },
    "truth": {
        "initial": Field("floats", required=False, default=(0.0, 0.25, -0.25, 0.5, -0.5), minimum=-1, maximum=1,
                         doc="initial magnetisations m0 of the test runs (random shuffles with int((1 + m0) N/2) up spins)"),
        "temperature": Field("floats", required=False, default=(), **_POS,
                             doc="temperatures of the test runs, every m0 at each (default: micro.temperature; needs "
                                 "several micro.temperature values, may include untrained ones)"),
        "runs": Field("int", required=False, default=20, minimum=1, doc="large-system runs per m0"),
        "block": Field("int", required=False, default=10, minimum=1, doc="runs per task (divides truth.runs)"),
        "t_end": Field("float", required=False, default=20.0, **_POS, doc="end time (attempts per spin)"),
        "save_every": Field("float", required=False, default=0.5, **_POS, doc="time between saved m(t)"),
    },
    "rollout": {
        "paths": Field("int", required=False, default=200, minimum=1, doc="Euler-Maruyama paths per m0"),
        "dt": Field("float", required=False, default=0.05, **_POS, doc="Euler-Maruyama step (divides truth.save_every)"),
    },
}

def _predator_prey_schema() -> dict[str, Any]:
    """The predator-prey SPDE's sections (REFERENCE-002 §1a, §2, §3): the common ones with its micro, partial,
    truth and rollout keys and defaults (the authors' n = 200, n_s = 100, K = 5 tiles of 40 cells, one
    Euler-Maruyama step per pair, 3000 steps of dt = 0.01 for the test runs)."""
    common = {k: v for k, v in SCHEMA.items() if k not in ("micro", "upsampling")}
    part = {k: v for k, v in SCHEMA["partial"].items() if k not in ("boundary", "large_size")}
    part.update(
        small_size=Field("floats", required=False, default=(100.0,), doc="n_s: cells of the small systems"),
        tile_size=Field("int", required=False, default=40, minimum=2,
                        doc="cells per partial-evolution tile (must divide micro.size; K = n / tile_size)"),
        pair_duration=Field("float", required=False, default=None, **_POS,
                            doc="time of each tile run, a whole number of micro.dt (default: one step, the authors')"),
        snapshot_interval=Field("float", required=False, default=0.1, **_POS,
                                doc="time between saved small-system snapshots (a whole number of micro.dt)"),
        random_fraction=Field("float", required=False, default=0.0, minimum=0, maximum=1,
                              doc="share of the pairs started from random large initial states (authors: 0)"),
        tiles_per_pair=Field("strnum", required=False, default="1",
                             doc="tiles evolved and averaged per pair: 1 (the authors'; the lambda sweep is about "
                                 "it), an integer r or all (then lambda = K/r)"))
    truth = {k: v for k, v in SCHEMA["truth"].items() if k != "initial"}
    truth.update(
        m=Field("floats", required=False, default=(0.45, 0.5, 0.55), doc="m of the test starts (the authors')"),
        k=Field("floats", required=False, default=(0.05, 0.1, 0.15), doc="k of the test starts: every (m, k) pair"),
        runs=Field("int", required=False, default=50, minimum=1, doc="direct large-system runs per start"),
        t_end=Field("float", required=False, default=30.0, **_POS, doc="end time (3000 steps of dt = 0.01)"),
        save_every=Field("float", required=False, default=0.1, **_POS, doc="time between saved states"))
    sde = dict(SCHEMA["sde"], drift_estimator=Field(
        "str", required=False, default="euler", choices=("richardson", "euler", "late_half"),
        doc="euler (default: the authors' one-step pairs); richardson and late_half need partial.pair_duration a "
            "multiple of 4 micro.dt"), learning_rate=Field("float", required=False, default=1e-3, **_POS, doc="the authors' PP value"))
    roll = dict(SCHEMA["rollout"], dt=Field("float", required=False, default=0.01, **_POS,
                                            doc="Euler-Maruyama step of the learned SDE (divides truth.save_every)"),
                paths=Field("int", required=False, default=50, minimum=1, doc="rollout paths per start (the authors' 50)"))
    micro = {
        "model": _MODEL,
        "size": Field("int", required=False, default=200, minimum=4, doc="n: cells of the large grid"),
        "a": Field("float", required=False, default=3.0, doc="predator growth rate a"),
        "b": Field("float", required=False, default=0.4, doc="prey threshold b"),
        "noise": Field("float", required=False, default=0.02, minimum=0, doc="sigma of the additive noise"),
        "dt": Field("float", required=False, default=0.01, **_POS, doc="Euler-Maruyama step of the SPDE"),
        "diffusion": Field("float", required=False, default=1.0, minimum=0, doc="D of the predators"),
        "laplacian": Field("str", required=False, default="lattice", choices=("lattice", "continuum"),
                           doc="lattice: the authors' (no 1/dx^2); continuum: with 1/dx^2 (needs a smaller dt)"),
        "train_m": Field("floats", required=False, default=(0.45, 0.55), doc="range of m of the small runs' starts"),
        "train_k": Field("floats", required=False, default=(0.05, 0.15), doc="range of k of the small runs' starts"),
    }
    closure = dict(SCHEMA["closure"],
                   latent=Field("int", required=False, default=0, minimum=0, maximum=8,
                                doc="learned closure variables beside the spatial means (even: latent / 2 per "
                                    "species; 2 in the paper); 0: none"),
                   batch_size=Field("int", required=False, default=256, minimum=1, doc="the authors' 256"),
                   learning_rate=Field("float", required=False, default=1e-4, **_POS, doc="the authors' 1e-4"))
    return {**common, "micro": micro, "partial": part, "truth": truth, "sde": sde, "rollout": roll, "closure": closure}


PREDATOR_PREY_SCHEMA: dict[str, Any] = _predator_prey_schema()

#: Species the stand-in barrier model knows (REFERENCE-002 §9).
ALLOY_SPECIES = ("Nb", "Mo", "Ta")

#: The default E_a (eV) of the alloy's Arrhenius-scaled clock: the mean KRA reference barrier E0 of the stand-in
#: model (REFERENCE-002 §9: Nb 0.954, Mo 1.291, Ta 1.104 eV; .systems.AlloySystem.time_scale_at).
ARRHENIUS_ENERGY = (0.954 + 1.291 + 1.104) / 3


def _alloy_schema() -> dict[str, Any]:
    """The NbMoTa vacancy KMC's sections (REFERENCE-002 §1c, §2, §3, §9): one temperature per run, times in units
    of ``micro.time_scale`` seconds."""
    common = {k: v for k, v in SCHEMA.items() if k not in ("micro", "upsampling")}
    part = {k: v for k, v in SCHEMA["partial"].items() if k not in ("boundary", "large_size")}
    part.update(
        small_size=Field("floats", required=False, default=(8.0,), doc="cells per side of the small systems (one "
                                                                       "size; 8: 1024 sites)"),
        pair_duration=Field("float", required=False, default=1.0, **_POS,
                            doc="time of each window run (micro.time_scale units; 1e-9 s at 2000 K is about the "
                                "authors' 124 jumps)"),
        snapshot_interval=Field("float", required=False, default=8.0, **_POS, doc="between small-system snapshots"),
        random_fraction=Field("float", required=False, default=0.0, minimum=0, maximum=1,
                              doc="share of pairs from random large configurations (authors: 0)"),
        tiles_per_pair=Field("strnum", required=False, default="1", doc="windows evolved and averaged per pair"),
        relax_jumps=Field("int", required=False, default=7, minimum=0,
                          doc="jumps per vacancy per seam-relaxation window of the upsampling (the authors' 7)"),
        tiling=Field("str", required=False, default="mixed", choices=("mixed", "independent", "replicate"),
                     doc="mixed: a large state tiles K same-time snapshots, seam-relaxed (the authors'); "
                         "independent: K same-time snapshots kept whole, every tile run its own small system "
                         "(periodic torus; no seams to read); replicate: one snapshot K times, exactly (no seams, "
                         "but all K tiles alike)"),
        dress_jumps=Field("int", required=False, default=64, minimum=0,
                          doc="every placed vacancy runs inside its block for the time of about this many jumps "
                              "in a random alloy before the window runs (its neighbourhood settles; a fixed time "
                              "keeps the Boltzmann law, a fixed jump count does not; 0: the authors' fresh "
                              "placement; check: evaluation dt_halving_ratio); mixed tiling and random states only "
                              "(a replica keeps the small system's own vacancies)"))
    truth = {k: v for k, v in SCHEMA["truth"].items() if k != "initial"}
    truth.update(temperature=Field("floats", required=False, default=(), **_POS,
                                   doc="temperatures of the direct runs, one start each (default: micro.temperature; "
                                       "needs several micro.temperature values, may include untrained ones)"),
                 runs=Field("int", required=False, default=16, minimum=1, doc="direct large-lattice runs"),
                 block=Field("int", required=False, default=4, minimum=1, doc="runs per task"),
                 t_end=Field("float", required=False, default=300.0, **_POS, doc="end time (micro.time_scale units)"),
                 save_every=Field("float", required=False, default=5.0, **_POS, doc="between saved SRO values"))
    roll = dict(SCHEMA["rollout"], dt=Field("float", required=False, default=0.5, **_POS, doc="Euler-Maruyama step"),
                paths=Field("int", required=False, default=64, minimum=1, doc="rollout paths"))
    sde = dict(SCHEMA["sde"], drift_estimator=Field("str", required=False, default="euler",
                                                    choices=("euler", "richardson", "late_half"),
                                                    doc="euler (the authors'); richardson or late_half (2 (Delta(dt) "
                                                        "- Delta(dt/2)): drops the vacancy's first-jump transient) "
                                                        "from the same window runs observed at dt/4 and dt/2"),
               learning_rate=Field("float", required=False, default=1e-3, **_POS, doc="the authors' NB value"))
    micro = {
        "model": _MODEL,
        "temperature": Field("floats", **_POS, doc="T in kelvin; a list: the SDE is conditioned on T, trained on "
                                                   "pairs at every one (blocks take them in turn)"),
        "arrhenius_energy": Field("float", required=False, default=ARRHENIUS_ENERGY, **_POS,
                                  doc="E_a (eV) of the Arrhenius-scaled clock of several temperatures: one unit is "
                                      "time_scale exp(E_a/k_B (1/T - 1/T_0)) s, T_0 the first temperature (default: "
                                      "the stand-in's mean KRA barrier E0)"),
        "cells": Field("int", required=False, default=16, minimum=2, doc="cells per side of the large lattice "
                                                                         "(16: 8192 sites)"),
        "species": Field("strs", required=False, default=ALLOY_SPECIES, doc="the equimolar species (Nb, Mo, Ta)"),
        "vacancies": Field("int", required=False, default=1, doc="vacancies per small system (>= 1)"),
        "barrier": {"lambda": Field("float", required=False, default=0.5, minimum=0,
                                    doc="lambda of the stand-in KRA barriers E_b = E0 + lambda dE/2 (REFERENCE §9)")},
        "time_scale": Field("float", required=False, default=1e-9, **_POS,
                            doc="seconds per unit of every time key (choose it so a pair run is ~1 unit)"),
    }
    return {**common, "micro": micro, "partial": part, "truth": truth, "sde": sde, "rollout": roll}


ALLOY_SCHEMA: dict[str, Any] = _alloy_schema()

#: Sections that may be omitted as a whole.
OPTIONAL_SECTIONS: frozenset[str] = frozenset({"upsampling", "loss", "closure", "sde", "truth", "rollout", "partial",
                                               "micro.barrier"})


def sections(data: Any = None, problems: list | None = None) -> dict[str, Any] | None:
    """The sections of the spec's system (``micro.model``); None (a problem) if it names none."""
    micro = data.get("micro") if isinstance(data, Mapping) else None
    name = micro.get("model") if isinstance(micro, Mapping) else None
    if name in SPIN_MODELS or data is None:
        return SCHEMA
    if name == "predator_prey":
        return PREDATOR_PREY_SCHEMA
    if name == "bcc_alloy":
        return ALLOY_SCHEMA
    if problems is not None:
        problems.append(("micro.model", f"expected one of {{{', '.join(MODELS)}}}, got {name!r}"))
    return None


def _whole(numerator: float, denominator: float) -> int | None:
    q = numerator / denominator
    return round(q) if round(q) >= 1 and abs(q - round(q)) <= 1e-9 * max(1.0, q) else None


def _number(text) -> float:
    """A strnum value as a float (NaN if it is not a number)."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _check_closure(d: dict, problems: list) -> None:
    """Learned closures: a lattice model, power-of-two sides (the per-tile CNN halves them); else drop the stage."""
    micro, part, clo = d.get("micro", {}), d.get("partial", {}), d.get("closure", {})
    latent = clo.get("latent") or 0
    if latent == 0:
        d["stages"] = tuple(s for s in d.get("stages", ()) if s != "closure")
        return
    from ...micro.glauber import MODEL_FACTS

    if micro.get("model") is not None and not MODEL_FACTS[micro["model"]].lattice:
        problems.append(("closure.latent", f"learned closures need a lattice model (ising2d); {micro['model']}'s "
                                           f"closure is m alone, got {latent}"))
        return
    L = micro.get("size")
    if L is not None and not _power_of_two(L):
        problems.append(("micro.size", f"must be a power of 2 with closure.latent > 0 (the decoder doubles 4 -> L), got {L}"))
    bad = [s for s in part.get("small_size") or () if not float(s).is_integer() or not _power_of_two(int(s)) or s < 4]
    if bad:
        problems.append(("partial.small_size", f"must be powers of 2 >= 4 with closure.latent > 0 (the encoder halves "
                                               f"each tile to 2 x 2), got {bad}"))
    if clo.get("snapshots") and part.get("pairs") and clo["snapshots"] > part["pairs"]:
        problems.append(("closure.snapshots", f"must not exceed partial.pairs = {part['pairs']}, got {clo['snapshots']}"))


def _check_tiles_per_pair(d: dict, problems: list) -> None:
    part = d.get("partial", {})
    value = str(part.get("tiles_per_pair", "auto")).strip().lower()
    value = value[:-2] if value.endswith(".0") else value
    if value not in ("auto", "all") and not (value.isdigit() and int(value) >= 1):
        problems.append(("partial.tiles_per_pair", f"must be auto, all or an integer >= 1, got {part['tiles_per_pair']!r}"))


def _steps(value: float, dt: float) -> int | None:
    """value / dt if it is a whole number >= 1."""
    return _whole(value, dt)


def _check_predator_prey(d: dict, problems: list) -> None:
    """n_s, tiles and times on the SPDE's grid and clock; one-step pairs by default."""
    from ...micro.predator_prey import PredatorPreyParams

    micro, part, sde, truth = d.get("micro", {}), d.get("partial", {}), d.get("sde", {}), d.get("truth", {})
    n, dt = micro.get("size"), micro.get("dt")
    sizes = part.get("small_size")
    if sizes is not None:
        bad = [s for s in sizes if not float(s).is_integer() or s < 2]
        if bad or len(set(sizes)) != len(sizes):
            problems.append(("partial.small_size", f"must be distinct integers >= 2, got {list(sizes)}"))
        else:
            part["small_size"] = tuple(int(s) for s in sizes)
            off = [s for s in part["small_size"] if n is not None and (n % s or n < s)]
            if off:
                problems.append(("partial.small_size", f"micro.size = {n} must be a multiple of every n_s (the "
                                                       f"upsampling interpolates by n / n_s), got {off}"))
    tile = part.get("tile_size")
    if tile is not None and n is not None and n % tile:
        problems.append(("partial.tile_size", f"must divide micro.size = {n} (K = n / tile_size tiles), got {tile}"))
    clo = d.get("closure", {})
    latent = clo.get("latent") or 0
    if latent % 2:
        problems.append(("closure.latent", f"must be even for predator-prey (latent / 2 per species, the per-species "
                                           f"encoders of REFERENCE-002 §5), got {latent}"))
    if latent == 0:
        d["stages"] = tuple(s for s in d.get("stages", ()) if s != "closure")
    if clo.get("snapshots") and part.get("pairs") and clo["snapshots"] > part["pairs"]:
        problems.append(("closure.snapshots", f"must not exceed partial.pairs = {part['pairs']}, got {clo['snapshots']}"))
    for key in ("train_m", "train_k"):
        r = micro.get(key)
        if r is not None and (len(r) != 2 or r[0] > r[1]):
            problems.append((f"micro.{key}", f"must be [low, high] with low <= high, got {list(r)}"))
    if dt is None:
        return
    if part.get("pair_duration") is None:
        part["pair_duration"] = dt  # one Euler-Maruyama step: the authors' pairs
    for key, value in (("partial.pair_duration", part.get("pair_duration")),
                       ("partial.snapshot_interval", part.get("snapshot_interval")),
                       ("partial.burn_in", part.get("burn_in") or None),
                       ("truth.save_every", truth.get("save_every"))):
        if value is not None and _steps(value, dt) is None:
            problems.append((key, f"must be a whole number >= 1 of micro.dt = {dt:g} steps, got {value:g}"))
    estimator = sde.get("drift_estimator")
    if estimator in ("richardson", "late_half") and _steps(part["pair_duration"] / 4, dt) is None:
        problems.append(("sde.drift_estimator", f"{estimator} observes each tile run at a quarter and a half of it: "
                                                f"partial.pair_duration = {part['pair_duration']:g} must be a multiple "
                                                f"of 4 micro.dt = {4 * dt:g}; use euler (the authors' one-step pairs)"))
    try:
        params = PredatorPreyParams(a=micro["a"], b=micro["b"], noise=micro["noise"], dt=dt,
                                    diffusion=micro["diffusion"], laplacian=micro["laplacian"])
        if n is not None:
            params.check_stability(n)
    except (KeyError, ValueError) as exc:
        problems.append(("micro.dt", str(exc)))


def _check_spins(d: dict, problems: list) -> None:
    """L_s against L, the upsampling windows, learned closures and several temperatures."""
    _check_temperatures(d, problems)
    micro, part, ups = d.get("micro", {}), d.get("partial", {}), d.get("upsampling", {})
    L = micro.get("size")
    if part.get("large_size") is not None and L is not None and part["large_size"] != L:
        problems.append(("partial.large_size", f"must equal micro.size = {L} (the large system), got {part['large_size']}"))
    sizes = part.get("small_size")
    if sizes is not None:
        bad = [s for s in sizes if not float(s).is_integer() or s < 2]
        if bad:
            problems.append(("partial.small_size", f"must be integers >= 2, got {bad}"))
        elif len(set(sizes)) != len(sizes):
            problems.append(("partial.small_size", f"must not repeat a size, got {list(sizes)}"))
        else:
            part["small_size"] = tuple(int(s) for s in sizes)
            if L is not None:
                from .upsampling import check_upsampling

                for s in part["small_size"]:
                    if L % s:
                        problems.append(("partial.small_size", f"micro.size = {L} must be a multiple of every small size, got {s}"))
                        break
                    try:
                        check_upsampling(s, L, ups.get("window", 16), ups.get("stride", 8), 256, "time",
                                         ups.get("window_time", 1.0))
                    except ValueError as exc:
                        msg = str(exc)
                        key = "partial.small_size"
                        for name in ("window", "stride"):
                            if msg.startswith(name):
                                key = f"upsampling.{name}"
                        problems.append((key, f"L_s = {s}: {msg}"))
                        break
    _check_closure(d, problems)


def _check_temperatures(d: dict, problems: list) -> None:
    """Several ``micro.temperature`` values (a temperature-conditioned SDE): distinct, the pair blocks shared evenly;
    ``truth.temperature`` only then."""
    micro, part = d.get("micro", {}), d.get("partial", {})
    temps, truth_t = micro.get("temperature") or (), d.get("truth", {}).get("temperature") or ()
    if len(set(temps)) != len(temps):
        problems.append(("micro.temperature", f"must not repeat a temperature, got {list(temps)}"))
    if len(temps) == 1 and truth_t and tuple(truth_t) != tuple(temps):
        problems.append(("truth.temperature", f"other temperatures need a temperature-conditioned SDE, i.e. several "
                                              f"micro.temperature values (got one: {temps[0]:g})"))
    blocks = part.get("pairs", 0) // part.get("block", 1) if part.get("pairs") and part.get("block") else None
    if len(temps) > 1 and blocks is not None and blocks % len(temps):
        problems.append(("partial.pairs", f"the {blocks} blocks of partial.block pairs must divide evenly among the "
                                          f"{len(temps)} temperatures (blocks take them in turn)"))
    if len(temps) > 1 and (d.get("closure", {}).get("latent") or 0) > 0:
        problems.append(("closure.latent", "learned closures are not built for a temperature-conditioned SDE: use 0 "
                                           "or one micro.temperature"))


def _check_alloy(d: dict, problems: list) -> None:
    """Species, vacancies, one small size that tiles the lattice; no learned closures."""
    micro, part = d.get("micro", {}), d.get("partial", {})
    species = micro.get("species")
    if species is not None:
        unknown = [x for x in species if x not in ALLOY_SPECIES]
        if unknown:
            problems.append(("micro.species", f"unknown species {unknown}: the stand-in barrier model of "
                                              f"REFERENCE-002 §9 knows {list(ALLOY_SPECIES)}"))
        elif sorted(species) != sorted(ALLOY_SPECIES):
            problems.append(("micro.species", f"must be the equimolar {list(ALLOY_SPECIES)}, got {list(species)}"))
    if micro.get("vacancies") is not None and micro["vacancies"] < 1:
        problems.append(("micro.vacancies", f"must be >= 1 (nothing moves without a vacancy), got {micro['vacancies']}"))
    sizes, cells = part.get("small_size"), micro.get("cells")
    if sizes is not None:
        if len(sizes) != 1 or not float(sizes[0]).is_integer() or sizes[0] < 2:
            problems.append(("partial.small_size", f"must be one integer >= 2 (cells per side), got {list(sizes)}"))
        else:
            part["small_size"] = (int(sizes[0]),)
            if cells is not None and (cells % int(sizes[0]) or cells == int(sizes[0])):
                problems.append(("partial.small_size", f"micro.cells = {cells} must be a multiple > 1 of it (the "
                                                       f"lattice is not divisible into tiles), got {int(sizes[0])}"))
    if (d.get("closure", {}).get("latent") or 0) > 0:
        problems.append(("closure.latent", "the alloy's closure is its six SRO parameters (REFERENCE-002 §1c): use 0"))
    tiling, per_pair = part.get("tiling"), str(part.get("tiles_per_pair", "1")).strip().lower()
    if (micro.get("vacancies") or 1) > 1 and (tiling == "independent" or (tiling == "replicate" and per_pair not in
                                                                          ("1", "1.0"))):
        why = ("a tile run is its small system with its one vacancy" if tiling == "independent" else
               "several tiles per pair pick one vacancy per tile")
        problems.append(("micro.vacancies", f"partial.tiling: {tiling} needs one vacancy per small system ({why}), "
                                            f"got {micro['vacancies']}"))
    _check_temperatures(d, problems)
    d["stages"] = tuple(s for s in d.get("stages", ()) if s != "closure")


#: Per-system cross-key rules (the systems of .systems.SYSTEMS).
_SYSTEM_RULES = {"curie_weiss": _check_spins, "ising2d": _check_spins, "predator_prey": _check_predator_prey,
                 "bcc_alloy": _check_alloy}


def check(d: dict, problems: list) -> None:
    """Cross-key rules; append ``(dotted key, message)`` to ``problems``."""
    _check_tiles_per_pair(d, problems)
    part, loss, sde = d.get("partial", {}), d.get("loss", {}), d.get("sde", {})
    truth, roll = d.get("truth", {}), d.get("rollout", {})
    _SYSTEM_RULES[d["micro"]["model"]](d, problems)
    if part.get("pairs") and part.get("block") and part["pairs"] % part["block"]:
        problems.append(("partial.block", f"must divide partial.pairs = {part['pairs']}, got {part['block']}"))
    if part.get("block") and part.get("snapshots_per_run") and part["snapshots_per_run"] > part["block"]:
        problems.append(("partial.snapshots_per_run", f"must not exceed partial.block = {part['block']}"))
    scaling = loss.get("scaling")
    if scaling is not None and scaling != "K" and not 0 < _number(scaling) < float("inf"):
        problems.append(("loss.scaling", f"expected K or a number > 0, got {scaling!r}"))
    eps = sde.get("epsilon")
    if eps is not None and eps != "auto" and not 0 <= _number(eps) < float("inf"):
        problems.append(("sde.epsilon", f"expected auto or a number >= 0, got {eps!r}"))
    hidden = sde.get("hidden")
    if hidden is not None and any(not float(h).is_integer() or h < 1 for h in hidden):
        problems.append(("sde.hidden", f"must be integers >= 1, got {list(hidden)}"))
    elif hidden is not None:
        sde["hidden"] = tuple(int(h) for h in hidden)
    if truth.get("runs") and truth.get("block") and truth["runs"] % truth["block"]:
        problems.append(("truth.block", f"must divide truth.runs = {truth['runs']}, got {truth['block']}"))
    t_end, every = truth.get("t_end"), truth.get("save_every")
    if t_end is not None and every is not None and _whole(t_end, every) is None:
        problems.append(("truth.save_every", f"must divide truth.t_end = {t_end:g} a whole number of times, got {every:g}"))
    if every is not None and roll.get("dt") is not None and _whole(every, roll["dt"]) is None:
        problems.append(("rollout.dt", f"must divide truth.save_every = {every:g} a whole number of times, got {roll['dt']:g}"))
