"""Fine-grained data as Dask sweeps (seed 003, §2.3 and §3; REFERENCE-003 §1, §4).

``fine`` — the training experiments, one task per block of experiments: for
experiment i, X0_i ~ p_c,0 (random Fourier prior, REFERENCE-003 §1 [G]; see
:func:`prior_states` for the spectrum exponent ``fine.decay``),
x0 ~ p_cf(.|X0_i) (multinomial counts, walkers uniform in their bins), one
coarse step Δt of the walker law, and the bin counts m_i at ``coarse.bins``.
X0_i counts as known (the paper's features use X0, not the counts of x0). The
synthetic law has no fine dynamics: m_i ~ Mult(n_f, softmax(θ*ᵀφ(X0_i))).
``fine.lifting`` chooses how x0 is placed inside the bins (a gap of the paper; see
:class:`Lifting`): uniformly (REFERENCE-003 §1) or from the continuous prior field.

``reference`` — the fine-grained truth that predictions are checked against:
for each held-out initial condition one fine state x̄0 (the same in every
block: it is drawn from the point's own stream), then ``test_replicas``
independent runs of ``test_steps`` coarse steps, binned at
``fine.observe_bins`` (96) at every coarse step including the start. With
``fine.test_shared_start: false`` every replica starts from its own x̄0 ~ p_cf(.|X̄0)
instead (the ensemble mean is then the mean-field profile, not one start's noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import dask.array as da
import numpy as np
import xarray as xr

from ...engine import BlockKey, BlockOutput, Moments, Stat, Sweep, block_stream
from ...micro import walkers as wk
from .features import apply_law, theta_from_mapping

__all__ = ["WalkerModel", "FineExperiments", "ReferenceRuns", "Lifting", "LIFTINGS", "prior_coefficients", "prior_field"]


@dataclass(frozen=True)
class WalkerModel:
    """The fine-grained model of a spec (``micro`` section) and how to step it."""

    law: str
    walkers: int
    jump_right: float
    jump_left: float
    step: float
    dt: float
    fine_steps: int
    density_scale: float
    bins: int
    neighbours: int
    theta: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_spec(cls, spec) -> "WalkerModel":
        m, c = spec["micro"], spec["coarse"]
        theta = tuple(sorted((m.get("theta") or {}).items()))
        return cls(
            law=m["law"], walkers=m["walkers"], jump_right=m["jump_right"], jump_left=m["jump_left"], step=m["step"],
            dt=m["dt"], fine_steps=m["fine_steps"], density_scale=m["density_scale"], bins=c["bins"],
            neighbours=c["neighbours"], theta=theta,
        )

    @property
    def params(self) -> wk.WalkerParams:
        return wk.WalkerParams(
            walkers=self.walkers, jump_right=self.jump_right, jump_left=self.jump_left, step=self.step, dt=self.dt,
            fine_steps_per_coarse=self.fine_steps, density_scale=self.density_scale, cell_width=2.0 / self.bins,
        )

    @property
    def theta_vector(self) -> np.ndarray:
        return theta_from_mapping(dict(self.theta), self.neighbours)

    def coarse_path(self, X0: np.ndarray, steps: int) -> np.ndarray:
        """Synthetic law: X_k = θ*ᵀφ(X_{k-1}) exactly (v⁻¹ = 0), shape (steps + 1, ..., n_c)."""
        path = [np.asarray(X0, dtype=np.float64)]
        theta = self.theta_vector
        for _ in range(steps):
            path.append(apply_law(theta, path[-1], self.neighbours))
        return np.stack(path)

    def walker_steps(self, experiments: int, coarse_steps: int) -> int:
        """Walker × fine-step updates (the work unit), 0 for the synthetic law."""
        return 0 if self.law == "synthetic" else experiments * coarse_steps * self.walkers * self.fine_steps

    def conventions(self) -> dict:
        return {
            "model": f"random walkers ({self.law})",
            "law": self.law,
            "walkers": self.walkers,
            "jump_right": self.jump_right,
            "jump_left": self.jump_left,
            "step": self.step,
            "fine_dt": self.dt,
            "fine_steps_per_coarse_step": self.fine_steps,
            "density_scale": self.density_scale,
            "domain": "[-1, 1), periodic; positions are reals (2/step is not an integer: no lattice)",
            "time_unit": "one coarse step Delta t = fine_steps * fine_dt",
            **({"theta_true": {k: v for k, v in self.theta}} if self.theta else {}),
        }


def prior_states(n: int, bins: int, modes: int, amplitude: float, decay: float, rng) -> np.ndarray:
    """Coarse states from the random Fourier prior p_c,0 (REFERENCE-003 §1 [G]) with spectrum exponent ``decay``.

    ``X0_j = sum_{k<=K} a_k cos(k pi y_j) + b_k sin(k pi y_j)``, ``a_k, b_k ~ N(0, (A / k**decay)**2)``.
    ``decay = 1`` is REFERENCE-003's proposal (bitwise :func:`cgflow.micro.walkers.sample_initial_states`).
    It puts ~90 % of the variance in k <= 3, so neighbouring bins correlate at ~0.8 and
    the quadratic features X[j+a] X[j+b] are nearly collinear: at N = 128 the
    full-model maximum-likelihood s.e. of an inactive pair coefficient is 0.02-0.035,
    and ARD keeps a correlated substitute whenever the noise makes it evident
    (t^2 > ~1). ``decay = 0.5`` with A = 0.3 has the same spread of X0 (s.d. 0.5) but
    a neighbour correlation of ~0.4 and s.e. 0.004-0.008 (Fisher information at
    θ*, n_f = 4800): the design the synthetic workflows use. The paper does not
    give p_c,0.
    """
    if decay == 1.0:
        return wk.sample_initial_states(n, bins, modes, amplitude, rng)
    k = np.arange(1, modes + 1, dtype=np.float64)
    scale = amplitude / k**decay
    a = rng.standard_normal((n, modes)) * scale  # the same draws, in the same order, as decay = 1
    b = rng.standard_normal((n, modes)) * scale
    phase = np.pi * np.outer(k, wk.bin_centres(bins))
    return a @ np.cos(phase) + b @ np.sin(phase)


def prior_coefficients(n: int, modes: int, amplitude: float, decay: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Fourier coefficients ``a, b (n, K)`` and wavenumbers ``k`` of :func:`prior_states` (the same draws)."""
    k = np.arange(1, modes + 1, dtype=np.float64)
    scale = amplitude / k if decay == 1.0 else amplitude / k**decay
    a = rng.standard_normal((n, modes)) * scale
    b = rng.standard_normal((n, modes)) * scale
    return a, b, k


def prior_field(a: np.ndarray, b: np.ndarray, k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The prior's Fourier series ``sum_k a_k cos(k pi y) + b_k sin(k pi y)`` at the points ``y``."""
    phase = np.pi * np.outer(k, y)
    return a @ np.cos(phase) + b @ np.sin(phase)


#: Lifting of a coarse state to walkers (REFERENCE-003 §1 [G]): ``uniform`` in the bin (REFERENCE-003's reading)
#: or ``smooth`` (walkers i.i.d. from the continuous field on sub-cells; see :class:`Lifting`).
LIFTINGS = ("uniform", "smooth")


@dataclass(frozen=True)
class Lifting:
    """How a coarse state becomes a fine state x ~ p_cf(.|X) (seed eq. 2.13; the within-bin placement is a gap).

    ``uniform``: counts ~ Mult(n_f, softmax X), walkers uniform inside their bin
    (REFERENCE-003 §1). Such a state has a density jump at every bin edge; the walkers'
    own motion erases them within the first coarse step (displacement s.d. 0.59 bin
    per Δt for the advection-diffusion walkers), so one-step training data built on it
    carry the extra bin-to-bin variance w²/6 of the triangle kernel Λ (REFERENCE-003 §6:
    0.3458 + 1/6 bin²), while after the first step the walkers are no longer uniform in
    their bins and the fine-grained dynamics have variance 0.3458 bin² per step
    (K^(n) is not Kⁿ). A law learned from such data over-diffuses when iterated: the
    exact one-step kernel iterated 50 times misses the exact mean by up to 0.0075
    per bin on a held-out state of the paper's advection-diffusion test.

    ``smooth``: the prior state is a continuous field X(y) (a Fourier series); the
    walkers are drawn i.i.d. from ρ(y) ∝ exp X(y), constant on ``subcells`` sub-cells
    per bin (width ≤ δy/4, :func:`cgflow.micro.walkers.smooth_subcells`), and the known
    coarse state is the centred log of the bin masses, so the counts are exactly
    Mult(n_f, softmax X) (eq. 2.13) and the fine state is one the dynamics would
    produce (no bin-edge jumps).
    """

    kind: str = "uniform"
    subcells: int = 1

    @classmethod
    def for_model(cls, kind: str, model: "WalkerModel") -> "Lifting":
        if kind not in LIFTINGS:
            raise ValueError(f"fine.lifting must be one of {LIFTINGS}, got {kind!r}")
        if kind == "uniform" or model.law == "synthetic":
            return cls("uniform", 1)
        return cls("smooth", wk.smooth_subcells(model.bins, model.step))

    def points(self, bins: int) -> np.ndarray:
        return wk.bin_centres(bins * self.subcells)

    def attrs(self, model: "WalkerModel") -> dict:
        out = {"lifting": self.kind}
        if self.kind == "smooth":
            h = 2.0 / (model.bins * self.subcells)
            if model.law == "advection_diffusion":
                var = wk.ad_displacement_moments(model.params, 1)[1]
            else:  # every Burgers walker jumps at every fine step
                var = model.fine_steps * model.step**2
            out.update(lifting_subcells=self.subcells, lifting_subcell_width=h,
                       lifting_check_variance_ratio=(h * h / 6.0) / var,
                       lifting_note="walkers i.i.d. from exp X(y) constant on sub-cells of width <= step/4; "
                       "lifting_check_variance_ratio = (width^2/6) / (displacement variance per coarse step): "
                       "the spurious bin-kernel variance the sub-cell edges add, relative to the physical one")
        return out


def _lazy(shape, chunks, dtype) -> da.Array:
    return da.zeros(shape, chunks=chunks, dtype=dtype)


@dataclass(frozen=True)
class FineExperiments:
    """The ``fine`` sweep stage: N one-step training experiments in blocks (implements ``SweepStage``)."""

    seed: int
    model: WalkerModel
    experiments: int
    block: int
    modes: int
    amplitude: float
    decay: float = 1.0
    lifting: Lifting = Lifting()
    name: str = field(default="fine", kw_only=True)
    work_unit: ClassVar[str] = "walker steps"

    @classmethod
    def from_spec(cls, spec) -> "FineExperiments":
        f = spec["fine"]
        model = WalkerModel.from_spec(spec)
        return cls(seed=spec.seed, model=model, experiments=f["experiments"], block=f["block"],
                   modes=f["modes"], amplitude=f["amplitude"], decay=f["decay"],
                   lifting=Lifting.for_model(f.get("lifting", "uniform"), model))

    @property
    def sweep(self) -> Sweep:
        return Sweep(1, self.experiments // self.block, self.block, {"density": Stat("bin", self.model.bins, full=False)})

    def template(self) -> xr.Dataset:
        n, nc = self.experiments, self.model.bins
        ds = xr.Dataset(coords={"point": [0], "bin": np.arange(nc), "y": ("bin", wk.bin_centres(nc))})
        ds["X0"] = (("point", "replica", "bin"), _lazy((1, n, nc), (1, self.block, nc), np.float64))
        ds["X0"].attrs["description"] = "coarse initial state X0_i (known; seed eq. 2.14), drawn from the random Fourier prior"
        ds["counts"] = (("point", "replica", "bin"), _lazy((1, n, nc), (1, self.block, nc), np.int64))
        ds["counts"].attrs["description"] = "walkers per coarse bin after one coarse step from x0 ~ p_cf(.|X0)"
        ds.attrs.update(self.model.conventions(), prior="X0_j = sum_k a_k cos(k pi y_j) + b_k sin(k pi y_j), a, b ~ N(0, (A/k^decay)^2)",
                        prior_modes=self.modes, prior_amplitude=self.amplitude, prior_decay=self.decay,
                        **self.lifting.attrs(self.model))
        return ds

    def compute_block(self, point: int, block: int) -> BlockOutput:
        rng = block_stream(self.seed, BlockKey(self.name, point, block))
        m = self.model
        if self.lifting.kind == "smooth":
            a, b, k = prior_coefficients(self.block, self.modes, self.amplitude, self.decay, rng)
            z = prior_field(a, b, k, self.lifting.points(m.bins))
            X0 = wk.smooth_bin_state(z, m.bins)
            params = m.params
            counts = np.stack([wk.simulate_counts(m.law, wk.sample_smooth_state(zi, m.walkers, rng), 1, params, rng, n_bins=m.bins)[1]
                               for zi in z])
            density = Moments.from_samples(counts / m.walkers, full=False)
            return BlockOutput(stats={"density": density}, arrays={"X0": X0, "counts": counts.astype(np.int64)},
                               work=m.walker_steps(self.block, 1))
        X0 = prior_states(self.block, m.bins, self.modes, self.amplitude, self.decay, rng)
        if m.law == "synthetic":
            counts = wk.sample_counts(m.coarse_path(X0, 1)[1], m.walkers, rng)
        else:
            params = m.params
            counts = np.stack([
                wk.simulate_counts(m.law, wk.sample_fine_state(x, m.walkers, rng), 1, params, rng, n_bins=m.bins)[1]
                for x in X0  # one experiment = one fine state of n_f walkers; the kernels vectorise over walkers
            ])
        density = Moments.from_samples(counts / m.walkers, full=False)
        return BlockOutput(stats={"density": density}, arrays={"X0": X0, "counts": counts.astype(np.int64)},
                           work=m.walker_steps(self.block, 1))

    def expected_events(self) -> np.ndarray:
        return np.array([float(max(self.model.walker_steps(self.experiments, 1), self.experiments))])

    def measure_throughput(self, budget: float = 20.0) -> tuple[float, str]:
        import time

        start = time.perf_counter()
        out = self.compute_block(0, 0)
        seconds = time.perf_counter() - start
        return max(out.work, self.block) / seconds, "one real block"


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


@dataclass(frozen=True)
class ReferenceRuns:
    """The ``reference`` sweep stage: fine-grained runs from held-out initial conditions (implements ``SweepStage``)."""

    seed: int
    model: WalkerModel
    initial_conditions: int
    replicas: int
    steps: int
    observe_bins: int
    modes: int
    amplitude: float
    initial: str = "prior"  # or "sine": X̄0 = log(1 + A sin(pi y)) (the Burgers shock test, REFERENCE-003 §6)
    sine_amplitude: float = 0.5
    block: int = 16
    decay: float = 1.0
    lifting: Lifting = Lifting()
    shared_start: bool = True  # False: every replica lifts X̄0 afresh (x̄0 ~ p_cf(.|X̄0) per replica)
    name: str = field(default="reference", kw_only=True)
    work_unit: ClassVar[str] = "walker steps"

    @classmethod
    def from_spec(cls, spec) -> "ReferenceRuns":
        f = spec["fine"]
        return cls(seed=spec.seed, model=WalkerModel.from_spec(spec), initial_conditions=f["test_initial_conditions"],
                   replicas=f["test_replicas"], steps=f["test_steps"], observe_bins=f["observe_bins"], modes=f["modes"],
                   amplitude=f["amplitude"], initial=f["test_initial"], sine_amplitude=f["test_amplitude"],
                   block=_largest_divisor(f["test_replicas"], f["block"]), decay=f["decay"],
                   lifting=Lifting.for_model(f.get("lifting", "uniform"), WalkerModel.from_spec(spec)),
                   shared_start=bool(f.get("test_shared_start", True)))

    @property
    def sweep(self) -> Sweep:
        return Sweep(self.initial_conditions, self.replicas // self.block, self.block,
                     {"density": Stat("obs", (self.steps + 1) * self.observe_bins, full=False)}, point_dim="ic")

    def template(self) -> xr.Dataset:
        n_ic, R, T, nb = self.initial_conditions, self.replicas, self.steps + 1, self.observe_bins
        ds = xr.Dataset(coords={"ic": np.arange(n_ic), "step": np.arange(T), "obs_bin": np.arange(nb),
                                "y_obs": ("obs_bin", wk.bin_centres(nb))})
        ds["counts"] = (("ic", "replica", "step", "obs_bin"), _lazy((n_ic, R, T, nb), (1, self.block, T, nb), np.int32))
        ds["counts"].attrs["description"] = f"walkers per observation bin ({nb} bins) at coarse steps 0..{self.steps} of each fine-grained run"
        ds.attrs.update(self.model.conventions(), initial=self.initial, observe_bins=nb,
                        **({"sine_amplitude": self.sine_amplitude} if self.initial == "sine" else {}),
                        **self.lifting.attrs(self.model),
                        shared_start=int(self.shared_start),
                        note=("all replicas of an initial condition start from the same fine state x0 (drawn once per ic)"
                              if self.shared_start else
                              "every replica starts from its own fine state x0 ~ p_cf(.|X0) of the initial condition's X0"))
        return ds

    def initial_log_density(self, ic: int) -> np.ndarray:
        """Smooth lifting: log ρ of held-out initial condition ``ic`` on the lifting's sub-cells (up to a constant)."""
        y = self.lifting.points(self.model.bins)
        if self.initial == "sine":
            shift = block_stream(self.seed, BlockKey(self.name, ic, 0), purpose=2).random() * 2.0 if ic else 0.0
            return np.log1p(self.sine_amplitude * np.sin(np.pi * (y - shift)))
        rng = block_stream(self.seed, BlockKey(self.name, ic, 0), purpose=1)
        a, b, k = prior_coefficients(1, self.modes, self.amplitude, self.decay, rng)
        return prior_field(a, b, k, y)[0]

    def initial_state(self, ic: int) -> np.ndarray:
        """X̄0 of held-out initial condition ``ic`` (its own stream, independent of the training data)."""
        nc = self.model.bins
        if self.lifting.kind == "smooth":
            return wk.smooth_bin_state(self.initial_log_density(ic), nc)
        if self.initial == "sine":
            y = wk.bin_centres(nc)
            shift = block_stream(self.seed, BlockKey(self.name, ic, 0), purpose=2).random() * 2.0 if ic else 0.0
            x = np.log1p(self.sine_amplitude * np.sin(np.pi * (y - shift)))
            return x - x.mean()
        rng = block_stream(self.seed, BlockKey(self.name, ic, 0), purpose=1)
        return prior_states(1, nc, self.modes, self.amplitude, self.decay, rng)[0]

    def initial_positions(self, ic: int) -> np.ndarray:
        """The fine state x̄0 shared by every replica of ``ic``."""
        rng = block_stream(self.seed, BlockKey(self.name, ic, 0), purpose=3)
        if self.lifting.kind == "smooth":
            return wk.sample_smooth_state(self.initial_log_density(ic), self.model.walkers, rng)
        return wk.sample_fine_state(self.initial_state(ic), self.model.walkers, rng)

    def lift(self, ic: int, rng) -> np.ndarray:
        """A fresh fine state x0 ~ p_cf(.|X̄0) of ``ic`` (``test_shared_start: false``), drawn from ``rng``."""
        if self.lifting.kind == "smooth":
            return wk.sample_smooth_state(self.initial_log_density(ic), self.model.walkers, rng)
        return wk.sample_fine_state(self.initial_state(ic), self.model.walkers, rng)

    def compute_block(self, point: int, block: int) -> BlockOutput:
        rng = block_stream(self.seed, BlockKey(self.name, point, block))
        m = self.model
        shared = self.initial_positions(point)
        runs = []
        for _ in range(self.block):
            x0 = shared if self.shared_start else self.lift(point, rng)
            if m.law == "synthetic":
                X = m.coarse_path(self.initial_state(point), self.steps)  # the exact law from the true X̄0
                path = [x0] + [wk.sample_fine_state(X[k], m.walkers, rng) for k in range(1, self.steps + 1)]
                runs.append(wk.bin_counts(np.stack(path), self.observe_bins))
            else:
                runs.append(wk.simulate_counts(m.law, x0, self.steps, m.params, rng, n_bins=self.observe_bins))
        counts = np.stack(runs).astype(np.int32)
        density = Moments.from_samples(counts.reshape(self.block, -1) / m.walkers, full=False)
        return BlockOutput(stats={"density": density}, arrays={"counts": counts}, work=m.walker_steps(self.block, self.steps))

    def expected_events(self) -> np.ndarray:
        return np.full(self.initial_conditions, float(max(self.model.walker_steps(self.replicas, self.steps), self.replicas)))

    def measure_throughput(self, budget: float = 20.0) -> tuple[float, str]:
        import time

        start = time.perf_counter()
        out = self.compute_block(0, 0)
        return max(out.work, self.block) / (time.perf_counter() - start), "one real block"
