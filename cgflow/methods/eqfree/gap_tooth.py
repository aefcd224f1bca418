"""Two-dimensional gap-tooth (patch) scheme for the 3-periodic lattice (seed 001 §3, §5.2).

Geometry (seed §5.2; the authors' ``generate_data_2d.m`` with ``configPatches2``).
N x N square patches on the periodic square [0, 2 pi)**2, centred at
X_I = (I + 1/2) DX, Y_J = (J + 1/2) DX, DX = 2 pi/N. Each patch is a window of
(n + 2) x (n + 2) lattice points of spacing h, at X_I + (l - (n+1)/2) h,
l = 0..n+1: the n x n interior points are unknowns, the points l = 0 and
l = n + 1 are edge values set by the coupling (corners are never used by the
five-point stencil). The paper uses N = 16, n = 3 (one period of the medium),
h = 2 pi/480, H = (n + 1) h = 4h = 0.0524: the patches cover
(H/DX)**2 ~ 1.8 % of the square (9/900 = 1 % counted by interior points).
Inside a patch the interior points obey seed eq. (25)
(:func:`cgflow.micro.lattice2d.lattice_rhs`) with the patch's window of the medium.

Coupling: "edgy" interpolation (Bunder, Kevrekidis & Roberts 2021, seed ref.
[29]; EquationFreeGit ``patchEdgeInt2`` with ``EdgyInt = 1``). The value on the
right edge of patch I, at x = X_I + (n+1) h/2, is the macroscale interpolant,
along the row of patches through I, of the *left next-to-edge* values
(x = X_I' - (n-1) h/2), evaluated a shift rho = n h/DX patches further:

    u_right(I) = sum_I' S(rho)[I, I'] u_left-next(I'),  u_left(I) = sum_I' S(-rho)[I, I'] u_right-next(I'),

and likewise in y. Because the interior spans a whole number of periods
(n = 3 p), an edge point and the next-to-edge points it is interpolated from
sit at the same phase of the micro-structure, so no microscale corrector enters
the coupling. Two interpolations S are offered (:func:`interpolation_matrix`):

* ``"spectral"`` (the authors' choice): trigonometric interpolation on the
  N-periodic row of patches; S(rho) = F^{-1} diag(e^{2 pi i k rho/N}) F, the
  zig-zag mode (N even) as a cosine. It shifts every resolved macroscale
  wave exactly, so a Bloch mode e^{i k.x} p(x) (p 3-periodic, |k_x|, |k_y| < N/2)
  of the full lattice of spacing h, restricted to the patches, is an *exact*
  eigenvector of the scheme: the slow eigenvalues of the scheme equal the
  lattice's (:func:`cgflow.micro.lattice2d.lattice_decay_rate` with n = 2 pi/h),
  which differ from the homogenized k.A.k by O(h**2 |k|**4) (5e-5 for sin y at
  h = 2 pi/480).
* ``"polynomial"`` of even ``order`` p: Lagrange interpolation through the
  p + 1 patches I - p/2..I + p/2 (seed eq. (8); ``ordCC = p``), exact for
  macroscale polynomials of degree p. The slow rates then carry an
  interpolation error that falls quickly with p; for the paper's geometry the
  sin y rate is off by 0.27, 1e-2, 3e-4, 1e-5 for p = 2, 4, 6, 8, so p >= 6 is
  needed for the 1e-3 target.

Both S are circulant, with unit row and column sums and S(-rho) = S(rho)^T.
With the period fitting the interior this makes the Jacobian symmetric (the
"self-adjoint coupling" of ref. [29]) and the total interior mass
sum_{patches, interior} u is exactly conserved (the right-edge and left-edge bonds
carry the same conductivity and the coupling fluxes cancel in the sum over a row
of patches). Centre-value coupling (the edge value interpolated from patch
centres, the ``EdgyInt = 0`` option of the toolbox) is not offered: the centre
of a patch sits at one phase of the medium and the edges at others, so the
interpolated edge values miss the O(h) corrector differences. For the paper's
patches it gives a non-symmetric Jacobian whose slowest non-zero rate is
1.136 instead of 1.265, and rates that change with the window of the medium
that the patch holds.

Restriction = average over the interior points (seed eq. (7)); the macroscale
time derivative (the dU/dt that the networks regress) is the restriction of
the micro right-hand side. No projective integration: the whole trajectory is
integrated with a stiff solver (seed §5.2, "gap-tooth scheme").

Everything is vectorised numpy/scipy; no I/O.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp
from scipy.sparse.linalg import splu

from ...micro import lattice2d

__all__ = ["COUPLINGS", "GapTooth2D", "GapToothSolution", "interpolation_matrix", "lagrange_weights"]

COUPLINGS = ("spectral", "polynomial")


# ----------------------------------------------------------------------------- interpolation
def lagrange_weights(order: int, shift: float) -> np.ndarray:
    """Weights of the degree-``order`` Lagrange interpolant through offsets -order/2..order/2.

    Parameters
    ----------
    order : int
        Even degree p >= 2.
    shift : float
        Evaluation point, in units of the node spacing.

    Returns
    -------
    ndarray, shape (order + 1,)
        w_m = prod_{l != m} (shift - l)/(m - l), m = -p/2..p/2; sum(w) = 1 and
        w_m(-shift) = w_{-m}(shift).
    """
    if isinstance(order, bool) or not isinstance(order, Integral) or order < 2 or order % 2:
        raise ValueError(f"order must be an even integer >= 2, got {order!r}")
    m = np.arange(-(order // 2), order // 2 + 1)
    diff = m[:, None] - m[None, :]
    np.fill_diagonal(diff, 1)
    num = shift - m[None, :] * np.ones((m.size, 1))
    np.fill_diagonal(num, 1.0)
    return np.prod(num, axis=1) / np.prod(diff, axis=1)


def interpolation_matrix(n: int, shift: float, coupling: str = "spectral", order: int | None = None) -> np.ndarray:
    """Circulant S with (S v)[I] = interpolant of the n-periodic sequence v at I + shift.

    Parameters
    ----------
    n : int
        Period (number of patches along a direction), >= 1.
    shift : float
        Shift in units of the patch spacing.
    coupling : {"spectral", "polynomial"}
    order : int, optional
        Even degree for ``"polynomial"`` (order + 1 <= n); ignored for ``"spectral"``.

    Returns
    -------
    ndarray, shape (n, n)

    Notes
    -----
    Spectral: S = Re F^{-1} diag(exp(2 pi i k shift/n)) F with k = 0..n/2 (rfft
    bins). The zig-zag bin k = n/2 of even n keeps only its real part,
    cos(pi shift), i.e. it is interpolated as a cosine (as ``patchEdgeInt2``).
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    shift = float(shift)
    if not np.isfinite(shift):
        raise ValueError("shift must be finite")
    if coupling == "spectral":
        k = np.arange(n // 2 + 1)
        phase = np.exp(2j * np.pi * k * shift / n)
        return np.fft.irfft(np.fft.rfft(np.eye(n), axis=0) * phase[:, None], n=n, axis=0)
    if coupling == "polynomial":
        w = lagrange_weights(order, shift)
        if order + 1 > n:
            raise ValueError(f"order {order} needs at least {order + 1} patches, got {n}")
        S = np.zeros((n, n))
        rows = np.arange(n)
        for m, wm in zip(range(-(order // 2), order // 2 + 1), w):
            S[rows, (rows + m) % n] += wm
        return S
    raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class GapToothSolution:
    """Output of :meth:`GapTooth2D.integrate`.

    Attributes
    ----------
    times : ndarray, shape (n_t,)
    U, dUdt : ndarray, shape (n_t, N, N)
        Patch averages and their time derivatives, axes (time, X index, Y index).
    X, Y : ndarray, shape (N,)
        Patch centres.
    nfev, njev, nlu : int
        Right-hand-side evaluations, Jacobian evaluations and LU factorisations of
        the BDF solver.
    work : int
        Micro-point updates, nfev x (number of interior micro points) (0 for the
        exact propagator, which takes no time steps). The Jacobian is assembled
        once (:meth:`GapTooth2D.jacobian`); the nlu sparse LU factorisations are
        extra and dominate the BDF cost.
    states : ndarray or None, shape (n_t, N, N, n, n)
        The interior micro fields, if requested.
    """

    times: np.ndarray
    U: np.ndarray
    dUdt: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    nfev: int
    njev: int
    nlu: int
    work: int
    states: np.ndarray | None = None


# ----------------------------------------------------------------------------- the scheme
@dataclass(frozen=True)
class GapTooth2D:
    """Gap-tooth scheme for seed eq. (25) on N x N patches (module docstring).

    Parameters
    ----------
    patches : int, default 16
        N, patches per direction on [0, 2 pi).
    h : float, default 2 pi/480
        Micro lattice spacing.
    patch_points : int, default 5
        Lattice points per patch side, edges included: n = patch_points - 2
        interior points (:attr:`interior`), a multiple of the period 3 (the edgy
        coupling needs whole periods). Patch side H = (patch_points - 1) h < 2 pi/N.
    coupling : {"spectral", "polynomial"}, default "spectral"
    order : int, default 6
        Even interpolation degree of ``"polynomial"`` coupling (validated, unused
        by ``"spectral"``). Degree 6 is the lowest that meets 1e-3 in the slow rates
        for the paper's geometry (module docstring).
    convention : {"paper", "same-site"}, default "paper"
        Layout of the eq. (26) tables (:mod:`cgflow.micro.lattice2d`).
    cell_offset : (int, int), default (0, 2)
        Lattice indices (i, j) (mod 3) that the patch corner point l = 0 takes in
        :func:`~cgflow.micro.lattice2d.coefficients_at`: the bond l -> l + 1 of patch
        row m carries kx at (l + i0, m + j0). Every patch holds the same window of the
        medium. (0, 2) with the ``"paper"`` convention is the patch of the authors'
        code (``cx``, ``cy`` of ``generate_data_2d.m``); the slow rates do not depend on it.

    Notes
    -----
    The state is the C-order ravel of the interior array u[I, J, a, b] of shape
    (N, N, n, n): I, J patch indices (x, y), a, b interior point indices (x, y),
    at x = X_I + (a + 1 - (n+1)/2) h, y = Y_J + (b + 1 - (n+1)/2) h.
    """

    patches: int = 16
    h: float = 2.0 * np.pi / 480.0
    patch_points: int = 5
    coupling: str = "spectral"
    order: int = 6
    convention: str = "paper"
    cell_offset: tuple[int, int] = (0, 2)

    def __post_init__(self):
        N, p = self.patches, self.patch_points
        if isinstance(N, bool) or not isinstance(N, Integral) or N < 3:
            raise ValueError(f"patches must be an integer >= 3, got {N!r}")
        if isinstance(p, bool) or not isinstance(p, Integral) or p < 2 + lattice2d.PERIOD or (p - 2) % lattice2d.PERIOD:
            raise ValueError(
                f"patch_points - 2 (the interior points) must be a positive multiple of {lattice2d.PERIOD}, got {p!r}"
            )
        if not isinstance(self.h, Real) or not np.isfinite(self.h) or self.h <= 0:
            raise ValueError(f"h must be finite and > 0, got {self.h!r}")
        if (p - 1) * self.h >= 2.0 * np.pi / N:
            raise ValueError(f"patch side (patch_points - 1) h = {(p - 1) * self.h:.4g} must be < 2 pi/patches")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {self.coupling!r}; expected one of {COUPLINGS}")
        lagrange_weights(self.order, 0.0)  # validates the order
        if self.coupling == "polynomial" and self.order + 1 > N:
            raise ValueError(f"order {self.order} needs at least {self.order + 1} patches, got {N}")
        lattice2d._check_convention(self.convention)
        off = tuple(self.cell_offset)
        if len(off) != 2 or not all(isinstance(o, Integral) and not isinstance(o, bool) for o in off):
            raise ValueError(f"cell_offset must be a pair of integers, got {self.cell_offset!r}")
        object.__setattr__(self, "cell_offset", (int(off[0]), int(off[1])))

    # ------------------------------------------------------------------ geometry
    @property
    def interior(self) -> int:
        """n = patch_points - 2, interior points per patch side."""
        return self.patch_points - 2

    @property
    def spacing(self) -> float:
        """Patch spacing DX = 2 pi/N."""
        return 2.0 * np.pi / self.patches

    @property
    def shift(self) -> float:
        """Coupling shift rho = n h/DX (in patch spacings), the next-to-edge -> edge distance."""
        return self.interior * self.h / self.spacing

    @property
    def centres(self) -> np.ndarray:
        """Patch centres X_I = (I + 1/2) DX, shape (N,)."""
        return (np.arange(self.patches) + 0.5) * self.spacing

    @property
    def state_shape(self) -> tuple[int, int, int, int]:
        return (self.patches, self.patches, self.interior, self.interior)

    @property
    def size(self) -> int:
        """Number of unknowns N**2 n**2."""
        return int(np.prod(self.state_shape))

    @property
    def offsets(self) -> np.ndarray:
        """Interior point offsets from the patch centre, (a + 1 - (n+1)/2) h, shape (n,)."""
        return (np.arange(1, self.interior + 1) - 0.5 * (self.interior + 1)) * self.h

    def micro_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the interior points, x[I, a] and y[J, b], each of shape (N, n)."""
        x = self.centres[:, None] + self.offsets[None, :]
        return x, x.copy()

    @functools.cached_property
    def _conductivities(self) -> tuple[np.ndarray, np.ndarray]:
        """Patch-local kx[l, b] (bond l -> l+1, l = 0..n; interior row b) and ky[a, l]."""
        n = self.interior
        i0, j0 = self.cell_offset
        bond = np.arange(n + 1)
        row = np.arange(1, n + 1)
        kx, _ = lattice2d.coefficients_at(bond[:, None] + i0, row[None, :] + j0, self.convention)
        _, ky = lattice2d.coefficients_at(row[:, None] + i0, bond[None, :] + j0, self.convention)
        return np.ascontiguousarray(kx), np.ascontiguousarray(ky)

    @functools.cached_property
    def _shifts(self) -> tuple[np.ndarray, np.ndarray]:
        """S(+rho) and S(-rho) along a row of patches."""
        return (
            interpolation_matrix(self.patches, self.shift, self.coupling, self.order),
            interpolation_matrix(self.patches, -self.shift, self.coupling, self.order),
        )

    # ------------------------------------------------------------------ dynamics
    def _as_state(self, state) -> np.ndarray:
        u = np.asarray(state, dtype=np.float64)
        if u.size != self.size:
            raise ValueError(f"state must have {self.size} entries {self.state_shape}, got shape {u.shape}")
        return u.reshape(self.state_shape)

    def with_edges(self, state) -> np.ndarray:
        """Patch fields with the coupled edge values filled in.

        Parameters
        ----------
        state : array_like, size N**2 n**2

        Returns
        -------
        ndarray, shape (N, N, n + 2, n + 2)
            Interior values, edge values from the coupling, NaN at the unused corners.
        """
        u = self._as_state(state)
        N, n = self.patches, self.interior
        Sp, Sm = self._shifts
        full = np.full((N, N, n + 2, n + 2), np.nan)
        full[:, :, 1:-1, 1:-1] = u
        # x edges: interpolate along I (axis 0) at fixed (J, row b)
        full[:, :, -1, 1:-1] = np.tensordot(Sp, u[:, :, 0, :], axes=(1, 0))
        full[:, :, 0, 1:-1] = np.tensordot(Sm, u[:, :, -1, :], axes=(1, 0))
        # y edges: interpolate along J (axis 1) at fixed (I, column a)
        full[:, :, 1:-1, -1] = np.einsum("jk,ika->ija", Sp, u[:, :, :, 0])
        full[:, :, 1:-1, 0] = np.einsum("jk,ika->ija", Sm, u[:, :, :, -1])
        return full

    def rhs(self, t: float, state) -> np.ndarray:
        """Time derivative of the interior unknowns (seed eq. (25) in every patch).

        Parameters
        ----------
        t : float
            Time (unused: the system is autonomous).
        state : array_like, size N**2 n**2

        Returns
        -------
        ndarray, shape (N**2 n**2,)
        """
        full = self.with_edges(state)
        kx, ky = self._conductivities
        fx = kx * (full[:, :, 1:, 1:-1] - full[:, :, :-1, 1:-1])  # (N, N, n+1, n) bond fluxes
        fy = ky * (full[:, :, 1:-1, 1:] - full[:, :, 1:-1, :-1])  # (N, N, n, n+1)
        du = (fx[:, :, 1:, :] - fx[:, :, :-1, :] + fy[:, :, :, 1:] - fy[:, :, :, :-1]) / self.h**2
        return du.ravel()

    def jacobian(self) -> sparse.csr_matrix:
        """The (constant) Jacobian d rhs/d state, assembled independently of :meth:`rhs`.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (size, size)
            J = L P: P (sparse) maps the interior unknowns to all patch points
            (identity inside, the coupling rows S(+-rho) on the edges), L applies the
            five-point stencil of eq. (25) at the interior points. Symmetric. Cached;
            do not modify it in place.
        """
        return self._jacobian

    @functools.cached_property
    def _jacobian(self) -> sparse.csr_matrix:
        N, n = self.patches, self.interior
        m = n + 2
        kx, ky = self._conductivities
        Sp, Sm = self._shifts
        full_idx = np.arange(N * N * m * m).reshape(N, N, m, m)
        int_idx = np.arange(self.size).reshape(self.state_shape)
        I, J = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")

        # P: full points <- interior unknowns (identity), edge points <- coupling rows
        rows = [full_idx[:, :, 1:-1, 1:-1].ravel()]
        cols = [int_idx.ravel()]
        vals = [np.ones(self.size)]
        K = np.arange(N)[None, None, None, :]  # source patch along the interpolation line
        r = np.arange(n)[None, None, :, None]  # point along the edge
        shape = (N, N, n, N)  # (I, J, point along edge, source patch K)
        for S, edge, src in ((Sp, m - 1, 0), (Sm, 0, n - 1)):
            # x edges of patch (I, J), row b: sum_K S[I, K] u[K, J, src, b]
            rows.append(np.broadcast_to(full_idx[:, :, edge, 1:-1][..., None], shape).ravel())
            cols.append(np.broadcast_to(int_idx[K, J[:, :, None, None], src, r], shape).ravel())
            vals.append(np.broadcast_to(S[I][:, :, None, :], shape).ravel())
            # y edges of patch (I, J), column a: sum_K S[J, K] u[I, K, a, src]
            rows.append(np.broadcast_to(full_idx[:, :, 1:-1, edge][..., None], shape).ravel())
            cols.append(np.broadcast_to(int_idx[I[:, :, None, None], K, r, src], shape).ravel())
            vals.append(np.broadcast_to(S[J][:, :, None, :], shape).ravel())
        rows, cols, vals = (np.concatenate(v) for v in (rows, cols, vals))
        keep = vals != 0.0
        P = sparse.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(full_idx.size, self.size))

        # L: interior rows <- full points, five-point stencil with the patch-local bonds
        a = np.arange(1, n + 1)
        centre = full_idx[:, :, 1:-1, 1:-1]
        entries = []
        for nb, w in (
            (full_idx[:, :, 2:, 1:-1], kx[a, :]),  # right neighbour, bond a -> a+1
            (full_idx[:, :, :-2, 1:-1], kx[a - 1, :]),  # left neighbour, bond a-1 -> a
            (full_idx[:, :, 1:-1, 2:], ky[:, a]),
            (full_idx[:, :, 1:-1, :-2], ky[:, a - 1]),
        ):
            wb = np.broadcast_to(w, centre.shape)
            entries.append((int_idx.ravel(), nb.ravel(), wb.ravel()))
            entries.append((int_idx.ravel(), centre.ravel(), -wb.ravel()))
        rows, cols, vals = (np.concatenate([e[k] for e in entries]) for k in range(3))
        L = sparse.csr_matrix((vals / self.h**2, (rows, cols)), shape=(self.size, full_idx.size))
        return (L @ P).tocsr()

    # ------------------------------------------------------------------ lifting and restriction
    def restrict(self, state) -> np.ndarray:
        """Patch averages over the interior points (seed eq. (7)), shape (N, N) or (..., N, N).

        Accepts one state (size N**2 n**2) or an array of shape (..., N, N, n, n).
        """
        u = np.asarray(state, dtype=np.float64)
        if u.shape[-4:] != self.state_shape:
            u = self._as_state(u)
        return u.mean(axis=(-2, -1))

    def time_derivative(self, state) -> np.ndarray:
        """Macroscale dU/dt = restriction of the micro right-hand side, shape (N, N)."""
        return self.restrict(self.rhs(0.0, state))

    def lift(self, initial) -> np.ndarray:
        """Interior micro values from a macroscale field or a function.

        Parameters
        ----------
        initial : array_like of shape (N, N), or callable
            * (N, N) patch averages U: trigonometric interpolation of U (periodic,
              zig-zag modes as cosines) to the interior points, then each patch is
              shifted by a constant so that ``restrict(lift(U)) == U``.
            * callable f(x, y) (vectorised, e.g.
              :class:`~cgflow.micro.lattice2d.FourierModes2D`): f evaluated at the
              interior points (as the authors initialise their patches).

        Returns
        -------
        ndarray, shape (N**2 n**2,)
            The state vector.
        """
        N = self.patches
        if callable(initial):
            x, y = self.micro_coordinates()
            vals = np.asarray(initial(x[:, None, :, None], y[None, :, None, :]), dtype=np.float64)
            vals = np.array(np.broadcast_to(vals, self.state_shape))  # own, writable copy
            if not np.all(np.isfinite(vals)):
                raise ValueError("the initial function returned non-finite values")
            return vals.ravel()
        U = np.asarray(initial, dtype=np.float64)
        if U.shape != (N, N) or not np.all(np.isfinite(U)):
            raise ValueError(f"a macroscale field must be a finite ({N}, {N}) array, got shape {U.shape}")
        shifts = self.offsets / self.spacing
        S = np.stack([interpolation_matrix(N, s) for s in shifts])  # (n, N, N)
        u = np.einsum("aik,bjl,kl->ijab", S, S, U)
        u += (U - u.mean(axis=(-2, -1)))[:, :, None, None]
        return u.ravel()

    # ------------------------------------------------------------------ integration and spectra
    @functools.cached_property
    def _blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-decomposition of the scheme in each macroscale wavenumber sector.

        The scheme commutes with translations by whole patches (identical patches,
        circulant coupling), so for y[P] = e^{2 pi i k.P/N} v (P = (I, J)),
        J y = e^{2 pi i k.P/N} B_k v with B_k = sum_d J_{0,d} e^{2 pi i k.d/N}, J_{0,d} the
        n**2 x n**2 block coupling patch 0 to patch d. B_k is Hermitian (J is
        symmetric). Returns eigenvalues mu[k1, k2, :] (ascending, <= 0 up to
        round-off) and eigenvectors V[k1, k2, :, :] (columns), k in FFT order.
        """
        N, n2 = self.patches, self.interior**2
        J0 = self.jacobian()[:n2].toarray().reshape(n2, N, N, n2)  # [a', d1, d2, a]
        B = N * N * np.fft.ifft2(J0.transpose(1, 2, 0, 3), axes=(0, 1))  # [k1, k2, a', a]
        B = 0.5 * (B + np.conj(np.swapaxes(B, -1, -2)))  # symmetric up to round-off
        return np.linalg.eigh(B)

    def mode_rates(self, mode) -> np.ndarray:
        """All decay rates of the scheme in the sector of macroscale wavevector ``mode``.

        Parameters
        ----------
        mode : (int, int)
            Wavevector k on [0, 2 pi)**2 (taken modulo N).

        Returns
        -------
        ndarray, shape (n**2,)
            Ascending rates -mu of B_k (:attr:`_blocks`): the first is the slow
            (macroscale) rate, the others are fast O(1/h**2) sub-patch modes. For
            sin(k.x) the sectors k and -k have the same rates.
        """
        k = np.asarray(mode)
        if k.shape != (2,) or not np.issubdtype(k.dtype, np.integer):
            raise ValueError(f"mode must be a pair of integers, got {mode!r}")
        mu, _ = self._blocks
        return -mu[k[0] % self.patches, k[1] % self.patches][::-1]

    def _initial_state(self, initial) -> np.ndarray:
        if callable(initial):
            return self.lift(initial)
        arr = np.asarray(initial, dtype=np.float64)
        if arr.shape == (self.patches, self.patches):
            return self.lift(arr)
        return self._as_state(arr).ravel().copy()

    def integrate(
        self,
        initial,
        times,
        rtol: float = 1e-6,
        atol: float = 1e-9,
        method: str = "BDF",
        keep_states: bool = False,
    ) -> GapToothSolution:
        """Integrate the scheme from ``times[0]`` and report it at ``times``.

        Parameters
        ----------
        initial : state vector, (N, N) macroscale field, or callable f(x, y)
            A state (size N**2 n**2) is used as is; otherwise :meth:`lift`.
        times : array_like, 1-D, strictly increasing, length >= 2
            Output times; integration runs from times[0] to times[-1].
        rtol, atol : float
            Tolerances of the BDF solver.
        method : {"BDF", "exact"}, default "BDF"
            * ``"BDF"``: ``scipy.integrate.solve_ivp(method="BDF")`` on the micro
              unknowns with :meth:`rhs` and the sparse :meth:`jacobian`. The spectral
              coupling links every patch to its whole row and column of patches, so
              the sparse LU of I - c J fills in (~2e6 nonzeros for the paper's 2304
              unknowns): the LU factorisations dominate the cost.
            * ``"exact"``: the exact propagator exp((t - t0) J) y0, applied in the
              macroscale Fourier basis where J is block diagonal (:meth:`mode_rates`);
              no time stepping, exact to round-off, tolerances unused.
        keep_states : bool, default False
            Also return the interior micro fields.

        Returns
        -------
        GapToothSolution
            U and dUdt (restriction of J y, i.e. of :meth:`rhs`) at ``times``. For
            ``"exact"`` nfev = njev = nlu = 0 and work = 0 (no micro time steps).
        """
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or times.size < 2 or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
            raise ValueError("times must be a finite, strictly increasing 1-D array of length >= 2")
        if not (rtol > 0 and atol > 0):
            raise ValueError("rtol and atol must be > 0")
        y0 = self._initial_state(initial)
        jac = self.jacobian()
        nfev = njev = nlu = 0
        if method == "BDF":
            sol = solve_ivp(
                self.rhs, (times[0], times[-1]), y0, method="BDF", t_eval=times, jac=jac, rtol=rtol, atol=atol
            )
            if not sol.success:
                raise RuntimeError(f"solve_ivp failed: {sol.message}")
            flat = sol.y.T
            nfev, njev, nlu = int(sol.nfev), int(sol.njev), int(sol.nlu)
        elif method == "exact":
            N, n2 = self.patches, self.interior**2
            mu, V = self._blocks
            c = np.einsum("xyba,xyb->xya", np.conj(V), np.fft.fft2(y0.reshape(N, N, n2), axes=(0, 1)))
            growth = np.exp(mu[None] * (times - times[0])[:, None, None, None])  # (t, k1, k2, mode)
            Yhat = np.einsum("xyab,txyb->txya", V, growth * c[None])
            flat = np.fft.ifft2(Yhat, axes=(1, 2)).real.reshape(times.size, -1)
        else:
            raise ValueError(f"unknown method {method!r}; expected 'BDF' or 'exact'")
        states = flat.reshape((times.size,) + self.state_shape)
        dU = (flat @ jac.T).reshape(states.shape).mean(axis=(-2, -1))
        return GapToothSolution(
            times=times,
            U=states.mean(axis=(-2, -1)),
            dUdt=dU,
            X=self.centres,
            Y=self.centres.copy(),
            nfev=nfev,
            njev=njev,
            nlu=nlu,
            work=nfev * self.size,
            states=states if keep_states else None,
        )

    def decay_rates(self, modes=((1, 0), (0, 1), (1, 1), (1, -1)), shift: float = 1.0, tol: float = 1e-13):
        """Decay rates of the scheme's slow eigenmodes of macroscopic shape sin(k.x).

        Parameters
        ----------
        modes : sequence of (int, int)
            Wavevectors k, |k_x|, |k_y| < N/2; the defaults are sin x, sin y,
            sin(x + y), sin(x - y).
        shift : float, default 1
            sigma > 0 of the shifted inverse iteration.
        tol : float
            Relative convergence tolerance of the Rayleigh quotient.

        Returns
        -------
        ndarray, shape (len(modes),)
            Rates lambda with du/dt = -lambda u on the mode.

        Notes
        -----
        Shifted inverse iteration v <- (sigma I - J)^{-1} v from v0 = lift(sin(k.X))
        (one sparse LU), rate = Rayleigh quotient -v.J v/v.v. The scheme commutes
        with patch translations and the lift preserves the macroscopic wavenumber,
        so v stays in the +-k sector, where the slow eigenvalue is separated from the
        next by O(1/h**2): a few iterations converge. The mode is identified by its
        shape: the restriction of v must be a combination of sin(k.X) and cos(k.X)
        (checked to 1e-6), never by the ordering of eigenvalues.
        """
        N = self.patches
        ks = []
        for mode in modes:
            k = np.asarray(mode)
            if k.shape != (2,) or not np.issubdtype(k.dtype, np.integer) or np.all(k == 0):
                raise ValueError(f"modes must be non-zero integer pairs, got {mode!r}")
            if np.any(2 * np.abs(k) >= N):
                raise ValueError(f"mode {tuple(k)} is not resolved by {N} patches per direction")
            ks.append(k)
        if not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift!r}")
        J = self.jacobian()
        lu = splu((shift * sparse.identity(self.size, format="csc") - J).tocsc())
        X = self.centres
        rates = []
        for k in ks:
            phase = k[0] * X[:, None] + k[1] * X[None, :]
            v = self.lift(np.sin(phase))
            rate_old = np.inf
            for _ in range(100):
                v = lu.solve(v)
                v /= np.linalg.norm(v)
                rate = -float(v @ (J @ v))
                if abs(rate - rate_old) <= tol * abs(rate):
                    break
                rate_old = rate
            else:  # pragma: no cover - a gap of O(1/h**2) converges in a few steps
                raise RuntimeError(f"inverse iteration did not converge for mode {tuple(k)}")
            U = self.restrict(v)
            basis = np.stack([np.sin(phase).ravel(), np.cos(phase).ravel()], axis=1)
            coef = np.linalg.lstsq(basis, U.ravel(), rcond=None)[0]
            if np.linalg.norm(U.ravel() - basis @ coef) > 1e-6 * np.linalg.norm(U):
                raise RuntimeError(f"slow eigenvector of mode {tuple(k)} is not of macroscopic shape sin(k.X)")
            rates.append(rate)
        return np.array(rates)
