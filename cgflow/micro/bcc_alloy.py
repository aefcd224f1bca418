"""Vacancy-exchange kinetic Monte Carlo of the NbMoTa BCC alloy: geometry, stand-in barriers, SRO.

Model (seed 002, REFERENCE-002 §1c, barrier model §9).

Geometry. A periodic BCC lattice of ``cells`` cubic cells per side, lattice constant
a = 3.24 Angstrom, drawn on the voxel grid of spacing a/2 (side n = 2 cells): the sites
are the voxels whose three coordinates are all even (cube corners) or all odd (body
centres), N = 2 cells**3 sites (cells = 8: 1024 sites, 16: 8192, 32: 65,536). Site
index: ``s * cells**3 + (i * cells + j) * cells + k`` for the voxel
(2i + s, 2j + s, 2k + s), s in {0, 1}; :func:`site_voxels` and :func:`voxel_sites`
convert. Eight 1st neighbours at voxel offsets (+-1, +-1, +-1) (direction d has
offset (1 - 2 bit2(d), 1 - 2 bit1(d), 1 - 2 bit0(d)), so the opposite direction is
7 - d) and six 2nd neighbours at (+-2, 0, 0), (0, +-2, 0), (0, 0, +-2) (opposite:
d ^ 1). With cells = 2 the offsets +2 and -2 are the same periodic image: every site
then has 3 distinct 2nd neighbours, each listed twice, and the energy below counts
both image bonds (a consistent periodic-image sum); from cells = 3 on all 6 are
distinct.

Species ids: 0 vacancy (V), 1 Nb, 2 Mo, 3 Ta (the authors' ids for the metals,
REFERENCE §1c).

Energy and barriers: a STAND-IN. The authors' barriers come from a neural network
(the NNK model of Xing et al., Nat. Commun. 15:3879, 2024) that we do not have and
must not unpickle; this module uses instead the stand-in of REFERENCE §9: a pair
energy over 1st and 2nd neighbours,

    E = sum_{1NN bonds} eps1[a, b] + sum_{2NN bonds} eps2[a, b],  a, b in {V, Nb, Mo, Ta},

with the gauge eps[X, X] = 0 and eps[V, Nb] = 0 and the fitted values of §9
(:data:`EPS1`, :data:`EPS2`), and kinetically-resolved-activation (KRA) barriers for
atom X jumping into a 1st-neighbour vacancy,

    E_b = E0[X] + lam * dE / 2,  E0 = Nb 0.954, Mo 1.291, Ta 1.104 eV,

dE the change of E by the exchange, rate nu0 exp(-E_b / (k_B T)), nu0 = 1e13 1/s,
k_B = 8.617333e-5 eV/K. The forward/backward rate ratio of any jump is
exp(-lam dE / (k_B T)): the kinetics satisfy detailed balance with respect to the
Boltzmann law of lam * E (NOT of E), exp(-lam E / (k_B T)); lam = 1 is the fitted
pair energy itself, lam = 0.5 (the default, §9) reproduces the paper's 800 K short-
range order. :data:`DESCRIPTION` / :attr:`BccAlloyParams.description` say so in words
a store can carry.

dE is computed locally, from the bonds touching the two exchanged sites only. With
D[X, a] = eps[X, a] - eps[V, a] every site carries the field

    G[i, X] = sum_{k in 1NN(i)} D1[X, c_k] + sum_{k in 2NN(i)} D2[X, c_k]   (X = Nb, Mo, Ta),

the energy change if site i turned from V into X; then

    dE(vacancy v <-> atom X at its 1st neighbour s) = G[v, X] - G[s, X] - D1[X, X] + D1[X, V]

(the last two terms remove the v-s bond, which the exchange leaves unchanged). All
energies are counted in integer quanta of 1e-4 eV (:data:`ENERGY_QUANTUM`; every §9
pair energy is a multiple), so G is an exact integer table (int16: |G| <= 23,414),
updated on each exchange at the 28 sites around the pair, and dE is exact: bitwise
the same whatever the history.

Dynamics. Rejection-free KMC (the residence-time algorithm): all vacancy-neighbour
exchanges are events with the rates above (a vacancy next to a vacancy: rate 0); the
waiting time is Exp(1)/R_tot seconds, the event is chosen with probability
rate/R_tot. Every vacancy keeps its 8 rates and their sum; the sums sit at the leaves
of a binary sum tree (selection and update O(log n_vac)). After a jump only the
vacancies whose rates can change are recomputed: the moved one, and those within
Chebyshev voxel distance 4 of the old vacancy site (a rate of vacancy w depends on the
species within 1st + 2nd neighbour range of w and of its 1st neighbours, i.e. voxel
offsets up to 3 from w; the changed sites are the old and the new vacancy site, 1
apart). Up to 16 vacancies they are found by checking every vacancy; beyond,
through coarse blocks of >= 8 voxels per side with a linked list of the vacancies in each block, so
the cost of an event does not grow with the number of vacancies (beyond the log of
the tree and the vacancies actually in range). ``full_update=True`` recomputes every
vacancy after every jump (slow; used by the tests to check that the local update
gives bitwise the same trajectory). Rates of integer dE come from two small look-up
tables per (T, lam) (:func:`_rate_tables`: a product of two exponentials, relative
error a few 1e-16; exp itself at extreme temperatures).

Observables (REFERENCE §1c). The six short-range-order parameters
delta_ab (NbNb, NbMo, NbTa, MoMo, MoTa, TaTa): the mean over the a atoms of
(number of b atoms among its 8 first neighbours) - m/3, with m the number of its
first neighbours that are atoms (vacancies are excluded as neighbours). For an atom
without a vacancy neighbour m/3 = 8/3, the authors' constant; for one with a vacancy
neighbour, the random-mixing expectation is m/3 = 7/3, and subtracting it keeps
sum_b delta_ab = 0 exactly (fixed 8/3 would shift every delta_ab of such an atom by
-1/3). The two choices differ by O(n_vac/N): with 1 vacancy in 1024 sites, 8 of the
1023 atoms are affected, about 2.6e-3 in each delta_ab on average (at most 8e-3 if all
8 are of one species). Per aligned cubic tile of
``tile_cells`` cells per side (K = (cells/tile_cells)**3 tiles, row-major over the
cube-cell coordinates (i, j, k); both sites of a cube cell belong to its tile), the
same means over the tile's atoms, with their real lattice neighbours.

Randomness: all random numbers come from the ``numpy.random.Generator`` passed in
(the numba kernels draw from it directly, as :mod:`cgflow.micro.glauber` does); the
same generator state gives bitwise the same output.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from numbers import Integral, Real

import numba
import numpy as np

__all__ = [
    "A_ANGSTROM",
    "DESCRIPTION",
    "E0",
    "EPS1",
    "ENERGY_QUANTUM",
    "EPS2",
    "EQUILIBRIUM_SRO_TABLE",
    "KB",
    "NN1_OFFSETS",
    "NN2_OFFSETS",
    "NU0",
    "PAPER_SRO_PREDICTED",
    "SPECIES",
    "SRO_PAIRS",
    "BccAlloyParams",
    "LatticeTables",
    "check_configuration",
    "equilibration_time",
    "exchange_energy",
    "jump_rates",
    "lattice_tables",
    "random_configuration",
    "run_jumps",
    "run_time",
    "site_tiles",
    "site_voxels",
    "sro",
    "stationary_estimate",
    "sro_ensemble",
    "sro_trajectory",
    "tile_sro",
    "total_energy",
    "voxel_sites",
    "warmup",
    "window_sites",
]

#: Species names by id (0 vacancy, 1 Nb, 2 Mo, 3 Ta; REFERENCE §1c).
SPECIES = ("V", "Nb", "Mo", "Ta")
#: The six SRO parameters, in the authors' order (REFERENCE §1c), as (a, b) species ids.
SRO_PAIRS = ("NbNb", "NbMo", "NbTa", "MoMo", "MoTa", "TaTa")
_SRO_AB = ((1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))
#: BCC lattice constant (Angstrom); the voxel spacing is A_ANGSTROM / 2 (REFERENCE §1c).
A_ANGSTROM = 3.24
#: Attempt frequency (1/s) and Boltzmann constant (eV/K) (REFERENCE §1c).
NU0 = 1e13
KB = 8.617333e-5


def _sym(pairs) -> np.ndarray:
    m = np.zeros((4, 4))
    for (a, b), v in pairs.items():
        m[a, b] = m[b, a] = v
    m.setflags(write=False)
    return m


#: Stand-in 1st-neighbour pair energies eps1[a, b] (eV) over (V, Nb, Mo, Ta) (REFERENCE §9);
#: gauge eps[X, X] = 0, eps[V, Nb] = 0.
EPS1 = _sym({(1, 2): -0.0324, (1, 3): +0.0067, (2, 3): -0.0330, (0, 2): +0.1528, (0, 3): +0.0072})
#: Stand-in 2nd-neighbour pair energies eps2[a, b] (eV) (REFERENCE §9).
EPS2 = _sym({(1, 2): +0.0170, (1, 3): +0.0327, (2, 3): +0.0452, (0, 2): -0.0973, (0, 3): +0.0228})
#: KRA reference barriers E0[X] (eV) by species id (index 0, the vacancy, unused) (REFERENCE §9).
E0 = np.array([np.nan, 0.954, 1.291, 1.104])
E0.setflags(write=False)
#: The kernels count energies in integer quanta of 1e-4 eV (every EPS1/EPS2 entry is a multiple),
#: so that the local dE is exact integer arithmetic.
ENERGY_QUANTUM = 1e-4


def _quanta(eps: np.ndarray) -> np.ndarray:
    q = np.rint(eps / ENERGY_QUANTUM).astype(np.int64)
    if not np.allclose(q * ENERGY_QUANTUM, eps, rtol=0, atol=1e-12):
        raise ValueError("pair energies must be multiples of ENERGY_QUANTUM")
    return q


#: D[X, a] = eps[X, a] - eps[V, a] in quanta (the field G of the module docstring sums it over neighbours).
_D1Q = _quanta(EPS1) - _quanta(EPS1)[0][None, :]
_D2Q = _quanta(EPS2) - _quanta(EPS2)[0][None, :]
#: The field G of a site is bounded by 8 max|D1| + 6 max|D2| (quanta): int16 when it fits (smaller
#: working set of the kernels), int32 otherwise.
_G_BOUND = int(8 * np.abs(_D1Q).max() + 6 * np.abs(_D2Q).max())
_G_DTYPE = np.int16 if _G_BOUND < np.iinfo(np.int16).max else np.int32
#: U[X] = D[:, X] - D[:, V]: change of a site's field when one neighbour turns from V into X.
_U1 = np.ascontiguousarray((_D1Q - _D1Q[:, :1]).T, dtype=_G_DTYPE)
_U2 = np.ascontiguousarray((_D2Q - _D2Q[:, :1]).T, dtype=_G_DTYPE)
#: corr[X] = -D1[X, X] + D1[X, V] (removes the exchanged pair's own bond), quanta.
_CORR = np.array([0] + [-_D1Q[x, x] + _D1Q[x, 0] for x in (1, 2, 3)], dtype=np.int64)
#: |dE| <= 2 max|G| + max|corr| (quanta).
_DE_BOUND = 2 * _G_BOUND + int(np.abs(_CORR).max())
for _a in (_D1Q, _D2Q, _U1, _U2, _CORR):
    _a.setflags(write=False)

#: What the store should carry about the barrier model (REFERENCE §9).
DESCRIPTION = (
    "STAND-IN barrier model for NbMoTa vacancy kinetics (REFERENCE-002 section 9), not the authors' "
    "neural barrier model (NNK, Xing et al., Nat. Commun. 15:3879, 2024): pair interactions over 1st and "
    "2nd BCC neighbours fitted to public DFT NEB barriers, KRA barriers E_b = E0[X] + lambda*dE/2 "
    "(E0: Nb 0.954, Mo 1.291, Ta 1.104 eV), rate nu0*exp(-E_b/(k_B T)), nu0 = 1e13 1/s; the kinetics "
    "sample the Boltzmann law of lambda*E."
)

#: Equilibrium SRO of the stand-in at lam = 0.5 (REFERENCE §9 [derived]; lattice size not stated),
#: temperature (K) -> (NbNb, NbMo, NbTa, MoMo, MoTa, TaTa).
EQUILIBRIUM_SRO_TABLE = {
    3000: (-0.03, +0.09, -0.06, -0.19, +0.10, -0.04),
    1200: (-0.07, +0.26, -0.19, -0.58, +0.33, -0.14),
    800: (-0.06, +0.53, -0.47, -1.72, +1.19, -0.73),
}
#: The authors' stationary SRO predicted by their learned SDE (REFERENCE §6, NB/test/sro_predicted.npy).
PAPER_SRO_PREDICTED = {
    800: (-0.254, 0.595, -0.330, -1.673, 1.115, -0.756),
    2000: (-0.050, 0.171, -0.131, -0.637, 0.462, -0.336),
}


# ----------------------------------------------------------------------------- validation
def check_count(value, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def check_cells(cells) -> int:
    """Cubic cells per side, an integer >= 2 (ValueError naming 'cells')."""
    return check_count(cells, "cells", 2)


def check_configuration(config, cells: int, batch: bool = False, name: str = "config") -> np.ndarray:
    """A C-contiguous int8 view/copy of species ids, shape (N,) or (B, N) if ``batch``, N = 2 cells**3.

    Raises ValueError for a wrong shape, a non-integer dtype or an unknown species id
    (ids are 0 vacancy, 1 Nb, 2 Mo, 3 Ta).
    """
    cells = check_cells(cells)
    N = 2 * cells**3
    arr = np.asarray(config)
    nd = 2 if batch else 1
    if arr.ndim != nd or arr.shape[-1] != N:
        want = f"(B, {N})" if batch else f"({N},)"
        raise ValueError(f"{name} must have shape {want} (2 * cells**3 sites, cells = {cells}), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of species ids, got dtype {arr.dtype}")
    if arr.size:
        bad = arr[(arr < 0) | (arr > 3)]
        if bad.size:
            raise ValueError(f"{name} holds unknown species id {int(bad.flat[0])} "
                             "(species ids are 0 vacancy, 1 Nb, 2 Mo, 3 Ta)")
    return np.ascontiguousarray(arr, dtype=np.int8)


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class BccAlloyParams:
    """Parameters of the NbMoTa vacancy KMC with the stand-in barrier model (validated on construction).

    Parameters
    ----------
    temperature : float
        T in kelvin, finite and > 0.
    cells : int
        Cubic cells per side of the periodic lattice, >= 2 (N = 2 cells**3 sites).
    lam : float
        The barrier scaling lambda of E_b = E0 + lam dE/2 (REFERENCE §9, spec key
        ``micro.barrier.lambda``), finite and >= 0; default 0.5.
    """

    temperature: float
    cells: int
    lam: float = 0.5

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"temperature must be a finite number > 0 (kelvin), got {t!r}")
        lam = self.lam
        if isinstance(lam, bool) or not isinstance(lam, Real) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam (micro.barrier.lambda) must be a finite number >= 0, got {lam!r}")
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "cells", check_cells(self.cells))
        object.__setattr__(self, "lam", float(lam))

    @property
    def sites(self) -> int:
        """N = 2 cells**3."""
        return 2 * self.cells**3

    @property
    def kT(self) -> float:
        """k_B T in eV."""
        return KB * self.temperature

    @property
    def description(self) -> str:
        """:data:`DESCRIPTION` with the parameter values (for store attributes)."""
        return f"{DESCRIPTION} lambda = {self.lam:g}, T = {self.temperature:g} K."

    def kernel_constants(self):
        """The rate tables of the kernels: (hi, lo, logA, bhq, off), see :func:`_rate_tables`."""
        return _rate_tables(self.temperature, self.lam)


@functools.lru_cache(maxsize=64)
def _rate_tables(temperature: float, lam: float):
    """Rates nu0 exp(-(E0[X] + lam dE/2)/kT) = exp(logA[X] - bhq dE) for integer dE (quanta) by table look-up.

    logA[X] = ln nu0 - E0[X]/kT (X >= 1; -inf for the vacancy), bhq = lam ENERGY_QUANTUM / (2 kT).
    With e = dE + off in [0, 2 off] (off = the bound on |dE|), e = 256 h + l:
    rate = hi[X, h] * lo[l], hi[X, h] = exp(logA[X] - bhq (256 h - off)), lo[l] = exp(-bhq l)
    (relative error a few 1e-16; the exact exp is 2-3x slower in the kernel). If a table entry
    would leave the normal floating-point range (temperatures of a few K), ``hi`` and ``lo``
    are empty and the kernels call exp.
    """
    kT = KB * temperature
    logA = np.full(4, -np.inf)
    for X in (1, 2, 3):
        logA[X] = math.log(NU0) - E0[X] / kT
    bhq = lam * ENERGY_QUANTUM / (2.0 * kT)
    off = _DE_BOUND
    h = np.arange((2 * off) // 256 + 1)
    with np.errstate(over="ignore", under="ignore"):
        hi = np.zeros((4, h.size))
        hi[1:] = np.exp(logA[1:, None] - bhq * (256.0 * h[None, :] - off))
        lo = np.exp(-bhq * np.arange(256.0))
    tiny, huge = np.finfo(float).tiny * 1e16, np.finfo(float).max * 1e-16
    if not (np.all((hi[1:] > tiny) & (hi[1:] < huge)) and np.all(lo > 1e-16)):
        hi, lo = np.zeros((4, 0)), np.zeros(0)
    for a in (hi, lo, logA):
        a.setflags(write=False)
    return hi, lo, logA, float(bhq), int(off)


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class LatticeTables:
    """Neighbour tables of a periodic BCC lattice (read-only; built once per size by :func:`lattice_tables`).

    Attributes
    ----------
    cells : int
    nn1 : ndarray of int32, shape (N, 8)
        1st neighbours; direction d has voxel offset (1 - 2 bit2(d), 1 - 2 bit1(d), 1 - 2 bit0(d)),
        ``nn1[nn1[i, d], 7 - d] == i``.
    nn2 : ndarray of int32, shape (N, 6)
        2nd neighbours at (+2,0,0), (-2,0,0), (0,+2,0), (0,-2,0), (0,0,+2), (0,0,-2);
        ``nn2[nn2[i, d], d ^ 1] == i``.
    voxels : ndarray of int32, shape (N, 3)
        Voxel coordinates of every site (:func:`site_voxels`).
    neighbours : ndarray of int32, shape (N, 16)
        The kernels' copy: columns 0-7 ``nn1``, 8-13 ``nn2``, 14-15 padding (-1); rows of
        64 bytes on 64-byte boundaries (one cache line per site).
    """

    cells: int
    nn1: np.ndarray
    nn2: np.ndarray
    voxels: np.ndarray
    neighbours: np.ndarray

    @property
    def sites(self) -> int:
        return self.nn1.shape[0]


#: 1st-neighbour voxel offsets by direction (opposite direction 7 - d).
NN1_OFFSETS = np.array([[1 - 2 * ((d >> 2) & 1), 1 - 2 * ((d >> 1) & 1), 1 - 2 * (d & 1)] for d in range(8)])
#: 2nd-neighbour voxel offsets by direction (opposite direction d ^ 1).
NN2_OFFSETS = np.array([[2, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -2, 0], [0, 0, 2], [0, 0, -2]])
NN1_OFFSETS.setflags(write=False)
NN2_OFFSETS.setflags(write=False)


def _site_of(cells: int, x, y, z):
    n = 2 * cells
    x, y, z = np.mod(x, n), np.mod(y, n), np.mod(z, n)
    s = x & 1
    return s * cells**3 + (((x - s) // 2) * cells + (y - s) // 2) * cells + (z - s) // 2


def site_voxels(cells: int) -> np.ndarray:
    """Voxel coordinates (x, y, z) of every site, shape (N, 3), int32 (spacing a/2; see the module docstring)."""
    return lattice_tables(cells).voxels


def voxel_sites(cells: int) -> np.ndarray:
    """The inverse map: an int32 (2 cells)**3 grid holding the site index of each site voxel, -1 elsewhere."""
    cells = check_cells(cells)
    n = 2 * cells
    grid = np.full((n, n, n), -1, np.int32)
    v = lattice_tables(cells).voxels
    grid[v[:, 0], v[:, 1], v[:, 2]] = np.arange(v.shape[0], dtype=np.int32)
    return grid


@functools.lru_cache(maxsize=16)
def lattice_tables(cells: int) -> LatticeTables:
    """Neighbour tables of the periodic BCC lattice of ``cells`` cubic cells per side (cached, read-only)."""
    cells = check_cells(cells)
    C3 = cells**3
    idx = np.arange(2 * C3)
    s = idx // C3
    r = idx % C3
    i, j, k = r // (cells * cells), (r // cells) % cells, r % cells
    vox = np.stack([2 * i + s, 2 * j + s, 2 * k + s], axis=1)
    nn1 = np.stack([_site_of(cells, *(vox + o).T) for o in NN1_OFFSETS], axis=1).astype(np.int32)
    nn2 = np.stack([_site_of(cells, *(vox + o).T) for o in NN2_OFFSETS], axis=1).astype(np.int32)
    vox = vox.astype(np.int32)
    N = 2 * C3
    buf = np.full(N * 16 + 16, -1, np.int32)
    start = (-buf.ctypes.data % 64) // 4
    nb = buf[start:start + N * 16].reshape(N, 16)
    nb[:, :8] = nn1
    nb[:, 8:14] = nn2
    for a in (nn1, nn2, vox, nb):
        a.setflags(write=False)
    return LatticeTables(cells, nn1, nn2, vox, nb)


def window_sites(cells: int, window_cells: int, origin) -> np.ndarray:
    """Lattice sites of a cubic window of ``window_cells`` cells per side, in the window lattice's site order.

    For the partial method (REFERENCE §2: a periodic window around a vacancy; §3:
    tiling and cyclic shifts by even voxel offsets): window site w of the
    ``window_cells`` lattice (voxel ``site_voxels(window_cells)[w]``) sits at voxel
    ``origin + that`` (mod 2 cells) of the ``cells`` lattice. ``big[idx]`` is then a
    configuration of the window lattice and ``big[idx] = small`` writes one back. The
    window's own periodic neighbours match the lattice's inside the window, not across
    its faces (unless window_cells = cells).

    Parameters
    ----------
    cells, window_cells : int
        2 <= window_cells <= cells.
    origin : sequence of 3 ints
        Voxel coordinates of the window's corner, all even or all odd (a BCC lattice translation).

    Returns
    -------
    ndarray of int64, shape (2 window_cells**3,), distinct site indices.
    """
    cells = check_cells(cells)
    wc = check_count(window_cells, "window_cells", 2)
    if wc > cells:
        raise ValueError(f"window_cells = {wc} is larger than cells = {cells}")
    o = np.asarray(origin)
    if o.shape != (3,) or not np.issubdtype(o.dtype, np.integer) or len(set((o % 2).tolist())) != 1:
        raise ValueError(f"origin must be 3 integer voxel coordinates, all even or all odd, got {origin!r}")
    v = lattice_tables(wc).voxels + o[None, :]
    return _site_of(cells, v[:, 0], v[:, 1], v[:, 2]).astype(np.int64)


@functools.lru_cache(maxsize=16)
def site_tiles(cells: int, tile_cells: int) -> np.ndarray:
    """Tile index of every site for aligned cubic tiles of ``tile_cells`` cells per side (int64, read-only).

    K = (cells/tile_cells)**3 tiles, index (ti * nt + tj) * nt + tk with (ti, tj, tk) =
    (i, j, k) // tile_cells of the site's cube cell (both sites of a cell share it).
    """
    cells = check_cells(cells)
    tc = check_count(tile_cells, "tile_cells", 1)
    if cells % tc:
        raise ValueError(f"tile_cells = {tc} must divide cells = {cells} (the lattice is not divisible into tiles)")
    nt = cells // tc
    cube = lattice_tables(cells).voxels // 2  # both sublattices: (2i + s) // 2 = i
    t = ((cube[:, 0] // tc) * nt + cube[:, 1] // tc) * nt + cube[:, 2] // tc
    t = t.astype(np.int64)
    t.setflags(write=False)
    return t


# ----------------------------------------------------------------------------- configurations
def random_configuration(cells: int, n_vacancies: int, rng, n_configs: int | None = None) -> np.ndarray:
    """Random equimolar configurations with ``n_vacancies`` vacancies, uniformly shuffled (REFERENCE §1c).

    Parameters
    ----------
    cells : int
        Cubic cells per side (>= 2); N = 2 cells**3 sites.
    n_vacancies : int
        1 <= n_vacancies <= N - 1.
    rng : numpy.random.Generator
    n_configs : int or None
        None: one configuration, shape (N,); otherwise a batch (n_configs, N).

    Returns
    -------
    ndarray of int8
        The N - n_vacancies atoms are split as equally as possible between Nb, Mo, Ta
        (a remainder goes to Nb first, then Mo), then all sites are shuffled.
    """
    cells = check_cells(cells)
    N = 2 * cells**3
    nv = check_count(n_vacancies, "n_vacancies", 1)
    if nv > N - 1:
        raise ValueError(f"n_vacancies = {nv} must be at most sites - 1 = {N - 1} (cells = {cells})")
    rng = check_rng(rng)
    B = 1 if n_configs is None else check_count(n_configs, "n_configs", 1)
    na = N - nv
    counts = [nv] + [na // 3 + (1 if x < na % 3 else 0) for x in range(3)]
    base = np.repeat(np.arange(4, dtype=np.int8), counts)
    out = rng.permuted(np.broadcast_to(base, (B, N)), axis=1)
    return out[0] if n_configs is None else out


def _field(c: np.ndarray, tab: LatticeTables) -> np.ndarray:
    """G[i, X] = sum_{k in 1NN(i)} D1[X, c_k] + sum_{k in 2NN(i)} D2[X, c_k] in quanta, (N, 4) int16/int32."""
    G = np.zeros((c.shape[0], 4), _G_DTYPE)
    _field_kernel(c, tab.neighbours, _D1Q, _D2Q, G)
    return G


@functools.lru_cache(maxsize=16)
def _block_tables(cells: int):
    """Per voxel coordinate x: block of x, of x - 4 and of x + 4 (blocks >= 8 voxels); periodic |dx| table."""
    n = 2 * cells
    nbk = max(1, n // 8)
    x = np.arange(n)
    bof = x * nbk // n
    blo = ((x - 4) % n) * nbk // n
    bhi = ((x + 4) % n) * nbk // n
    dx = np.arange(-n, n) % n
    wd = np.minimum(dx, n - dx)
    out = tuple(a.astype(np.int64) for a in (bof, blo, bhi, wd))
    for a in out:
        a.setflags(write=False)
    return out


def total_energy(config, cells: int) -> float:
    """Total stand-in pair energy E (eV, not scaled by lam) of one configuration, by a full bond sum (§9)."""
    tab = lattice_tables(check_cells(cells))
    c = check_configuration(config, cells).astype(np.int64)
    e1 = EPS1[c[:, None], c[tab.nn1]].sum()
    e2 = EPS2[c[:, None], c[tab.nn2]].sum()
    return float(0.5 * (e1 + e2))  # every bond is listed from both ends


def exchange_energy(config, cells: int, vacancy: int, direction: int) -> float:
    """Local dE (eV) of exchanging the vacancy at site ``vacancy`` with its 1st neighbour ``direction``.

    Computed from the bonds touching the two sites only (the kernels' formula, module
    docstring); equals total_energy(after) - total_energy(before). The neighbour must
    be an atom.
    """
    c, v, s = _check_jump(config, cells, vacancy, direction)
    G = _field(c, lattice_tables(cells))
    return _delta_e_quanta(G, c, v, s) * ENERGY_QUANTUM


def _delta_e_quanta(G, c, v, s) -> int:
    X = int(c[s])
    return int(G[v, X]) - int(G[s, X]) + int(_CORR[X])


def _check_jump(config, cells, vacancy, direction):
    cells = check_cells(cells)
    c = check_configuration(config, cells)
    v = check_count(vacancy, "vacancy")
    if v >= c.shape[0] or c[v] != 0:
        raise ValueError(f"vacancy = {vacancy!r} must be the index of a vacancy site")
    d = check_count(direction, "direction")
    if d > 7:
        raise ValueError(f"direction must be in 0..7, got {direction!r}")
    s = int(lattice_tables(cells).nn1[v, d])
    if c[s] == 0:
        raise ValueError(f"the neighbour in direction {d} of site {v} is a vacancy (no exchange)")
    return c, v, s


def jump_rates(config, params: BccAlloyParams, vacancy: int):
    """The 8 exchange rates (1/s) of the vacancy at site ``vacancy`` and their dE (eV), as the kernels compute them.

    Returns
    -------
    rates : ndarray (8,)
        nu0 exp(-(E0[X] + lam dE/2)/kT) per direction; 0 towards a vacancy.
    dE : ndarray (8,)
        Energy change of each exchange (NaN towards a vacancy).
    targets : ndarray of int32 (8,)
        The neighbouring sites (``lattice_tables(cells).nn1[vacancy]``).
    """
    c = check_configuration(config, params.cells)
    v = check_count(vacancy, "vacancy")
    if v >= c.shape[0] or c[v] != 0:
        raise ValueError(f"vacancy = {vacancy!r} must be the index of a vacancy site")
    tab = lattice_tables(params.cells)
    G = _field(c, tab)
    rates = np.zeros(8)
    _vac_rates(v, c, tab.nn1, G, _CORR, params.kernel_constants(), rates)
    dE = np.array([_delta_e_quanta(G, c, v, s) * ENERGY_QUANTUM if c[s] else np.nan for s in tab.nn1[v]])
    return rates, dE, tab.nn1[v].copy()


@functools.lru_cache(maxsize=64)
def _mean_random_rate(temperature: float, lam: float) -> float:
    tab = lattice_tables(16)
    rt = _rate_tables(temperature, lam)
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(20261205)))  # a constant of the model
    total, count = 0.0, 0
    out = np.zeros(8)
    for c in random_configuration(16, 64, rng, n_configs=16):
        G = _field(c, tab)
        for v in np.flatnonzero(c == 0):
            total += _vac_rates(v, c, tab.nn1, G, _CORR, rt, out)
            count += 1
    return total / count


def mean_random_rate(params: BccAlloyParams) -> float:
    """Mean total exchange rate (1/s) of a vacancy in a random equimolar alloy at ``params``' T and lambda.

    A constant of the model, not a random draw of a run: the average over 1024 vacancy
    neighbourhoods of random configurations from a fixed seed (16 lattices of 8192 sites
    with 64 vacancies each), cached per (T, lambda). Its use is to turn "about n jumps" into
    a fixed duration n / rate: a run of fixed duration keeps the Boltzmann law, a run of a
    fixed number of jumps does not (it samples the jump chain, weighted by the total rate).
    """
    if not isinstance(params, BccAlloyParams):
        raise ValueError(f"params must be a BccAlloyParams, got {type(params).__name__}")
    return _mean_random_rate(params.temperature, params.lam)


# ----------------------------------------------------------------------------- observables
def _sro_parts(c: np.ndarray, cells: int):
    """Per site i: n_b(i) - m(i)/3 for b = Nb, Mo, Ta, shape (..., N, 3) (n_b: b atoms among the 8 first
    neighbours, m: atoms among them)."""
    tab = lattice_tables(cells)
    nb = c[..., tab.nn1]
    n = np.stack([(nb == b).sum(-1) for b in range(4)], axis=-1).astype(np.float64)
    m = 8.0 - n[..., 0]
    excess = n[..., 1:] - m[..., None] / 3.0
    return excess


def sro(configs, cells: int) -> np.ndarray:
    """The six SRO parameters delta_ab of whole configurations (REFERENCE §1c; module docstring).

    Parameters
    ----------
    configs : array_like of int, shape (N,) or (B, N)
    cells : int

    Returns
    -------
    ndarray, shape (6,) or (B, 6)
        (NbNb, NbMo, NbTa, MoMo, MoTa, TaTa); NaN for a species with no atom.
    """
    arr = np.asarray(configs)
    single = arr.ndim == 1
    c = check_configuration(arr[None] if single else arr, cells, batch=True, name="configs")
    out = tile_sro(c, cells, cells)[:, 0, :]
    return out[0] if single else out


def tile_sro(configs, cells: int, tile_cells: int) -> np.ndarray:
    """SRO parameters per aligned cubic tile of ``tile_cells`` cells per side (REFERENCE §1c, §2).

    Means over the a atoms *of the tile*, their neighbours being the real lattice
    neighbours (also across the tile's faces). Tiles ordered as :func:`site_tiles`.

    Returns
    -------
    ndarray, shape (K, 6) or (B, K, 6), K = (cells/tile_cells)**3; NaN where a tile holds no a atom.
    """
    arr = np.asarray(configs)
    single = arr.ndim == 1
    c = check_configuration(arr[None] if single else arr, cells, batch=True, name="configs")
    tiles = site_tiles(cells, tile_cells)
    K = (cells // tile_cells) ** 3
    B = c.shape[0]
    excess = _sro_parts(c, cells)  # (B, N, 3)
    key = (np.arange(B)[:, None] * K + tiles[None, :]).ravel()
    out = np.empty((B, K, 6))
    n_a = {}
    for a in (1, 2, 3):
        n_a[a] = np.bincount(key, weights=(c == a).ravel(), minlength=B * K).reshape(B, K)
    for col, (a, b) in enumerate(_SRO_AB):
        w = np.where(c == a, excess[..., b - 1], 0.0).ravel()
        s = np.bincount(key, weights=w, minlength=B * K).reshape(B, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., col] = np.where(n_a[a] > 0, s / np.maximum(n_a[a], 1), np.nan)
    return out[0] if single else out


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _vac_rates(v, c, nn1, G, corr, rt, out):
    """Fill out[0:8] with the exchange rates of the vacancy at v; return their sum.

    dE (quanta) = G[v, X] - G[s, X] + corr[X]; rate = exp(logA[X] - bhq dE) through the
    tables ``rt`` of :func:`_rate_tables` (two look-ups and a product), or by exp if the
    tables are empty (extreme temperatures).
    """
    hi, lo, logA, bhq, off = rt
    table = lo.shape[0] > 0
    tot = 0.0
    for d in range(8):
        s = nn1[v, d]
        X = c[s]
        if X == 0:
            out[d] = 0.0
            continue
        dE = np.int64(G[v, X]) - np.int64(G[s, X]) + corr[X]
        r = _rate(dE, X, table, off, hi, lo, logA, bhq)
        out[d] = r
        tot += r
    return tot


@numba.njit(cache=True, inline="always")
def _rate(dE, X, table, off, hi, lo, logA, bhq):
    """Rate of species X jumping with energy change dE (quanta): table look-up, or exp below ~100 K."""
    if table:
        e = dE + off
        return hi[X, e >> 8] * lo[e & 255]
    return math.exp(logA[X] - bhq * dE)


@numba.njit(cache=True)
def _field_kernel(c, nb, D1, D2, G):
    """G[i, X] = sum_{k in 1NN(i)} D1[X, c_k] + sum_{k in 2NN(i)} D2[X, c_k] (see :func:`_field`)."""
    for i in range(c.shape[0]):
        g1 = 0
        g2 = 0
        g3 = 0
        for d in range(14):
            b = c[nb[i, d]]
            if d < 8:
                g1 += D1[1, b]
                g2 += D1[2, b]
                g3 += D1[3, b]
            else:
                g1 += D2[1, b]
                g2 += D2[2, b]
                g3 += D2[3, b]
        G[i, 0] = 0  # D[V, :] = 0
        G[i, 1] = g1
        G[i, 2] = g2
        G[i, 3] = g3


@numba.njit(cache=True)
def _sro_kernel(c, nn1, out):
    """The six SRO parameters (module docstring) of the configuration c."""
    na = np.zeros(4)
    nb = np.zeros((4, 4))
    nm = np.zeros(4)
    for i in range(c.shape[0]):
        a = c[i]
        if a == 0:
            continue
        na[a] += 1.0
        for k in range(8):
            b = c[nn1[i, k]]
            nb[a, b] += 1.0
        nm[a] += 8.0 - nb[a, 0]
        nb[a, 0] = 0.0
    col = 0
    for a in range(1, 4):
        for b in range(a, 4):
            out[col] = (nb[a, b] - nm[a] / 3.0) / na[a] if na[a] > 0 else np.nan
            col += 1


#: Up to this many vacancies the kernel keeps the per-vacancy totals in a flat array (selected
#: and summed linearly, and all checked after a jump); above, a sum tree and coarse blocks.
#: Measured at 8192 sites, 8 vacancies: 200 -> 178 ns per event (benchmarks/bench_bcc_alloy.py).
_LINEAR_SCAN = 16


@numba.njit(cache=True)
def _tree_set(tree, P, i, value, flat):
    """Set leaf i of the sum tree (leaves at P..2P-1) and, unless ``flat``, the sums above it."""
    j = P + i
    tree[j] = value
    if flat:
        return
    j >>= 1
    while j >= 1:
        tree[j] = tree[2 * j] + tree[2 * j + 1]
        j >>= 1


@numba.njit(cache=True)
def _kmc(c, nb, vox, G, U1, U2, corr, rt, bof, blo, bhi, wd, n_jumps, rec_times, rec_sro,
         full_update, rng):
    """Rejection-free vacancy-exchange KMC on the whole periodic lattice, in place (c and G).

    ``nb`` is :attr:`LatticeTables.neighbours` (1st neighbours in columns 0-7, 2nd in 8-13).
    ``G`` is the integer field of the module docstring (energy quanta), updated on each
    exchange by the rows of ``U1``/``U2`` (U[X] = D[:, X] - D[:, V], the change of a
    neighbour from V to X). ``bof``/``blo``/``bhi`` give per voxel coordinate x the block
    of x, x - 4 and x + 4, ``wd[dx + n]`` the periodic |dx|. Runs ``n_jumps`` jumps if
    ``rec_times`` is empty; otherwise runs until ``rec_times[-1]`` (seconds) and writes
    the SRO of the state at each record time into ``rec_sro``; the event pending past the
    last time is dropped (exact: waiting times are memoryless). Returns (jumps, elapsed
    seconds). If no exchange is possible (R_tot = 0: no atom next to any vacancy, or
    every rate underflows) the run stops: event clock -> elapsed inf; time clock -> the
    state is recorded to the end.
    """
    N = c.shape[0]
    n = bof.shape[0]
    nbk = bof[n - 1] + 1
    nv = 0
    for i in range(N):
        if c[i] == 0:
            nv += 1
    vpos = np.empty(nv, np.int64)
    q = 0
    for i in range(N):
        if c[i] == 0:
            vpos[q] = i
            q += 1
    P = 1
    while P < nv:
        P *= 2
    flat = nv <= _LINEAR_SCAN
    tree = np.zeros(2 * P)
    rates = np.zeros((nv, 8))
    for w in range(nv):
        _tree_set(tree, P, w, _vac_rates(vpos[w], c, nb, G, corr, rt, rates[w]), flat)
    # coarse blocks (>= 8 voxels per side) with linked lists of their vacancies
    head = np.full(nbk * nbk * nbk, -1, np.int64)
    nxt = np.full(nv, -1, np.int64)
    prv = np.full(nv, -1, np.int64)
    blk = np.empty(nv, np.int64)
    for w in range(nv):
        v = vpos[w]
        b = (bof[vox[v, 0]] * nbk + bof[vox[v, 1]]) * nbk + bof[vox[v, 2]]
        blk[w] = b
        nxt[w] = head[b]
        if head[b] >= 0:
            prv[head[b]] = w
        head[b] = w
    # voxel coordinates of the vacancies, one array per axis (the flat scan vectorises)
    vx = np.empty(nv, np.int64)
    vy = np.empty(nv, np.int64)
    vz = np.empty(nv, np.int64)
    for w in range(nv):
        vx[w] = vox[vpos[w], 0]
        vy[w] = vox[vpos[w], 1]
        vz[w] = vox[vpos[w], 2]
    near = np.zeros(nv, np.bool_)
    n_rec = rec_times.shape[0]
    by_time = n_rec > 0
    j_rec = 0
    t = 0.0
    jumps = 0
    while True:
        if not by_time and jumps >= n_jumps:
            break
        if flat:
            R = 0.0
            for w in range(nv):
                R += tree[P + w]
        else:
            R = tree[1]
        if not R > 0.0:  # nothing can move
            if by_time:
                while j_rec < n_rec:
                    _sro_kernel(c, nb, rec_sro[j_rec])
                    j_rec += 1
                t = rec_times[n_rec - 1]
            else:
                t = math.inf
            break
        tau = rng.standard_exponential() / R
        if by_time:
            while j_rec < n_rec and t + tau > rec_times[j_rec]:
                _sro_kernel(c, nb, rec_sro[j_rec])
                j_rec += 1
            if j_rec == n_rec:
                t = rec_times[n_rec - 1]
                break
        t += tau
        u = rng.random() * R
        if flat:  # the first vacancy whose cumulative total passes u (skipping zeros)
            i = -1
            for w in range(nv):
                r = tree[P + w]
                if r > 0.0:
                    i = w
                    if u < r:
                        break
                    u -= r
        else:
            j = 1
            while j < P:
                left = tree[2 * j]
                if (u < left and left > 0.0) or not tree[2 * j + 1] > 0.0:
                    j = 2 * j
                else:
                    u -= left
                    j = 2 * j + 1
            i = j - P
        dsel = -1
        for d in range(8):
            r = rates[i, d]
            if r > 0.0:
                dsel = d
                if u < r:
                    break
                u -= r
        v = vpos[i]
        s = nb[v, dsel]
        X = c[s]
        # exchange; the fields of the 28 sites around the pair change (v: V -> X, s: X -> V)
        for d in range(8):
            k = nb[v, d]
            m = nb[s, d]
            for y in range(4):
                G[k, y] += U1[X, y]
                G[m, y] -= U1[X, y]
        for d in range(6):
            k = nb[v, 8 + d]
            m = nb[s, 8 + d]
            for y in range(4):
                G[k, y] += U2[X, y]
                G[m, y] -= U2[X, y]
        c[v] = X
        c[s] = 0
        vpos[i] = s
        jumps += 1
        if full_update:
            for w in range(nv):
                _tree_set(tree, P, w, _vac_rates(vpos[w], c, nb, G, corr, rt, rates[w]), flat)
            continue
        _tree_set(tree, P, i, _vac_rates(s, c, nb, G, corr, rt, rates[i]), flat)
        if nv == 1:
            continue
        px = vx[i]  # the old site v
        py = vy[i]
        pz = vz[i]
        vx[i] = vox[s, 0]
        vy[i] = vox[s, 1]
        vz[i] = vox[s, 2]
        if flat:  # few vacancies: checking them all (branch-free) is cheaper than the blocks
            hit = False
            for w in range(nv):
                ax = abs(vx[w] - px)  # periodic |dx| <= 4  <=>  ax <= 4 or ax >= n - 4
                ay = abs(vy[w] - py)
                az = abs(vz[w] - pz)
                f = (((ax <= 4) | (ax >= n - 4)) & ((ay <= 4) | (ay >= n - 4)) & ((az <= 4) | (az >= n - 4))
                     & (w != i))
                near[w] = f
                hit |= f
            if hit:
                for w in range(nv):
                    if near[w]:
                        _tree_set(tree, P, w, _vac_rates(vpos[w], c, nb, G, corr, rt, rates[w]), flat)
            continue
        # move vacancy i to its new block
        nb_ = (bof[vox[s, 0]] * nbk + bof[vox[s, 1]]) * nbk + bof[vox[s, 2]]
        ob = blk[i]
        if nb_ != ob:
            if prv[i] >= 0:
                nxt[prv[i]] = nxt[i]
            else:
                head[ob] = nxt[i]
            if nxt[i] >= 0:
                prv[nxt[i]] = prv[i]
            prv[i] = -1
            nxt[i] = head[nb_]
            if head[nb_] >= 0:
                prv[head[nb_]] = i
            head[nb_] = i
            blk[i] = nb_
        # other vacancies within Chebyshev voxel distance 4 of the old site v
        nax = 1 if blo[px] == bhi[px] else 2
        nay = 1 if blo[py] == bhi[py] else 2
        naz = 1 if blo[pz] == bhi[pz] else 2
        for a in range(nax):
            bx = blo[px] if a == 0 else bhi[px]
            for b in range(nay):
                by = blo[py] if b == 0 else bhi[py]
                for e in range(naz):
                    bz = blo[pz] if e == 0 else bhi[pz]
                    w = head[(bx * nbk + by) * nbk + bz]
                    while w >= 0:
                        if w != i and wd[vx[w] - px + n] <= 4 and wd[vy[w] - py + n] <= 4 \
                                and wd[vz[w] - pz + n] <= 4:
                            _tree_set(tree, P, w, _vac_rates(vpos[w], c, nb, G, corr, rt, rates[w]), flat)
                        w = nxt[w]
    return jumps, t


# ----------------------------------------------------------------------------- runs
def _prepare(config, params: BccAlloyParams, rng):
    if not isinstance(params, BccAlloyParams):
        raise ValueError(f"params must be a BccAlloyParams, got {type(params).__name__}")
    c = check_configuration(config, params.cells).copy()
    rng = check_rng(rng)
    if not np.any(c == 0):
        raise ValueError("config holds no vacancy (species id 0): nothing can move")
    tab = lattice_tables(params.cells)
    return c, tab, _field(c, tab), rng


def _run(c, tab, G, params, n_jumps, times, rec, full_update, rng):
    bof, blo, bhi, wd = _block_tables(params.cells)
    return _kmc(c, tab.neighbours, tab.voxels, G, _U1, _U2, _CORR, params.kernel_constants(), bof, blo, bhi, wd,
                n_jumps, times, rec, bool(full_update), rng)


def run_jumps(config, n_jumps: int, params: BccAlloyParams, rng, full_update: bool = False):
    """Run ``n_jumps`` vacancy jumps of the whole periodic lattice (rejection-free KMC, REFERENCE §1c).

    Parameters
    ----------
    config : array_like of int, shape (N,), N = 2 params.cells**3
        Species ids (>= 1 vacancy); not modified.
    n_jumps : int
        >= 0.
    params : BccAlloyParams
    rng : numpy.random.Generator
    full_update : bool
        Recompute every vacancy's rates after every jump (testing only; same trajectory).

    Returns
    -------
    config : ndarray of int8 (N,)
        Final configuration.
    elapsed : float
        Elapsed time in seconds (sum of the Exp(R_tot) waiting times; inf if the
        system got stuck with R_tot = 0).
    jumps : int
        Number of jumps made (n_jumps unless stuck).
    """
    n_jumps = check_count(n_jumps, "n_jumps")
    c, tab, G, rng = _prepare(config, params, rng)
    jumps, t = _run(c, tab, G, params, n_jumps, np.empty(0), np.empty((0, 6)), full_update, rng)
    return c, float(t), int(jumps)


def run_time(config, duration: float, params: BccAlloyParams, rng, record_times=None, full_update: bool = False):
    """Run the whole lattice for exactly ``duration`` seconds (REFERENCE §1c).

    The event pending at ``duration`` is dropped (waiting times are memoryless, so the
    state at ``duration`` has the exact law of the process).

    Parameters
    ----------
    config : array_like of int, shape (N,)
        Species ids (>= 1 vacancy); not modified.
    duration : float
        Seconds, finite and > 0.
    params : BccAlloyParams
    rng : numpy.random.Generator
    record_times : array_like of float, optional
        Non-decreasing times in [0, duration] at which the SRO of the state is recorded.
    full_update : bool
        As in :func:`run_jumps`.

    Returns
    -------
    config : ndarray of int8 (N,)
        Configuration at ``duration``.
    elapsed : float
        == duration.
    jumps : int
        Jumps made before ``duration``.
    sro : ndarray (n, 6)
        Only with ``record_times``: :func:`sro` of the state at each record time.
    """
    d = float(duration) if isinstance(duration, Real) and not isinstance(duration, bool) else float("nan")
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    c, tab, G, rng = _prepare(config, params, rng)
    n_extra = 0
    times = np.array([d])
    if record_times is not None:
        extra = np.ascontiguousarray(record_times, dtype=np.float64).ravel()
        if extra.size == 0 or not np.all(np.isfinite(extra)) or extra[0] < 0 or np.any(np.diff(extra) < 0) \
                or extra[-1] > d:
            raise ValueError(f"record_times must be non-decreasing within [0, duration = {d:g}], got {record_times!r}")
        times = np.concatenate([extra, times])
        n_extra = extra.size
    rec = np.zeros((times.size, 6))
    jumps, t = _run(c, tab, G, params, -1, times, rec, full_update, rng)
    out = (c, float(t), int(jumps))
    return out + (rec[:n_extra],) if record_times is not None else out



# ----------------------------------------------------------------------------- direct reference runs
def sro_trajectory(params: BccAlloyParams, n_vacancies, times, rng, start=None):
    """One direct whole-lattice KMC trajectory, the SRO of the state at given physical times (REFERENCE §1c).

    The ground truth the learned SDE is compared with (issue 12): a trajectory of the
    rejection-free kernel of :func:`run_time` (no Python loop over sites or events) from
    a random equimolar configuration (:func:`random_configuration`, drawn from ``rng``)
    or from ``start``.

    Parameters
    ----------
    params : BccAlloyParams
        Temperature, lattice (``params.cells``), lam.
    n_vacancies : int or None
        Vacancies of the random start (>= 1). With ``start`` given it may be None;
        otherwise it must equal the number of vacancies of ``start``.
    times : array_like of float, shape (n,)
        Non-decreasing physical times in seconds, >= 0 (0 = the start state).
    rng : numpy.random.Generator
        Draws the start (if random) and the trajectory; same state -> bitwise same output.
    start : array_like of int, shape (N,), optional
        Start configuration (species ids, >= 1 vacancy); not modified.

    Returns
    -------
    sro : ndarray (n, 6)
        :func:`sro` of the state at each time ((NbNb, NbMo, NbTa, MoMo, MoTa, TaTa)).
    config : ndarray of int8 (N,)
        The state at ``times[-1]`` (the start if it is 0).
    jumps : int
        Jumps made up to ``times[-1]``.

    Notes
    -----
    The time scale of the dynamics is inversely proportional to the vacancy fraction
    n_vacancies / N (dilute vacancies): compare runs of different vacancy contents in
    t * n_vacancies / N.
    """
    if not isinstance(params, BccAlloyParams):
        raise ValueError(f"params must be a BccAlloyParams, got {type(params).__name__}")
    rng = check_rng(rng)
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) < 0):
        raise ValueError(f"times must be a non-empty 1-D non-decreasing array of finite seconds >= 0, got {times!r}")
    if start is None:
        if n_vacancies is None:
            raise ValueError("n_vacancies must be given when start is None")
        c0 = random_configuration(params.cells, n_vacancies, rng)
    else:
        c0 = check_configuration(start, params.cells, name="start")
        nv = int(np.count_nonzero(c0 == 0))
        if nv == 0:
            raise ValueError("start holds no vacancy (species id 0): nothing can move")
        if n_vacancies is not None and check_count(n_vacancies, "n_vacancies", 1) != nv:
            raise ValueError(f"n_vacancies = {n_vacancies!r} but start holds {nv} vacancies")
    if t[-1] == 0:
        return np.repeat(sro(c0, params.cells)[None, :], t.size, axis=0), c0.copy(), 0
    c, _, jumps, rec = run_time(c0, float(t[-1]), params, rng, record_times=t)
    return rec, c, jumps


def sro_ensemble(params: BccAlloyParams, n_vacancies: int, times, n_runs: int, rng):
    """``n_runs`` independent :func:`sro_trajectory` runs from random equimolar starts, one after another.

    Returns
    -------
    sro : ndarray (n_runs, n, 6)
    jumps : ndarray of int64 (n_runs,)
    """
    n_runs = check_count(n_runs, "n_runs", 1)
    out, jumps = [], []
    for _ in range(n_runs):
        s, _, j = sro_trajectory(params, n_vacancies, times, rng)
        out.append(s)
        jumps.append(j)
    return np.stack(out), np.array(jumps, dtype=np.int64)


def _window_average(t: np.ndarray, v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(1/(hi - lo)) * integral over [lo, hi] of the piecewise-linear interpolant of samples v (..., n, k) at t (n,).

    The time average of a sampled path over a window (trapezoid rule, window ends
    interpolated: any grid, even one without samples inside the window); v at lo if hi == lo.
    """
    n = t.size

    def at(x):
        i = int(np.clip(np.searchsorted(t, x, side="right") - 1, 0, n - 2))
        w = 0.0 if t[i + 1] == t[i] else float(np.clip((x - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0))
        return v[..., i, :] * (1 - w) + v[..., i + 1, :] * w

    if hi <= lo:
        return at(lo)
    inner = (t > lo) & (t < hi)
    tt = np.concatenate([[lo], t[inner], [hi]])
    vv = np.concatenate([at(lo)[..., None, :], v[..., inner, :], at(hi)[..., None, :]], axis=-2)
    dt = np.diff(tt)
    w = np.zeros(tt.size)
    w[:-1] += dt / 2
    w[1:] += dt / 2
    return np.einsum("n,...nk->...k", w / (hi - lo), vv)


def stationary_estimate(times, values, start_fraction: float = 0.5, n_blocks: int = 4) -> dict:
    """Stationary mean of an ensemble of sampled paths with its standard errors and a plateau check.

    Computed identically for direct KMC (:func:`sro_ensemble`) and learned-SDE rollouts.
    The window is [start_fraction * times[-1], times[-1]]; each path's time average over
    it is the trapezoid rule of its samples (any time grid, window ends interpolated).

    Parameters
    ----------
    times : array_like (n,)
        Sample times (non-decreasing, n >= 2).
    values : array_like (R, n) or (R, n, k)
        R independent paths (R >= 1) of k observables.
    start_fraction : float in [0, 1)
    n_blocks : int >= 2
        Blocks per path in the window (block averages).

    Returns
    -------
    dict of ndarrays (shape (k,), or scalars for 2-D ``values``):
        ``mean``: the mean of the R path averages; ``se``: their standard deviation /
        sqrt(R) (independent paths: autocorrelation-proof; NaN if R = 1);
        ``se_blocks``: SE from the R * n_blocks block averages (valid when a block is
        longer than the correlation time; the only SE for R = 1); ``q3``, ``q4``: the
        means over the last two quarters of the whole run (times in [t/2, 3t/4) and
        [3t/4, t]); ``q4_minus_q3`` and ``q4_minus_q3_se`` (paired over paths, NaN SE
        for R = 1; block-free); ``plateau``: |q4 - q3| <= 3 SE (the run has reached
        its stationary state as far as the data can tell; False for R = 1, untestable).
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    squeeze = v.ndim == 2
    if squeeze:
        v = v[..., None]
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) < 0) or v.ndim != 3 or v.shape[1] != t.size or v.shape[0] < 1:
        raise ValueError(f"values must have shape (R, {t.size}) or (R, {t.size}, k), got {np.shape(values)}")
    if not 0 <= start_fraction < 1:
        raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction!r}")
    n_blocks = check_count(n_blocks, "n_blocks", 2)
    R = v.shape[0]
    T = t[-1]

    path = _window_average(t, v, start_fraction * T, T)
    edges = start_fraction * T + (T - start_fraction * T) * np.arange(n_blocks + 1) / n_blocks
    blocks = np.stack([_window_average(t, v, edges[b], edges[b + 1]) for b in range(n_blocks)], 1)
    blocks = blocks.reshape(R * n_blocks, -1)
    q3 = _window_average(t, v, 0.5 * T, 0.75 * T)
    q4 = _window_average(t, v, 0.75 * T, T)
    d = q4 - q3
    nan = np.full(v.shape[2], np.nan)
    se = path.std(axis=0, ddof=1) / math.sqrt(R) if R > 1 else nan
    dse = d.std(axis=0, ddof=1) / math.sqrt(R) if R > 1 else nan
    out = {
        "mean": path.mean(axis=0),
        "se": se,
        "se_blocks": blocks.std(axis=0, ddof=1) / math.sqrt(blocks.shape[0]),
        "q3": q3.mean(axis=0),
        "q4": q4.mean(axis=0),
        "q4_minus_q3": d.mean(axis=0),
        "q4_minus_q3_se": dse,
        "plateau": np.abs(d.mean(axis=0)) <= 3 * dse,
    }
    return {k: (a[0] if squeeze else a) for k, a in out.items()}


def equilibration_time(times, values, fraction: float = 1 - 1 / math.e, initial=None, stationary=None):
    """Time to approach equilibrium: when a mean curve first covers ``fraction`` of its way to the stationary value.

    With v0 = ``initial`` (default ``values[0]``) and v_inf = ``stationary`` (default:
    the trapezoid time average of ``values`` over [times[-1]/2, times[-1]]), the progress
    p(t) = (v(t) - v0) / (v_inf - v0) starts at 0 and tends to 1 (for either sign of
    the change). The result is the first time with p >= ``fraction``, linearly
    interpolated between the bracketing samples; for v(t) = v0 + (v_inf - v0)(1 - exp(-t/tau))
    it is -tau ln(1 - fraction), i.e. tau for the default 1 - 1/e. Use the *ensemble mean*
    of a component (the dominant one is delta_MoMo, column 3 of :func:`sro`), each curve
    with its own v0 and v_inf, so the definition applies identically to direct KMC and to
    learned-SDE rollouts (pure numpy, no randomness).

    Parameters
    ----------
    times : array_like (n,)
        Non-decreasing sample times.
    values : array_like (n,) or (n, k)
        The mean curve(s); k curves are handled column by column.
    fraction : float in (0, 1)
    initial, stationary : float or array_like (k,), optional

    Returns
    -------
    float or ndarray (k,)
        NaN where the level is never reached or v_inf == v0.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    scalar = v.ndim == 1
    if scalar:
        v = v[:, None]
    if t.ndim != 1 or v.ndim != 2 or v.shape[0] != t.size or t.size < 2 or np.any(np.diff(t) < 0):
        raise ValueError(f"times must be non-decreasing (n >= 2,) and values (n,) or (n, k); got "
                         f"{np.shape(times)}, {np.shape(values)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    v0 = v[0] if initial is None else np.broadcast_to(np.asarray(initial, dtype=np.float64), v.shape[1:])
    if stationary is None:
        vinf = _window_average(t, v, t[-1] / 2, t[-1])
    else:
        vinf = np.broadcast_to(np.asarray(stationary, dtype=np.float64), v.shape[1:])
    out = np.full(v.shape[1], np.nan)
    for k in range(v.shape[1]):
        span = vinf[k] - v0[k]
        if not np.isfinite(span) or span == 0:
            continue
        p = (v[:, k] - v0[k]) / span
        hit = np.flatnonzero(p >= fraction)
        if hit.size == 0:
            continue
        i = hit[0]
        if i == 0:
            out[k] = t[0]
        else:
            out[k] = t[i - 1] + (fraction - p[i - 1]) / (p[i] - p[i - 1]) * (t[i] - t[i - 1])
    return float(out[0]) if scalar else out


def warmup() -> None:
    """Compile every kernel (numba caches them on disk)."""
    rng = np.random.default_rng(0)
    p = BccAlloyParams(2000.0, 2)
    c = random_configuration(2, 2, rng)
    run_jumps(c, 5, p, rng)
    run_jumps(c, 5, p, rng, full_update=True)
    run_time(c, 1e-12, p, rng, record_times=[0.0, 1e-13])
    v = int(np.flatnonzero(c == 0)[0])
    jump_rates(c, p, v)
