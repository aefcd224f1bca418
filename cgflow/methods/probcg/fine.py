"""Fine-grained data as Dask sweeps (seed 003, §2.3 and §3; REFERENCE-003 §1, §4).

``fine`` — the training experiments, one task per block of experiments: for
experiment i, X0_i ~ p_c,0 (random Fourier prior, REFERENCE-003 §1 [G]; see
:func:`prior_states` for the spectrum exponent ``fine.decay``),
x0 ~ p_cf(.|X0_i) (multinomial counts, walkers uniform in their bins), one
coarse step Δt of the walker law, and the bin counts m_i at ``coarse.bins``.
X0_i counts as known (the paper's features use X0, not the counts of x0). The
synthetic law has no fine dynamics: m_i ~ Mult(n_f, softmax(θ*ᵀφ(X0_i))).

``reference`` — the fine-grained truth that predictions are checked against:
for each held-out initial condition one fine state x̄0 (the same in every
block: it is drawn from the point's own stream), then ``test_replicas``
independent runs of ``test_steps`` coarse steps, binned at
``fine.observe_bins`` (96) at every coarse step including the start.
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

__all__ = ["WalkerModel", "FineExperiments", "ReferenceRuns"]


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
    name: str = field(default="fine", kw_only=True)
    work_unit: ClassVar[str] = "walker steps"

    @classmethod
    def from_spec(cls, spec) -> "FineExperiments":
        f = spec["fine"]
        return cls(seed=spec.seed, model=WalkerModel.from_spec(spec), experiments=f["experiments"], block=f["block"],
                   modes=f["modes"], amplitude=f["amplitude"], decay=f["decay"])

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
                        prior_modes=self.modes, prior_amplitude=self.amplitude, prior_decay=self.decay)
        return ds

    def compute_block(self, point: int, block: int) -> BlockOutput:
        rng = block_stream(self.seed, BlockKey(self.name, point, block))
        m = self.model
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
    name: str = field(default="reference", kw_only=True)
    work_unit: ClassVar[str] = "walker steps"

    @classmethod
    def from_spec(cls, spec) -> "ReferenceRuns":
        f = spec["fine"]
        return cls(seed=spec.seed, model=WalkerModel.from_spec(spec), initial_conditions=f["test_initial_conditions"],
                   replicas=f["test_replicas"], steps=f["test_steps"], observe_bins=f["observe_bins"], modes=f["modes"],
                   amplitude=f["amplitude"], initial=f["test_initial"], sine_amplitude=f["test_amplitude"],
                   block=_largest_divisor(f["test_replicas"], f["block"]), decay=f["decay"])

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
                        note="all replicas of an initial condition start from the same fine state x0 (drawn once per ic)")
        return ds

    def initial_state(self, ic: int) -> np.ndarray:
        """X̄0 of held-out initial condition ``ic`` (its own stream, independent of the training data)."""
        nc = self.model.bins
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
        return wk.sample_fine_state(self.initial_state(ic), self.model.walkers, rng)

    def compute_block(self, point: int, block: int) -> BlockOutput:
        rng = block_stream(self.seed, BlockKey(self.name, point, block))
        m = self.model
        x0 = self.initial_positions(point)
        runs = []
        for _ in range(self.block):
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
