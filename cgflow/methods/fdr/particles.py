"""Check against the particles: the macro prediction versus a direct zero-range simulation.

The macro stage (:mod:`cgflow.methods.fdr.macro`) integrates eq. (8) of seed 000
with the fitted (and the exact) operator. Here the same initial-value problem is
simulated directly with particles, and the macro prediction is tested against
the ensemble mean of the particle densities.

``particles`` (sweep stage, :class:`ParticleEnsemble`)
    One point (the case), ``replicas / block_size`` blocks. Every replica draws the
    local-equilibrium product measure of rho0 at the sites x_i = i/L (seed 000 §4),
    is evolved by exact KMC (:func:`cgflow.micro.zrp.run_zrp`, lattice time =
    t L**2) from save time to save time, and records at every save time the
    hat-averaged nodal densities (Algorithm 1 line 17)

        rho_a(t) = sum_i gamma_a(x_i) eta_i(t) / sum_i gamma_a(x_i),

    gamma_a(x) = max(0, 1 - N |x - a/N|), a = 0..N-1 (periodic), N | L. The
    stage keeps only their streaming mean and variance (stat ``density`` over
    ``time_node``, flattened (time, node)).

``particles_vs_macro`` (reduce stage, :class:`ParticleComparison`)
    The ensemble mean, its standard error SE = sd/sqrt(R) and the 95 % band
    mean -+ 1.96 SE for the mean; for every macro prediction (fitted
    operators and the exact-operator reference) the fraction of nodes inside the
    band and max |prediction - mean|/SE per save time, and the test statistic
    proper: a chi-square over every other node per save time (``chi2``,
    ``chi2_dof`` = N // 2, ``chi2_pvalue``; :func:`chi2_test`).

Why every other node: neighbouring hat averages share n - 1 sites, so they are
correlated, sum gamma_a gamma_{a+1} / sum gamma_a**2 under a product measure
(0.21 at n = 3, 0.25 for large n); hats two nodes apart share no site with
non-zero weight, so their averages are independent at t = 0 and, since the
zero-range process stays close to local equilibrium, nearly so later. Measured
from 384 replicas at L = 120, N = 40 up to t = 2e-3 (three seeds): mean
correlation of neighbours 0.20-0.23, of nodes two apart -0.012..0.019, three
apart -0.017..0.024, i.e. zero to the resolution of the data (~0.01). A sum
over all nodes with the diagonal variances would not be chi-square(N) (its
variance is 2 N (1 + 2 r**2), r the neighbour correlation, and its tail
differs); the stage stores only the diagonal moments, so it uses the
independent half instead.
The standardised deviations use the SE from the same replicas, so each is a
Student t with R - 1 degrees of freedom; it is mapped to the standard normal
with the same tail probability before squaring, so chi2 is chi-square(dof)
under the null for any R (summing raw t**2 over-rejects for small R).

What the particle estimator measures, and the caveats
-----------------------------------------------------
``rho_a`` is a hat *average*, so its expectation is
integral(gamma_a rho)/integral(gamma_a) = rho(x_a) + Delta**2 rho''(x_a)/12 + O(Delta**4),
Delta = 1/N, not the nodal value rho(x_a) that the FEM nodes approximate. For
rho0 = 7 + 2 cos 2 pi x the difference is (2 pi Delta)**2 * 2/12 = 0.016 at the
extrema for N = 20 (0.004 for N = 40). With ``hat_average=True`` (default) the
prediction is therefore compared as rho_a + (rho_{a-1} - 2 rho_a + rho_{a+1})/12,
the hat average of the smooth profile through the nodes, to O(Delta**4); the
stored ``rho_macro``/``rho_reference`` are the raw nodal values.

The two sides approximate the continuum solution differently: the particle mean
follows the *lattice* hydrodynamics at finite L (discrete Laplacian, O(L**-2),
and deviations from the local-equilibrium closure E g(eta_i) = phi(E eta_i),
exact at t = 0 and expected at O(L**-2) later), the FEM the continuum PDE at finite N
(O(Delta**2) for the frozen affine stencils). Both errors must lie well below the
band half-width for the test to be about the *operator*. Measured for rho0 =
7 + 2 cos 2 pi x, p = 2, at t = 5e-4 (tests/methods/test_fdr_particles.py):

* lattice: :func:`cgflow.micro.zrp_hydro.lattice_mean_field` at L = 200 agrees
  with L = 1600 to 1e-4 at the nodes; negligible;
* FEM: the exact-operator reference at N = 20 is off the converged solution by
  0.029 at the extrema (N = 40: 0.007, N = 80: 0.002; second order; the FEM
  decays slightly too fast), i.e. the hat average of the lattice mean field
  differs from the hat-corrected reference by 0.029 at N = 20;
* band: SE = sqrt(2 chi/(3 n R)) roughly (hat of n = L/N sites per side,
  chi ~ 3.6 at rho = 7): L = 200, N = 20 gives SE = 0.070 for R = 48 and 0.025
  for R = 384. So at N = 20 the FEM error is 0.4 SE at R = 48 but 1.1 SE at
  R = 384: more
  replicas demand more elements (error ~ 0.029 (20/N)**2 at this t).

Power: a 50 % faster operator (diffusivity x 1.5) moves the extrema by 0.12 at
t = 5e-4; it is invisible with R = 48 (z_max 3.6, within what 20 nodes x 4
times of noise give) and clearly detected with R = 384 (z_max 7.6, 20 % of the
nodes inside the band at t = 5e-4; chi2 p = 1e-38). A 20 % slower operator
moves them by 0.031 at t = 5e-4, as much as the N = 20 FEM error (0.029): no
replica count separates the two at N = 20. At N = 40 (FEM error 0.022 at
t = 2e-3, operator x 0.8: 0.12) with L = 120, R = 384 the chi-square passes
the exact operator (p >= 0.03 at every save time, three seeds) and rejects
operator x 0.8 at t = 2e-3 (p <= 2e-9). The chi-square's noncentrality per
replica is ~ 3 L/(8 chi) x deviation**2 whatever N, while a replica costs
~ L**3 events: power is cheapest on small lattices (as long as n = L/N >= 2
and the lattice corrections stay below the SE).

Sweep-stage conventions are those of :mod:`cgflow.methods.fdr.ensemble`:
x_i = i/L, nodes a/N on sites, lattice time = t L**2, random streams
``block_stream(seed, BlockKey(name, point, block))``.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from ...engine.keys import BlockKey, block_stream
from ...engine.stats import Moments
from ...engine.types import BlockOutput, Stat, Sweep, fingerprint
from .ensemble import micro_model, model_fields, project
from .macro import model_cases, save_times

__all__ = ["ParticleEnsemble", "ParticleComparison", "SUPPORTED_CASES", "BAND_Z", "chi2_nodes", "chi2_test"]

#: Cases the particle stage can simulate (periodic lattice only).
SUPPORTED_CASES = ("periodic-cosine",)
#: Two-sided 95 % normal quantile of the band for the mean.
BAND_Z = 1.96


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ParticleEnsemble:
    """The ``particles`` sweep stage (implements ``SweepStage``): direct ZRP runs of a macro case.

    Attributes
    ----------
    seed : int
        Root seed of the run.
    sites : int
        Lattice size L (a multiple of ``elements``).
    rate_exponent : int or None
        p of g(k) = k**p for the zero-range process; None for models without it.
    elements : int
        Macro elements N: nodes a/N, a = 0..N-1 (periodic), hat averages over n = L/N sites per side.
    case : str
        A key of :data:`SUPPORTED_CASES` (``"periodic-cosine"``: rho0 = 7 + 2 cos 2 pi x, periodic).
    times : tuple of float
        Macroscopic save times (non-decreasing, >= 0), e.g. ``tuple(save_times(t_end, saves))``.
    replicas : int
        Independent replicas (a multiple of ``block_size``).
    block_size : int
        Replicas per block (task).
    model : str
        Registered micro model (:mod:`cgflow.micro.registry`); ``model_params`` its
        other parameters as (key, value) pairs.
    name : str
        Store group.
    """

    seed: int
    sites: int
    rate_exponent: int | None
    elements: int
    case: str
    times: tuple[float, ...]
    replicas: int
    block_size: int
    model: str = "zrp"
    model_params: tuple = ()
    name: str = "particles"
    work_unit: ClassVar[str] = "KMC events"

    @property
    def micro(self):
        """The micro model object (registry; cached)."""
        return micro_model(self.model, self.rate_exponent, self.model_params)

    def __post_init__(self):
        if self.case not in SUPPORTED_CASES:
            raise ValueError(f"case must be one of {SUPPORTED_CASES} (periodic lattice only), got {self.case!r}")
        self.micro  # builds (and so checks) the model and its parameters, e.g. the rate exponent
        L = _check_int(self.sites, "sites", 2)
        N = _check_int(self.elements, "elements", 3)
        if L % N:
            raise ValueError(f"sites = {L} must be a multiple of elements = {N} (nodes on sites)")
        R = _check_int(self.replicas, "replicas", 2)
        B = _check_int(self.block_size, "block_size", 1)
        if R % B:
            raise ValueError(f"block_size = {B} must divide replicas = {R}")
        t = np.asarray(self.times, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
            raise ValueError(f"times must be a non-empty non-decreasing sequence of finite times >= 0, "
                             f"got {self.times!r}")
        object.__setattr__(self, "times", tuple(float(v) for v in t))  # canonical: fingerprints of equal stages agree

    @classmethod
    def from_spec(cls, spec) -> "ParticleEnsemble":
        """The stage of a validated spec: sections ``particles`` (sites, replicas, block), ``macro``
        (elements, t_end, saves) and ``micro`` (rate_exponent)."""
        parts, macro = spec["particles"], spec["macro"]
        return cls(
            seed=spec.seed,
            sites=parts["sites"],
            rate_exponent=spec["micro"]["rate_exponent"],
            elements=macro["elements"],
            case="periodic-cosine",
            times=tuple(save_times(macro["t_end"], macro["saves"])),
            replicas=parts["replicas"],
            block_size=parts["block"],
            **model_fields(spec),
        )

    # ------------------------------------------------------------------ geometry
    @property
    def n_nodes(self) -> int:
        return self.elements

    @property
    def x_nodes(self) -> np.ndarray:
        return np.arange(self.elements) / self.elements

    def density_profile(self) -> np.ndarray:
        """rho0(x_i) at the sites x_i = i/L."""
        return model_cases(self.micro)[self.case].profile(self.micro.site_positions(self.sites))

    def local_density(self, eta: np.ndarray) -> np.ndarray:
        """Hat averages sum_i gamma_a eta_i / sum_i gamma_a (= n for every periodic hat) of ``eta`` (..., L)."""
        n = self.sites // self.elements
        return project(eta, self.elements, True) * (np.sqrt(self.sites) / n)

    # ------------------------------------------------------------------ sweep
    @property
    def sweep(self) -> Sweep:
        size = len(self.times) * self.n_nodes
        stats = {"density": Stat("time_node", size, full=False)}
        return Sweep(1, self.replicas // self.block_size, self.block_size, stats)

    def template(self) -> xr.Dataset:
        T, N = len(self.times), self.n_nodes
        times = np.asarray(self.times)
        coords = {
            "point": np.arange(1),
            "case": ("point", np.array([self.case], dtype=object)),
            "time": ("time", times),
            "node": np.arange(N),
            "x_node": ("node", self.x_nodes),
            "time_node": np.arange(T * N),
            "time_node_time": ("time_node", np.repeat(times, N)),
            "time_node_node": ("time_node", np.tile(np.arange(N), T)),
        }
        ds = xr.Dataset(coords=coords)
        ds["time"].attrs = {"units": "macroscopic time; lattice time = t * sites**2"}
        ds["x_node"].attrs["description"] = "node positions a/N, a = 0..N-1 (periodic; x = 1 is node 0)"
        ds["time_node"].attrs["description"] = "flattened (time, node), time major: index = k * N + a"
        ds.attrs.update(self.conventions())
        return ds

    def conventions(self) -> dict:
        model = self.micro.conventions()
        return {
            "model": model["model"],
            "case": self.case,
            "case_description": model_cases(self.micro)[self.case].description,
            "sites": self.sites,
            **{k: v for k, v in model.items() if k != "model"},
            "boundary": "periodic",
            "time_scaling": "lattice time = macroscopic time * sites**2",
            "site_positions": "x_i = i / sites (nodes a/N on sites)",
            "elements": self.elements,
            "hats": "gamma_a(x) = max(0, 1 - N |x - a/N|), nodes a/N, a = 0..N-1",
            "density": "rho_a(t) = sum_i gamma_a(x_i) eta_i(t) / sum_i gamma_a(x_i) (Algorithm 1 line 17), "
            "stat 'density' over time_node = (time, node) flattened",
            "initial_state": "product measure of rho0(x_i) at every site (local equilibrium), fresh per replica",
            "replicas": self.replicas,
            "block_size": self.block_size,
            "streams": "block b: one stream, block_stream(seed, BlockKey(name, 0, b), 0), replicas in order",
        }

    # ------------------------------------------------------------------ one block
    def replica_densities(self, block: int) -> tuple[np.ndarray, int]:
        """The per-replica hat averages of one block, before they are reduced to moments.

        Parameters
        ----------
        block : int
            Block index, 0 <= block < replicas / block_size.

        Returns
        -------
        density : ndarray, shape (block_size, len(times), elements)
            rho_a(t) of every replica of the block (the same numbers
            :meth:`compute_block` reduces; same stream).
        work : int
            KMC events simulated.
        """
        if not 0 <= block < self.sweep.n_blocks:
            raise IndexError(f"block {block} outside 0..{self.sweep.n_blocks - 1}")
        L, m, bs = self.sites, self.micro, self.block_size
        rng = block_stream(self.seed, BlockKey(self.name, 0, block))
        rho_sites = self.density_profile()
        steps = np.diff(np.concatenate([[0.0], self.times])) * L**2  # lattice time between saves
        states = np.empty((bs, len(self.times), L), dtype=np.int64)
        work = 0
        for r in range(bs):
            eta = m.sample_product_measure(rho_sites, rng)
            for k, dt in enumerate(steps):
                if dt > 0:
                    work += m.run(eta, dt, True, rng)
                states[r, k] = eta
        return self.local_density(states), work  # (bs, T, N)

    def compute_block(self, point: int, block: int) -> BlockOutput:
        if point != 0:
            raise IndexError(f"the particles stage has one point, got {point}")
        density, work = self.replica_densities(block)
        flat = density.reshape(density.shape[0], -1)
        return BlockOutput(stats={"density": Moments.from_samples(flat, full=False)}, work=work)

    def warmup(self) -> None:
        """Compile the KMC kernels (numba caches them on disk for later processes)."""
        self.micro.warmup()

    # ------------------------------------------------------------------ cost
    def expected_events(self) -> np.ndarray:
        """Expected KMC events of the single point: event rate of rho0 (ZRP: sum_i phi(rho0_i)) * t_end * L**2 per replica, times replicas."""
        rate = self.micro.event_rate(self.density_profile(), True)  # conserved mass, ~constant rate
        return np.array([rate * max(self.times) * self.sites**2 * self.replicas])

    def measure_throughput(self, budget: float = 20.0) -> tuple[float, str]:
        """KMC events per second per core, measured now; returns ``(rate, how)``.

        Times one real block when that is expected to take less than ``budget``
        seconds at the bare kernel rate; otherwise only the bare kernel on rho0.
        """
        self.warmup()
        rng = np.random.default_rng(1)
        m = self.micro
        eta = m.sample_product_measure(self.density_profile(), rng)
        duration = 1e5 / m.event_rate(self.density_profile(), True)
        events, start = 0, _time.perf_counter()
        while _time.perf_counter() - start < 0.5:
            events += m.run(eta, duration, True, rng)
            duration *= 2
        kernel = events / (_time.perf_counter() - start)
        block_events = self.expected_events()[0] / self.sweep.n_blocks
        if block_events / kernel > budget:
            return kernel, f"bare kernel at L = {self.sites}; one block would take ~{block_events / kernel:.0f} s"
        start = _time.perf_counter()
        work = self.compute_block(0, 0).work
        return work / (_time.perf_counter() - start), "one real block"


# ----------------------------------------------------------------------------- comparison
_DESCRIPTIONS = {
    "rho_particles": "ensemble mean of the particle hat averages rho_a = sum_i gamma_a eta_i / sum_i gamma_a",
    "rho_particles_stderr": "standard error of that mean, sqrt(var/R), var the unbiased replica variance",
    "band_low": "lower end of the 95 % band for the mean: mean - 1.96 SE",
    "band_high": "upper end of the 95 % band for the mean: mean + 1.96 SE",
    "rho_macro": "macro prediction from /macro (nodal values, fitted operators), periodic x = 1 dropped",
    "rho_reference": "exact-operator FEM reference from /macro (nodal values), periodic x = 1 dropped",
    "inside_band": "fraction of nodes where the compared prediction lies in [band_low, band_high]",
    "z_max": "max over nodes of |compared prediction - mean| / SE",
    "inside_band_reference": "inside_band of the exact-operator reference",
    "z_max_reference": "z_max of the exact-operator reference",
    "chi2": "chi-square of the compared prediction against the mean over every other node (a = 0, 2, 4, ...): "
    "sum of z_a**2, z_a the standard normal quantile of the Student t (prediction - mean)/SE with R - 1 "
    "degrees of freedom; NaN if the macro run failed",
    "chi2_dof": "degrees of freedom of chi2: the number of nodes it sums over (elements // 2)",
    "chi2_pvalue": "P(chi2(dof) >= chi2): small values reject the prediction; NaN if the macro run failed",
    "chi2_reference": "chi2 of the exact-operator reference",
    "chi2_pvalue_reference": "chi2_pvalue of the exact-operator reference",
}


def chi2_nodes(elements: int) -> np.ndarray:
    """The nodes of the chi-square statistic: every other periodic node, a = 0, 2, ..., never two neighbours.

    For odd N the last node N - 1 is left out (it neighbours node 0 across x = 1),
    so there are always N // 2 of them.
    """
    n = int(elements)
    return np.arange(0, n - n % 2, 2)


def chi2_test(prediction, mean, stderr, count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Chi-square test of predictions against the particle mean on every other node.

    Parameters
    ----------
    prediction : array_like, shape (..., T, N)
        Compared predictions (already hat-averaged if that is what is compared).
    mean, stderr : array_like, shape (T, N)
        Ensemble mean of the hat averages and its standard error sqrt(var/R).
    count : int
        Number of replicas R behind ``mean`` and ``stderr``.

    Returns
    -------
    chi2 : ndarray, shape (..., T)
        sum over a in :func:`chi2_nodes` of z_a**2. The standardised deviation
        t_a = (prediction_a - mean_a)/SE_a is Student t with R - 1 degrees of
        freedom for normal replicas when the prediction is the expectation (SE is
        estimated from the same replicas); |z_a|, the standard normal quantile
        with the same tail probability as |t_a|, is then exactly |N(0, 1)|, so
        the sum is chi-square(dof) for any R (for R -> inf, |z_a| = |t_a|).
        NaN predictions give NaN.
    pvalue : ndarray, shape (..., T)
        P(chi-square(dof) >= chi2); 0 where chi2 is infinite.
    dof : int
        N // 2.

    Notes
    -----
    Neighbouring hat averages overlap on n - 1 sites (correlation ~1/4 for a
    product measure); hats two nodes apart share no site with non-zero weight,
    so their averages are independent under local equilibrium and nearly so
    later (measured from the replicas; module docstring).
    """
    from scipy import stats

    pred, mean, se = (np.asarray(v, dtype=np.float64) for v in (prediction, mean, stderr))
    nodes = chi2_nodes(mean.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (pred[..., nodes] - mean[..., nodes]) / se[..., nodes]
    z = stats.norm.isf(stats.t.sf(np.abs(t), count - 1))  # |t| -> |z| with equal tail probability
    chi2 = np.sum(z * z, axis=-1)  # NaN propagates
    pvalue = stats.chi2.sf(chi2, nodes.size)
    return chi2, pvalue, int(nodes.size)


def _hat_average(rho: np.ndarray) -> np.ndarray:
    """rho_a + (rho_{a-1} - 2 rho_a + rho_{a+1})/12 on a periodic node axis (last): the hat average to O(Delta**4)."""
    return rho + (np.roll(rho, 1, axis=-1) - 2.0 * rho + np.roll(rho, -1, axis=-1)) / 12.0


@dataclass(frozen=True)
class ParticleComparison:
    """The ``particles_vs_macro`` reduce stage (implements ``ReduceStage``).

    Attributes
    ----------
    upstream_particles : str
        Fingerprint of the ``particles`` stage it reads.
    upstream_macro : str
        Fingerprint of the ``macro`` stage it reads.
    case : str
        The macro case simulated by the particles.
    hat_average : bool
        Compare the predictions as hat averages, rho_a + (second difference)/12
        (what the particle estimator measures; see the module docstring), or as
        raw nodal values.
    name : str
        Store group.
    """

    upstream_particles: str
    upstream_macro: str
    case: str = "periodic-cosine"
    hat_average: bool = True
    name: str = "particles_vs_macro"

    def __post_init__(self):
        if self.case not in SUPPORTED_CASES:
            raise ValueError(f"case must be one of {SUPPORTED_CASES}, got {self.case!r}")

    @classmethod
    def from_stages(cls, particles: ParticleEnsemble, macro) -> "ParticleComparison":
        return cls(upstream_particles=fingerprint(particles), upstream_macro=fingerprint(macro), case=particles.case)

    def compute(self, tree: xr.DataTree) -> xr.Dataset:
        """Band of the particle mean and the macro predictions tested against it.

        Parameters
        ----------
        tree : xarray.DataTree
            With ``/particles`` (merged stat ``density``: ``density_count(point)``,
            ``density_mean(point, time_node)``, ``density_m2(point, time_node)`` and
            the coords of :meth:`ParticleEnsemble.template`) and ``/macro`` (as
            written by :class:`cgflow.methods.fdr.macro.MacroSimulation`).

        Returns
        -------
        xarray.Dataset
            Coords ``time``, ``x`` (N nodes a/N), ``estimator``, ``mass_conservation``.
            ``rho_particles``, ``rho_particles_stderr``, ``band_low``, ``band_high``
            (time, x); ``rho_macro`` (estimator, mass_conservation, time, x);
            ``rho_reference`` (time, x); ``inside_band``, ``z_max``, ``chi2``,
            ``chi2_pvalue`` (estimator, mass_conservation, time);
            ``inside_band_reference``, ``z_max_reference``, ``chi2_reference``,
            ``chi2_pvalue_reference`` (time); ``chi2_dof`` (scalar, N // 2; see
            :func:`chi2_test`). A failed macro run (NaN) gives inside_band = 0 and
            z_max, chi2, chi2_pvalue = NaN.

        Raises
        ------
        ValueError
            If a group is missing, the case is not in /macro, fewer than two
            replicas are in, or the particle and macro save times or nodes differ.
        """
        for group in ("particles", "macro"):
            if group not in tree.children:
                raise ValueError(f"the tree has no /{group} group")
        part, mac = tree["particles"].ds, tree["macro"].ds

        # ---------------------------------------------------------- particles
        t_part = np.asarray(part["time"].values, dtype=np.float64)
        x_part = np.asarray(part["x_node"].values, dtype=np.float64)
        T, N = t_part.size, x_part.size
        count = int(np.asarray(part["density_count"].values).reshape(-1)[0])
        if count < 2:
            raise ValueError(f"the particles group holds {count} replicas; at least 2 are needed for a band")
        mean = np.asarray(part["density_mean"].values, dtype=np.float64).reshape(-1)
        m2 = np.asarray(part["density_m2"].values, dtype=np.float64).reshape(-1)
        if mean.size != T * N:
            raise ValueError(f"density has {mean.size} entries, expected time x node = {T} x {N}")
        if "time_node_node" in part.coords:  # the layout is time major; check rather than trust
            tn_t, tn_n = part["time_node_time"].values, part["time_node_node"].values
            if not (np.array_equal(tn_n, np.tile(np.arange(N), T)) and np.allclose(tn_t, np.repeat(t_part, N))):
                raise ValueError("density is not laid out as (time, node), time major")
        mean, m2 = mean.reshape(T, N), m2.reshape(T, N)
        stderr = np.sqrt(m2 / (count - 1) / count)

        # ---------------------------------------------------------- macro
        cases = [str(c) for c in mac["case"].values]
        if self.case not in cases:
            raise ValueError(f"/macro has no case {self.case!r} (it has {cases})")
        if "case" in part.coords and str(np.ravel(part["case"].values)[0]) != self.case:
            raise ValueError(f"/particles simulated case {np.ravel(part['case'].values)[0]!r}, not {self.case!r}")
        m = mac.sel(case=self.case)
        t_mac = np.asarray(m["time"].values, dtype=np.float64)
        x_mac = np.asarray(m["x"].values, dtype=np.float64)
        if t_mac.shape != t_part.shape or not np.allclose(t_mac, t_part, rtol=1e-9, atol=1e-15):
            raise ValueError(
                f"save times differ: particles {t_part.tolist()}, macro {t_mac.tolist()} (same t_end and saves needed)"
            )
        # periodic: macro has N + 1 positions a/N, a = 0..N, x = 1 repeating x = 0
        if x_mac.size != N + 1 or not np.allclose(x_mac[:-1], x_part, atol=1e-12):
            raise ValueError(
                f"nodes differ: particles have N = {N} periodic nodes, macro has {x_mac.size} positions "
                f"(N = {x_mac.size - 1}); the particle elements must equal macro.elements"
            )
        rho = np.asarray(m["rho"].transpose("estimator", "mass_conservation", "time", "x").values)[..., :N]
        ref = np.asarray(m["rho_reference"].transpose("time", "x").values)[..., :N]

        compare = _hat_average if self.hat_average else (lambda v: v)
        low, high = mean - BAND_Z * stderr, mean + BAND_Z * stderr

        def judge(pred):
            p = compare(pred)
            inside = ((p >= low) & (p <= high)).mean(axis=-1)  # NaN compares False: a failed run is never inside
            with np.errstate(invalid="ignore", divide="ignore"):
                z_max = (np.abs(p - mean) / stderr).max(axis=-1)  # NaN propagates
            return inside, z_max

        inside, z_max = judge(rho)
        inside_ref, z_max_ref = judge(ref)
        chi2, pvalue, dof = chi2_test(compare(rho), mean, stderr, count)
        chi2_ref, pvalue_ref, _ = chi2_test(compare(ref), mean, stderr, count)

        xy = ("time", "x")
        run = ("estimator", "mass_conservation")
        ds = xr.Dataset(
            {
                "rho_particles": (xy, mean),
                "rho_particles_stderr": (xy, stderr),
                "band_low": (xy, low),
                "band_high": (xy, high),
                "rho_macro": (run + xy, rho),
                "rho_reference": (xy, ref),
                "inside_band": (run + ("time",), inside),
                "z_max": (run + ("time",), z_max),
                "inside_band_reference": (("time",), inside_ref),
                "z_max_reference": (("time",), z_max_ref),
                "chi2": (run + ("time",), chi2),
                "chi2_dof": ((), dof),
                "chi2_pvalue": (run + ("time",), pvalue),
                "chi2_reference": (("time",), chi2_ref),
                "chi2_pvalue_reference": (("time",), pvalue_ref),
            },
            coords={
                "estimator": m["estimator"].values,
                "mass_conservation": m["mass_conservation"].values,
                "time": t_part,
                "x": x_part,
            },
        )
        for var, text in _DESCRIPTIONS.items():
            ds[var].attrs["description"] = text
        ds["time"].attrs["units"] = "macroscopic time"
        ds["x"].attrs["description"] = "node positions a/N, a = 0..N-1 (periodic)"
        compared = (
            "hat average rho_a + (rho_{a-1} - 2 rho_a + rho_{a+1})/12 of the nodal prediction (O(Delta**4))"
            if self.hat_average
            else "raw nodal prediction"
        )
        ds.attrs.update(
            {
                "description": "direct particle simulation of the macro case against the macro predictions: "
                "95 % band for the ensemble mean of the hat-averaged densities",
                "case": self.case,
                "replicas": count,
                "sites": int(part.attrs.get("sites", -1)),
                "elements": N,
                "rate_exponent": int(part.attrs.get("rate_exponent", -1)),
                "band": f"mean -+ {BAND_Z} SE, SE = sqrt(m2/(R - 1)/R): 95 % confidence band for the mean, pointwise",
                "compared_prediction": compared,
                "chi2_test": f"per save time, chi-square over the {dof} nodes a = 0, 2, ... (every other node: "
                "neighbouring hat averages are correlated, ~1/4; two apart they share no site), each deviation a "
                "Student t with R - 1 dof mapped to a standard normal; p = P(chi2(dof) >= chi2). Reject the "
                "prediction at level alpha when chi2_pvalue < alpha (the tests use 1e-3)",
                "hat_average": bool(self.hat_average),
                "caveat": "the particle mean follows the lattice hydrodynamics at finite sites, the FEM the continuum "
                "PDE at finite elements; both errors must be well below the band (see cgflow.methods.fdr.particles)",
                "upstream_particles": self.upstream_particles,
                "upstream_macro": self.upstream_macro,
            }
        )
        return ds
