"""Training data as Dask ensembles: one task per trajectory (seed 001, §4–5).

Each trajectory starts from a random Fourier initial condition (eq. 23 in 1-D,
eq. 28 in 2-D) drawn from the trajectory's own stream ``(root seed,
"trajectories", traj)`` and is integrated by the equation-free scheme over
``[0, t_end]``: patch dynamics with buffers in 1-D (eqs. 7, 10, 11), the
gap-tooth scheme in 2-D. Every ``sample_every`` the task records the macro
field ``U`` (tooth / patch averages) and the scheme's own estimate of its time
derivative ``dUdt`` (eq. 11 in 1-D, the restricted micro right-hand side in
2-D) — what the networks regress. The initial-condition parameters are stored
too, so the exact homogenized solution can be evaluated downstream.

The patches are vectorised inside a task; the sweep is over trajectories, so
the store layout is ``U(traj, time, x)`` / ``U(traj, time, x, y)``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import xarray as xr

from ...engine.keys import BlockKey, block_stream
from ...engine.types import BlockOutput, Sweep
from ...micro import heterodiffusion, lattice2d
from .gap_tooth import COUPLING_TOLERANCE, GapTooth2D, check_coupling
from .patch_dynamics import BUFFER_TOLERANCE, BufferCheck, PatchDynamics, buffer_ladder, check_buffer, select_buffer

__all__ = ["PatchTrajectories", "GapToothTrajectories", "initial_condition"]

TRAJ = "traj"


def _split(n_train: int, n_test: int) -> np.ndarray:
    return np.array(["train"] * n_train + ["test"] * n_test, dtype=object)


def _n_samples(t_end: float, every: float) -> int:
    return int(round(t_end / every)) + 1


@dataclass(frozen=True)
class _Trajectories:
    """What both sweeps share: the trajectory split and the sampling."""

    seed: int
    n_train: int
    n_test: int
    modes: int
    t_end: float
    sample_every: float

    name: str = field(default="trajectories", kw_only=True)
    work_unit: ClassVar[str] = "micro grid-point updates"

    @staticmethod
    def sampling(spec) -> dict:
        """The shared parameters, from the spec's ``seed`` and ``trajectories`` section."""
        tr = spec["trajectories"]
        return dict(seed=spec.seed, n_train=tr["train"], n_test=tr["test"], modes=tr["modes"],
                    t_end=tr["t_end"], sample_every=tr["sample_every"])

    @property
    def sweep(self) -> Sweep:
        return Sweep(self.n_train + self.n_test, 1, 1, {}, point_dim=TRAJ)

    @property
    def times(self) -> np.ndarray:
        return np.arange(_n_samples(self.t_end, self.sample_every)) * self.sample_every

    def stream(self, traj: int) -> np.random.Generator:
        """The trajectory's random stream: its initial condition is all that is random."""
        return block_stream(self.seed, BlockKey(self.name, traj, 0))

    def _lazy(self, *shape: int) -> da.Array:
        n = self.n_train + self.n_test
        return da.zeros((n,) + shape, chunks=(1,) + shape, dtype=np.float64)

    def _base_template(self, grid: dict[str, np.ndarray]) -> xr.Dataset:
        coords = {
            TRAJ: np.arange(self.n_train + self.n_test),
            "split": (TRAJ, _split(self.n_train, self.n_test)),
            "time": self.times,
            "mode": np.arange(self.modes),
            **grid,
        }
        ds = xr.Dataset(coords=coords)
        dims = (TRAJ, "time", *grid)
        shape = (len(self.times), *(len(v) for v in grid.values()))
        ds["U"] = (dims, self._lazy(*shape))
        ds["U"].attrs["description"] = "macro field: average over each tooth (patch) at its centre (seed eq. 7)"
        ds["dUdt"] = (dims, self._lazy(*shape))
        ds["dUdt"].attrs["description"] = "the scheme's estimate of dU/dt at the same state (seed eq. 11): the regression target"
        ds["split"].attrs["description"] = "train: fitted on; test: held out for the rMSE of dU/dt (seed eq. 24)"
        return ds

    def expected_events(self) -> np.ndarray:
        return np.full(self.n_train + self.n_test, float(self.work_per_trajectory()))

    def measure_throughput(self, budget: float = 20.0) -> tuple[float, str]:
        """Micro grid-point updates per second per core, from one derivative estimate (or one trajectory)."""
        self.warmup()
        start = time.perf_counter()
        work = self.probe_work()
        return work / (time.perf_counter() - start), self.probe_description

    def warmup(self) -> None:
        """Nothing to compile: the schemes are numpy/scipy."""


@dataclass(frozen=True)
class PatchTrajectories(_Trajectories):
    """1-D heterogeneous diffusion by patch dynamics with buffers (seed §3 and §5.1)."""

    mean: float | None = None  # a(y) = mean + amplitude sin(2 pi y); None: the paper's 1.1, 1.0
    amplitude: float | None = None
    table: tuple[float, ...] | None = None  # or a piecewise-constant a(y) on equal cells of one period
    eps: float = 1e-5
    dx: float = 1e-7
    nodes: int = 11
    tooth: float = 1e-4
    buffer: float = 8e-3
    burst: float = 1e-6
    substeps: int = 4
    lift_order: int = 2
    macro_dt: float = 1e-3
    # the buffer self-check (patch_dynamics.buffer: auto | width; .buffer_tolerance): a diagnostic of
    # ``buffer``, which alone enters the results, so neither is part of the stage's fingerprint
    buffer_tolerance: float = field(default=BUFFER_TOLERANCE, metadata={"fingerprint": False})
    buffer_check: BufferCheck | None = field(default=None, compare=False, metadata={"fingerprint": False})  # may hold NaN
    # the detailed model (micro.model) and, for a model other than the built-in solver of u_t = (a u_x)_x,
    # its micro solver (patch_dynamics.PatchSolver: advances all patches for a burst with their ends held)
    model: str = "heterodiffusion"
    burst_solver: Any = None

    probe_description: ClassVar[str] = "one patch derivative estimate (eq. 11) of all teeth"

    @classmethod
    def from_spec(cls, spec, burst_solver: Any = None) -> "PatchTrajectories":
        """The stage of a spec; an eqfree model with its own micro solver passes it as ``burst_solver``."""
        micro, pd = spec["micro"], spec["patch_dynamics"]
        buffer = pd.get("buffer", "auto")
        auto = isinstance(buffer, str)  # "auto" (spec validation admits nothing else)
        tolerance = pd.get("buffer_tolerance") or BUFFER_TOLERANCE
        if auto:  # a placeholder width to build the scheme; select_buffer replaces it
            buffer = buffer_ladder(pd["tooth"], micro["dx"], pd["nodes"])[0]
        stage = cls(
            **_Trajectories.sampling(spec),
            mean=micro["coefficient"].get("mean"), amplitude=micro["coefficient"].get("amplitude"),
            table=micro["coefficient"].get("table"),
            eps=micro["eps"], dx=micro["dx"], nodes=pd["nodes"], tooth=pd["tooth"], buffer=buffer,
            burst=pd["burst"], substeps=pd["substeps"], lift_order=pd["lift_order"], macro_dt=pd["macro_dt"],
            buffer_tolerance=tolerance, model=micro["model"], burst_solver=burst_solver,
        )
        return stage.checked(auto)

    def checked(self, auto: bool = False) -> "PatchTrajectories":
        """This stage with its buffer self-check done: ``auto`` chooses the width (:func:`select_buffer`),
        else the given width is checked (:func:`check_buffer`, a :class:`BufferWarning` if it exceeds the tolerance)."""
        check = (select_buffer if auto else check_buffer)(self.scheme, self.buffer_tolerance)
        return dataclasses.replace(self, buffer=check.buffer, buffer_check=check)

    @property
    def coefficient(self) -> heterodiffusion.Coefficient:
        if self.table is not None:
            return heterodiffusion.Coefficient(table=tuple(self.table))
        return heterodiffusion.Coefficient(
            mean=1.1 if self.mean is None else self.mean, amplitude=1.0 if self.amplitude is None else self.amplitude
        )

    @property
    def scheme(self) -> PatchDynamics:
        return PatchDynamics(
            coefficient=self.coefficient, eps=self.eps, micro_dx=self.dx, macro_nodes=self.nodes,
            tooth=self.tooth, buffer=self.buffer, burst=self.burst, substeps=self.substeps, lift_order=self.lift_order,
            burst_solver=self.burst_solver,
        )

    @property
    def x(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.nodes)

    def template(self) -> xr.Dataset:
        ds = self._base_template({"x": self.x})
        for field in ("amplitude", "wavenumber", "phase"):
            ds[f"ic_{field}"] = ((TRAJ, "mode"), self._lazy(self.modes))
            ds[f"ic_{field}"].attrs["description"] = f"initial condition (seed eq. 23): {field} of each Fourier term"
        scheme = self.scheme
        ds.attrs.update(
            model=self.model, scheme="patch dynamics with buffers", a_star=self.coefficient_effective, macro_nodes=self.nodes,
            micro_solver="built-in TR-BDF2 (numba)" if self.burst_solver is None else repr(self.burst_solver),
            transient_snapshots=0,  # every burst starts from a fresh lifting
            # cost against a full-resolution run on the same micro grid and step (seed §4: "~1e4")
            space_fraction=scheme.space_fraction,
            time_fraction=scheme.time_fraction(self.macro_dt),
            patch_work_per_trajectory=scheme.patch_work(self.t_end, self.macro_dt),
            full_resolution_work_per_trajectory=scheme.full_resolution_work(self.t_end),
            cost_ratio=scheme.cost_ratio(self.t_end, self.macro_dt),
        )
        # the measured buffer error beside the result (never a silent assumption); a stage built
        # without from_spec is checked here, at the cost of ~2.5 bursts
        check = self.buffer_check if self.buffer_check is not None else check_buffer(scheme, self.buffer_tolerance)
        ds.attrs.update(check.attrs())
        if callable(getattr(self.burst_solver, "attrs", None)):  # the solver's own parameters (e.g. a decay rate)
            ds.attrs.update(self.burst_solver.attrs())
        return ds

    @property
    def coefficient_effective(self) -> float:
        return float(heterodiffusion.effective_coefficient(self.coefficient))

    def compute_block(self, point: int, block: int) -> BlockOutput:
        from .schema import eqfree_model

        # the model's initial conditions (heterodiffusion: seed eq. (23)); FourierModes either way
        modes = eqfree_model(self.model).random_initial_condition(self.stream(point), self.modes)
        save_every = int(round(self.sample_every / self.macro_dt))
        result = self.scheme.integrate(modes(self.x), self.t_end, self.macro_dt, save_every=save_every)
        arrays = {
            "U": result.U,
            "dUdt": result.dUdt,
            "ic_amplitude": np.asarray(modes.amplitudes, float),
            "ic_wavenumber": np.asarray(modes.wavenumbers, float),
            "ic_phase": np.asarray(modes.phases, float),
        }
        return BlockOutput(stats={}, arrays=arrays, work=int(result.work))

    def work_per_trajectory(self) -> int:
        steps = int(round(self.t_end / self.macro_dt)) + 1
        return steps * self.scheme.work_per_estimate

    def probe_work(self) -> int:
        x = self.x
        return int(self.scheme.time_derivative(np.sin(np.pi * x) + x)[1])

    def warmup(self) -> None:
        """Compile (or load from numba's cache) the micro kernel on a small scheme of the same kind."""
        if self.burst_solver is not None:
            return  # another model's solver: nothing of ours to compile
        small = PatchDynamics(coefficient=self.coefficient, eps=1e-3, micro_dx=1e-5, macro_nodes=5, tooth=1e-3,
                              buffer=8e-3, burst=1e-6, substeps=1, lift_order=2)
        small.time_derivative(np.linspace(0.0, 1.0, 5) ** 2)


@dataclass(frozen=True)
class GapToothTrajectories(_Trajectories):
    """2-D lattice diffusion with 3-periodic coefficients by the gap-tooth scheme (seed §5.2)."""

    convention: str = "paper"
    lattice: int = 480
    patches: int = 16
    patch_points: int = 5
    coupling: str = "spectral"
    order: int = 6
    integrator: str = "exact"
    coupling_tolerance: float = COUPLING_TOLERANCE
    # the detailed model (micro.model) and, for a model other than the built-in lattice, its patch
    # right-hand side (gap_tooth.PatchRHS: d(interior)/dt of every patch given the coupled edge values)
    model: str = "lattice2d"
    patch_solver: Any = None

    probe_description: ClassVar[str] = "one gap-tooth trajectory"

    @classmethod
    def from_spec(cls, spec, patch_solver: Any = None) -> "GapToothTrajectories":
        """The stage of a spec; an eqfree model with its own patch dynamics passes it as ``patch_solver``."""
        micro, gt = spec["micro"], spec["gap_tooth"]
        stage = cls(
            **_Trajectories.sampling(spec),
            convention=micro["convention"], lattice=micro["lattice"], patches=gt["patches"],
            patch_points=gt["patch_points"], coupling=gt["coupling"], order=gt["order"],
            integrator=gt["integrator"], coupling_tolerance=gt["coupling_tolerance"],
            model=micro["model"], patch_solver=patch_solver,
        )
        stage.coupling_check(warn=True)  # a CouplingWarning now, at plan time, if the coupling biases the data
        return stage

    def coupling_check(self, warn: bool = False) -> dict:
        """The coupling self-check over the initial conditions' wavenumbers (:func:`.gap_tooth.check_coupling`)."""
        return check_coupling(self.scheme, lattice2d.IC_MAX_WAVENUMBER, self.coupling_tolerance, warn=warn)

    def warmup(self) -> None:
        """Compile (or load from numba's cache) the patch kernel of the stepping integrators."""
        if self.integrator in ("euler", "rkc"):  # the exact and BDF paths compile nothing
            modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(0), 1)
            self.scheme.integrate(modes, np.array([0.0, 1e-5]), method=self.integrator)

    @property
    def scheme(self) -> GapTooth2D:
        return GapTooth2D(
            patches=self.patches, h=2 * np.pi / self.lattice, patch_points=self.patch_points,
            coupling=self.coupling, order=self.order, convention=self.convention, patch_solver=self.patch_solver,
        )

    @property
    def x(self) -> np.ndarray:
        return self.scheme.centres

    def template(self) -> xr.Dataset:
        ds = self._base_template({"x": self.x, "y": self.x})
        for field in ("amplitude", "wavenumber_x", "wavenumber_y", "phase_x", "phase_y"):
            ds[f"ic_{field}"] = ((TRAJ, "mode"), self._lazy(self.modes))
            ds[f"ic_{field}"].attrs["description"] = f"initial condition (seed eq. 28): {field} of each Fourier term"
        A = lattice2d.homogenized_tensor(self.convention)
        scheme = self.scheme
        ds.attrs.update(
            model=self.model, scheme="gap-tooth", A_xx=A[0], A_xy=A[1], A_yy=A[2], convention=self.convention,
            micro_solver="built-in lattice of eq. (25)" if self.patch_solver is None else repr(self.patch_solver),
            h=scheme.h, interior_points=scheme.interior,
            transient_snapshots=1,  # micro values start without their corrector: dU/dt(0) is a fast transient
            **self.coupling_check(),
        )
        if callable(getattr(self.patch_solver, "attrs", None)):  # the solver's own parameters
            ds.attrs.update(self.patch_solver.attrs())
        return ds

    def compute_block(self, point: int, block: int) -> BlockOutput:
        from .schema import eqfree_model

        modes = eqfree_model(self.model).random_initial_condition(self.stream(point), self.modes)
        result = self.scheme.integrate(modes, self.times, method=self.integrator)
        arrays = {
            "U": result.U,
            "dUdt": result.dUdt,
            "ic_amplitude": np.asarray(modes.amplitudes, float),
            "ic_wavenumber_x": np.asarray(modes.wavenumbers_x, float),
            "ic_wavenumber_y": np.asarray(modes.wavenumbers_y, float),
            "ic_phase_x": np.asarray(modes.phases_x, float),
            "ic_phase_y": np.asarray(modes.phases_y, float),
        }
        # the exact propagator takes no micro time steps: count one update of every micro point per snapshot
        work = result.work or self.scheme.size * len(self.times)
        return BlockOutput(stats={}, arrays=arrays, work=int(work))

    def work_per_trajectory(self) -> int:
        return self._probe()[0]

    def probe_work(self) -> int:
        return self._probe()[0]

    def _probe(self) -> tuple[int, float]:
        modes = lattice2d.fourier_initial_condition_2d(np.random.default_rng(0), self.modes)
        start = time.perf_counter()
        work = int(self.scheme.integrate(modes, self.times, method=self.integrator).work)
        return work or self.scheme.size * len(self.times), time.perf_counter() - start


def initial_condition(ds: xr.Dataset, traj: int):
    """The initial condition of trajectory ``traj``, rebuilt from the stored parameters by the group's micro model."""
    from .schema import eqfree_model

    return eqfree_model(ds.attrs["model"]).stored_initial_condition(ds, traj)
