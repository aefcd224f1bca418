"""Heat-bath Glauber dynamics of Curie–Weiss and 2-D Ising spins: numba kernels and exact facts.

Models (seed 002, REFERENCE-002 §1b). Spins s_i = +-1 on an L x L lattice (int8),
N = L**2, J = 1, inverse temperature beta = 1/T, field h.

* ``curie_weiss``: mean field, self-interaction excluded,
  H = -(1/N) sum_{i<j} s_i s_j - h sum_i s_i, so flipping spin i costs
  dH_i = 2 s_i (R_i + h) with R_i = (S - s_i)/N, S = sum_j s_j. The lattice
  layout carries no physics; it only defines tiles and windows.
* ``ising2d``: L x L periodic, H = -sum_<ij> s_i s_j - h sum_i s_i,
  dH_i = 2 s_i (sum_nn s_j + h).

Dynamics. Continuous-time heat-bath Glauber: every spin attempts a flip at rate 1
and flips with probability 1/(1 + exp(beta dH_i)), so spin i flips at rate
r_i = 1/(1 + exp(beta dH_i)). Simulated rejection-free: with R = sum_i r_i,
t += Exp(1)/R, and spin i flips with probability r_i/R. Time is in attempts per
spin (one unit: every spin attempts once on average); it is NOT rescaled by the
mean "sweep" time as the authors' code does (REFERENCE §8.4). An "event" is a
flip.

O(1) event selection. Spins fall into few rate classes: Curie–Weiss 2 (spin
sign; the two rates follow the window sum through a precomputed table) and Ising
10 (spin, nearest-neighbour sum in {-4,-2,0,2,4}). Each class keeps an index list
with a position array (insert = append, remove = swap with the last member). An
event picks a class with probability count_c r_c / R by a scan over <= 10
classes, then a uniform member of it (one uniform split into both), flips it and
moves it and its (at most 4) neighbours to their new classes. Ising sites live on the
window padded by a ghost ring, so neighbours are index offsets (see
:func:`_ising_window`); each run draws its per-event Exp(1) waiting times (-log V) and
uniforms from an inline xoshiro256++ stream seeded from the Generator
(:func:`_seed_stream`). Throughput (benchmarks/bench_glauber.py, one core, process
time on a shared machine; benchmarks/results/glauber_throughput.json): about 2.0-2.4e7
Ising (T = 2.5) and 4.5e7 Curie–Weiss (T = 1.1) events/s at L = 64, h = 0.1.

Windows. Every kernel evolves the spins of a rectangular window of a larger
lattice (the whole lattice being the special case); spins outside the window
never change. Boundary modes:

* ``"frozen"`` (default, physically faithful). Ising: the window's spins feel
  their real neighbours, those outside the window held fixed (a frozen ghost
  ring). Curie–Weiss: the window's spins feel the *global* mean field
  R_i = (S_out + S_win - s_i)/N of the whole lattice, N = L**2, the spins outside
  held fixed (REFERENCE §2 "CW: global spin sum, rest frozen, /L²"). This is the
  exact large-system generator restricted to the window's spins: a window flip
  happens at exactly the rate it has in the full system.
* ``"periodic"`` (the authors'). Ising: the window is an isolated torus (its
  spins see each other across the window's edges). Curie–Weiss: the window is
  an isolated Curie–Weiss system of n_w spins, R_i = (S_win - s_i)/n_w (the
  authors' window-local mean field of the relaxation step, REFERENCE §3/§8.5).
  This is the mean-field analogue of "isolated torus": no coupling to the rest.

A window covering the whole lattice gives the ordinary periodic system in both
modes.

Exact facts (oracles): Curie–Weiss drift and diffusion, exact finite-N jump
rates and the birth–death generator of S (so finite-time laws by ``expm``), the
exact stationary law; brute-force stationary law of a small Ising torus;
Onsager's T_c, energy and spontaneous magnetisation; reference constants of
REFERENCE §9.

All randomness comes from the ``numpy.random.Generator`` passed in (each kernel run
seeds its inline stream from it); the same generator state gives bitwise the same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numba
import numpy as np
from scipy import special

__all__ = [
    "BOUNDARIES",
    "MODELS",
    "MODEL_FACTS",
    "ModelFacts",
    "GlauberParams",
    "ISING_CRITICAL_EXPONENTS",
    "ISING_T2P5_H0P1",
    "CW_T1P1_H0P1",
    "ISING_TC",
    "cw_diffusion",
    "cw_drift",
    "cw_fixed_point",
    "cw_generator",
    "cw_jump_moments",
    "cw_stationary_law",
    "evolve_window",
    "ising_exact_law",
    "observables",
    "onsager_energy",
    "onsager_magnetisation",
    "random_spins",
    "run_events",
    "run_time",
    "warmup",
]

MODELS = ("curie_weiss", "ising2d")
BOUNDARIES = ("frozen", "periodic")


@dataclass(frozen=True)
class ModelFacts:
    """What a spin model offers the partial method, so that its stages ask capabilities, never names.

    Attributes
    ----------
    observables : tuple of str
        The patch-additive observables z (:meth:`GlauberParams.tile_observables`).
    lattice : bool
        Spins on a lattice with neighbours (learned closures need one: the encoder reads tiles).
    exact_laws : bool
        Drift and diffusion of m known in closed form (:func:`cw_drift`, :func:`cw_diffusion`).
    """

    observables: tuple[str, ...]
    lattice: bool
    exact_laws: bool


#: The capabilities of each model of :data:`MODELS`.
MODEL_FACTS = {
    "curie_weiss": ModelFacts(observables=("m",), lattice=False, exact_laws=True),
    "ising2d": ModelFacts(observables=("m", "rho_dw"), lattice=True, exact_laws=False),
}

#: 2-D Ising critical temperature (J = k_B = 1), Onsager 1944: T_c = 2/ln(1 + sqrt 2).
ISING_TC = 2.0 / math.log(1.0 + math.sqrt(2.0))
#: 2-D Ising exponents used in finite-size scaling at T_c (REFERENCE §9; Onsager/Yang):
#: <|M|> ~ L^-beta/nu, chi ~ L^gamma/nu, dU/dT ~ L^(1/nu).
ISING_CRITICAL_EXPONENTS = {"beta_over_nu": 1.0 / 8.0, "gamma_over_nu": 7.0 / 4.0, "one_over_nu": 1.0}
#: Curie–Weiss at T = 1.1, h = 0.1, N -> infinity (REFERENCE §9 [derived]): fixed point of
#: m = tanh(beta(m + h)), relaxation time 1/|a'(m*)|, stationary N Var(m) (these three are
#: recomputed by cw_fixed_point and tested).
CW_T1P1_H0P1 = {"m_star": 0.4907443, "relaxation_time": 3.227, "n_var_m": 2.450}
#: 2-D Ising at T = 2.5, h = 0.1 in the thermodynamic limit (REFERENCE §9 [derived], transfer
#: matrix; not recomputed here): magnetisation, susceptibility, correlation length,
#: integrated autocorrelation time of m (sweeps), short-time N sigma^2.
ISING_T2P5_H0P1 = {"m": 0.72458, "chi": 1.469, "xi": 1.80, "tau_int_sweeps": 15.0, "n_sigma2": 0.642}

_N_OBS = {"curie_weiss": 1, "ising2d": 2}


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class GlauberParams:
    """Parameters of a Glauber spin model (validated on construction).

    Parameters
    ----------
    model : {"curie_weiss", "ising2d"}
    temperature : float
        T > 0 (beta = 1/T, J = k_B = 1).
    field : float
        External field h (finite).
    size : int
        Side L of the (large) L x L lattice, >= 2. Kernels check the spins' shape
        against it; :mod:`cgflow.methods.partial` uses it as the target size.
    """

    model: str
    temperature: float
    field: float
    size: int

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
        h = self.field
        if isinstance(h, bool) or not isinstance(h, Real) or not math.isfinite(h):
            raise ValueError(f"field must be a finite number, got {h!r}")
        L = self.size
        if isinstance(L, bool) or not isinstance(L, Integral) or L < 2:
            raise ValueError(f"size must be an integer >= 2, got {L!r}")
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "field", float(h))
        object.__setattr__(self, "size", int(L))

    @property
    def beta(self) -> float:
        return 1.0 / self.temperature

    @property
    def observable_names(self) -> tuple:
        """Patch-additive observables: ('m',) for Curie–Weiss, ('m', 'rho_dw') for Ising."""
        return MODEL_FACTS[self.model].observables

    # -- the patch-model protocol of cgflow.methods.partial (PatchModel) -----------------
    def tile_observables(self, snapshots, tile_size: int, boundary: str = "frozen") -> np.ndarray:
        """Observables of every aligned tile, shape (B, K, d), K = (L/tile_size)**2, tiles row-major.

        m is the tile mean. Ising rho_dw of a tile counts the bonds the tile *owns*,
        (i, i+x) and (i, i+y) for i in the tile with the real lattice neighbours
        (``boundary="frozen"``): then the mean over tiles is exactly the lattice's
        rho_dw (patch-additive). ``boundary="periodic"`` wraps the bonds inside the
        tile (the authors' convention, REFERENCE §1b; not exactly additive).
        """
        wrap = check_boundary(boundary)
        s = check_spins(snapshots, batch=True, name="snapshots").astype(np.int64)
        B, L = s.shape[0], s.shape[1]
        ls = check_count(tile_size, "tile_size", 2)
        if L % ls:
            raise ValueError(f"tile_size = {ls} must divide the lattice side {L}")
        nt = L // ls
        blocks = s.reshape(B, nt, ls, nt, ls)
        m = blocks.mean(axis=(2, 4)).reshape(B, nt * nt)
        if self.model == "curie_weiss":
            return m[..., None]
        if wrap:
            prod = blocks * np.roll(blocks, -1, axis=4) + blocks * np.roll(blocks, -1, axis=2)
        else:
            prod = (s * np.roll(s, -1, axis=2) + s * np.roll(s, -1, axis=1)).reshape(B, nt, ls, nt, ls)
        rho = 0.5 * (1.0 - 0.5 * prod.mean(axis=(2, 4)).reshape(B, nt * nt))
        return np.stack([m, rho], axis=-1)

    def evolve_tiles(self, snapshots, tile_size: int, tiles, n_events: int, boundary: str, rng,
                     duration: float | None = None, return_tiles: bool = False, record_times=None):
        """Evolve tile ``tiles[b]`` of snapshot b for ``n_events`` flips (snapshots unchanged).

        Returns
        -------
        before, after : ndarray (B, d)
            Tile observables (as :meth:`tile_observables` with the same ``boundary``)
            of the chosen tile before and after.
        increment : ndarray (B, d)
            K x (change of the whole-lattice observable) for ``frozen``, which for the
            patch-additive observables is the sum over all tiles of their changes
            (m: only the tile changes; rho_dw: also the bonds the left/upper
            neighbour tiles own across the tile's edge); for ``periodic`` the change
            of the isolated torus's observable.
        dt : ndarray (B,)
            Elapsed time of each run (attempts per spin).

        tiles_after : ndarray of int8 (B, tile_size, tile_size)
            Only with ``return_tiles``: the evolved tiles (for learned closures).
        increment_at, after_at : ndarray (B, n, d)
            Only with ``record_times`` (n times, increasing, in (0, duration)): the
            increment and the tile observables at each of those times of the *same*
            run (the run is split there; exact in law, waiting times being memoryless).

        With ``duration`` set, every run lasts exactly that time (``n_events`` is
        ignored, dt = duration); otherwise exactly ``n_events`` flips (the authors').
        """
        periodic = check_boundary(boundary)
        snaps = check_spins(snapshots, batch=True, name="snapshots")
        ls = check_count(tile_size, "tile_size", 2)
        L = snaps.shape[1]
        if L % ls:
            raise ValueError(f"tile_size = {ls} must divide the lattice side {L}")
        tiles = np.ascontiguousarray(tiles, dtype=np.int64)
        if tiles.shape != (snaps.shape[0],) or np.any(tiles < 0) or np.any(tiles >= (L // ls) ** 2):
            raise ValueError("tiles must hold one tile index in [0, K) per snapshot")
        n_events = check_count(n_events, "n_events")
        rng = check_rng(rng)
        d = len(self.observable_names)
        B = snaps.shape[0]
        before, after, incr = np.zeros((B, d)), np.zeros((B, d)), np.zeros((B, d))
        dt = np.zeros(B)
        rec = _duration_array(duration)
        n_at = 0
        if record_times is not None:
            if duration is None:
                raise ValueError("record_times needs a fixed duration")
            extra = np.asarray(record_times, dtype=float).ravel()
            if extra.size == 0 or not np.all(np.isfinite(extra)) or np.any(np.diff(extra) <= 0) \
                    or extra[0] <= 0 or extra[-1] >= rec[0]:
                raise ValueError(f"record_times must increase within (0, duration = {rec[0]:g}), got {record_times!r}")
            rec = np.concatenate([extra, rec])
            n_at = extra.size
        out = np.zeros((B if return_tiles else 0, ls, ls), np.int8)
        incr_at = np.zeros((B, n_at + 1 if n_at else 0, d))
        after_at = np.zeros_like(incr_at)
        sums = snaps.reshape(B, -1).sum(axis=1, dtype=np.int64)
        _partial_batch(snaps, tiles, ls, self.model == "ising2d", periodic, self.beta, self.field, n_events, rec,
                       rng, before, after, incr, dt, out, incr_at, after_at, sums)
        res = (before, after, incr, dt) + ((out,) if return_tiles else ())
        return res + ((incr_at[:, :n_at], after_at[:, :n_at]) if n_at else ())

    def evolve_full(self, snapshots, n_events: int, rng):
        """Whole-lattice runs of ``n_events`` flips from each snapshot: (z0 (B, d), z1 (B, d), dt (B,))."""
        snaps = check_spins(snapshots, batch=True, name="snapshots")
        n_events = check_count(n_events, "n_events")
        rng = check_rng(rng)
        B, L = snaps.shape[0], snaps.shape[1]
        N = L * L
        dS, dB, dt = np.zeros(B, np.int64), np.zeros(B, np.int64), np.zeros(B)
        _full_batch(snaps, self.model == "ising2d", self.beta, self.field, n_events, rng, dS, dB, dt)
        z0 = observables(snaps, self)
        z1 = z0.copy()
        z1[:, 0] += dS / N
        if self.model == "ising2d":
            z1[:, 1] -= dB / (4.0 * N)
        return z0, z1, dt

    def refine(self, snapshots) -> np.ndarray:
        """Pixel replication: every spin becomes a 2 x 2 block, (B, L, L) -> (B, 2L, 2L) (REFERENCE §3)."""
        s = check_spins(snapshots, batch=True, name="snapshots")
        return np.repeat(np.repeat(s, 2, axis=1), 2, axis=2)

    def relax_windows(self, lattices, window: int, stride: int, n_events: int, boundary: str, rng,
                      duration: float | None = None):
        """Sequential local relaxation of every lattice (a new array is returned).

        Windows of side ``window`` at origins (a stride, b stride), a, b = 0..L/stride - 1,
        processed row by row, wrapping around the lattice, ``n_events`` flips each
        (REFERENCE §3). ``frozen``: Ising windows see the real neighbours outside
        (frozen ghost ring), Curie–Weiss windows the global mean field of the current
        lattice; ``periodic``: isolated torus / window-local mean field (the authors').

        Returns
        -------
        lattices : ndarray of int8 (B, L, L)
        elapsed : ndarray (B,)
            Total elapsed time of all windows' runs (diagnostic).
        """
        periodic = check_boundary(boundary)
        lats = check_spins(lattices, batch=True, name="lattices").copy()
        L = lats.shape[1]
        w = check_count(window, "window", 2)
        if w > L:
            raise ValueError(f"window = {w} is larger than the lattice side {L}")
        st = check_count(stride, "stride", 1)
        if L % st:
            raise ValueError(f"stride = {st} must divide the lattice side {L}")
        n_events = check_count(n_events, "n_events")
        rng = check_rng(rng)
        rec = _duration_array(duration)
        elapsed = _relax_batch(lats, w, st, self.model == "ising2d", periodic, self.beta, self.field, n_events, rec,
                               rng)
        return lats, elapsed


# ----------------------------------------------------------------------------- validation
def _duration_array(duration) -> np.ndarray:
    """[] (event clock) or [duration] (time clock); ValueError naming 'duration'."""
    if duration is None:
        return np.empty(0)
    d = float(duration)
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"duration must be finite and > 0, got {duration!r}")
    return np.array([d])


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def check_boundary(boundary) -> bool:
    """True for 'periodic', False for 'frozen'; ValueError naming 'boundary' otherwise."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return boundary == "periodic"


def check_count(value, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_spins(spins, size=None, batch: bool = False, name: str = "spins") -> np.ndarray:
    """A C-contiguous int8 copy-free view of +-1 spins, shape (L, L) or (B, L, L) if ``batch``."""
    arr = np.asarray(spins)
    nd = 3 if batch else 2
    if arr.ndim != nd or arr.shape[-1] != arr.shape[-2] or arr.shape[-1] < 2:
        want = "(B, L, L)" if batch else "(L, L)"
        raise ValueError(f"{name} must have shape {want} with L >= 2, got {arr.shape}")
    if size is not None and arr.shape[-1] != size:
        raise ValueError(f"{name} has side {arr.shape[-1]} but size = {size}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of +-1, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 1) | (arr == -1)):
        raise ValueError(f"{name} must contain only +1 and -1")
    return np.ascontiguousarray(arr, dtype=np.int8)


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _window_tables(L, r0, c0, hh, ww, periodic):
    """Flat lattice index of each window site, and of its 4 neighbours (up, down, left, right).

    ``nb_loc`` is the neighbour's window index, or -1 for a frozen site outside the
    window. Window coordinates wrap around the L x L lattice. int32 (the hot loop's
    working set stays in L1/L2; windows have far fewer than 2**31 sites).
    """
    n = hh * ww
    glob = np.empty(n, np.int32)
    nb_glob = np.empty((n, 4), np.int32)
    nb_loc = np.empty((n, 4), np.int32)
    for a in range(hh):
        for b in range(ww):
            k = a * ww + b
            gr = (r0 + a) % L
            gc = (c0 + b) % L
            glob[k] = gr * L + gc
            for d in range(4):
                da = -1 if d == 0 else (1 if d == 1 else 0)
                db = -1 if d == 2 else (1 if d == 3 else 0)
                if periodic:
                    la = (a + da) % hh
                    lb = (b + db) % ww
                    nb_loc[k, d] = la * ww + lb
                    nb_glob[k, d] = ((r0 + la) % L) * L + (c0 + lb) % L
                else:
                    ga = (gr + da) % L
                    gb = (gc + db) % L
                    nb_glob[k, d] = ga * L + gb
                    la = (ga - r0) % L
                    lb = (gb - c0) % L
                    nb_loc[k, d] = la * ww + lb if (la < hh and lb < ww) else -1
    return glob, nb_glob, nb_loc


#: 2**-53: a 53-bit integer times this is a uniform double on [0, 1).
_TWO_M53 = 1.0 / 9007199254740992.0


@numba.njit(cache=True, inline="always")
def _ix(i):
    """An array index as unsigned: numba then skips its negative-index wraparound (a compare and a
    select per access; the Ising loop measured ~20% faster). Every index passed is >= 0 by construction."""
    return np.uint64(i)


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@numba.njit(cache=True, inline="always")
def _xoshiro(s0, s1, s2, s3):
    """One step of xoshiro256++ (Blackman & Vigna 2019): (64 random bits, new state)."""
    r = _rotl(s0 + s3, 23) + s0
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return r, s0, s1, s2, s3


@numba.njit(cache=True)
def _splitmix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _seed_stream(rng):
    """A xoshiro256++ state (4 x 64 bits) from 8 doubles of ``rng``, mixed by splitmix64.

    The kernels draw their per-event uniforms from this inline stream instead of calling
    the Generator twice per event (an indirect call into the bit generator, ~12 ns per
    event with Philox); every run starts from a fresh state drawn from ``rng``, so the
    same generator state still gives bitwise the same output.
    """
    out = np.empty(4, np.uint64)
    for i in range(4):
        a = np.uint64(int(rng.random() * 9007199254740992.0))
        b = np.uint64(int(rng.random() * 9007199254740992.0))
        out[i] = _splitmix64((a << np.uint64(11)) ^ b)
    if out[0] == 0 and out[1] == 0 and out[2] == 0 and out[3] == 0:  # the one invalid state
        out[0] = np.uint64(1)
    return out[0], out[1], out[2], out[3]


@numba.njit(cache=True, inline="always")
def _draw_event(s0, s1, s2, s3):
    """(E, U, new state): E ~ Exp(1) as -log V, V uniform on (0, 1], and U uniform on [0, 1) (53 bits each)."""
    r, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
    E = -math.log(((r >> np.uint64(11)) + np.uint64(1)) * _TWO_M53)
    r, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
    U = (r >> np.uint64(11)) * _TWO_M53
    return E, U, s0, s1, s2, s3


@numba.njit(cache=True, inline="always")
def _move(j, old, new, members, pos, count, cls, n):
    """Move site j from class ``old`` to class ``new`` (O(1) swap-remove + append).

    ``members[c * n + i]`` is the i-th member of class c, ``pos[j]`` the place of site j in
    its class's list, ``cls[j]`` its class.
    """
    _move_from(j, np.int64(pos[_ix(j)]), count[_ix(old)], old, new, members, pos, count, cls, n)


@numba.njit(cache=True, inline="always")
def _move_from(j, p, cnt, old, new, members, pos, count, cls, n):
    """:func:`_move` with the place p of j and the count cnt of class ``old`` already known."""
    co = cnt - 1
    last = members[_ix(old * n + co)]
    members[_ix(old * n + p)] = last
    pos[_ix(last)] = p
    count[_ix(old)] = co
    q = count[_ix(new)]
    members[_ix(new * n + q)] = j
    pos[_ix(j)] = q
    count[_ix(new)] = q + 1
    cls[_ix(j)] = new


@numba.njit(cache=True, inline="always")
def _pick10(count, rates, U):
    """Branch-free pick of one of 10 classes with probability count_c r_c / R.

    Returns (R, u, c, base): R = sum_c count_c r_c, u = U R, the class
    c = #{i < 9: W_i <= u} with W_i = sum_{c' <= i} count_c' r_c', and base = W_{c-1}
    (0 for c = 0), so that W_{c-1} <= u < W_c and (u - base)/r_c is uniform on
    [0, count_c). Each W_i is W_{i-1} + w_i or W_{i-2} + (w_{i-1} + w_i), w_i = count_i r_i:
    a chain of 5 additions instead of 10, still exactly non-decreasing in floating
    point, and an empty class i has W_i = W_{i-1} exactly, so it is never picked, except
    class 9 when U R rounds up to R (the caller guards). As the W_i do not decrease,
    base = max({W_i : W_i <= u} U {0}), taken as a tree of maxima (depth 4, not a chain of 9).
    """
    w0 = count[0] * rates[0]
    w1 = count[1] * rates[1]
    w2 = count[2] * rates[2]
    w3 = count[3] * rates[3]
    w4 = count[4] * rates[4]
    w5 = count[5] * rates[5]
    w6 = count[6] * rates[6]
    w7 = count[7] * rates[7]
    w8 = count[8] * rates[8]
    w9 = count[9] * rates[9]
    W1 = w0 + w1
    W3 = W1 + (w2 + w3)
    W5 = W3 + (w4 + w5)
    W7 = W5 + (w6 + w7)
    R = W7 + (w8 + w9)
    W0 = w0
    W2 = W1 + w2
    W4 = W3 + w4
    W6 = W5 + w6
    W8 = W7 + w8
    u = U * R
    c = ((W0 <= u) + (W1 <= u) + (W2 <= u) + (W3 <= u) + (W4 <= u) + (W5 <= u) + (W6 <= u) + (W7 <= u)
         + (W8 <= u))
    b0 = W0 if W0 <= u else 0.0
    b1 = W1 if W1 <= u else 0.0
    b2 = W2 if W2 <= u else 0.0
    b3 = W3 if W3 <= u else 0.0
    b4 = W4 if W4 <= u else 0.0
    b5 = W5 if W5 <= u else 0.0
    b6 = W6 if W6 <= u else 0.0
    b7 = W7 if W7 <= u else 0.0
    b8 = W8 if W8 <= u else 0.0
    base = max(max(max(b0, b1), max(b2, b3)), max(max(b4, b5), max(b6, max(b7, b8))))
    return R, u, c, base


@numba.njit(cache=True)
def _ising_window(lat, r0, c0, hh, ww, periodic, beta, field, n_events, rec_times, rec_S, rec_B, rng):
    """Rejection-free heat-bath Glauber on a window of a flat L*L Ising lattice, in place.

    Runs ``n_events`` flips if ``rec_times`` is empty; otherwise runs until
    ``rec_times[-1]`` and stores at each record time the change of the window spin
    sum (rec_S) and of the bond sum sum_{bonds touching the window} s_i s_j (rec_B)
    since the start (for ``periodic`` the bonds are the window torus's). Returns
    (flips, elapsed time, dS, dB).

    The law is the one of the module docstring: waiting time Exp(1)/R, class c with
    probability count_c r_c / R, then a uniform member of it. Implementation (the
    loop is latency-bound: each event depends on the class counts the previous one
    left): the class is picked branch-free by :func:`_pick10` and the member index is
    (u - W_{c-1}) times the precomputed 1/r_c (no division on that chain); Exp(1) and
    the uniform come from an inline xoshiro256++ stream seeded from ``rng``
    (:func:`_seed_stream`); sites live on the window padded by a ghost ring,
    (hh + 2) x (ww + 2), so the 4 neighbours of padded site k are k -+ (ww + 2) and
    k -+ 1 (no neighbour table on the chain): a ghost cell has class -1 and ``wrap``
    holds the padded site it stands for (the torus partner for ``periodic``, or a site of
    a window spanning the lattice) or -1 (a frozen outside spin); all arrays are indexed
    unsigned (:func:`_ix`); the spin of a site is carried by its class (up iff class >= 5)
    and written back to the lattice once, at the end. If every rate underflows to 0
    (R = 0, extreme beta) nothing can flip: the run stops (event clock: elapsed time inf;
    time clock: the state is recorded to the end).
    """
    npad = (hh + 2) * (ww + 2)
    if npad <= 32767:  # int16 site indices (L <= 179): half the working set of int32
        return _ising_run(lat, r0, c0, hh, ww, periodic, beta, field, n_events, rec_times, rec_S, rec_B, rng,
                          np.empty(10 * hh * ww, np.int16), np.zeros(npad, np.int16))
    return _ising_run(lat, r0, c0, hh, ww, periodic, beta, field, n_events, rec_times, rec_S, rec_B, rng,
                      np.empty(10 * hh * ww, np.int32), np.zeros(npad, np.int32))


@numba.njit(cache=True)
def _ising_run(lat, r0, c0, hh, ww, periodic, beta, field, n_events, rec_times, rec_S, rec_B, rng, members, pos):
    """The loop of :func:`_ising_window`; ``members`` (10 hh ww) and ``pos`` ((hh + 2)(ww + 2), zeros):
    scratch of an integer type holding every padded site index."""
    L = int(round(math.sqrt(lat.shape[0])))
    n = hh * ww
    glob, nb_glob, nb_loc = _window_tables(L, r0, c0, hh, ww, periodic)
    W2 = ww + 2
    npad = (hh + 2) * W2
    rates = np.empty(10)
    inv_rates = np.empty(10)
    for c in range(10):
        s = -1.0 if c < 5 else 1.0
        ns = 2.0 * (c % 5) - 4.0
        rates[c] = 1.0 / (1.0 + math.exp(2.0 * beta * s * (ns + field)))
        inv_rates[c] = 1.0 / rates[c] if rates[c] > 0.0 else 0.0  # a zero-rate class is never picked
    count = np.zeros(10, np.int64)
    cls = np.full(npad, -1, np.int8)
    wrap = np.full(npad, -1, np.int32)
    for k in range(n):
        a = k // ww
        b = k % ww
        kp = (a + 1) * W2 + b + 1
        s = lat[glob[k]]
        ns = 0
        for d in range(4):
            ns += lat[nb_glob[k, d]]
        c = (5 if s > 0 else 0) + (ns + 4) // 2
        members[c * n + count[c]] = kp
        pos[kp] = count[c]
        count[c] += 1
        cls[kp] = c
        for d in range(4):
            j = nb_loc[k, d]
            if j >= 0:
                da = -1 if d == 0 else (1 if d == 1 else 0)
                db = -1 if d == 2 else (1 if d == 3 else 0)
                gp = kp + da * W2 + db  # the padded cell in direction d
                jp = (j // ww + 1) * W2 + j % ww + 1  # the padded site of the neighbour
                if gp != jp:  # a ghost cell standing for a window site
                    wrap[gp] = jp
    s0, s1, s2, s3 = _seed_stream(rng)
    n_rec = rec_times.shape[0]
    by_time = n_rec > 0
    j_rec = 0
    t = 0.0
    dS = 0
    dB = 0
    flips = 0
    limit = n_events if not by_time else 1 << 62  # the time clock stops inside the loop
    while flips < limit:
        E, U, s0, s1, s2, s3 = _draw_event(s0, s1, s2, s3)
        R, u, c, base = _pick10(count, rates, U)
        if R <= 0.0:  # every rate underflowed: no flip can ever happen
            if by_time:
                while j_rec < n_rec:
                    rec_S[j_rec] = dS
                    rec_B[j_rec] = dB
                    j_rec += 1
                t = rec_times[n_rec - 1]
            else:
                t = math.inf
            break
        tau = E / R
        if by_time:
            while j_rec < n_rec and t + tau > rec_times[j_rec]:
                rec_S[j_rec] = dS
                rec_B[j_rec] = dB
                j_rec += 1
            if j_rec == n_rec:
                t = rec_times[n_rec - 1]
                break
        t += tau
        m = int((u - base) * inv_rates[_ix(c)])
        cnt = count[_ix(c)]
        if cnt == 0:  # U R rounded up to R with class 9 empty: the top of the last populated class
            while count[_ix(c)] == 0:
                c -= 1
            cnt = count[_ix(c)]
            m = cnt - 1
        m = min(m, cnt - 1)
        k = np.int64(members[_ix(c * n + m)])
        up = c >= 5
        s_old = 1 if up else -1
        dS -= 2 * s_old
        dB -= 2 * s_old * (2 * (c - 5 if up else c) - 4)
        _move_from(k, m, cnt, c, c - 5 if up else c + 5, members, pos, count, cls, n)
        for d in range(4):  # a rolled loop: unrolling it by hand measured markedly slower
            j = k + (-W2 if d == 0 else (W2 if d == 1 else (-1 if d == 2 else 1)))
            cj = np.int64(cls[_ix(j)])
            if cj < 0:  # ghost cell
                j = np.int64(wrap[_ix(j)])
                if j < 0:  # frozen outside spin
                    continue
                cj = np.int64(cls[_ix(j)])
            _move(j, cj, cj - s_old, members, pos, count, cls, n)
        flips += 1
    for k in range(n):
        lat[glob[k]] = 1 if cls[(k // ww + 1) * W2 + k % ww + 1] >= 5 else -1
    return flips, t, dS, dB


@numba.njit(cache=True)
def _cw_window(lat, r0, c0, hh, ww, S_out, n_eff, beta, field, n_events, rec_times, rec_S, rng):
    """Rejection-free heat-bath Glauber on a window of a flat Curie–Weiss lattice, in place.

    A window spin s feels R = (S_out + S_win - s)/n_eff: S_out = spin sum outside the
    window (frozen) and n_eff = L**2 for the global mean field, S_out = 0 and
    n_eff = window size for an isolated window. Record semantics as
    :func:`_ising_window`. Returns (flips, elapsed time, dS).

    Two classes (down, up) whose rates follow the window sum through precomputed
    tables (and their inverses, so the member index needs no division); random numbers
    as in :func:`_ising_window`; the spins are carried by the classes and written back
    at the end.
    """
    n = hh * ww
    if n <= 32767:
        return _cw_run(lat, r0, c0, hh, ww, S_out, n_eff, beta, field, n_events, rec_times, rec_S, rng,
                       np.empty(2 * n, np.int16), np.empty(n, np.int16))
    return _cw_run(lat, r0, c0, hh, ww, S_out, n_eff, beta, field, n_events, rec_times, rec_S, rng,
                   np.empty(2 * n, np.int32), np.empty(n, np.int32))


@numba.njit(cache=True)
def _cw_run(lat, r0, c0, hh, ww, S_out, n_eff, beta, field, n_events, rec_times, rec_S, rng, members, pos):
    """The loop of :func:`_cw_window`; ``members`` (2 hh ww) and ``pos`` (hh ww): integer scratch."""
    L = int(round(math.sqrt(lat.shape[0])))
    n = hh * ww
    glob = np.empty(n, np.int32)
    for a in range(hh):
        for b in range(ww):
            glob[a * ww + b] = ((r0 + a) % L) * L + (c0 + b) % L
    count = np.zeros(2, np.int64)
    cls = np.empty(n, np.int8)
    S_win = 0
    for k in range(n):
        s = lat[glob[k]]
        S_win += s
        c = 1 if s > 0 else 0
        members[c * n + count[c]] = k
        pos[k] = count[c]
        count[c] += 1
        cls[k] = c
    # rate tables over the window sum S_win = -n, -n+2, ..., n (index (S_win + n)/2):
    # rt[2 i] for a down spin (s = -1) flipping up, rt[2 i + 1] for an up spin flipping down
    rt = np.empty(2 * (n + 1))
    inv_rt = np.empty(2 * (n + 1))
    for i in range(n + 1):
        S = S_out + 2 * i - n
        rt[2 * i] = 1.0 / (1.0 + math.exp(-2.0 * beta * ((S + 1.0) / n_eff + field)))
        rt[2 * i + 1] = 1.0 / (1.0 + math.exp(2.0 * beta * ((S - 1.0) / n_eff + field)))
    for i in range(2 * (n + 1)):
        inv_rt[i] = 1.0 / rt[i] if rt[i] > 0.0 else 0.0
    i_s = (S_win + n) // 2
    s0, s1, s2, s3 = _seed_stream(rng)
    n_rec = rec_times.shape[0]
    by_time = n_rec > 0
    j_rec = 0
    t = 0.0
    dS = 0
    flips = 0
    while True:
        if not by_time and flips >= n_events:
            break
        E, U, s0, s1, s2, s3 = _draw_event(s0, s1, s2, s3)
        n0 = count[0]
        n1 = count[1]
        w0 = n0 * rt[_ix(2 * i_s)]
        R = w0 + n1 * rt[_ix(2 * i_s + 1)]
        if R <= 0.0:  # every rate underflowed: no flip can ever happen
            if by_time:
                while j_rec < n_rec:
                    rec_S[j_rec] = dS
                    j_rec += 1
                t = rec_times[n_rec - 1]
            else:
                t = math.inf
            break
        tau = E / R
        if by_time:
            while j_rec < n_rec and t + tau > rec_times[j_rec]:
                rec_S[j_rec] = dS
                j_rec += 1
            if j_rec == n_rec:
                t = rec_times[n_rec - 1]
                break
        t += tau
        u = U * R
        # class 0 iff u < w0 (never an empty class: u < w0 needs n0 > 0; n1 = 0 forces 0)
        c = np.int64(u >= w0) * np.int64(n1 > 0)
        cnt = n1 if c else n0
        m = int((u - w0 * c) * inv_rt[_ix(2 * i_s + c)])
        m = min(m, cnt - 1)
        k = np.int64(members[_ix(c * n + m)])
        s_old = 2 * c - 1
        dS -= 2 * s_old
        i_s -= s_old
        _move_from(k, m, cnt, c, 1 - c, members, pos, count, cls, n)
        flips += 1
    for k in range(n):  # the class is the spin (1: up); written back once
        lat[glob[k]] = 1 if cls[k] == 1 else -1
    return flips, t, dS


@numba.njit(cache=True)
def _window_sum(lat, L, r0, c0, hh, ww):
    s = 0
    for a in range(hh):
        row = ((r0 + a) % L) * L
        for b in range(ww):
            s += lat[row + (c0 + b) % L]
    return s


@numba.njit(cache=True)
def _bond_sum(lat, L, r0, c0, hh, ww, wrap):
    """Sum of s_i s_j over the bonds a window owns: (i, i+x) and (i, i+y) for i in the window.

    ``wrap``: the right/lower neighbours wrap inside the window (torus bonds);
    otherwise they are the real lattice neighbours (exactly patch-additive).
    """
    s = 0
    for a in range(hh):
        for b in range(ww):
            v = lat[((r0 + a) % L) * L + (c0 + b) % L]
            if wrap:
                ra = (a + 1) % hh
                cb = (b + 1) % ww
                right = lat[((r0 + a) % L) * L + (c0 + cb) % L]
                down = lat[((r0 + ra) % L) * L + (c0 + b) % L]
            else:
                right = lat[((r0 + a) % L) * L + (c0 + b + 1) % L]
                down = lat[((r0 + a + 1) % L) * L + (c0 + b) % L]
            s += v * (right + down)
    return s


def _evolve(model: str, flat, L, r0, c0, size, periodic, beta, field, n_events, rec_times, rng):
    """Dispatch one window run; returns (flips, elapsed, dS, dB, rec_S, rec_B)."""
    rec_S = np.zeros(rec_times.shape[0], np.int64)
    rec_B = np.zeros(rec_times.shape[0], np.int64)
    if model == "ising2d":
        flips, t, dS, dB = _ising_window(
            flat, r0, c0, size, size, periodic, beta, field, n_events, rec_times, rec_S, rec_B, rng
        )
    else:
        if periodic:
            S_out, n_eff = 0, size * size
        else:
            S_out = int(flat.sum(dtype=np.int64)) - int(_window_sum(flat, L, r0, c0, size, size))
            n_eff = L * L
        flips, t, dS = _cw_window(flat, r0, c0, size, size, S_out, float(n_eff), beta, field, n_events,
                                  rec_times, rec_S, rng)
        dB = 0
    return flips, t, dS, dB, rec_S, rec_B


# ----------------------------------------------------------------------------- public API
def observables(spins, params: GlauberParams) -> np.ndarray:
    """Patch-additive observables of one lattice or a batch, shape (..., d).

    Curie–Weiss: (m,). Ising: (m, rho_dw), rho_dw = (1/2N) sum_i sum_{d=x,y} (1 - s_i s_{i+d})/2,
    the broken-bond fraction (REFERENCE §1b), periodic lattice. Vectorised numpy.
    """
    s = np.asarray(spins)
    if s.ndim < 2:
        raise ValueError(f"spins must have shape (..., L, L), got {s.shape}")
    s = s.astype(np.int64, copy=False)
    m = s.mean(axis=(-2, -1))
    if params.model == "curie_weiss":
        return m[..., None]
    bonds = (s * np.roll(s, -1, axis=-1) + s * np.roll(s, -1, axis=-2)).mean(axis=(-2, -1))  # /N, 2N bonds
    rho = 0.5 * (1.0 - 0.5 * bonds)
    return np.stack([m, rho], axis=-1)


def random_spins(n_configs: int, size: int, rng, m0=None) -> np.ndarray:
    """Authors' initial configurations: int((1 + m0) N/2) up spins, uniformly shuffled.

    Parameters
    ----------
    n_configs, size : int
        Batch size B and lattice side L.
    rng : numpy.random.Generator
    m0 : float, array of shape (B,), or None
        Target magnetisation(s) in [-1, 1]; None draws m0 ~ U(-1, 1) per config
        (REFERENCE §1b).

    Returns
    -------
    ndarray of int8, shape (B, L, L)
    """
    B = check_count(n_configs, "n_configs", 1)
    L = check_count(size, "size", 2)
    rng = check_rng(rng)
    N = L * L
    if m0 is None:
        m0 = rng.uniform(-1.0, 1.0, size=B)
    m0 = np.broadcast_to(np.asarray(m0, dtype=float), (B,))
    if not np.all(np.isfinite(m0)) or np.any(np.abs(m0) > 1):
        raise ValueError("m0 must lie in [-1, 1]")
    n_up = ((1.0 + m0) * N / 2.0).astype(np.int64)
    base = np.where(np.arange(N)[None, :] < n_up[:, None], 1, -1).astype(np.int8)
    return rng.permuted(base, axis=1).reshape(B, L, L)


def run_events(spins, n_events: int, params: GlauberParams, rng):
    """Run ``n_events`` flips of the whole periodic lattice.

    Parameters
    ----------
    spins : array_like of +-1, shape (L, L), L = params.size
        Initial configuration (not modified).
    n_events : int
        Number of flips (rejection-free events), >= 0.
    params : GlauberParams
    rng : numpy.random.Generator

    Returns
    -------
    spins : ndarray of int8, shape (L, L)
        Final configuration.
    elapsed : float
        Elapsed time in attempts per spin (the sum of the Exp(R) waiting times).
    """
    spins = check_spins(spins, params.size).copy()
    n_events = check_count(n_events, "n_events")
    rng = check_rng(rng)
    L = params.size
    flat = spins.reshape(-1)
    _, t, *_ = _evolve(params.model, flat, L, 0, 0, L, False, params.beta, params.field, n_events,
                       np.empty(0), rng)
    return spins, float(t)


def run_time(spins, times, params: GlauberParams, rng):
    """Evolve the whole periodic lattice and record observables at given times.

    Parameters
    ----------
    spins : array_like of +-1, shape (L, L)
        Initial configuration at time 0 (not modified).
    times : array_like of float, shape (n,)
        Non-decreasing record times >= 0 (attempts per spin).
    params : GlauberParams
    rng : numpy.random.Generator

    Returns
    -------
    spins : ndarray of int8, shape (L, L)
        Configuration at ``times[-1]``.
    obs : ndarray of float, shape (n, d)
        :func:`observables` at every record time (m; and rho_dw for Ising). Exact in
        law: the event pending past the last time is dropped (memorylessness).
    """
    spins = check_spins(spins, params.size).copy()
    rng = check_rng(rng)
    times = np.ascontiguousarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError("times must be a non-empty 1-D array")
    if not np.all(np.isfinite(times)) or times[0] < 0 or np.any(np.diff(times) < 0):
        raise ValueError("times must be finite, >= 0 and non-decreasing")
    L = params.size
    N = L * L
    obs0 = observables(spins, params)
    flat = spins.reshape(-1)
    _, _, _, _, rec_S, rec_B = _evolve(params.model, flat, L, 0, 0, L, False, params.beta, params.field, -1,
                                       times, rng)
    m = obs0[0] + rec_S / N
    if params.model == "curie_weiss":
        return spins, m[:, None]
    rho = obs0[1] - rec_B / (4.0 * N)  # broken = (1 - s s')/2 over 2N bonds
    return spins, np.stack([m, rho], axis=-1)


def evolve_window(spins, origin, window: int, n_events: int, params: GlauberParams, rng, boundary: str = "frozen",
                  duration: float | None = None):
    """Run ``n_events`` flips inside a square window of the lattice; everything else is held fixed.

    Parameters
    ----------
    spins : array_like of +-1, shape (L, L)
        Not modified. L need not equal ``params.size`` (windows of smaller systems).
    origin : (int, int)
        Upper-left corner (row, column); the window wraps around the lattice.
    window : int
        Side of the square window, 2 <= window <= L.
    n_events : int
    params : GlauberParams
    rng : numpy.random.Generator
    boundary : {"frozen", "periodic"}
        See the module docstring (Ising: frozen ghost ring / isolated torus;
        Curie–Weiss: global mean field / isolated window).
    duration : float, optional
        If set, run for exactly this time instead (``n_events`` ignored). Only the
        fixed-time clock leaves the Gibbs measure invariant (see
        :meth:`GlauberParams.relax_windows`).

    Returns
    -------
    spins : ndarray of int8, shape (L, L)
    elapsed : float
    """
    spins = check_spins(spins).copy()
    L = spins.shape[0]
    w = check_count(window, "window", 2)
    if w > L:
        raise ValueError(f"window = {w} is larger than the lattice side {L}")
    r0, c0 = (check_count(int(o) if isinstance(o, np.integer) else o, "origin", 0) for o in origin)
    periodic = check_boundary(boundary)
    n_events = check_count(n_events, "n_events")
    rng = check_rng(rng)
    _, t, *_ = _evolve(params.model, spins.reshape(-1), L, r0 % L, c0 % L, w, periodic, params.beta,
                       params.field, n_events, _duration_array(duration), rng)
    return spins, float(t)


# ----------------------------------------------------------------------------- batch kernels (methods layer)
@numba.njit(cache=True)
def _tile_obs(lat, L, r0, c0, ls, is_ising, wrap, out):
    n = ls * ls
    out[0] = _window_sum(lat, L, r0, c0, ls, ls) / n
    if is_ising:
        out[1] = 0.5 * (1.0 - 0.5 * _bond_sum(lat, L, r0, c0, ls, ls, wrap) / n)


@numba.njit(cache=True)
def _partial_batch(snaps, tiles, ls, is_ising, periodic, beta, field, n_events, rec, rng,
                   before, after, incr, dt, tiles_out, incr_at, after_at, spin_sums):
    """Partial evolution of one tile per snapshot (REFERENCE §2), on a scratch copy.

    before/after: tile observables of the chosen tile (m; rho_dw with torus bonds if
    ``periodic`` else owned bonds). incr: K x the change of the whole-lattice observable
    (= change over everything the tile touches), see cgflow.methods.partial.evolution.
    tiles_out: (B, ls, ls) receives the evolved tiles, or shape (0, ls, ls) to skip.
    rec: empty (run ``n_events`` flips) or increasing times t_1 < ... < t_n (the run
    lasts t_n); incr_at/after_at (B, n, d) then receive incr and after at every t_j of
    the *same* run (one kernel call per segment: exact in law, the pending event is
    memoryless), else they have shape (B, 0, d). spin_sums: (B,) total spin of each
    snapshot (Curie–Weiss frozen field; ignored for Ising).
    """
    B = snaps.shape[0]
    L = snaps.shape[1]
    N = L * L
    nt = L // ls
    n = ls * ls
    n_rec = rec.shape[0]
    n_seg = n_rec if n_rec > 0 else 1
    seg = np.empty(1)
    no_rec = np.empty(0)
    rS = np.empty(1, np.int64)
    rB = np.empty(1, np.int64)
    scratch = np.empty(N, np.int8)
    for b in range(B):
        src = snaps[b].reshape(N)
        scratch[:] = src
        r0 = (tiles[b] // nt) * ls
        c0 = (tiles[b] % nt) * ls
        _tile_obs(scratch, L, r0, c0, ls, is_ising, periodic, before[b])
        S_tot = 0
        B_tot = 0
        t_tot = 0.0
        # Curie–Weiss frozen: the spin sum outside the tile (fixed during the run)
        S_out = 0 if periodic or is_ising else spin_sums[b] - _window_sum(scratch, L, r0, c0, ls, ls)
        for j in range(n_seg):
            if n_rec > 0:
                seg[0] = rec[j] - (rec[j - 1] if j > 0 else 0.0)
                r = seg
            else:
                r = no_rec
            if is_ising:
                flips, t, dS, dB = _ising_window(scratch, r0, c0, ls, ls, periodic, beta, field, n_events,
                                                 r, rS, rB, rng)
                B_tot += dB
            else:
                n_eff = float(n) if periodic else float(N)
                flips, t, dS = _cw_window(scratch, r0, c0, ls, ls, S_out, n_eff, beta, field, n_events,
                                          r, rS, rng)
            S_tot += dS
            t_tot += t
            if incr_at.shape[1] > 0:
                incr_at[b, j, 0] = S_tot / n
                if is_ising:
                    incr_at[b, j, 1] = -B_tot / (4.0 * n)
                _tile_obs(scratch, L, r0, c0, ls, is_ising, periodic, after_at[b, j])
        incr[b, 0] = S_tot / n
        if is_ising:
            incr[b, 1] = -B_tot / (4.0 * n)
        dt[b] = rec[n_rec - 1] if n_rec > 0 else t_tot
        _tile_obs(scratch, L, r0, c0, ls, is_ising, periodic, after[b])
        if tiles_out.shape[0] > 0:
            for i in range(ls):
                for j in range(ls):
                    tiles_out[b, i, j] = scratch[(r0 + i) * L + c0 + j]


@numba.njit(cache=True)
def _full_batch(snaps, is_ising, beta, field, n_events, rng, dS_out, dB_out, dt):
    """Whole-lattice runs of ``n_events`` flips from each snapshot (scratch copy)."""
    B = snaps.shape[0]
    L = snaps.shape[1]
    N = L * L
    empty = np.empty(0)
    rS = np.empty(0, np.int64)
    rB = np.empty(0, np.int64)
    scratch = np.empty(N, np.int8)
    for b in range(B):
        scratch[:] = snaps[b].reshape(N)
        if is_ising:
            flips, t, dS, dB = _ising_window(scratch, 0, 0, L, L, False, beta, field, n_events,
                                             empty, rS, rB, rng)
            dB_out[b] = dB
        else:
            flips, t, dS = _cw_window(scratch, 0, 0, L, L, 0, float(N), beta, field, n_events,
                                      empty, rS, rng)
        dS_out[b] = dS
        dt[b] = t


@numba.njit(cache=True)
def _relax_batch(lats, window, stride, is_ising, periodic, beta, field, n_events, rec, rng):
    """Sequential window relaxation (REFERENCE §3) of every lattice, in place.

    Windows of side ``window`` at origins (a*stride, b*stride), row by row, wrapping.
    Curie–Weiss frozen windows use the global sum, tracked across windows.
    Returns the total elapsed time per lattice (diagnostic).
    """
    B = lats.shape[0]
    L = lats.shape[1]
    N = L * L
    nw = L // stride
    empty = rec  # empty: n_events flips per window; [duration]: that time per window
    rS = np.empty(rec.shape[0], np.int64)
    rB = np.empty(rec.shape[0], np.int64)
    elapsed = np.zeros(B)
    for b in range(B):
        flat = lats[b].reshape(N)
        S = 0
        for i in range(N):
            S += flat[i]
        for a in range(nw):
            for c in range(nw):
                r0 = a * stride
                c0 = c * stride
                if is_ising:
                    flips, t, dS, dB = _ising_window(flat, r0, c0, window, window, periodic, beta, field,
                                                     n_events, empty, rS, rB, rng)
                else:
                    if periodic:
                        S_out = 0
                        n_eff = float(window * window)
                    else:
                        S_out = S - _window_sum(flat, L, r0, c0, window, window)
                        n_eff = float(N)
                    flips, t, dS = _cw_window(flat, r0, c0, window, window, S_out, n_eff, beta, field,
                                              n_events, empty, rS, rng)
                S += dS
                elapsed[b] += t
    return elapsed


# ----------------------------------------------------------------------------- exact facts
def cw_drift(m, temperature: float, field: float):
    """N -> infinity drift of m per unit time, a(m) = -m + tanh(beta (m + h)) (REFERENCE §9).

    The O(1/N) correction from the excluded self-interaction is in :func:`cw_jump_moments`.
    """
    m = np.asarray(m, dtype=float)
    out = -m + np.tanh((m + field) / temperature)
    return out if out.ndim else float(out)


def cw_diffusion(m, temperature: float, field: float, n_spins: int):
    """sigma^2(m) = (2/N)(1 - m tanh(beta (m + h))), the infinitesimal variance of m (REFERENCE §9)."""
    m = np.asarray(m, dtype=float)
    out = (2.0 / n_spins) * (1.0 - m * np.tanh((m + field) / temperature))
    return out if out.ndim else float(out)


def cw_jump_moments(m, temperature: float, field: float, n_spins: int):
    """Exact finite-N jump moments of m at magnetisation m (self-interaction excluded).

    With S = N m, n_up = (N + S)/2 up spins each flipping at
    r_up = 1/(1 + exp(2 beta ((S - 1)/N + h))) and n_dn = (N - S)/2 down spins at
    r_dn = 1/(1 + exp(-2 beta ((S + 1)/N + h))), m jumps by -+2/N:

        drift  = (2/N)(n_dn r_dn - n_up r_up)
               = (1 - m)(1 + tanh(beta(m + 1/N + h)))/2 - (1 + m)(1 - tanh(beta(m - 1/N + h)))/2,
        second = (4/N^2)(n_dn r_dn + n_up r_up).

    As 1/N -> 0 with m fixed these tend to a(m) and sigma^2(m) (:func:`cw_drift`,
    :func:`cw_diffusion`).

    Returns
    -------
    (drift, second) : floats or arrays like ``m``
    """
    N = check_count(n_spins, "n_spins", 1)
    m = np.asarray(m, dtype=float)
    beta = 1.0 / temperature
    t_dn = np.tanh(beta * (m + 1.0 / N + field))
    t_up = np.tanh(beta * (m - 1.0 / N + field))
    rate_dn = 0.5 * (1.0 - m) * (1.0 + t_dn) * N / 2.0  # n_dn r_dn
    rate_up = 0.5 * (1.0 + m) * (1.0 - t_up) * N / 2.0  # n_up r_up
    drift = (2.0 / N) * (rate_dn - rate_up)
    second = (4.0 / N**2) * (rate_dn + rate_up)
    return (drift if drift.ndim else float(drift)), (second if second.ndim else float(second))


def cw_generator(n_spins: int, temperature: float, field: float) -> np.ndarray:
    """Generator Q (rows sum to 0) of the birth–death chain of n_up = 0..N (m = 2 n_up/N - 1).

    Q[k, k+1] = n_dn r_dn, Q[k, k-1] = n_up r_up (:func:`cw_jump_moments`). Finite-time
    laws are rows of expm(Q t).
    """
    N = check_count(n_spins, "n_spins", 1)
    k = np.arange(N + 1)
    S = 2 * k - N
    beta = 1.0 / temperature
    up = (N - k) / (1.0 + np.exp(-2.0 * beta * ((S + 1.0) / N + field)))
    down = k / (1.0 + np.exp(2.0 * beta * ((S - 1.0) / N + field)))
    Q = np.diag(up[:-1], 1) + np.diag(down[1:], -1)
    Q -= np.diag(Q.sum(axis=1))
    return Q


def cw_stationary_law(n_spins: int, temperature: float, field: float):
    """Exact stationary law of m for N Curie–Weiss spins.

    pi(S) ∝ C(N, n_up) exp(beta (S^2 - N)/(2N) + beta h S), S = 2 n_up - N: the Gibbs
    measure of H = -(1/N) sum_{i<j} s_i s_j - h S with binomial multiplicity.

    Returns
    -------
    m : ndarray, shape (N + 1,)
        Magnetisations -1, -1 + 2/N, ..., 1.
    p : ndarray, shape (N + 1,)
        Probabilities (log-space normalised).
    """
    N = check_count(n_spins, "n_spins", 1)
    k = np.arange(N + 1)
    S = 2.0 * k - N
    beta = 1.0 / temperature
    logw = (special.gammaln(N + 1) - special.gammaln(k + 1) - special.gammaln(N - k + 1)
            + beta * (S**2 - N) / (2.0 * N) + beta * field * S)
    p = np.exp(logw - logw.max())
    return S / N, p / p.sum()


def cw_fixed_point(temperature: float, field: float):
    """N -> infinity stable fixed point m* of a(m), relaxation time 1/|a'(m*)| and N Var(m) = sigma^2 N/(2|a'|).

    Solves m = tanh(beta(m + h)) by bisection on the branch of sign(h) (m > 0 for h >= 0).
    The stationary linear-noise variance is N sigma^2(m*)/(2 |a'(m*)|).
    """
    beta = 1.0 / temperature
    sgn = 1.0 if field >= 0 else -1.0
    lo, hi = (0.0, 1.0) if sgn > 0 else (-1.0, 0.0)
    if field == 0 and beta <= 1:
        m = 0.0
    else:
        if field == 0:
            lo = 1e-12
        f = lambda x: -x + math.tanh(beta * (x + field))  # noqa: E731
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if f(mid) * f(lo) > 0:
                lo = mid
            else:
                hi = mid
        m = 0.5 * (lo + hi)
    th = math.tanh(beta * (m + field))
    slope = -1.0 + beta * (1.0 - th * th)
    n_sigma2 = 2.0 * (1.0 - m * th)
    return {"m_star": m, "relaxation_time": 1.0 / abs(slope), "n_var_m": n_sigma2 / (2.0 * abs(slope))}


def ising_exact_law(size: int, temperature: float, field: float):
    """Exact stationary joint law of (M, bond sum) on a periodic size x size Ising torus, by enumeration.

    All 2**(size**2) states (size 3 or 4), vectorised. Energy E = -B - h M with
    B = sum over the 2 N bonds of s_i s_j, M = sum_i s_i.

    Returns
    -------
    M : ndarray of int, shape (k,)
    Bsum : ndarray of int, shape (k,)
    p : ndarray, shape (k,)
        The distinct (M, B) pairs and their probabilities.
    """
    L = check_count(size, "size", 3)
    if L > 4:
        raise ValueError(f"size must be 3 or 4 for enumeration, got {L}")
    N = L * L
    states = np.arange(2**N, dtype=np.int64)
    bits = ((states[:, None] >> np.arange(N)) & 1).astype(np.int8)
    s = (2 * bits - 1).reshape(-1, L, L).astype(np.int64)
    M = s.sum(axis=(1, 2))
    B = (s * np.roll(s, -1, axis=1) + s * np.roll(s, -1, axis=2)).sum(axis=(1, 2))
    beta = 1.0 / temperature
    logw = beta * (B + field * M)
    w = np.exp(logw - logw.max())
    key = (M + N) * (4 * N + 1) + (B + 2 * N)
    uniq, inv = np.unique(key, return_inverse=True)
    p = np.bincount(inv, weights=w)
    p /= p.sum()
    return uniq // (4 * N + 1) - N, uniq % (4 * N + 1) - 2 * N, p


def onsager_energy(temperature: float) -> float:
    """Exact internal energy per site of the zero-field 2-D Ising model (Onsager 1944).

    u = -coth(2 beta) [1 + (2/pi)(2 tanh^2(2 beta) - 1) K(k)], k = 2 sinh(2 beta)/cosh^2(2 beta),
    K the complete elliptic integral of the first kind (scipy's ellipk takes k**2).
    REFERENCE §9: u(T = 2.5) = -1.106079.
    """
    beta = 1.0 / temperature
    k = 2.0 * math.sinh(2 * beta) / math.cosh(2 * beta) ** 2
    K = special.ellipk(k * k)
    return -1.0 / math.tanh(2 * beta) * (1.0 + (2.0 / math.pi) * (2.0 * math.tanh(2 * beta) ** 2 - 1.0) * K)


def onsager_magnetisation(temperature: float) -> float:
    """Spontaneous magnetisation (1 - sinh(2 beta)^-4)^(1/8) below T_c, 0 above (Onsager/Yang 1952)."""
    x = math.sinh(2.0 / temperature) ** -4
    return (1.0 - x) ** 0.125 if x < 1 else 0.0


def warmup() -> None:
    """Compile every kernel (numba caches them on disk)."""
    rng = np.random.default_rng(0)
    for model in MODELS:
        p = GlauberParams(model, 2.5, 0.1, 4)
        s = random_spins(2, 4, rng)
        run_events(s[0], 5, p, rng)
        run_time(s[0], [0.1, 0.2], p, rng)
        for bd in BOUNDARIES:
            evolve_window(s[0], (1, 1), 2, 3, p, rng, bd)
            per = bd == "periodic"
            ising = model == "ising2d"
            d = _N_OBS[model]
            z = np.zeros((2, d))
            for rec in (np.empty(0), np.array([0.5])):
                for out in (np.zeros((0, 2, 2), np.int8), np.zeros((2, 2, 2), np.int8)):
                    _partial_batch(s, np.zeros(2, np.int64), 2, ising, per, 0.4, 0.1, 3, rec, rng, z, z.copy(),
                                   z.copy(), np.zeros(2), out, np.zeros((2, 0, d)), np.zeros((2, 0, d)),
                                   s.reshape(2, -1).sum(axis=1, dtype=np.int64))
                _relax_batch(s.copy(), 2, 2, ising, per, 0.4, 0.1, 3, rec, rng)
        _full_batch(s, model == "ising2d", 0.4, 0.1, 3, rng, np.zeros(2, np.int64), np.zeros(2, np.int64),
                    np.zeros(2))
