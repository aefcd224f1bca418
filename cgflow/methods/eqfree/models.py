"""The eqfree micro models: the detailed heterogeneous problems of seed 001, behind one contract.

Each is a small frozen class registered in the entry-point group
``cgflow.micro_models`` (family ``eqfree``; cgflow's ``pyproject.toml`` declares
``heterodiffusion`` and ``lattice2d`` there, as a plugin would) and selected by
``micro.model: NAME``. The eqfree stages ask the model object for everything that
depends on the detailed problem and name none:

``sections()`` / ``check_spec(d, problems)``
    its spec sections (``micro`` and the multiscale scheme's: ``patch_dynamics``
    in 1-D, ``gap_tooth`` in 2-D) and their cross-key rules;
``trajectories(spec)``
    the sweep stage that advances the patches of the scheme burst by burst with
    boundary data from the macro field (:class:`.trajectories.PatchTrajectories`:
    Dirichlet buffers, seed eqs. (7)-(11); :class:`.trajectories.GapToothTrajectories`:
    interpolated patch edges, seed §3.2);
``random_initial_condition(rng, modes)`` / ``stored_initial_condition(ds, traj)``
    a random macro field (seed eqs. (23), (28)) and its rebuild from the stored parameters;
``reference(attrs, modes, x, times)`` / ``interior(attrs)``
    the exact homogenized solution and which points carry information;
``implied_variables(implied, attrs)`` / ``implied(model)``
    the effective coefficient a learned right-hand side implies, and how it is stored.

The contract is checked when a model is registered or loaded
(:func:`cgflow.micro.contract.check_model`, members :data:`~cgflow.micro.contract.EQFREE_REQUIRED`).

The detailed solver itself, in 1-D: a model whose micro physics differs from the
built-in u_t = (a u_x)_x passes a :class:`~.patch_dynamics.PatchSolver` (one method,
``advance(u, x, duration)``: all patches over a burst with their two end values held
as the boundary data) to ``PatchTrajectories.from_spec(spec, burst_solver=...)``;
lifting, restriction, eq. (11), the projective steps and the buffer self-check stay
the scheme's (``tests/methods/test_eqfree_patch_solver.py``: an independent
Crank-Nicolson solver matches the built-in kernel to 4e-6, and a reaction term shows
up as exactly -k U). In 2-D, where the gap-tooth coupling is continuous in time, the
detailed model is a :class:`~.gap_tooth.PatchRHS` (``rhs(full, x, y)``: d(interior)/dt of
every patch given its coupled edge values) passed to
``GapToothTrajectories.from_spec(spec, patch_solver=...)`` and integrated by BDF or
explicit Euler (``tests/methods/test_eqfree_patch_rhs.py``: an independent lattice
reproduces the built-in scheme to 1e-7; with a decay term the solution is exactly
e^{-kt} times it). The example plugin's ``decaydiffusion`` is a 1-D model built this way.
"""

from __future__ import annotations

import numpy as np

from ...micro import heterodiffusion, lattice2d
from ...spec import Field, ratio

__all__ = ["HeterogeneousDiffusion", "HeterogeneousLattice2D"]

_POS = dict(minimum=0, exclusive_minimum=True)

#: Components of the 2-D diffusion tensor as stored.
TENSOR = ("A_xx", "A_xy", "A_yy")


class _EqfreeModel:
    """What every eqfree model shares: its family, no ``micro.*`` parameters of its own (its sections
    carry them), and equality by type (instances are stateless; the registry caches one)."""

    family = "eqfree"
    parameters: tuple[str, ...] = ()

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))


class HeterogeneousDiffusion(_EqfreeModel):
    """1-D diffusion u_t = (a(x/eps) u_x)_x on [0, 1], Dirichlet ends (seed 001 §5.1), by patch dynamics."""

    name = "heterodiffusion"
    description = "1-D heterogeneous diffusion u_t = (a(x/eps) u_x)_x, patch dynamics with buffers"
    dimension = 1

    @staticmethod
    def sections() -> dict:
        """Spec sections ``micro`` and ``patch_dynamics`` (the learn/rollout sections are the method's)."""
        return {
            "micro": {
                "model": Field("str", doc="registered eqfree micro model"),
                "coefficient": {
                    "mean": Field("float", required=False, doc="a(y) = mean + amplitude sin(2 pi y) (default 1.1)"),
                    "amplitude": Field("float", required=False, doc="(default 1.0)"),
                    "table": Field("floats", required=False, **_POS, doc="or: values of a piecewise-constant a(y) on equal cells of one period"),
                },
                "eps": Field("float", **_POS, doc="period of the heterogeneity"),
                "dx": Field("float", **_POS, doc="micro grid spacing"),
            },
            "patch_dynamics": {
                "nodes": Field("int", minimum=3, doc="macro nodes on [0, 1] incl. the two Dirichlet ends; teeth at the interior ones"),
                "tooth": Field("float", **_POS, doc="tooth width h"),
                "buffer": Field("strnum", required=False, default="auto", doc="patch width H (tooth + buffers), or auto: the narrowest width on a x1.5 ladder from 2 tooth whose estimate of U = x**2 changes by < buffer_tolerance when H widens 1.5x (chosen H and error stored in the attrs; an explicit width is checked the same way and warns above the tolerance)"),
                "buffer_tolerance": Field("float", required=False, default=1.0e-3, **_POS, doc="relative tolerance of the buffer self-check (max over nodes of the change of the patch estimate from H to ~1.5 H)"),
                "burst": Field("float", **_POS, doc="micro simulation time per derivative estimate (eq. 11)"),
                "substeps": Field("int", required=False, default=4, minimum=1, doc="implicit (TR-BDF2) micro steps per burst"),
                "lift_order": Field("int", required=False, default=2, choices=(2, 4), doc="degree of the lifting polynomial (eq. 10)"),
                "macro_dt": Field("float", **_POS, doc="projective time step"),
            },
        }

    @staticmethod
    def check_spec(d: dict, problems: list) -> None:
        """Cross-key rules of the 1-D sections; a numeric ``patch_dynamics.buffer`` text becomes a float."""
        micro, every = d.get("micro", {}), d.get("trajectories", {}).get("sample_every")
        coef, pd = micro.get("coefficient", {}), d.get("patch_dynamics", {})
        if coef.get("table") is not None and (coef.get("mean") is not None or coef.get("amplitude") is not None):
            problems.append(("micro.coefficient.table", "give either a table or mean/amplitude, not both"))
        mean = coef.get("mean") if coef.get("mean") is not None else 1.1
        amp = coef.get("amplitude") if coef.get("amplitude") is not None else 1.0
        if coef.get("table") is None and mean - abs(amp) <= 0:
            problems.append(("micro.coefficient", f"a(y) = mean + amplitude sin(2 pi y) must stay > 0: mean = {mean:g}, amplitude = {amp:g}"))
        eps, dx = micro.get("eps"), micro.get("dx")
        if eps is not None and dx is not None and eps < 4 * dx:
            problems.append(("micro.dx", f"must resolve the heterogeneity (at least 4 points per period eps = {eps:g}), got {dx:g}"))
        nodes, tooth, buffer = pd.get("nodes"), pd.get("tooth"), pd.get("buffer")
        if isinstance(buffer, str) and buffer != "auto":  # strnum: "auto" or a number kept as text
            try:
                buffer = float(buffer)
            except ValueError:
                buffer = None
            if buffer is None or not 0 < buffer < float("inf"):
                problems.append(("patch_dynamics.buffer", f"must be auto or a number > 0, got {pd['buffer']!r}"))
                buffer = None
            pd["buffer"] = buffer if buffer is not None else pd["buffer"]
        if buffer == "auto":
            buffer = None  # its rungs are admissible by construction (buffer_ladder)
            if None not in (nodes, tooth) and 2 * tooth >= 1.0 / (nodes - 1):
                problems.append(("patch_dynamics.buffer", f"auto needs room for a buffer: 2 tooth < node spacing 1/(nodes - 1) = {1.0 / (nodes - 1):g}, got tooth = {tooth:g}"))
        if None not in (nodes, tooth, buffer):
            spacing = 1.0 / (nodes - 1)
            if not tooth < buffer:
                problems.append(("patch_dynamics.buffer", f"must be wider than patch_dynamics.tooth = {tooth:g}, got {buffer:g}"))
            elif not buffer < spacing:
                problems.append(("patch_dynamics.buffer", f"patches must not overlap: buffer < node spacing 1/(nodes - 1) = {spacing:g}, got {buffer:g}"))
            for key, width in (("tooth", tooth), ("buffer", buffer)):
                n = ratio(width, dx) if dx is not None else 0
                if n is None or (dx is not None and (n < 2 or n % 2)):
                    problems.append((f"patch_dynamics.{key}", f"must be an even number (>= 2) of micro grid spacings micro.dx = {dx:g} (centred on a grid point), got {width:g}"))
        burst, macro_dt = pd.get("burst"), pd.get("macro_dt")
        if burst is not None and macro_dt is not None and burst > macro_dt:
            problems.append(("patch_dynamics.burst", f"must not exceed patch_dynamics.macro_dt = {macro_dt:g}, got {burst:g}"))
        if macro_dt is not None and every is not None and ratio(every, macro_dt) is None:
            problems.append(("trajectories.sample_every", f"must be a whole multiple of patch_dynamics.macro_dt = {macro_dt:g}, got {every:g}"))

    @staticmethod
    def trajectories(spec):
        from .trajectories import PatchTrajectories

        return PatchTrajectories.from_spec(spec)

    @staticmethod
    def random_initial_condition(rng: np.random.Generator, modes: int):
        return heterodiffusion.fourier_initial_condition(rng, modes)

    @staticmethod
    def stored_initial_condition(ds, traj: int):
        return heterodiffusion.FourierModes(
            amplitudes=ds["ic_amplitude"].values[traj], wavenumbers=ds["ic_wavenumber"].values[traj],
            phases=ds["ic_phase"].values[traj],
        )

    @staticmethod
    def reference(attrs: dict, modes, x: np.ndarray, times: np.ndarray) -> dict:
        """U_h, dU_h/dt of the homogenized PDE a* u_xx, and U_fd, dU_fd/dt of the semi-discrete a* D2 U."""
        from .homogenized import semidiscrete_solution

        a_star = float(attrs["a_star"])
        U_fd, dU_fd = semidiscrete_solution(modes(x), a_star, x[1] - x[0], times)
        return {
            "U_h": heterodiffusion.homogenized_solution(modes, a_star, x, times),
            "dUdt_h": heterodiffusion.homogenized_time_derivative(modes, a_star, x, times),
            "U_fd": U_fd,
            "dUdt_fd": dU_fd,
        }

    @staticmethod
    def interior_points() -> tuple:
        """Every node but the two fixed Dirichlet ends."""
        return (slice(1, -1),)

    @staticmethod
    def implied(model) -> np.ndarray:
        from ...learn import effective_coefficient

        return np.asarray(effective_coefficient(model))

    @staticmethod
    def implied_variables(implied: np.ndarray, attrs: dict) -> tuple[dict, dict, dict]:
        """``(coords, data variables, attrs)`` of the learn stage's implied coefficient a (one per model)."""
        var = (("model",), implied, {"description": "effective coefficient implied by the model: its response to "
                                     "sin(pi x) against the macro grid's D2 (cgflow.learn.effective_coefficient)"})
        return {}, {"a_implied": var}, {"a_star": float(attrs["a_star"])}


class HeterogeneousLattice2D(_EqfreeModel):
    """The 2-D heterogeneous diffusion lattice of seed 001 §5.2 (3-periodic kappa), by the gap-tooth scheme."""

    name = "lattice2d"
    description = "2-D heterogeneous diffusion lattice (3-periodic coefficients), gap-tooth scheme"
    dimension = 2

    @staticmethod
    def sections() -> dict:
        """Spec sections ``micro`` and ``gap_tooth``."""
        return {
            "micro": {
                "model": Field("str", doc="registered eqfree micro model"),
                "convention": Field("str", required=False, default="paper", choices=("paper", "same-site"), doc="tiling of the 3-periodic kappa_y (REFERENCE §2)"),
                "lattice": Field("int", minimum=3, doc="lattice points per side of [0, 2 pi)"),
            },
            "gap_tooth": {
                "patches": Field("int", minimum=2, doc="patches per direction"),
                "patch_points": Field("int", minimum=3, doc="lattice points per patch side, edges included"),
                "coupling": Field("str", required=False, default="spectral", choices=("spectral", "polynomial")),
                "order": Field("int", required=False, default=6, minimum=2, doc="interpolation degree (coupling: polynomial; 6 is the lowest that meets 1e-3 in the k = 1 decay rates, but the k = 5 modes of the initial conditions need spectral coupling: checked, see coupling_tolerance)"),
                "coupling_tolerance": Field("float", required=False, default=1.0e-3, **_POS, doc="self-check of the coupling: largest relative change of the scheme's slow decay rates against spectral coupling over the initial conditions' wavenumbers; above it a CouplingWarning (stored: coupling_error)"),
                "integrator": Field("str", required=False, default="exact", choices=("exact", "bdf", "euler", "rkc"), doc="exact propagator (linear scheme only); rkc: adaptive Runge-Kutta-Chebyshev on the compiled patch kernel, for any right-hand side (~1e-5 of exact, ~85x cheaper than the full lattice); euler: explicit at 0.9 x the stability limit (first order, ~1e-4); bdf: scipy BDF (slow: LU fill-in)"),
            },
        }

    @staticmethod
    def check_spec(d: dict, problems: list) -> None:
        """Cross-key rules of the 2-D sections."""
        micro = d.get("micro", {})
        gt, n = d.get("gap_tooth", {}), micro.get("lattice")
        patches, points = gt.get("patches"), gt.get("patch_points")
        if None not in (n, patches) and n % patches:
            problems.append(("gap_tooth.patches", f"must divide micro.lattice = {n}, got {patches}"))
        elif None not in (n, patches, points) and points >= n // patches:
            problems.append(("gap_tooth.patch_points", f"patches must leave gaps: fewer than micro.lattice / patches = {n // patches} points, got {points}"))
        if gt.get("coupling") == "polynomial" and gt.get("order", 0) % 2:
            problems.append(("gap_tooth.order", f"must be even, got {gt['order']}"))

    @staticmethod
    def trajectories(spec):
        from .trajectories import GapToothTrajectories

        return GapToothTrajectories.from_spec(spec)

    @staticmethod
    def random_initial_condition(rng: np.random.Generator, modes: int):
        return lattice2d.fourier_initial_condition_2d(rng, modes)

    @staticmethod
    def stored_initial_condition(ds, traj: int):
        return lattice2d.FourierModes2D(
            amplitudes=ds["ic_amplitude"].values[traj],
            wavenumbers_x=ds["ic_wavenumber_x"].values[traj].astype(int),
            wavenumbers_y=ds["ic_wavenumber_y"].values[traj].astype(int),
            phases_x=ds["ic_phase_x"].values[traj], phases_y=ds["ic_phase_y"].values[traj],
        )

    @staticmethod
    def reference(attrs: dict, modes, x: np.ndarray, times: np.ndarray) -> dict:
        """U_h, dU_h/dt of the homogenized PDE div(A grad u), averaged over each patch's interior points.

        Point values at the centres would build in an O(h**2 |u_xx|) difference from
        the patch averages the scheme restricts to.
        """
        A = tuple(float(attrs[k]) for k in TENSOR)
        n, h, N = int(attrs["interior_points"]), float(attrs["h"]), x.size
        points = (x[:, None] + (np.arange(n) + 1 - (n + 1) / 2) * h).ravel()
        out = {}
        for key, fn in (("U_h", lattice2d.homogenized_solution_2d), ("dUdt_h", lattice2d.homogenized_time_derivative_2d)):
            fine = fn(modes, A, points, points, times)  # (time, N n, N n)
            out[key] = fine.reshape(len(times), N, n, N, n).mean(axis=(2, 4))
        return out

    @staticmethod
    def interior_points() -> tuple:
        """Every patch: the domain is periodic."""
        return ()

    @staticmethod
    def implied(model) -> np.ndarray:
        from ...learn import effective_tensor

        return np.asarray(effective_tensor(model))

    @staticmethod
    def implied_variables(implied: np.ndarray, attrs: dict) -> tuple[dict, dict, dict]:
        """``(coords, data variables, attrs)`` of the implied tensor (A_xx, A_xy, A_yy) per model."""
        values = np.stack([implied[:, 0, 0], implied[:, 0, 1], implied[:, 1, 1]], axis=1)
        var = (("model", "component"), values, {"description": "diffusion tensor implied by the model (probes sin x, "
                                                "sin y, sin(x +- y); cgflow.learn.effective_tensor)"})
        return {"component": np.array(TENSOR, dtype=object)}, {"A_implied": var}, {k: float(attrs[k]) for k in TENSOR}
