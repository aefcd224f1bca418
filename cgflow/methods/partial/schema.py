"""Spec sections of method ``partial`` (seed 002), read by :mod:`cgflow.spec`.

Keys fixed by issue 10: ``micro.model`` (curie_weiss or ising2d),
``micro.temperature``, ``micro.field``, ``micro.size`` (L of the large system,
N = L**2), ``partial.small_size`` (one L_s or a list), ``partial.large_size``
(optional; must equal ``micro.size``), ``partial.boundary`` (frozen | periodic),
``loss.scaling`` (``K``, ``1`` or a number), ``closure.latent`` (learned
closure dimensions beside the observables; Ising only; 0 skips the closure stage). Everything else has defaults; times are in attempts per spin.
"""

from __future__ import annotations

from typing import Any

from ...spec import Field

#: The stages of method partial, in execution order.
STAGES: tuple[str, ...] = ("pairs", "truth", "closure", "sde", "rollout", "evaluation")

_POS = dict(minimum=0, exclusive_minimum=True)

#: Sections of the spec (nested dicts of cgflow.spec.Field).
SCHEMA: dict[str, Any] = {
    "micro": {
        "model": Field("str", choices=("curie_weiss", "ising2d"), doc="spin model: mean field, or the 2-D periodic Ising lattice"),
        "temperature": Field("float", **_POS, doc="T (J = k_B = 1)"),
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
                                   doc="snapshots saved per small-system run (the first is the random initial state)"),
        "snapshot_interval": Field("float", required=False, default=1.0, **_POS,
                                   doc="time between saved small-system snapshots"),
        "tiles_per_pair": Field("strnum", required=False, default="auto",
                                doc="tiles of a snapshot evolved (each alone, the rest frozen) and averaged per pair: all "
                                    "(r = K), an integer r, or 1 (the authors'); the method's lambda is K/r; auto: all, "
                                    "or 1 with closure.latent > 0 (the closure stage encodes one evolved tile)"),
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
        "drift_estimator": Field("str", required=False, default="richardson", choices=("richardson", "euler"),
                                 doc="richardson: fit 4 Delta(dt/2) - Delta(dt) of the same run (bias O(dt**2), 5x noise, "
                                     "loss uses 5 lambda); euler: Delta(dt) as one Euler step (the authors'; bias O(dt))"),
    },
    "truth": {
        "initial": Field("floats", required=False, default=(0.0, 0.25, -0.25, 0.5, -0.5), minimum=-1, maximum=1,
                         doc="initial magnetisations m0 of the test runs (random shuffles with int((1 + m0) N/2) up spins)"),
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

#: Sections that may be omitted as a whole.
OPTIONAL_SECTIONS: frozenset[str] = frozenset({"upsampling", "loss", "closure", "sde", "truth", "rollout"})


def sections(data: Any = None, problems: list | None = None) -> dict[str, Any]:
    """The sections (they do not depend on the spec's values)."""
    return SCHEMA


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
    part, latent = d.get("partial", {}), (d.get("closure", {}).get("latent") or 0)
    value = str(part.get("tiles_per_pair", "auto")).strip().lower()
    value = value[:-2] if value.endswith(".0") else value
    if value not in ("auto", "all") and not (value.isdigit() and int(value) >= 1):
        problems.append(("partial.tiles_per_pair", f"must be auto, all or an integer >= 1, got {part['tiles_per_pair']!r}"))
    elif latent and value not in ("auto", "1"):
        problems.append(("partial.tiles_per_pair", f"must be 1 (or auto) with closure.latent = {latent} > 0: the closure "
                                                   f"stage encodes one evolved tile per pair, got {value!r}"))


def check(d: dict, problems: list) -> None:
    """Cross-key rules; append ``(dotted key, message)`` to ``problems``."""
    _check_tiles_per_pair(d, problems)
    micro, part = d.get("micro", {}), d.get("partial", {})
    ups, loss, sde = d.get("upsampling", {}), d.get("loss", {}), d.get("sde", {})
    truth, roll = d.get("truth", {}), d.get("rollout", {})
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
