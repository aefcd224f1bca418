"""The physical systems the stages of method ``partial`` run on (seed 002, REFERENCE-002 §1–§3).

The stages (:mod:`.stages`) know no model: they ask a *system* for everything
physical -- small-system runs, upsampling, random large states, the large-system
test runs, where a tile goes back into a lattice, and the model's patch
numerics (:class:`~.evolution.PatchModel`). A system is a frozen dataclass (its
fields are the stages' parameters, fingerprinted with them) built from the spec by
:func:`system_from_spec`:

* :class:`SpinSystem` -- heat-bath Glauber Curie–Weiss and 2-D Ising
  (:mod:`cgflow.micro.glauber`; ``micro.model: curie_weiss | ising2d``);
* :class:`PredatorPreySystem` -- the stochastic predator–prey SPDE
  (:mod:`cgflow.micro.predator_prey`; ``micro.model: predator_prey``).

States are arrays of shape (B, *state_shape(size)); ``small_size`` is the size a
small system is simulated at, ``tile_size(small_size)`` the side of the tiles of
the partial evolution (equal for the spins; the predator–prey tiles are K = 5
tiles of the large grid, whatever n_s is, REFERENCE §2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ...micro import glauber
from ...micro import predator_prey as pp
from .schema import ARRHENIUS_ENERGY
from .upsampling import hierarchical_upsample

__all__ = ["PredatorPreySystem", "SpinSystem", "SYSTEMS", "system_from_spec"]

SPIN_TIME_UNIT = "attempts per spin (every spin attempts a flip at rate 1); not the authors' sweep time"


def _coords_1d(dim: str, values: dict) -> dict:
    return {name: (dim, np.asarray(v)) for name, v in values.items()}


def _temperature_fields(spec) -> dict:
    """``temperature`` (the first of ``micro.temperature``) and, for several, ``temperatures`` and
    ``truth_temperatures`` (the schema allows ``truth.temperature`` only then)."""
    temps = tuple(float(t) for t in spec["micro"]["temperature"])
    if len(temps) == 1:
        return dict(temperature=temps[0])
    truth = tuple(float(t) for t in spec["truth"].get("temperature") or ())
    return dict(temperature=temps[0], temperatures=temps, truth_temperatures=truth)


class TemperatureConditioned:
    """Mixin of a system dataclass with a ``temperatures`` field: several make it conditioned on T."""

    @property
    def condition_names(self) -> tuple:
        """``("temperature",)`` for a temperature-conditioned SDE, else ``()``."""
        return ("temperature",) if self.temperatures else ()

    @property
    def training_conditions(self) -> np.ndarray:
        """(C, 1) training temperatures (block j of the pairs runs at row j % C)."""
        return np.array(self.temperatures, dtype=float).reshape(-1, 1)


# ============================================================================= spins
@dataclass(frozen=True)
class SpinSystem(TemperatureConditioned):
    """Curie–Weiss or 2-D Ising heat-bath Glauber dynamics on an L x L lattice (REFERENCE-002 §1b).

    Parameters
    ----------
    model : {"curie_weiss", "ising2d"}
    temperature, field : float
    size : int
        L of the large system (N = L**2).
    boundary : {"frozen", "periodic"}
        Patch boundary of the tile runs and the relaxation windows.
    window, stride, window_time
        Upsampling relaxation windows (:func:`~.upsampling.hierarchical_upsample`).
    starts : tuple of float
        Initial magnetisations m0 of the large-system test runs.
    temperatures : tuple of float
        Training temperatures of a temperature-conditioned SDE (``()``: ``temperature``
        alone, unconditioned): block j of the pairs runs at ``temperatures[j % C]``, the
        SDE takes T as an input, and the test runs start from every m0 at every
        ``truth_temperatures`` entry (start dimension ``start`` with coordinates ``m0``
        and ``temperature``). Time stays in attempts per spin at every T.
    truth_temperatures : tuple of float
        Temperatures of the test runs (``()``: the training ones).
    """

    model: str
    temperature: float
    field: float
    size: int
    boundary: str = "frozen"
    window: int = 16
    stride: int = 8
    window_time: float = 1.0
    starts: tuple = (0.0, 0.25, -0.25, 0.5, -0.5)
    temperatures: tuple = ()
    truth_temperatures: tuple = ()

    state_dims: ClassVar[tuple[str, ...]] = ("row", "col")
    state_dtype: ClassVar[type] = np.int8
    time_unit: ClassVar[str] = SPIN_TIME_UNIT
    #: ``partial.random_fraction``'s random large states: m0 ~ U(-1, 1) shuffles (the authors', §3).
    random_state_text: ClassVar[str] = "random large configuration (m0 ~ U(-1, 1))"

    @classmethod
    def from_spec(cls, spec) -> "SpinSystem":
        m, u = spec["micro"], spec["upsampling"]
        return cls(model=m["model"], field=m["field"], size=m["size"], boundary=spec["partial"]["boundary"],
                   window=u["window"], stride=u["stride"], window_time=u["window_time"],
                   starts=tuple(spec["truth"]["initial"]), **_temperature_fields(spec))

    # ------------------------------------------------------------------ temperature conditioning

    def at_condition(self, index: int) -> "SpinSystem":
        """The unconditioned system at training temperature ``index``."""
        return replace(self, temperature=float(self.temperatures[index]), temperatures=(), truth_temperatures=())

    @property
    def start_dim(self) -> str:
        """``m0``; ``start`` (coordinates ``m0`` and ``temperature``) for a conditioned system."""
        return "start" if self.temperatures else "m0"

    @property
    def test_starts(self) -> tuple:
        """What the truth stage runs over: the m0 values, or every (m0, T) of a conditioned system (T-major)."""
        if not self.temperatures:
            return tuple(self.starts)
        return tuple((float(m0), float(T)) for T in (self.truth_temperatures or self.temperatures)
                     for m0 in self.starts)

    # ------------------------------------------------------------------ facts
    def params(self, size: int | None = None) -> glauber.GlauberParams:
        return glauber.GlauberParams(self.model, self.temperature, self.field, self.size if size is None else size)

    @property
    def patch_model(self) -> glauber.GlauberParams:
        """The large system's :class:`~.evolution.PatchModel`."""
        return self.params()

    @property
    def observable_names(self) -> tuple:
        return glauber.MODEL_FACTS[self.model].observables

    @property
    def exact_laws(self) -> bool:
        """Drift and diffusion of m known in closed form (Curie–Weiss at one temperature)."""
        return glauber.MODEL_FACTS[self.model].exact_laws and not self.temperatures

    def state_shape(self, size: int | None = None) -> tuple:
        L = self.size if size is None else size
        return (L, L)

    def n_sites(self, size: int | None = None) -> int:
        return (self.size if size is None else size) ** 2

    def tile_size(self, small_size: int) -> int:
        return int(small_size)

    def n_tiles(self, small_size: int) -> int:
        """K = (L/L_s)**2."""
        return (self.size // self.tile_size(small_size)) ** 2

    def record_times(self, duration: float) -> list[float]:
        """Times inside a tile run of ``duration`` at which it is also observed (Richardson drift, checks)."""
        return [duration / 4, duration / 2]

    def attrs(self) -> dict:
        cond = {} if not self.temperatures else dict(training_temperatures=list(self.temperatures))
        return dict(model=self.model, temperature=self.temperature, field=self.field, large_size=self.size,
                    n_sites=self.n_sites(), n_spins=self.n_sites(), time_unit=self.time_unit, **cond)

    def pair_attrs(self) -> dict:
        """What the ``pairs`` group records about how its large states and tile runs were made."""
        return dict(boundary=self.boundary, upsampling="2 x 2 replication + windowed relaxation",
                    upsampling_hint="lower upsampling.window_time",
                    upsampling_window=self.window, upsampling_stride=self.stride,
                    upsampling_window_time=self.window_time, upsampling_clock="time")

    def start_coords(self) -> dict:
        if not self.temperatures:
            return {self.start_dim: np.array(self.starts, dtype=float)}
        m0, T = np.array(self.test_starts, dtype=float).T
        return {"start": np.arange(len(m0)), "m0": ("start", m0), "temperature": ("start", T)}

    # ------------------------------------------------------------------ runs
    def small_snapshots(self, n_runs: int, per_run: int, interval: float, small_size: int, rng,
                        burn_in: float = 0.0) -> np.ndarray:
        """(n_runs * per_run, L_s, L_s): runs from the authors' m0 ~ U(-1, 1) shuffles, a snapshot every interval.

        The first snapshot is the random start itself, or with ``burn_in`` > 0 the state that long after it.
        """
        small = self.params(small_size)
        start = glauber.random_spins(n_runs, small_size, rng)
        pool = np.empty((n_runs, per_run, small_size, small_size), dtype=np.int8)
        for r in range(n_runs):  # one kernel call per saved snapshot
            s = start[r]
            if burn_in > 0:
                s, _ = glauber.run_time(s, [burn_in], small, rng)
            pool[r, 0] = s
            for k in range(1, per_run):
                s, _ = glauber.run_time(s, [interval], small, rng)
                pool[r, k] = s
        return pool.reshape(-1, small_size, small_size)

    def observables(self, states, size: int | None = None) -> np.ndarray:
        return glauber.observables(states, self.params(size))

    def source_observables(self, pool, size: int) -> np.ndarray:
        """z of the small snapshot each upsampled state is built from (the upsampling check's reference)."""
        return self.observables(pool, size)

    def upsample(self, pool, rng) -> np.ndarray:
        """Hierarchical 2 x 2 replication and windowed relaxation to L, in order (REFERENCE §3)."""
        return hierarchical_upsample(pool, self.size, self.params(), rng, window=self.window, stride=self.stride,
                                     boundary=self.boundary, window_time=self.window_time, resample=False)

    def random_states(self, n: int, rng) -> np.ndarray:
        return glauber.random_spins(n, self.size, rng)

    def test_runs(self, start: int, n: int, times, rng, keep_states: bool):
        """Large-system runs from start ``start``: z (n, T, d) at ``times`` and, if asked, the states (n, T, L, L)."""
        if self.temperatures:
            m0, T = self.test_starts[start]
            return replace(self, temperature=T, temperatures=(), truth_temperatures=(),
                           starts=(m0,)).test_runs(0, n, times, rng, keep_states)
        p = self.params()
        spins = glauber.random_spins(n, self.size, rng, m0=self.starts[start])
        if not keep_states:
            return np.stack([glauber.run_time(s, times, p, rng)[1] for s in spins]), None  # one kernel call per run
        # one kernel call per save interval (exact in law: the pending event is memoryless)
        snaps = np.empty((n, len(times)) + spins.shape[1:], np.int8)
        z = np.empty((n, len(times), len(self.observable_names)))
        for r, s in enumerate(spins):
            snaps[r, 0], z[r, 0] = s, glauber.observables(s, p)
            for k in range(1, len(times)):
                s, obs = glauber.run_time(s, [times[k] - times[k - 1]], p, rng)
                snaps[r, k], z[r, k] = s, obs[0]
        return z, snaps

    def test_run_text(self) -> str:
        return "int((1 + m0) N / 2) up spins, uniformly shuffled"

    def place_tiles(self, states, tiles, tile_states, small_size: int) -> np.ndarray:
        """A copy of ``states`` with tile ``tiles[b]`` of state b replaced by ``tile_states[b]``."""
        after = np.array(states, copy=True)
        Ls = self.tile_size(small_size)
        nt = self.size // Ls
        for b, (I, tile) in enumerate(zip(tiles, tile_states)):
            r, c = (I // nt) * Ls, (I % nt) * Ls
            after[b, r:r + Ls, c:c + Ls] = tile
        return after

    # ------------------------------------------------------------------ learned closures (REFERENCE §5)
    def closure_autoencoder(self, small_size: int, latent: int, **fit):
        """The per-tile CNN autoencoder of the tiles of side L_s (Ising; ``latent`` closure variables in all)."""
        from ...learn.closure import ClosureAutoencoder

        return ClosureAutoencoder(tile_size=self.tile_size(small_size), latent=latent, **fit)

    # ------------------------------------------------------------------ exact laws (Curie–Weiss, REFERENCE §9)
    def drift_exact(self, m):
        return glauber.cw_drift(m, self.temperature, self.field)

    def diffusion_exact(self, m, n_sites: int):
        return glauber.cw_diffusion(m, self.temperature, self.field, n_sites)

    def stationary_exact(self) -> float:
        law = glauber.cw_stationary_law(self.n_sites(), self.temperature, self.field)
        return float(np.sum(law[0] * law[1]))

    def warmup(self) -> None:
        glauber.warmup()


# ============================================================================= predator–prey
@dataclass(frozen=True)
class PredatorPreySystem:
    """The stochastic predator–prey SPDE on n cells (REFERENCE-002 §1a, §2, §3).

    Parameters
    ----------
    params : PredatorPreyParams
    size : int
        n of the large grid (200 in the paper).
    tile : int
        Cells per partial-evolution tile (40 in the paper: K = 5 tiles of the large grid).
    starts : tuple of (m, k)
        Initial conditions u = m + k cos(10 pi x), v = 1 - m - k cos(10 pi x) of the test runs.
    train_m, train_k : (low, high)
        The uniform ranges of m and k of the small-system runs (the authors' U(.45, .55), U(.05, .15)).
    """

    params: pp.PredatorPreyParams
    size: int = 200
    tile: int = 40
    starts: tuple = tuple((m, k) for m in (0.45, 0.5, 0.55) for k in (0.05, 0.1, 0.15))
    train_m: tuple = (0.45, 0.55)
    train_k: tuple = (0.05, 0.15)

    state_dims: ClassVar[tuple[str, ...]] = ("species", "cell")
    state_dtype: ClassVar[type] = np.float64
    start_dim: ClassVar[str] = "start"
    condition_names: ClassVar[tuple] = ()
    observable_names: ClassVar[tuple] = ("u", "v")
    exact_laws: ClassVar[bool] = False
    boundary: ClassVar[str] = "frozen"  # ghost cells from the frozen neighbours (REFERENCE §2)
    time_unit: ClassVar[str] = "model time of the SPDE (Euler-Maruyama steps of micro.dt)"
    random_state_text: ClassVar[str] = "random large initial state (m ~ U(train_m), k ~ U(train_k))"

    @classmethod
    def from_spec(cls, spec) -> "PredatorPreySystem":
        m, t = spec["micro"], spec["truth"]
        params = pp.PredatorPreyParams(a=m["a"], b=m["b"], noise=m["noise"], dt=m["dt"], diffusion=m["diffusion"],
                                       laplacian=m["laplacian"])
        starts = tuple((float(a), float(b)) for a in t["m"] for b in t["k"])
        return cls(params=params, size=m["size"], tile=spec["partial"]["tile_size"], starts=starts,
                   train_m=tuple(m["train_m"]), train_k=tuple(m["train_k"]))

    @property
    def patch_model(self) -> pp.PredatorPreyPatchModel:
        return pp.PredatorPreyPatchModel(self.params)

    def state_shape(self, size: int | None = None) -> tuple:
        return (2, self.size if size is None else size)

    def n_sites(self, size: int | None = None) -> int:
        return self.size if size is None else size

    def tile_size(self, small_size: int) -> int:
        return self.tile

    def n_tiles(self, small_size: int) -> int:
        return self.size // self.tile

    def steps(self, duration: float) -> int | None:
        """Euler–Maruyama steps in ``duration``, or None if it is not a whole number of steps."""
        q = duration / self.params.dt
        return int(round(q)) if round(q) >= 1 and math.isclose(q, round(q), rel_tol=1e-9) else None

    def record_times(self, duration: float) -> list[float] | None:
        """[duration/4, duration/2] if both are whole numbers of steps (else the run cannot be observed there)."""
        rec = [duration / 4, duration / 2]
        return rec if all(self.steps(t) is not None for t in rec) else None

    def attrs(self) -> dict:
        p = self.params
        return dict(model="predator_prey", a=p.a, b=p.b, noise=p.noise, dt=p.dt, diffusion=p.diffusion,
                    laplacian=p.laplacian, large_size=self.size, tile_size=self.tile, n_sites=self.size,
                    time_unit=self.time_unit)

    def pair_attrs(self) -> dict:
        return dict(boundary=self.boundary, upsampling="linear interpolation n_s -> n (no relaxation)",
                    upsampling_hint="the interpolation should keep the means to O(dx^2): check the grids",
                    tile_runs="Euler-Maruyama steps of one tile, one ghost cell per side from the frozen neighbours",
                    training_m=list(self.train_m), training_k=list(self.train_k))

    @property
    def test_starts(self) -> tuple:
        """What the truth stage runs over: the (m, k) starts."""
        return self.starts

    def start_coords(self) -> dict:
        s = np.array(self.starts, dtype=float).reshape(-1, 2)
        return {self.start_dim: np.arange(len(s)), "m": (self.start_dim, s[:, 0]), "k": (self.start_dim, s[:, 1])}

    def _initial(self, n: int, size: int, rng) -> np.ndarray:
        m = rng.uniform(*self.train_m, size=n)
        k = rng.uniform(*self.train_k, size=n)
        return pp.initial_state(size, m, k)

    # ------------------------------------------------------------------ runs
    def small_snapshots(self, n_runs: int, per_run: int, interval: float, small_size: int, rng,
                        burn_in: float = 0.0) -> np.ndarray:
        """(n_runs * per_run, 2, n_s): runs from random (m, k), a snapshot every ``interval`` (whole steps),
        the first at ``burn_in`` (whole steps; 0: the initial state)."""
        every = self.steps(interval)
        if every is None:
            raise ValueError(f"partial.snapshot_interval = {interval:g} must be a whole number of micro.dt = "
                             f"{self.params.dt:g}")
        x = self._initial(n_runs, small_size, rng)
        if burn_in > 0:
            steps = self.steps(burn_in)
            if steps is None:
                raise ValueError(f"partial.burn_in = {burn_in:g} must be a whole number of micro.dt = "
                                 f"{self.params.dt:g}")
            x = self.params.simulate(x, steps, rng, save_every=steps)[:, -1]
        out = self.params.simulate(x, every * (per_run - 1), rng, save_every=every)  # (runs, per_run, 2, n_s)
        return out.reshape(-1, 2, small_size)

    def observables(self, states, size: int | None = None) -> np.ndarray:
        return np.asarray(states, dtype=np.float64).mean(axis=-1)

    def source_observables(self, pool, size: int) -> np.ndarray:
        return self.observables(pool, size)

    def upsample(self, pool, rng) -> np.ndarray:
        """Linear interpolation n_s -> n (REFERENCE §3; no relaxation)."""
        n_s = np.asarray(pool).shape[-1]
        return pp.upsample(pool, self.size // n_s)

    def random_states(self, n: int, rng) -> np.ndarray:
        return self._initial(n, self.size, rng)

    def test_runs(self, start: int, n: int, times, rng, keep_states: bool):
        """Direct n-cell runs from start ``start``: z (n, T, 2) spatial means at ``times`` (+ states (n, T, 2, n))."""
        m, k = self.starts[start]
        times = np.asarray(times, dtype=float)
        every = self.steps(times[1] - times[0]) if len(times) > 1 else 1
        if every is None or not np.allclose(times, times[0] + every * self.params.dt * np.arange(len(times))):
            raise ValueError(f"truth save times must be evenly spaced whole numbers of micro.dt = {self.params.dt:g}")
        x = pp.initial_state(self.size, np.full(n, m), np.full(n, k))
        states = self.params.simulate(x, every * (len(times) - 1), rng, save_every=every)
        return states.mean(axis=-1), (states if keep_states else None)

    def test_run_text(self) -> str:
        return "u = m + k cos(10 pi x), v = 1 - m - k cos(10 pi x) (REFERENCE-002 §1a)"

    def place_tiles(self, states, tiles, tile_states, small_size: int) -> np.ndarray:
        after = np.array(states, copy=True)
        w = self.tile
        for b, (I, tile) in enumerate(zip(tiles, tile_states)):
            after[b, :, I * w:(I + 1) * w] = tile
        return after

    # ------------------------------------------------------------------ learned closures (REFERENCE §5)
    def closure_autoencoder(self, small_size: int, latent: int, **fit):
        """The per-species, per-tile MLP autoencoder (``latent`` closure variables in all: latent / 2 per species)."""
        from ...learn.field_closure import FieldClosureAutoencoder

        return FieldClosureAutoencoder(tile_size=self.tile, latent=latent // 2, **fit)

    def warmup(self) -> None:
        pass


# ============================================================================= NbMoTa alloy
class ScaledTimePatchModel:
    """A :class:`~.evolution.PatchModel` whose clock is ``scale`` times the stages': durations in, dt out."""

    def __init__(self, model, scale: float):
        self.model, self.scale = model, float(scale)
        self.observable_names = model.observable_names

    def tile_observables(self, snapshots, tile_size: int, boundary: str = "frozen"):
        return self.model.tile_observables(snapshots, tile_size, boundary)

    def evolve_tiles(self, snapshots, tile_size, tiles, n_events, boundary, rng, duration=None, **kw):
        if kw.get("record_times") is not None:
            kw["record_times"] = [t * self.scale for t in kw["record_times"]]
        out = self.model.evolve_tiles(snapshots, tile_size, tiles, n_events, boundary, rng,
                                      duration=None if duration is None else duration * self.scale, **kw)
        return out[:3] + (out[3] / self.scale,) + tuple(out[4:])

    def evolve_full(self, snapshots, n_events, rng):
        z0, z1, dt = self.model.evolve_full(snapshots, n_events, rng)
        return z0, z1, dt / self.scale



@dataclass(frozen=True)
class AlloySystem(TemperatureConditioned):
    """Vacancy-exchange KMC of equimolar NbMoTa on a periodic BCC lattice (REFERENCE-002 §1c, §2, §3, §9).

    The barriers are the **stand-in** pair-interaction + KRA model of REFERENCE-002 §9
    (:mod:`cgflow.micro.bcc_alloy`), not the authors' neural barrier model.

    **Several temperatures** (``micro.temperature`` a list, REFERENCE-002 §1c: the
    authors' SDE is conditioned on T): the system is *conditioned* -- its
    ``condition_names`` are ``("temperature",)``, block j of the pairs runs at the
    training temperature ``temperatures[j % C]`` (:meth:`at_condition`), the learned
    SDE takes T as an input that does not evolve, and the test runs (one start per
    ``truth_temperatures`` entry, which may include temperatures not trained on) give
    each rollout its T. The clock is *Arrhenius-scaled*: one unit is
    ``time_scale_at(T) = time_scale exp(E_a/k_B (1/T - 1/T_0))`` seconds, T_0 the first
    training temperature and E_a ``arrhenius_energy`` (default: the mean KRA reference
    barrier of the stand-in model, 1.116 eV). A unit is then about the same number of
    vacancy jumps at every T (124 at 2000 K with 1e-9 s), so one network sees drifts of
    one magnitude instead of rates that differ by exp(E_a/k_B T) (a factor ~650 between
    3000 and 1200 K); the store records the seconds per unit of every temperature.
    With one temperature the scale factor is exactly 1 and nothing is conditioned.

    Parameters
    ----------
    temperature : float
        T in kelvin.
    cells : int
        Cubic cells per side of the large lattice (16: 8192 sites).
    lam : float
        ``micro.barrier.lambda`` of the stand-in barriers.
    small_vacancies : int
        Vacancies of every small system (1, the authors').
    relax_jumps : int
        Jumps per vacancy per seam-relaxation window of the upsampling (the authors' 7).
    time_scale : float
        Seconds per unit of the stages' clock: every time key of the spec (pair
        duration, snapshot interval, truth times, rollout step) is in these units, so
        the learned drift is O(1) per unit; the store records it (``time_scale_seconds``).
    small_cells : int
        Cells per side of the small systems (``partial.small_size``; 8: 1024 sites).
    snapshots_per_run : int
        ``partial.snapshots_per_run``: the upsampling draws the blocks of a large state
        from small snapshots taken at the same time.
    temperatures : tuple of float
        Training temperatures of a temperature-conditioned SDE (``()``: ``temperature``
        alone, unconditioned).
    truth_temperatures : tuple of float
        Temperatures of the large-system test runs (``()``: the training ones).
    arrhenius_energy : float
        E_a (eV) of the Arrhenius-scaled clock (:meth:`time_scale_at`).
    dress_jumps : int
        Every vacancy runs inside its block, after the mixed-tiling upsampling placed it, for
        the time of about this many jumps in a random alloy
        (:func:`~cgflow.micro.bcc_alloy_patches.dress_vacancies`), so that the window runs
        start from a vacancy in its own neighbourhood (0: the authors' fresh placement); also
        for random states. Not used by a replica, whose vacancies are the small system's own.
        A fixed time, not a fixed number of jumps: that samples the jump chain's law
        (weighted by the vacancy's total rate), not the Boltzmann law, and left an offset of
        its own (measured at 800 K on exact replicas: mean 8-unit window increment of
        delta_MoMo +0.0001 +- 0.0003 undressed, -0.0010 +- 0.0003 after 64 jumps, +0.0000
        after a fixed 8 units).
    tiling : {"mixed", "independent", "replicate"}
        ``mixed``: the K blocks of a large state are K same-time snapshots (the authors');
        ``independent``: K same-time snapshots kept whole, and every tile run is the tile's
        small system itself (a periodic torus; :attr:`boundary` is ``periodic``): the large
        system as K independent small systems, the assumption behind lambda = K
        (REFERENCE-002 §0), so the pairs carry the tile-to-tile spread of the small systems'
        states that a replica lacks and no seam defect;
        ``replicate``: one snapshot replicated K times, exactly (no antiphase seams between
        independently ordered blocks, no vacancy moved; for ordering temperatures).
    """

    temperature: float
    cells: int = 16
    lam: float = 0.5
    small_vacancies: int = 1
    relax_jumps: int = 7
    time_scale: float = 1e-9
    small_cells: int = 8
    snapshots_per_run: int = 16
    temperatures: tuple = ()
    truth_temperatures: tuple = ()
    arrhenius_energy: float = ARRHENIUS_ENERGY
    dress_jumps: int = 64
    tiling: str = "mixed"

    state_dims: ClassVar[tuple[str, ...]] = ("site",)
    state_dtype: ClassVar[type] = np.int8
    start_dim: ClassVar[str] = "start"
    exact_laws: ClassVar[bool] = False
    random_state_text: ClassVar[str] = "random equimolar configuration, one vacancy per small-system block"

    @classmethod
    def from_spec(cls, spec) -> "AlloySystem":
        m = spec["micro"]
        p = spec["partial"]
        return cls(cells=m["cells"], lam=m["barrier"]["lambda"], small_vacancies=m["vacancies"],
                   relax_jumps=p["relax_jumps"], time_scale=m["time_scale"], small_cells=int(p["small_size"][0]),
                   snapshots_per_run=p["snapshots_per_run"], arrhenius_energy=m["arrhenius_energy"],
                   dress_jumps=p["dress_jumps"], tiling=p["tiling"], **_temperature_fields(spec))

    # ------------------------------------------------------------------ temperature conditioning

    @property
    def test_temperatures(self) -> tuple:
        """Temperatures of the large-system test runs, one start each."""
        return self.truth_temperatures or self.temperatures or (self.temperature,)

    def time_scale_at(self, temperature: float) -> float:
        """Seconds per unit of the stages' clock at T: time_scale exp(E_a/k_B (1/T - 1/T_0)), T_0 = temperature."""
        from ...micro import bcc_alloy as ba

        if temperature == self.temperature:
            return self.time_scale
        return self.time_scale * math.exp(self.arrhenius_energy / ba.KB * (1.0 / temperature - 1.0 / self.temperature))

    def at_temperature(self, temperature: float) -> "AlloySystem":
        """The unconditioned system at one temperature, on the Arrhenius-scaled clock of this one."""
        return replace(self, temperature=float(temperature), time_scale=self.time_scale_at(float(temperature)),
                       temperatures=(), truth_temperatures=())

    def at_condition(self, index: int) -> "AlloySystem":
        """The system of training condition ``index`` (:attr:`training_conditions`)."""
        return self.at_temperature(self.temperatures[index])

    @property
    def boundary(self) -> str:
        """``periodic`` (each tile its own small system) with independent tiling, else ``frozen``."""
        return "periodic" if self.tiling == "independent" else "frozen"

    @property
    def starts(self) -> tuple:
        """One test start per test temperature (a conditioned system), else the single random start."""
        return self.test_temperatures if self.temperatures else (0,)

    @property
    def observable_names(self) -> tuple:
        from ...micro import bcc_alloy as ba

        return ba.SRO_PAIRS

    @property
    def time_unit(self) -> str:
        if self.temperatures:
            return f"{self.time_scale:g} s at {self.temperature:g} K, Arrhenius-scaled at other T (attrs 'clock') " \
                   "(nu0 = 1e13/s)"
        return f"{self.time_scale:g} s (nu0 = 1e13/s)"

    def params(self, cells: int | None = None):
        from ...micro import bcc_alloy as ba

        return ba.BccAlloyParams(self.temperature, self.cells if cells is None else cells, self.lam)

    @property
    def patch_model(self) -> "ScaledTimePatchModel":
        """The window partial evolution (:class:`~cgflow.micro.bcc_alloy_patches.BccAlloyPatchModel`), in stage time."""
        from ...micro.bcc_alloy_patches import BccAlloyPatchModel

        tiles = self.tiling == "independent"  # the window is the small system's own tile
        model = BccAlloyPatchModel(self.params(), window_voxels=2 * self.small_cells if tiles else 16,
                                   tile_windows=tiles)
        return ScaledTimePatchModel(model, self.time_scale)

    @property
    def large_vacancies(self) -> int:
        """One vacancy per small-system block (times the small systems' vacancies): what upsampled states hold."""
        return self.small_vacancies * self.n_tiles(self.small_cells)

    def state_shape(self, size: int | None = None) -> tuple:
        return (2 * (self.cells if size is None else size) ** 3,)

    def n_sites(self, size: int | None = None) -> int:
        return 2 * (self.cells if size is None else size) ** 3

    def tile_size(self, small_size: int) -> int:
        return int(small_size)

    def n_tiles(self, small_size: int) -> int:
        return (self.cells // int(small_size)) ** 3

    def record_times(self, duration: float) -> list[float]:
        """dt/4 and dt/2 of every window run (stage units): the Richardson drift and the pair-duration check."""
        return [duration / 4.0, duration / 2.0]

    def attrs(self) -> dict:
        cond = {} if not self.temperatures else dict(
            training_temperatures=list(self.temperatures), arrhenius_energy_ev=self.arrhenius_energy,
            time_scale_seconds_at=[self.time_scale_at(t) for t in sorted(set(self.temperatures + self.starts))],
            time_scale_temperatures=sorted(set(self.temperatures + self.starts)),
            clock=f"Arrhenius-scaled: one unit = time_scale_seconds exp(E_a/k_B (1/T - 1/{self.temperature:g} K)) s")
        return dict(model="bcc_alloy", temperature=self.temperature, cells=self.cells, large_size=self.cells, **cond,
                    n_sites=self.n_sites(), barrier_lambda=self.lam, time_scale_seconds=self.time_scale,
                    barrier_model="stand-in pair interactions + KRA barriers of REFERENCE-002 §9 (not the authors' "
                                  "neural barrier model)", time_unit=self.time_unit)

    def pair_attrs(self) -> dict:
        if self.tiling == "independent":
            upsampling = ("K same-time small snapshots side by side, each kept whole (no relaxation, no vacancy "
                          "moved); every tile run is its own small system (periodic torus)")
        elif self.tiling == "replicate":
            upsampling = ("one small snapshot replicated exactly (no seams, so no seam relaxation; its vacancy kept "
                          "in every block where it settled, not dressed)")
        else:
            upsampling = (f"shifted tiling of same-time small snapshots + seam relaxation ({self.relax_jumps} jumps per "
                          "vacancy per window), one vacancy moved to each block centre and dressed inside its block "
                          f"for the time of {self.dress_jumps} jumps in a random alloy")
        return dict(boundary=self.boundary, upsampling_hint="fewer partial.relax_jumps (seam relaxation)",
                    upsampling=upsampling,
                    tile_runs=("the tile holding the vacancy, as its own periodic small system" if self.tiling ==
                               "independent" else
                               "one vacancy's 16^3-voxel window, real surroundings frozen, the vacancy free to leave"))

    @property
    def test_starts(self) -> tuple:
        """What the truth stage runs over (:attr:`starts`)."""
        return self.starts

    def start_coords(self) -> dict:
        coords = {self.start_dim: np.arange(len(self.starts))}
        if self.temperatures:
            coords["temperature"] = (self.start_dim, np.array(self.starts, dtype=float))
        return coords

    # ------------------------------------------------------------------ runs
    def small_snapshots(self, n_runs: int, per_run: int, interval: float, small_size: int, rng,
                        burn_in: float = 0.0) -> np.ndarray:
        """(n_runs * per_run, N_s): runs from random equimolar states, a snapshot every ``interval`` (run-major),
        the first at ``burn_in`` (0: the random state)."""
        from ...micro import bcc_alloy as ba

        p = self.params(small_size)
        c = ba.random_configuration(small_size, self.small_vacancies, rng, n_configs=n_runs)
        pool = np.empty((n_runs, per_run, c.shape[1]), np.int8)
        for r in range(n_runs):
            x = c[r]
            if burn_in > 0:
                x = ba.run_time(x, burn_in * self.time_scale, p, rng)[0]
            pool[r, 0] = x
            for k in range(1, per_run):
                x = ba.run_time(x, interval * self.time_scale, p, rng)[0]
                pool[r, k] = x
        return pool.reshape(-1, c.shape[1])

    def observables(self, states, size: int | None = None) -> np.ndarray:
        from ...micro import bcc_alloy as ba

        states = np.asarray(states)
        cells = round((states.shape[-1] / 2) ** (1 / 3))
        return ba.sro(states, cells)

    def source_observables(self, pool, size: int) -> np.ndarray:
        """NaN: a large state tiles K different small snapshots, so it has no single source to compare with."""
        return np.full((len(pool), len(self.observable_names)), np.nan)

    def upsample(self, pool, rng) -> np.ndarray:
        """Large states from small snapshots (REFERENCE §3 NB): output i tiles K blocks drawn from the snapshots
        taken at the same time as snapshot i (the authors' "seeds around a shared time"), shifted, seam-relaxed,
        one vacancy per block. ``pool`` is run-major (:meth:`small_snapshots`); its source SRO is snapshot i's."""
        from ...micro.bcc_alloy_patches import dress_vacancies, upsample

        pool = np.asarray(pool)
        small = round((pool.shape[1] / 2) ** (1 / 3))
        out = np.empty((pool.shape[0],) + self.state_shape(), np.int8)
        idx = np.arange(pool.shape[0])
        for k in range(min(self.snapshots_per_run, len(idx))):
            same_time = idx[idx % self.snapshots_per_run == k]
            out[same_time] = upsample(pool[same_time], self.cells // small, rng, n_configs=len(same_time),
                                      params=self.params(), relax_jumps=self.relax_jumps,
                                      replicate=self.tiling == "replicate", independent=self.tiling == "independent")
        if self.tiling in ("replicate", "independent"):  # the small systems' own vacancies, settled: no dressing
            return out
        return dress_vacancies(out, self.params(), small, self.dress_jumps, rng)

    def random_states(self, n: int, rng) -> np.ndarray:
        from ...micro import bcc_alloy as ba
        from ...micro.bcc_alloy_patches import dress_vacancies

        if self.tiling == "independent":  # K independent random small systems side by side
            from ...micro.bcc_alloy_patches import upsample

            K = self.n_tiles(self.small_cells)
            small = ba.random_configuration(self.small_cells, self.small_vacancies, rng, n_configs=n * K)
            return upsample(small, self.cells // self.small_cells, rng, n_configs=n, independent=True)
        states = ba.random_configuration(self.cells, self.large_vacancies, rng, n_configs=n)
        return dress_vacancies(states, self.params(), self.small_cells, self.dress_jumps, rng)

    def test_runs(self, start: int, n: int, times, rng, keep_states: bool):
        """Direct large-lattice KMC from random equimolar states: SRO (n, T, 6) at ``times`` (stage units)."""
        from ...micro import bcc_alloy as ba

        if keep_states:
            raise ValueError("the alloy has no learned closures: its test runs keep no states")
        system = self.at_temperature(self.starts[start]) if self.temperatures else self
        t = np.asarray(times, dtype=float) * system.time_scale
        z = np.stack([ba.sro_trajectory(system.params(), self.large_vacancies, t, rng)[0] for _ in range(n)])
        return z, None

    def test_run_text(self) -> str:
        return "random equimolar configuration with one vacancy per small-system block"

    def warmup(self) -> None:
        from ...micro import bcc_alloy as ba

        ba.warmup()


#: ``micro.model`` -> the system class (the partial method's registry of physical systems).
SYSTEMS: dict[str, Any] = {"curie_weiss": SpinSystem, "ising2d": SpinSystem, "predator_prey": PredatorPreySystem,
                           "bcc_alloy": AlloySystem}


def system_from_spec(spec):
    """The system of ``micro.model`` with the spec's parameters."""
    return SYSTEMS[spec["micro"]["model"]].from_spec(spec)
