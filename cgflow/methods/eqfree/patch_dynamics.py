"""Patch dynamics with buffers for 1-D heterogeneous diffusion (seed 001 §3, eqs. (7), (10), (11); §5.1).

The scheme, as the authors ran it (REFERENCE §2; their ``generate_data_1d.py``):

* macro nodes x_0..x_N on [0, 1] (N + 1 = 11, dx_macro = 0.1), Dirichlet ends;
  one patch of width H (``buffer``) centred on every interior node (9 patches;
  the paper's text says "10 teeth"), holding the micro lattice
  x_i + m dx, m = -H/(2 dx)..H/(2 dx), with the bond coefficients of
  :func:`cgflow.micro.heterodiffusion.micro_coefficients`;
* lifting (eq. (10)): on each patch a polynomial p whose tooth averages
  reproduce the macro values of the node and of its d/2 neighbours on each side
  (eq. (8)); for d = 2 this is
  p(x) = U_i + D1 (x - x_i) + (D2/2)[(x - x_i)**2 - h**2/12], D1, D2 the central
  differences of the macro values (REFERENCE §2);
* micro evolution over one burst dt = 1e-6 with the buffer ends frozen
  (Dirichlet) at their lifted values;
* restriction (eq. (7)): the average over the tooth of width h = 1e-4, by
  composite Simpson on the tooth's micro nodes (the authors' ``simps``);
* F_i = (U_i(t + dt) - U_i(t))/dt (eq. (11)), then projective forward-Euler steps
  of dt_macro = 1e-3 (optionally Heun, a second-order projective RK).

Time stepping of the burst. The authors integrate each patch with ``odeint``
(LSODA, adaptive), i.e. essentially exactly. Here every burst is ``substeps``
implicit steps (default TR-BDF2, 10 steps: measured 1.6e-5 relative from the
converged F at H = 8e-3, 3e-4 at H = 4e-3 where F itself is 16 % off) on all
patches at once: the frozen ends decouple the patches, so the stacked
tridiagonal system is solved once per implicit stage
(:class:`cgflow.micro.heterodiffusion.DirichletStepper`, factorised once per
run). By default (``micro_solver="numba"``) the whole burst is one compiled,
allocation-free kernel (right-hand sides assembled inside the L D L^T sweeps,
the 9 patches swept side by side): ~40 ms per burst for the 720k unknowns of the
paper's 9 patches at 10 substeps on one core, against ~170 ms for the earlier
numpy path with LAPACK ``dpttrs`` (``micro_solver="ldl"``; another 1.6-4x slower
inside Dask workers, whose ``MALLOC_TRIM_THRESHOLD_`` turns its large temporaries
into mmap/munmap pairs) and more for ``scipy.linalg.solve_banded``
(``micro_solver="banded"``); all give F to ~1e-13 relative
(``benchmarks/bench_patch_kernel.py``). The lifting's forcing and the lifted
state of :meth:`PatchDynamics.time_derivative` live in per-instance work arrays
too, so after its first call a burst allocates nothing patch-sized. A single
backward-Euler step per burst does *not* reproduce the buffer table (its
discrete heat kernel has exponential instead of Gaussian tails: -31 % instead of
-16 % at H = 4e-3, -1.6e-2 instead of -1.3e-4 at H = 8e-3).

Deviation form (``deviation_form=True``, the default). On a 1e-7 lattice the
second difference of a smooth O(1) profile is ~1e-14 of its values, and the
implicit matrices have condition numbers ~1e7, so evolving the lifted values
themselves leaves F with a rounding error that grows with |U|/(a* D2 dt)
(measured at H = 1e-2 on U = x**2 + c: 1.1e-5, 5.7e-5, 4.7e-4 for c = 0, 1, 10 in
the paper's medium; 0.1 %, 0.6 %, 4.6 % in a homogeneous medium). This is the
"floor of about ±3-5e-4" of REFERENCE §2. Writing u = p + v, with L p formed from
the bond increments p(x_{m+1}) - p(x_m) computed in factorised form, and evolving
v (v = 0 initially and at the frozen ends) is the same scheme in exact
arithmetic; F = restrict(v)/dt because restrict(p) = U_i exactly. F is then
independent of a constant offset of U to ~1e-12 and what remains is the physics
(buffer, time stepping, the O(eps**2) corrector).

What the buffer error is (measured, a(y) = 1.1 + sin 2 pi y, U = x**2 at
x_i = 0.5, i.e. D1/D2 = 1/2, default time stepping): -16.1 % (H = 4e-3),
-3.9 % (5e-3), -0.73 % (6e-3), -1.3e-4 (8e-3; -1.15e-4 converged in time),
+5e-6 (1e-2). This reproduces REFERENCE's -16 % and -0.7 %; its -3.5e-4 and
-1.4e-4 at 8e-3 and 1e-2 sit at its rounding floor. In a homogeneous medium
a = a* the same buffers give only -1.8 %, -0.34 %, -0.05 %, -7e-6, -5e-8 (the
heat-kernel tail through the frozen ends; analytically -1.77 %, ..., -5.3e-6 for
exact time integration). Most of the error in the heterogeneous medium comes
from the lift lacking the micro-scale corrector eps D1 chi(x/eps): the frozen
buffer ends keep that O(eps D1) mismatch, which diffuses into the tooth like
erfc(H/(4 sqrt(a* dt))); it is proportional to D1 (its sign flips with D1) and
comparable to the signal because eps D1 ~ a* D2 dt at the paper's values.

The buffer self-check (issue 11 item 4). The width that suffices depends on the
medium: the paper's H = 8e-3 is 2.4e-4 off in the paper's medium but 8 % off for
a = 4.4 + 4 sin 2 pi y (a* 4x the paper's), and 0.37 % off in the quick workflow's
10x coarser medium (``benchmarks/bench_patch_buffer.py``). So the width is checked
by measurement, never assumed: :func:`check_buffer` compares the patch estimate of
U = x**2 at H with that at ~1.5 H (two estimates), and :func:`select_buffer`
(``patch_dynamics.buffer: auto``) walks a x1.5 ladder from 2 tooth
(:func:`buffer_ladder`) to the narrowest width whose estimate changes by less than
the tolerance at every interior node. U = x**2 because its D2 = 2 is exact at every
node for either lifting (so F is compared with a known a* D2, not with a
finite-difference approximation), and its D1 = 2 x_i is non-zero everywhere (the
heterogeneous buffer error is proportional to D1, see below), spanning
D1/D2 = 0.1..0.9 over the nodes; a random initial profile has nodes where D2
vanishes, where a relative error means nothing. Since the buffer error decays
like erfc(H/(4 sqrt(a* dt))), the error at 1.5 H is orders of magnitude below that
at H and the change is the error at H to two digits (measured: 4.6e-4 vs 4.6e-4,
7.9e-2 vs 8.2e-2, 3.7e-3 vs 3.7e-3 against H = 0.06). It measures only the
buffer: the time stepping of the burst and the lattice are the same at both
widths (e.g. 6e-4 from a* D2 remains in the quick medium at its converged H).

Everything is vectorised numpy/scipy or compiled numba over patches and micro
sites (no Python loop over either); no I/O.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from numbers import Integral, Real
from typing import Callable, Protocol

import numba
import numpy as np

from ...micro.heterodiffusion import (
    MICRO_SCHEMES,
    MICRO_SOLVERS,
    Coefficient,
    DirichletStepper,
    _Scratch,
    effective_coefficient,
    micro_coefficients,
)

__all__ = [
    "TIME_STEPPERS",
    "PatchSolver",
    "BufferCheck",
    "BufferWarning",
    "PatchDynamics",
    "PatchTrajectory",
    "buffer_ladder",
    "check_buffer",
    "relative_derivative_error",
    "select_buffer",
]

class PatchSolver(Protocol):
    """The eqfree micro-model contract in 1-D: a detailed solver that advances patches for a burst.

    An object (a frozen dataclass, so that stages holding it fingerprint and pickle)
    with one method. Patch dynamics calls it once per derivative estimate. An
    optional ``attrs() -> dict`` is stored with the trajectories (the solver's
    physical parameters, which the model's exact reference may need).
    """

    def advance(self, u: np.ndarray, x: np.ndarray, duration: float) -> np.ndarray:
        """Advance the micro values ``u`` of every patch by ``duration``.

        Parameters
        ----------
        u : ndarray, shape (n_patches, n_micro)
            Lifted micro values (eq. (10)); may be modified and returned.
        x : ndarray, shape (n_patches, n_micro)
            Positions of the micro nodes.
        duration : float
            The burst.

        Returns
        -------
        ndarray, shape (n_patches, n_micro)
            The values after the burst. The first and last value of every patch are
            the boundary data and must come back unchanged (Dirichlet buffer ends).
        """


#: Projective (macro) time steppers: bursts per macro step.
TIME_STEPPERS = {"forward_euler": 1, "heun": 2}


def _ratio(value: float, unit: float, name: str, unit_name: str) -> int:
    """value/unit as an even integer >= 2, or a clear ValueError."""
    r = value / unit
    k = int(round(r))
    if abs(r - k) > 1e-6 * max(1.0, r) or k < 2 or k % 2:
        raise ValueError(
            f"{name}/{unit_name} must be an even integer >= 2 (the patch is centred on a micro node), "
            f"got {name} = {value!r}, {unit_name} = {unit!r} (ratio {r!r})"
        )
    return k


@numba.njit(cache=True, nogil=True)
def _polynomial_forcing(coeffs, increments, bonds, dx2, out):
    """out[p, m] = (a_m dp_m - a_{m-1} dp_{m-1})/dx2 at interior m, 0 at both ends, for every patch p.

    dp_m = sum_k coeffs[p, k] increments[k, m] is the bond increment p(xi_{m+1}) - p(xi_m)
    of the lifting polynomial; bonds (P, n - 1), out (P, n).
    """
    P, n = out.shape
    K = coeffs.shape[1]
    for p in range(P):
        out[p, 0] = 0.0
        out[p, n - 1] = 0.0
        left = 0.0
        for m in range(n - 1):
            dp = 0.0
            for k in range(K):
                dp += coeffs[p, k] * increments[k, m]
            flux = bonds[p, m] * dp
            if m > 0:
                out[p, m] = (flux - left) / dx2
            left = flux


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PatchTrajectory:
    """Output of :meth:`PatchDynamics.integrate`.

    Attributes
    ----------
    times : ndarray, shape (n_saved,)
    U : ndarray, shape (n_saved, macro_nodes)
        Macro values (tooth averages at interior nodes, Dirichlet values at the ends).
    dUdt : ndarray, shape (n_saved, macro_nodes)
        The patch estimate F of eq. (11) at each saved state (0 at the Dirichlet ends,
        whose values are fixed). Also available as ``F``.
    work : int
        Micro grid-point x micro time-step updates spent (all bursts).
    """

    times: np.ndarray
    U: np.ndarray
    dUdt: np.ndarray
    work: int

    @property
    def F(self) -> np.ndarray:
        return self.dUdt


@dataclass(frozen=True)
class PatchDynamics:
    """Parameters of patch dynamics with buffers (seed §3, §5.1); all numerics are methods.

    Parameters
    ----------
    coefficient : Coefficient
        The periodic diffusivity a (default: the paper's 1.1 + sin 2 pi y).
    eps : float, default 1e-5
        Period of the heterogeneity.
    micro_dx : float, default 1e-7
        Micro grid spacing (100 points per period at the defaults); < eps.
    macro_nodes : int, default 11
        Nodes on [0, 1] including the two Dirichlet ends; patches sit at the
        ``macro_nodes - 2`` interior nodes.
    tooth : float, default 1e-4
        Tooth width h (restriction window, eq. (7)); h/micro_dx an even integer.
    buffer : float, default 8e-3
        Patch width H (tooth plus buffers); H/micro_dx an even integer, h < H < dx_macro.
        Not checked here: :func:`check_buffer` estimates its error, :func:`select_buffer`
        chooses one (the workflows' ``patch_dynamics.buffer: auto``).
    burst : float, default 1e-6
        Micro simulation time per estimate (delta t of eq. (11)).
    substeps : int, default 10
        Implicit micro steps per burst (micro step burst/substeps).
    micro_scheme : {"trbdf2", "bdf2", "backward_euler"}, default "trbdf2"
        Implicit scheme of the burst (:func:`cgflow.micro.heterodiffusion.dirichlet_steps`).
    micro_solver : {"numba", "ldl", "banded"}, default "numba"
        Solver of the burst (:class:`cgflow.micro.heterodiffusion.DirichletStepper`):
        "numba" runs every burst as one compiled, allocation-free kernel; "ldl"
        (LAPACK ``dpttrs``) and "banded" are the earlier numpy paths. Same F to
        ~1e-13 relative.
    lift_order : {2, 4}, default 2
        Degree d of the lifting polynomial (eq. (10)). Order 4 matches the tooth
        averages of the 5 nodes i-2..i+2; at the two patches next to the
        Dirichlet ends, where that stencil does not fit, it falls back to order 2.
    time_stepper : {"forward_euler", "heun"}, default "forward_euler"
        Projective integrator (the authors': forward Euler). Heun is the
        second-order projective RK (two bursts per macro step).
    deviation_form : bool, default True
        Evolve the deviation from the lift (exact rewriting that avoids rounding
        in second differences on the micro lattice; module docstring). False
        evolves the lifted values themselves, as the authors did.
    burst_solver : PatchSolver, optional
        Another detailed model's micro solver (the eqfree micro-model contract,
        :class:`PatchSolver`): it advances the lifted values of every patch over a
        burst with the two end values of each patch held (the boundary data), and
        replaces the built-in heterogeneous-diffusion stepper (``coefficient``,
        ``micro_scheme``, ``micro_solver``, ``deviation_form`` are then unused).
        Lifting, restriction, eq. (11), projective steps and the buffer self-check
        are the scheme's and stay as they are.
    """

    coefficient: Coefficient = field(default_factory=Coefficient)
    eps: float = 1e-5
    micro_dx: float = 1e-7
    macro_nodes: int = 11
    tooth: float = 1e-4
    buffer: float = 8e-3
    burst: float = 1e-6
    substeps: int = 10
    micro_scheme: str = "trbdf2"
    micro_solver: str = "numba"
    lift_order: int = 2
    time_stepper: str = "forward_euler"
    deviation_form: bool = True
    burst_solver: "PatchSolver | None" = None

    def __post_init__(self):
        if not isinstance(self.coefficient, Coefficient):
            raise ValueError(f"coefficient must be a Coefficient, got {type(self.coefficient).__name__}")
        eps = _positive(self.eps, "eps")
        dx = _positive(self.micro_dx, "micro_dx")
        if dx >= eps:
            raise ValueError(f"micro_dx must resolve the period: micro_dx < eps, got micro_dx = {dx!r}, eps = {eps!r}")
        n = self.macro_nodes
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 3:
            raise ValueError(f"macro_nodes must be an integer >= 3 (two Dirichlet ends and at least one patch), got {n!r}")
        h, H = _positive(self.tooth, "tooth"), _positive(self.buffer, "buffer")
        spacing = 1.0 / (n - 1)
        if not h < H:
            raise ValueError(f"the tooth must be narrower than the patch: tooth < buffer, got tooth = {h!r}, buffer = {H!r}")
        if not H < spacing:
            raise ValueError(
                f"patches must not overlap: buffer < macro spacing 1/(macro_nodes - 1) = {spacing!r}, got buffer = {H!r}"
            )
        _ratio(h, dx, "tooth", "micro_dx")
        _ratio(H, dx, "buffer", "micro_dx")
        _positive(self.burst, "burst")
        s = self.substeps
        if isinstance(s, bool) or not isinstance(s, Integral) or s < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {s!r}")
        if self.micro_scheme not in MICRO_SCHEMES:
            raise ValueError(f"micro_scheme must be one of {MICRO_SCHEMES}, got {self.micro_scheme!r}")
        if self.micro_solver not in MICRO_SOLVERS:
            raise ValueError(f"micro_solver must be one of {MICRO_SOLVERS}, got {self.micro_solver!r}")
        if self.lift_order not in (2, 4) or isinstance(self.lift_order, bool):
            raise ValueError(f"lift_order must be 2 or 4 (even degree, eq. (10)), got {self.lift_order!r}")
        if self.time_stepper not in TIME_STEPPERS:
            raise ValueError(f"time_stepper must be one of {tuple(TIME_STEPPERS)}, got {self.time_stepper!r}")
        if not isinstance(self.deviation_form, (bool, np.bool_)):
            raise ValueError(f"deviation_form must be a bool, got {self.deviation_form!r}")
        if self.burst_solver is not None and not callable(getattr(self.burst_solver, "advance", None)):
            raise ValueError(f"burst_solver must have an advance(u, x, duration) method, got {self.burst_solver!r}")

    # ------------------------------------------------------------------ geometry
    @property
    def macro_dx(self) -> float:
        """Macro node spacing 1/(macro_nodes - 1)."""
        return 1.0 / (self.macro_nodes - 1)

    @property
    def x(self) -> np.ndarray:
        """Macro nodes on [0, 1], shape (macro_nodes,)."""
        return np.linspace(0.0, 1.0, self.macro_nodes)

    @property
    def n_patches(self) -> int:
        return self.macro_nodes - 2

    @property
    def centres(self) -> np.ndarray:
        """Patch centres (the interior macro nodes), shape (n_patches,)."""
        return self.x[1:-1]

    @cached_property
    def _half(self) -> int:
        """Micro intervals from a patch centre to its buffer end, H/(2 dx)."""
        return _ratio(self.buffer, self.micro_dx, "buffer", "micro_dx") // 2

    @cached_property
    def _tooth_half(self) -> int:
        return _ratio(self.tooth, self.micro_dx, "tooth", "micro_dx") // 2

    @property
    def n_micro(self) -> int:
        """Micro nodes per patch, H/dx + 1 (both frozen ends included)."""
        return 2 * self._half + 1

    @cached_property
    def _offsets(self) -> np.ndarray:
        """Patch-local micro indices m = -H/(2 dx)..H/(2 dx)."""
        return np.arange(-self._half, self._half + 1)

    @cached_property
    def micro_grid(self) -> np.ndarray:
        """Micro node positions x_i + m dx, shape (n_patches, n_micro)."""
        return self.centres[:, None] + self._offsets[None, :] * self.micro_dx

    @cached_property
    def bonds(self) -> np.ndarray:
        """Bond coefficients a((x + dx)/eps) of every patch, shape (n_patches, n_micro - 1)."""
        return micro_coefficients(self.micro_grid[:, :-1], self.eps, self.micro_dx, self.coefficient)

    # ------------------------------------------------------------------ restriction
    @cached_property
    def tooth_weights(self) -> np.ndarray:
        """Composite-Simpson weights of the tooth average (eq. (7)) on its 2 m + 1 nodes, summing to 1."""
        m = self._tooth_half
        w = np.ones(2 * m + 1)
        w[1:-1:2] = 4.0
        w[2:-1:2] = 2.0
        return w / w.sum()

    def restrict(self, u) -> np.ndarray:
        """Tooth averages (eq. (7)) of micro values ``u`` of shape (..., n_patches, n_micro) -> (..., n_patches).

        Composite Simpson over the tooth's h/dx + 1 nodes (exact for cubics), the
        rule the lifting is built to preserve: restrict(lift(U)) = U[1:-1] to rounding.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.shape[-2:] != (self.n_patches, self.n_micro):
            raise ValueError(f"u must have trailing shape ({self.n_patches}, {self.n_micro}), got {u.shape}")
        m = self._tooth_half
        c = self._half
        return u[..., c - m : c + m + 1] @ self.tooth_weights

    # ------------------------------------------------------------------ lifting
    @cached_property
    def _xi_tooth(self) -> np.ndarray:
        """Tooth nodes in units of the macro spacing, xi = (x - x_i)/dx_macro."""
        return np.arange(-self._tooth_half, self._tooth_half + 1) * (self.micro_dx / self.macro_dx)

    def _moment_inverse(self, order: int) -> np.ndarray:
        """W = A^-1, A[j, k] = restrict((xi + j)**k), j = -order/2..order/2.

        Row j of A maps the coefficients c of p(xi) = sum_k c_k xi**k to the
        (discrete) tooth average of p over the tooth centred at node i + j; so
        c = W @ (U_{i-d/2}, ..., U_{i+d/2}) makes p reproduce those d + 1 tooth
        averages (eq. (8)), and restrict(p) = U_i holds to rounding by construction.
        """
        j = np.arange(-(order // 2), order // 2 + 1)[:, None, None]
        k = np.arange(order + 1)[None, :, None]
        A = ((self._xi_tooth[None, None, :] + j) ** k) @ self.tooth_weights
        return np.linalg.inv(A)

    @cached_property
    def _lift_plan(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(patch indices, W)] per stencil order actually used."""
        p = np.arange(self.n_patches)
        node = p + 1
        if self.lift_order == 4:
            fits = (node - 2 >= 0) & (node + 2 <= self.macro_nodes - 1)
            plan = [(p[fits], self._moment_inverse(4))]
            if np.any(~fits):
                plan.append((p[~fits], self._moment_inverse(2)))
            return [(idx, W) for idx, W in plan if idx.size]
        return [(p, self._moment_inverse(2))]

    def _check_U(self, U) -> np.ndarray:
        U = np.asarray(U, dtype=np.float64)
        if U.shape != (self.macro_nodes,):
            raise ValueError(f"U must have shape ({self.macro_nodes},) (macro values incl. the Dirichlet ends), got {U.shape}")
        if not np.all(np.isfinite(U)):
            raise ValueError("U must be finite")
        return U

    def lift_coefficients(self, U) -> np.ndarray:
        """Coefficients c of p_i(xi) = sum_k c_k xi**k, xi = (x - x_i)/dx_macro, shape (n_patches, lift_order + 1).

        The finite-difference derivatives of eq. (10) are D_k = k! c_k/dx_macro**k.
        For order 2: c_2 = (U_{i+1} - 2 U_i + U_{i-1})/2, c_1 = (U_{i+1} - U_{i-1})/2,
        c_0 = U_i - c_2 (h/dx_macro)**2/12 (Simpson is exact for the quadratic
        moment), i.e. REFERENCE's p(x) = U_i + D1 (x - x_i) + (D2/2)[(x - x_i)**2 - h**2/12].
        """
        U = self._check_U(U)
        coeffs = np.zeros((self.n_patches, self.lift_order + 1))
        for idx, W in self._lift_plan:
            order = W.shape[0] - 1
            stencil = (idx + 1)[:, None] + np.arange(-(order // 2), order // 2 + 1)[None, :]
            coeffs[idx, : order + 1] = U[stencil] @ W.T
        return coeffs

    @cached_property
    def _xi(self) -> np.ndarray:
        """Patch-local micro nodes in units of the macro spacing, (x - x_i)/dx_macro, shape (n_micro,)."""
        return self._offsets * (self.micro_dx / self.macro_dx)

    def lift(self, U) -> np.ndarray:
        """Micro values of the lifting polynomial on every patch (eq. (10)), shape (n_patches, n_micro)."""
        return self._lift_into(self.lift_coefficients(U), np.empty((self.n_patches, self.n_micro)))

    def _lift_into(self, c: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Horner evaluation of p_i(xi) with coefficients ``c`` into ``out`` (n_patches, n_micro), in place."""
        xi = self._xi
        out[...] = c[:, -1:]
        for k in range(c.shape[1] - 2, -1, -1):  # Horner in xi
            np.multiply(out, xi, out=out)
            np.add(out, c[:, k : k + 1], out=out)
        return out

    @cached_property
    def _bond_increments(self) -> np.ndarray:
        """xi_{m+1}**k - xi_m**k in factorised form, shape (lift_order + 1, n_micro - 1).

        xi_{m+1}**k - xi_m**k = e sum_{q<k} xi_{m+1}**q xi_m**(k-1-q), e = dx/dx_macro
        (no cancellation between the two powers).
        """
        e = self.micro_dx / self.macro_dx
        left = self._offsets[:-1] * e
        right = self._offsets[1:] * e
        inc = np.zeros((self.lift_order + 1, left.size))
        for k in range(1, self.lift_order + 1):
            inc[k] = e * sum(right**q * left ** (k - 1 - q) for q in range(k))
        return inc

    def _lift_forcing(self, c: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """L p on every patch from the bond increments p(xi_{m+1}) - p(xi_m) (:attr:`_bond_increments`).

        ``c`` (n_patches, K <= lift_order + 1) lift coefficients; the result, shape
        (n_patches, n_micro), 0 at the patch ends, goes to ``out`` when given.
        """
        shape = (self.n_patches, self.n_micro)
        if out is None:
            out = np.empty(shape)
        c = np.ascontiguousarray(c, dtype=np.float64)
        inc = self._bond_increments
        # the compiled loop does not check bounds
        if c.ndim != 2 or c.shape[0] != shape[0] or c.shape[1] > inc.shape[0] or out.shape != shape:
            raise ValueError(f"need c of shape ({shape[0]}, <= {inc.shape[0]}) and out of shape {shape}")
        _polynomial_forcing(c, inc, self.bonds, self.micro_dx**2, out)
        return out

    # ------------------------------------------------------------------ micro evolution
    def evolve(self, u, duration: float) -> np.ndarray:
        """Advance micro values ``u`` (n_patches, n_micro) by ``duration`` with the buffer ends frozen.

        ``max(1, round(substeps * duration/burst))`` steps of ``micro_scheme``, all
        patches in one stacked tridiagonal system per implicit stage.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (self.n_patches, self.n_micro):
            raise ValueError(f"u must have shape ({self.n_patches}, {self.n_micro}), got {u.shape}")
        duration = float(duration)
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError(f"duration must be finite and >= 0, got {duration!r}")
        if duration == 0:
            return u.copy()
        if self.burst_solver is not None:
            return self._advance_with_solver(u, duration)
        steps = max(1, int(round(self.substeps * duration / self.burst)))
        stepper = self._stepper
        if not math.isclose(duration / steps, stepper.tau, rel_tol=1e-12):
            stepper = DirichletStepper(self.bonds, self.micro_dx, duration / steps, self.micro_scheme, self.micro_solver)
        return stepper.run(u, steps)

    def _advance_with_solver(self, u: np.ndarray, duration: float) -> np.ndarray:
        """``burst_solver.advance`` with the contract checked: same shape, finite, patch ends unchanged."""
        out = np.asarray(self.burst_solver.advance(u.copy(), self.micro_grid, duration), dtype=np.float64)
        if out.shape != u.shape or not np.all(np.isfinite(out)):
            raise ValueError(f"burst_solver.advance must return finite values of shape {u.shape}, got shape {out.shape}")
        if not (np.array_equal(out[:, 0], u[:, 0]) and np.array_equal(out[:, -1], u[:, -1])):
            raise ValueError("burst_solver.advance must hold the first and last value of every patch (the boundary data)")
        return out

    @cached_property
    def _scratch(self) -> _Scratch:
        """Reused patch-sized work arrays of :meth:`time_derivative` (per instance; thread-safe)."""
        return _Scratch()

    @cached_property
    def _stepper(self) -> DirichletStepper:
        """Implicit stepper of step burst/substeps on all patches (factorised once, reused by every burst)."""
        return DirichletStepper(self.bonds, self.micro_dx, self.burst / self.substeps, self.micro_scheme, self.micro_solver)

    @property
    def work_per_estimate(self) -> int:
        """Micro grid points x micro steps of one burst over all patches."""
        return self.n_patches * self.n_micro * self.substeps

    def time_derivative(self, U) -> tuple[np.ndarray, int]:
        """Patch estimate of dU/dt (eq. (11)) at every macro node.

        Parameters
        ----------
        U : array_like, shape (macro_nodes,)
            Macro values, ends included (the Dirichlet values).

        Returns
        -------
        F : ndarray, shape (macro_nodes,)
            (restrict(evolve(lift(U), burst)) - U_i)/burst at interior nodes; 0 at the
            two Dirichlet ends (fixed values).
        work : int
            :attr:`work_per_estimate`.
        """
        U = self._check_U(U)
        F = np.zeros(self.macro_nodes)
        c = self.lift_coefficients(U)
        if self.burst_solver is not None:  # another detailed model: evolve the lifted values themselves
            u = self._advance_with_solver(self.lift(U), self.burst)
            F[1:-1] = (self.restrict(u) - U[1:-1]) / self.burst
            return F, self.work_per_estimate
        shape = (self.n_patches, self.n_micro)
        # patch-sized arrays come from the instance's scratch: no large allocation per burst
        with self._scratch.borrow(start=shape, rhs=shape) as (start, rhs):
            if self.deviation_form:  # v = u - p from v = 0 under dv/dt = L v + L p
                start.fill(0.0)
                self._lift_forcing(c, out=rhs)
                v = self._stepper.run(start, self.substeps, forcing=rhs, out=start)
                F[1:-1] = self.restrict(v) / self.burst
            else:  # = evolve(lift(U), burst): burst/substeps is the stepper's tau
                u = self._stepper.run(self._lift_into(c, start), self.substeps, out=start)
                F[1:-1] = (self.restrict(u) - U[1:-1]) / self.burst
        return F, self.work_per_estimate

    # ------------------------------------------------------------------ projective integration
    def integrate(
        self,
        U0,
        t_end: float,
        macro_dt: float = 1e-3,
        save_every: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> PatchTrajectory:
        """Projective integration of the macro values from ``U0`` over [0, t_end].

        Parameters
        ----------
        U0 : array_like, shape (macro_nodes,)
            Initial macro values (e.g. u0 at the nodes); the ends stay fixed.
        t_end : float
            Horizon; t_end/macro_dt must be an integer.
        macro_dt : float, default 1e-3
            Projective step (>= burst).
        save_every : int, default 1
            Keep the state every ``save_every`` macro steps, plus t = 0 and t_end.
        progress : callable, optional
            Called with the number of macro steps done after each step.

        Returns
        -------
        PatchTrajectory
            ``dUdt`` at a saved time is the estimate F at that state; the one at
            t_end costs one extra burst (included in ``work``).

        Notes
        -----
        forward_euler: U_{n+1} = U_n + dt F(U_n) (the authors'). heun:
        U* = U_n + dt F(U_n), U_{n+1} = U_n + dt (F(U_n) + F(U*))/2. Forward Euler on
        the central-difference system is stable for a* dt/dx_macro**2 <= 1/2
        (0.046 at the paper's values).
        """
        U = self._check_U(U0).copy()
        t_end = _positive(t_end, "t_end")
        macro_dt = _positive(macro_dt, "macro_dt")
        if macro_dt < self.burst:
            raise ValueError(f"macro_dt must be >= burst (projective steps), got macro_dt = {macro_dt!r}, burst = {self.burst!r}")
        n_steps = int(round(t_end / macro_dt))
        if n_steps < 1 or abs(n_steps * macro_dt - t_end) > 1e-9 * t_end:
            raise ValueError(f"t_end/macro_dt must be a positive integer, got t_end = {t_end!r}, macro_dt = {macro_dt!r}")
        if isinstance(save_every, bool) or not isinstance(save_every, Integral) or save_every < 1:
            raise ValueError(f"save_every must be an integer >= 1, got {save_every!r}")
        if progress is not None and not callable(progress):
            raise ValueError("progress must be callable or None")
        times, Us, Fs, work = [], [], [], 0
        for n in range(n_steps):
            F, w = self.time_derivative(U)
            work += w
            if n % save_every == 0:
                times.append(n * macro_dt)
                Us.append(U.copy())
                Fs.append(F)
            if self.time_stepper == "forward_euler":
                U = U + macro_dt * F
            else:
                F2, w = self.time_derivative(U + macro_dt * F)
                work += w
                U = U + 0.5 * macro_dt * (F + F2)
            if progress is not None:
                progress(n + 1)
        F, w = self.time_derivative(U)
        work += w
        times.append(n_steps * macro_dt)
        Us.append(U.copy())
        Fs.append(F)
        return PatchTrajectory(times=np.asarray(times), U=np.asarray(Us), dUdt=np.asarray(Fs), work=int(work))

    # ------------------------------------------------------------------ cost accounting
    def patch_work(self, t_end: float, macro_dt: float = 1e-3) -> int:
        """Micro grid-point x step updates of :meth:`integrate` over [0, t_end] (incl. the final estimate)."""
        n_steps = int(round(_positive(t_end, "t_end") / _positive(macro_dt, "macro_dt")))
        return (n_steps * TIME_STEPPERS[self.time_stepper] + 1) * self.work_per_estimate

    def full_resolution_work(self, t_end: float) -> int:
        """Updates of a full-resolution run on the same micro grid and micro step over [0, t_end].

        (1/dx + 1) nodes x t_end/(burst/substeps) steps.
        """
        points = int(round(1.0 / self.micro_dx)) + 1
        steps = int(round(_positive(t_end, "t_end") * self.substeps / self.burst))
        return points * steps

    def cost_ratio(self, t_end: float, macro_dt: float = 1e-3) -> float:
        """full_resolution_work / patch_work: the space-time saving (the paper claims ~1e4)."""
        return self.full_resolution_work(t_end) / self.patch_work(t_end, macro_dt)

    @property
    def space_fraction(self) -> float:
        """Fraction of [0, 1] simulated: n_patches H."""
        return self.n_patches * self.buffer

    def time_fraction(self, macro_dt: float = 1e-3) -> float:
        """Fraction of time simulated: bursts per step x burst/macro_dt."""
        return TIME_STEPPERS[self.time_stepper] * self.burst / _positive(macro_dt, "macro_dt")


def relative_derivative_error(scheme: PatchDynamics, U, a_star: float | None = None) -> tuple[np.ndarray, int]:
    """Relative error F_i/(a* D2_i) - 1 of the patch estimate at the interior nodes.

    Parameters
    ----------
    scheme : PatchDynamics
    U : array_like, shape (macro_nodes,)
        Macro values; D2_i = (U_{i+1} - 2 U_i + U_{i-1})/dx_macro**2 must not vanish.
    a_star : float, optional
        Default: :func:`cgflow.micro.heterodiffusion.effective_coefficient` of the
        scheme's coefficient.

    Returns
    -------
    err : ndarray, shape (n_patches,)
    work : int
        Cost of the estimate.

    Notes
    -----
    For a quadratic profile the central second difference is exact, so err is the
    error of the patch estimate itself (buffer, time stepping, lattice); REFERENCE
    §2 tabulates it against H.
    """
    if not isinstance(scheme, PatchDynamics):
        raise ValueError(f"scheme must be a PatchDynamics, got {type(scheme).__name__}")
    U = scheme._check_U(U)
    a = effective_coefficient(scheme.coefficient) if a_star is None else _positive(a_star, "a_star")
    d2 = (U[2:] - 2.0 * U[1:-1] + U[:-2]) / scheme.macro_dx**2
    if np.any(d2 == 0):
        raise ValueError("the central second difference of U vanishes at a patch; the relative error is undefined")
    F, work = scheme.time_derivative(U)
    return F[1:-1] / (a * d2) - 1.0, work


# ---------------------------------------------------------------------- buffer self-check
class BufferWarning(UserWarning):
    """The patch estimate still changes by more than the tolerance when the buffer widens 1.5x."""


#: Default relative tolerance of the buffer self-check (``patch_dynamics.buffer_tolerance``).
BUFFER_TOLERANCE = 1e-3

#: Growth factor between rungs of the buffer ladder, and between H and its comparison width.
BUFFER_GROWTH = 1.5


def _even_width(width: float, micro_dx: float) -> float:
    """The smallest even multiple of ``micro_dx`` that is >= ``width`` (to 1e-9 relative)."""
    k = math.ceil(width / micro_dx * (1 - 1e-9))
    k += k % 2
    return max(k, 2) * micro_dx


def buffer_ladder(tooth: float, micro_dx: float, macro_nodes: int) -> tuple[float, ...]:
    """Admissible patch widths H_0 < H_1 < ... < macro spacing, H_{k+1} ~ 1.5 H_k.

    H_0 is the smallest even multiple of ``micro_dx`` >= 2 ``tooth`` (buffers of
    half a tooth on each side); every rung is an even multiple of ``micro_dx`` (the
    patch is centred on a micro node) and narrower than 1/(macro_nodes - 1).
    """
    tooth, micro_dx = _positive(tooth, "tooth"), _positive(micro_dx, "micro_dx")
    spacing = 1.0 / (macro_nodes - 1)
    widths, w = [], _even_width(2.0 * tooth, micro_dx)
    while w < spacing * (1 - 1e-12):
        widths.append(w)
        w = _even_width(BUFFER_GROWTH * w, micro_dx)
    return tuple(widths)


def _test_profile(scheme: PatchDynamics) -> np.ndarray:
    """U = x**2: D2 = 2 exactly at every node (order 2 and 4 liftings), D1/D2 = x_i in [dx_macro, 1 - dx_macro]."""
    return scheme.x**2


def _relative_change(F: np.ndarray, F_wide: np.ndarray) -> np.ndarray:
    """|F - F_wide|/|F_wide| at the interior nodes."""
    return np.abs(F[1:-1] - F_wide[1:-1]) / np.abs(F_wide[1:-1])


@dataclass(frozen=True)
class BufferCheck:
    """A measured estimate of the buffer error of the patch estimate, stored beside the result.

    Attributes
    ----------
    buffer : float
        The patch width H used.
    mode : {"auto", "explicit"}
        Chosen by :func:`select_buffer` or given by the user (checked by :func:`check_buffer`).
    tolerance : float
        Relative tolerance of the check.
    compared_with : float
        The wider width H' (~1.5 H) the estimate at H was compared with (NaN if none fits).
    error : float
        max over interior nodes of |F(H) - F(H')|/|F(H')| on the test profile U = x**2
        (NaN if no wider admissible width exists).
    node_error : tuple of float
        The same per interior node.
    ladder, ladder_change : tuple of float
        Widths evaluated (in order) and, for each but the last, the max relative
        change of the estimate to the next width.
    work : int
        Micro grid-point x micro-step updates spent by the check.
    """

    buffer: float
    mode: str
    tolerance: float
    compared_with: float
    error: float
    node_error: tuple[float, ...]
    ladder: tuple[float, ...]
    ladder_change: tuple[float, ...]
    work: int

    @property
    def within_tolerance(self) -> bool:
        return bool(self.error < self.tolerance)

    def attrs(self) -> dict:
        """Flat attrs for a stored dataset (``buffer_*`` keys)."""
        return {
            "buffer": self.buffer,
            "buffer_mode": self.mode,
            "buffer_tolerance": self.tolerance,
            "buffer_compared_with": self.compared_with,
            "buffer_error_estimate": self.error,
            "buffer_error_estimate_per_node": list(self.node_error),
            "buffer_within_tolerance": int(self.within_tolerance),
            "buffer_ladder": list(self.ladder),
            "buffer_ladder_change": list(self.ladder_change),
            "buffer_check_work": self.work,
            "buffer_check_description": (
                "max over interior nodes of |F(H) - F(H')|/|F(H')|, F the patch estimate (eq. 11) of U = x**2 "
                "(D2 = 2 exact), H' the next ladder width (~1.5 H); ladder_change: the same for each rung tried"
            ),
        }

    def message(self) -> str:
        return (
            f"patch_dynamics.buffer = {self.buffer:g}: the patch estimate of U = x**2 changes by {self.error:.2e} "
            f"(relative, max over nodes) when the buffer widens to {self.compared_with:g}, more than "
            f"patch_dynamics.buffer_tolerance = {self.tolerance:g}; the buffer biases dU/dt by about that much "
            f"(use patch_dynamics.buffer: auto, or a wider buffer)"
        )


def _tolerance(tolerance) -> float:
    return _positive(tolerance, "buffer_tolerance")


def check_buffer(scheme: PatchDynamics, tolerance: float = BUFFER_TOLERANCE, warn: bool = True) -> BufferCheck:
    """Estimate the buffer error of an explicit width: the estimate at H against H' ~ 1.5 H.

    Two patch estimates (one at H, one at H'), i.e. about 2.5 bursts at H. H' is
    the smallest even multiple of micro_dx >= 1.5 H, or the widest admissible
    width below the macro spacing; if none is wider than H the error is NaN (not
    checkable, no warning). Emits :class:`BufferWarning` when the error exceeds
    ``tolerance`` (and ``warn``).
    """
    if not isinstance(scheme, PatchDynamics):
        raise ValueError(f"scheme must be a PatchDynamics, got {type(scheme).__name__}")
    tol = _tolerance(tolerance)
    H, dx = scheme.buffer, scheme.micro_dx
    wide = _even_width(BUFFER_GROWTH * H, dx)
    if not wide < scheme.macro_dx * (1 - 1e-12):
        wide = (math.ceil(scheme.macro_dx / dx * (1 - 1e-9)) - 1) * dx
        wide -= (round(wide / dx) % 2) * dx
    U = _test_profile(scheme)
    if wide <= H * (1 + 1e-12):
        return BufferCheck(H, "explicit", tol, math.nan, math.nan, (math.nan,) * scheme.n_patches, (H,), (), 0)
    F, w1 = scheme.time_derivative(U)
    F_wide, w2 = replace(scheme, buffer=wide).time_derivative(U)
    change = _relative_change(F, F_wide)
    err = float(change.max())
    check = BufferCheck(H, "explicit", tol, wide, err, tuple(map(float, change)), (H, wide), (err,), int(w1 + w2))
    if warn and not err < tol:
        warnings.warn(check.message(), BufferWarning, stacklevel=2)
    return check


def select_buffer(scheme: PatchDynamics, tolerance: float = BUFFER_TOLERANCE, warn: bool = True) -> BufferCheck:
    """``buffer: auto``: the narrowest rung of :func:`buffer_ladder` whose estimate is stable to ``tolerance``.

    Walks the ladder H_0 < H_1 < ... (x1.5 per rung) evaluating the patch estimate
    F of the test profile U = x**2 once per rung, and returns the first H_k with
    max_i |F_k - F_{k+1}|/|F_{k+1}| < tolerance at every interior node i. All
    other parameters (tooth, burst, substeps, scheme, lifting) are those of
    ``scheme``, so only the buffer varies. H_0 itself is never chosen (its
    comparison with H_1 has no preceding rung to show the change is decaying: at
    such narrow buffers F is far off and two rungs can agree by accident; the
    changes on the paper's ladder run 4e-2, 2, 3e3, 1, 11, ... before they decay).
    If no rung passes, the widest
    admissible width is returned with its last measured change and a
    :class:`BufferWarning` (when ``warn``).

    Cost: one patch estimate per rung up to 1.5 x the chosen width; the widths
    grow geometrically, so the total is sum_k H_k <= 3 x 1.5 H = 4.5 bursts at the
    chosen H (lattice set-up and factorisation included once per rung).
    """
    if not isinstance(scheme, PatchDynamics):
        raise ValueError(f"scheme must be a PatchDynamics, got {type(scheme).__name__}")
    tol = _tolerance(tolerance)
    ladder = buffer_ladder(scheme.tooth, scheme.micro_dx, scheme.macro_nodes)
    U = _test_profile(scheme)
    tried, changes, work = [], [], 0
    prev = None
    chosen = None
    for H in ladder:
        F, w = replace(scheme, buffer=H).time_derivative(U)
        work += w
        tried.append(H)
        if prev is not None:
            change = _relative_change(prev, F)
            changes.append(float(change.max()))
            if changes[-1] < tol and len(changes) >= 2:
                chosen = (tried[-2], H, change)
                break
        prev = F
    if chosen is None:  # no rung passed: the widest one, with the last change measured
        if len(tried) < 2:
            H = tried[-1]
            return BufferCheck(H, "auto", tol, math.nan, math.nan, (math.nan,) * scheme.n_patches, tuple(tried), (), int(work))
        chosen = (tried[-1], tried[-1], change)
        err = changes[-1]
        check = BufferCheck(tried[-1], "auto", tol, tried[-1], err, tuple(map(float, change)), tuple(tried), tuple(changes), int(work))
        if warn:
            warnings.warn(check.message() + "; no admissible buffer meets the tolerance", BufferWarning, stacklevel=2)
        return check
    H, wide, change = chosen
    return BufferCheck(H, "auto", tol, wide, changes[-1], tuple(map(float, change)), tuple(tried), tuple(changes), int(work))
