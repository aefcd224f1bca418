"""Two-dimensional lattice diffusion with 3-periodic conductivities (seed 001 §5.2).

Model (seed eq. (25)). A square lattice of spacing h on the periodic square
[0, 2 pi)**2, sites x_i = i h, y_j = j h, i = x index, j = y index, n_x = n_y = 2 pi/h
sites per side, and

    du_ij/dt = [kx_ij (u_{i+1,j} - u_ij) + kx_{i-1,j} (u_{i-1,j} - u_ij)
              + ky_ij (u_{i,j+1} - u_ij) + ky_{i,j-1} (u_{i,j-1} - u_ij)] / h**2,

kx_ij the conductivity of the bond (i, j) -> (i+1, j), ky_ij that of (i, j) -> (i, j+1).
The conductivities are 3-periodic, built from the two 3x3 tables of seed eq. (26)
(:data:`KAPPA_X`, :data:`KAPPA_Y`). The paper does not say how the tables are laid
on the lattice; two conventions are offered (REFERENCE §2 "2-D lattice"):

* ``"paper"``: kx_ij = KAPPA_X[i mod 3, j mod 3], ky_ij = KAPPA_Y[(i-1) mod 3, (j+1) mod 3].
  This is the lattice the authors' code simulates (``generate_data_2d.m``,
  ``cx = [cHetr(:,:,1); cHetr(1,:,1)]``, ``cy = [cHetr(:,:,2), cHetr(:,1,2)]``
  fed to ``heteroDiff2``): with 0-based patch-local indices (0 = patch edge) the
  x bond l -> l+1 of row m carries KAPPA_X[l mod 3, (m-1) mod 3] and the y bond
  m -> m+1 of column l carries KAPPA_Y[(l-1) mod 3, m mod 3], which is this
  convention with i = l, j = m - 1: the two tables are offset by one site in
  each direction relative to each other.
* ``"same-site"``: ky_ij = KAPPA_Y[i mod 3, j mod 3]. A different medium.

Homogenization (discrete cell problem). For smooth data the lattice solution is
u ~ u_h + h chi . grad u_h with u_h solving

    du_h/dt = A_xx u_xx + 2 A_xy u_xy + A_yy u_yy,

A the homogenized tensor of :func:`homogenized_tensor`. A Fourier mode
exp(i k.x) decays at rate k.A.k, so on the lattice the slowest Bloch eigenvalue
of wavevector k satisfies lambda(k) = k.A.k + O(h**2 |k|**4)
(:func:`lattice_decay_rate`).

Everything is vectorised numpy/scipy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy import sparse

__all__ = [
    "CONVENTIONS",
    "KAPPA_X",
    "KAPPA_Y",
    "FourierModes2D",
    "bloch_matrix",
    "coefficient_fields",
    "coefficients_at",
    "fourier_initial_condition_2d",
    "homogenized_decay_rate",
    "homogenized_solution_2d",
    "homogenized_tensor",
    "homogenized_time_derivative_2d",
    "lattice_decay_rate",
    "lattice_operator",
    "lattice_rhs",
]

#: Seed eq. (26), kappa^x: row = x phase (i mod 3), column = y phase (j mod 3).
KAPPA_X = np.array(
    [
        [1.0566, 0.6668, 1.1568],
        [6.5894, 0.8683, 2.4174],
        [0.9473, 1.1407, 1.6610],
    ]
)
#: Seed eq. (26), kappa^y, same layout as :data:`KAPPA_X`.
KAPPA_Y = np.array(
    [
        [3.6355, 0.4470, 2.3896],
        [0.8628, 4.8558, 0.2833],
        [4.5025, 1.5865, 0.5679],
    ]
)
KAPPA_X.setflags(write=False)
KAPPA_Y.setflags(write=False)

#: Ways of laying the eq. (26) tables on the lattice (module docstring).
CONVENTIONS = ("paper", "same-site")
PERIOD = 3


# ----------------------------------------------------------------------------- validation
def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_convention(convention) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    return convention


def _check_side(n, name: str) -> int:
    n = _check_int(n, name, PERIOD)
    if n % PERIOD:
        # a side that is not a multiple of 3 would break the periodicity of the medium at the wrap
        raise ValueError(f"{name} must be a multiple of {PERIOD} for a periodic lattice, got {n}")
    return n


def _check_h(h) -> float:
    h = float(h)
    if not np.isfinite(h) or h <= 0:
        raise ValueError(f"h must be finite and > 0, got {h!r}")
    return h


def _check_fields(kx, ky) -> tuple[np.ndarray, np.ndarray]:
    kx = np.asarray(kx, dtype=np.float64)
    ky = np.asarray(ky, dtype=np.float64)
    if kx.ndim != 2 or kx.shape != ky.shape:
        raise ValueError(f"kx and ky must be 2-D arrays of one shape, got {kx.shape} and {ky.shape}")
    if not (np.all(np.isfinite(kx)) and np.all(np.isfinite(ky))) or np.any(kx <= 0) or np.any(ky <= 0):
        raise ValueError("conductivities must be finite and > 0")
    return kx, ky


def _as_tensor(A) -> np.ndarray:
    """(A_xx, A_xy, A_yy) or a symmetric 2x2 array -> 2x2 array."""
    A = np.asarray(A, dtype=np.float64)
    if A.shape == (3,):
        A = np.array([[A[0], A[1]], [A[1], A[2]]])
    if A.shape != (2, 2) or not np.all(np.isfinite(A)):
        raise ValueError(f"A must be (A_xx, A_xy, A_yy) or a finite 2x2 array, got shape {A.shape}")
    if abs(A[0, 1] - A[1, 0]) > 1e-12 * np.abs(A).max():
        raise ValueError("A must be symmetric")
    return A


# ----------------------------------------------------------------------------- the medium
def coefficients_at(i, j, convention: str = "paper") -> tuple[np.ndarray, np.ndarray]:
    """Bond conductivities at integer lattice indices (seed eq. (26); REFERENCE §2).

    Parameters
    ----------
    i, j : int or array_like of int
        x and y lattice indices (any integers; broadcast together).
    convention : {"paper", "same-site"}
        How the eq. (26) tables are laid on the lattice (module docstring).

    Returns
    -------
    kx, ky : ndarray
        kx = conductivity of bond (i, j) -> (i+1, j), ky of bond (i, j) -> (i, j+1).

    Raises
    ------
    ValueError
        Unknown convention, or non-integer indices.
    """
    convention = _check_convention(convention)
    i, j = np.broadcast_arrays(np.asarray(i), np.asarray(j))
    if not (np.issubdtype(i.dtype, np.integer) and np.issubdtype(j.dtype, np.integer)):
        raise ValueError("lattice indices must be integers")
    kx = KAPPA_X[i % PERIOD, j % PERIOD]
    if convention == "paper":
        ky = KAPPA_Y[(i - 1) % PERIOD, (j + 1) % PERIOD]
    else:
        ky = KAPPA_Y[i % PERIOD, j % PERIOD]
    return kx, ky


def coefficient_fields(n_x: int, n_y: int, convention: str = "paper") -> tuple[np.ndarray, np.ndarray]:
    """kx, ky on the whole periodic lattice, indexed [i, j] (i = x index, j = y index).

    Parameters
    ----------
    n_x, n_y : int
        Sites per side; multiples of 3 so that the medium is periodic across the wrap.
    convention : {"paper", "same-site"}

    Returns
    -------
    kx, ky : ndarray, shape (n_x, n_y)
        As :func:`coefficients_at` on the full index grid.
    """
    n_x = _check_side(n_x, "n_x")
    n_y = _check_side(n_y, "n_y")
    i, j = np.meshgrid(np.arange(n_x), np.arange(n_y), indexing="ij")
    return coefficients_at(i, j, convention)


# ----------------------------------------------------------------------------- the lattice dynamics
def lattice_rhs(u, kx, ky, h: float) -> np.ndarray:
    """Right-hand side of seed eq. (25) on the periodic lattice.

    Parameters
    ----------
    u : array_like, shape (n_x, n_y) or (n_x, n_y, ...)
        Field, indexed [i, j, ...]; trailing axes are batch axes.
    kx, ky : array_like, shape (n_x, n_y)
        Bond conductivities (:func:`coefficient_fields`).
    h : float
        Lattice spacing.

    Returns
    -------
    ndarray, shape of ``u``
        du/dt. It is the divergence of the bond fluxes, so sum(du/dt) = 0 (mass).
    """
    kx, ky = _check_fields(kx, ky)
    h = _check_h(h)
    u = np.asarray(u, dtype=np.float64)
    if u.shape[:2] != kx.shape:
        raise ValueError(f"u must have leading shape {kx.shape}, got {u.shape}")
    extra = (slice(None),) * 2 + (None,) * (u.ndim - 2)
    fx = kx[extra] * (np.roll(u, -1, axis=0) - u)  # flux on bond (i, j) -> (i+1, j)
    fy = ky[extra] * (np.roll(u, -1, axis=1) - u)
    return (fx - np.roll(fx, 1, axis=0) + fy - np.roll(fy, 1, axis=1)) / h**2


def lattice_operator(kx, ky, h: float) -> sparse.csr_matrix:
    """Seed eq. (25) as a sparse matrix L, du/dt = L u with u raveled in C order ([i, j]).

    Parameters
    ----------
    kx, ky : array_like, shape (n_x, n_y)
        Bond conductivities.
    h : float
        Lattice spacing.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_x n_y, n_x n_y)
        Symmetric, negative semi-definite, zero row and column sums; five entries a
        row when n_x, n_y >= 3.
    """
    kx, ky = _check_fields(kx, ky)
    h = _check_h(h)
    n_x, n_y = kx.shape
    idx = np.arange(n_x * n_y).reshape(n_x, n_y)
    rows, cols, vals = [], [], []
    for w, nb in ((kx, np.roll(idx, -1, axis=0)), (ky, np.roll(idx, -1, axis=1))):
        s, t, w = idx.ravel(), nb.ravel(), w.ravel()
        # each bond s-t adds w to both diagonals and -w to both off-diagonals
        rows += [s, t, s, t]
        cols += [t, s, s, t]
        vals += [w, w, -w, -w]
    L = sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(idx.size, idx.size)
    )
    return (L.tocsr() / h**2).tocsr()


# ----------------------------------------------------------------------------- Bloch analysis and homogenization
def bloch_matrix(kx_cell, ky_cell, theta=(0.0, 0.0)) -> np.ndarray:
    """Minus eq. (25) (with h = 1) restricted to Bloch waves of phase theta per site.

    Parameters
    ----------
    kx_cell, ky_cell : array_like, shape (p_x, p_y)
        Conductivities of one period cell (e.g. :func:`coefficient_fields` (3, 3)).
    theta : (float, float)
        Phase advance per lattice step in x and y.

    Returns
    -------
    ndarray, shape (p_x p_y, p_x p_y), complex
        Hermitian positive semi-definite M(theta) with -L u = e^{i theta.r} M p for
        u_ij = e^{i(theta_x i + theta_y j)} p_ij, p cell-periodic (C-order ravel).

    Notes
    -----
    On a periodic lattice of n_x x n_y sites (multiples of the cell) the
    operator commutes with translations by a cell, so its spectrum is the union
    of the spectra of M(theta) over theta = 2 pi (k_x/n_x, k_y/n_y), k integer
    (divided by h**2). Every bond carries the factor e^{i theta} because u and p
    differ by the phase of the site.
    """
    kx, ky = _check_fields(kx_cell, ky_cell)
    th_x, th_y = (float(t) for t in theta)
    p_x, p_y = kx.shape
    idx = np.arange(p_x * p_y).reshape(p_x, p_y)
    M = np.zeros((idx.size, idx.size), dtype=np.complex128)
    for w, nb, th in ((kx, np.roll(idx, -1, axis=0), th_x), (ky, np.roll(idx, -1, axis=1), th_y)):
        s, t, w = idx.ravel(), nb.ravel(), w.ravel()
        np.add.at(M, (s, s), w)
        np.add.at(M, (t, t), w)
        np.add.at(M, (s, t), -w * np.exp(1j * th))
        np.add.at(M, (t, s), -w * np.exp(-1j * th))
    return M


def homogenized_tensor(convention: str = "paper") -> tuple[float, float, float]:
    """Homogenized tensor of eq. (25)-(26) from the discrete cell problem on one 3x3 period.

    Parameters
    ----------
    convention : {"paper", "same-site"}

    Returns
    -------
    (A_xx, A_xy, A_yy) : tuple of float
        The homogenized PDE is u_t = A_xx u_xx + 2 A_xy u_xy + A_yy u_yy.

    Notes
    -----
    For a macroscopic gradient xi the lattice field u_ij = xi.(i, j) + chi_ij
    (h = 1; A does not depend on h because eq. (25) divides by h**2), chi
    3-periodic, is steady: L(xi.r + chi) = 0, i.e.

        M(0) chi = div(kappa xi),   (div(kappa xi))_ij = (kx_ij - kx_{i-1,j}) xi_x + (ky_ij - ky_{i,j-1}) xi_y,

    with M(0) the cell Laplacian (:func:`bloch_matrix` at theta = 0; singular,
    solvable because the right side has zero mean; the minimum-norm solution is
    taken). The mean bond fluxes are then the homogenized flux:
    A xi = (mean of kx (xi_x + chi_{i+1,j} - chi_ij), mean of ky (xi_y + chi_{i,j+1} - chi_ij)).
    A is symmetric (checked), being also the minimum of the cell energy.

    The paper's eq. (27), u_t = 1.2644 u_xx + 1.3398 u_yy, reports the two slowest
    decay rates of the patch scheme, for sin y and sin x respectively (so the
    directions are swapped) and drops the cross term: for the ``"paper"``
    convention A_xx ~ 1.3399, A_xy ~ +0.1105, A_yy ~ 1.2646 (REFERENCE §2). (To
    the printed digits they are the lattice rates at h = 2 pi/240, 1.264400 and
    1.339801 (:func:`lattice_decay_rate`); at the stated h = 2 pi/480 they would
    read 1.2645 and 1.3399.) The
    principal axes of A (its eigenvectors) are not the lattice axes; directions
    must be read from the tensor, not from the order of eigenvalues.
    """
    kx, ky = coefficient_fields(PERIOD, PERIOD, convention)
    M0 = bloch_matrix(kx, ky).real
    A = np.empty((2, 2))
    for a, (xi_x, xi_y) in enumerate(((1.0, 0.0), (0.0, 1.0))):
        rhs = xi_x * (kx - np.roll(kx, 1, axis=0)) + xi_y * (ky - np.roll(ky, 1, axis=1))
        chi = np.linalg.lstsq(M0, rhs.ravel(), rcond=None)[0].reshape(kx.shape)
        A[0, a] = np.mean(kx * (xi_x + np.roll(chi, -1, axis=0) - chi))
        A[1, a] = np.mean(ky * (xi_y + np.roll(chi, -1, axis=1) - chi))
    if abs(A[0, 1] - A[1, 0]) > 1e-10 * np.abs(A).max():  # pragma: no cover - a failed solve
        raise RuntimeError(f"cell problem gave a non-symmetric tensor {A}")
    return float(A[0, 0]), float(0.5 * (A[0, 1] + A[1, 0])), float(A[1, 1])


def homogenized_decay_rate(mode, A) -> float:
    """Decay rate k.A.k of exp(i k.x) (or sin(k.x + c)) under the homogenized PDE.

    Parameters
    ----------
    mode : (int, int) or array_like, shape (..., 2)
        Wavevector(s) k = (k_x, k_y).
    A : (A_xx, A_xy, A_yy) or 2x2 array

    Returns
    -------
    float or ndarray
        k_x**2 A_xx + 2 k_x k_y A_xy + k_y**2 A_yy.
    """
    A = _as_tensor(A)
    k = np.asarray(mode, dtype=np.float64)
    if k.shape[-1:] != (2,):
        raise ValueError(f"mode must have a last axis of length 2, got shape {k.shape}")
    rate = np.einsum("...a,ab,...b->...", k, A, k)
    return float(rate) if rate.ndim == 0 else rate


def lattice_decay_rate(mode, n: int = 480, convention: str = "paper") -> float:
    """Exact decay rate of the slowest lattice mode of macroscopic wavevector ``mode``.

    Parameters
    ----------
    mode : (int, int)
        Integer wavevector (k_x, k_y) on [0, 2 pi)**2; (1, 0) is sin x, (1, 1) is
        sin(x + y), (1, -1) is sin(x - y).
    n : int, default 480
        Sites per side (multiple of 3), h = 2 pi/n; 480 is the lattice that the
        paper's patches (H = 4h = 0.0524) sample.
    convention : {"paper", "same-site"}

    Returns
    -------
    float
        Smallest eigenvalue of M(theta)/h**2 (:func:`bloch_matrix`) at
        theta = h k, i.e. the decay rate of the slowest eigenmode of the full
        n x n lattice operator (:func:`lattice_operator`) whose macroscopic shape is
        exp(+-i k.x). It tends to k.A.k as n -> infinity with an O(h**2 |k|**4) error.

    Notes
    -----
    The operator is real and symmetric, so e^{+i k.x} and e^{-i k.x} have the same
    rate and sin(k.x + c) of the slow band is an exact eigenmode.
    """
    n = _check_side(n, "n")
    k = np.asarray(mode)
    if k.shape != (2,) or not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"mode must be a pair of integers, got {mode!r}")
    if np.all(k == 0):
        return 0.0
    if np.any(np.abs(k) > n // 2):
        raise ValueError(f"mode {tuple(k)} is not resolved by a lattice of {n} sites per side")
    h = 2.0 * np.pi / n
    kx, ky = coefficient_fields(PERIOD, PERIOD, convention)
    M = bloch_matrix(kx, ky, (h * k[0], h * k[1]))
    return float(np.linalg.eigvalsh(M)[0] / h**2)


# ----------------------------------------------------------------------------- initial conditions and exact solution
@dataclass(frozen=True)
class FourierModes2D:
    """u(x, y) = sum_j a_j sin(lx_j x + phx_j) sin(ly_j y + phy_j) (seed eq. (28)).

    Parameters
    ----------
    amplitudes, phases_x, phases_y : sequence of float
        a_j, phx_j, phy_j.
    wavenumbers_x, wavenumbers_y : sequence of int
        lx_j, ly_j (integers, so that u is 2 pi-periodic).

    All are stored as tuples (hashable, comparable), of equal, non-zero length.
    """

    amplitudes: tuple[float, ...]
    wavenumbers_x: tuple[int, ...]
    wavenumbers_y: tuple[int, ...]
    phases_x: tuple[float, ...]
    phases_y: tuple[float, ...]

    def __post_init__(self):
        sizes = set()
        for name in ("amplitudes", "wavenumbers_x", "wavenumbers_y", "phases_x", "phases_y"):
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1 or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be a finite 1-D sequence, got {getattr(self, name)!r}")
            if name.startswith("wavenumbers"):
                if not np.all(arr == np.round(arr)):
                    raise ValueError(f"{name} must hold integers (2 pi-periodic modes)")
                value = tuple(int(v) for v in arr)
            else:
                value = tuple(float(v) for v in arr)
            sizes.add(arr.size)
            object.__setattr__(self, name, value)
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError("all mode sequences must have the same, non-zero length")

    @property
    def n_modes(self) -> int:
        return len(self.amplitudes)

    def __call__(self, x, y) -> np.ndarray:
        """Evaluate at points (x, y) (broadcast together); returns the broadcast shape."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        sx = np.sin(x[..., None] * np.asarray(self.wavenumbers_x) + np.asarray(self.phases_x))
        sy = np.sin(y[..., None] * np.asarray(self.wavenumbers_y) + np.asarray(self.phases_y))
        return np.sum(np.asarray(self.amplitudes) * sx * sy, axis=-1)

    def plane_waves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same field as a sum of cosines: sum_m c_m cos(k_m . x + psi_m).

        Returns
        -------
        k : ndarray of int, shape (2 n_modes, 2)
        coefficient, phase : ndarray, shape (2 n_modes,)

        Notes
        -----
        sin a sin b = [cos(a - b) - cos(a + b)]/2, so mode j gives
        (a_j/2) cos(lx x - ly y + phx - phy) and -(a_j/2) cos(lx x + ly y + phx + phy).
        """
        a = np.asarray(self.amplitudes)
        lx, ly = np.asarray(self.wavenumbers_x), np.asarray(self.wavenumbers_y)
        px, py = np.asarray(self.phases_x), np.asarray(self.phases_y)
        k = np.concatenate([np.stack([lx, -ly], axis=-1), np.stack([lx, ly], axis=-1)], axis=0)
        return k, np.concatenate([0.5 * a, -0.5 * a]), np.concatenate([px - py, px + py])


#: Largest wavenumber l of the random initial conditions of seed eq. (28).
IC_MAX_WAVENUMBER = 5


def fourier_initial_condition_2d(rng, n_modes: int = 10, max_wavenumber: int = IC_MAX_WAVENUMBER) -> FourierModes2D:
    """Random initial condition of seed eq. (28).

    Parameters
    ----------
    rng : numpy.random.Generator or int
        Random source (an int seeds ``numpy.random.default_rng``).
    n_modes : int, default 10
    max_wavenumber : int, default 5
        l^x_j, l^y_j are uniform on {1, ..., max_wavenumber}.

    Returns
    -------
    FourierModes2D

    Notes
    -----
    Draw order (fixed, so a seed always gives the same field): a (n_modes draws,
    U[-1, 1]), l^x (integers), l^y (integers), phi^x (U[0, 2 pi]), phi^y (U[0, 2 pi]),
    each as one vectorised call. (The authors' MATLAB code draws the phases from
    {0, pi} only; the paper's text, followed here, says U[0, 2 pi].)
    """
    n_modes = _check_int(n_modes, "n_modes")
    l_max = _check_int(max_wavenumber, "max_wavenumber")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    a = rng.uniform(-1.0, 1.0, n_modes)
    lx = rng.integers(1, l_max + 1, n_modes)
    ly = rng.integers(1, l_max + 1, n_modes)
    phx = rng.uniform(0.0, 2.0 * np.pi, n_modes)
    phy = rng.uniform(0.0, 2.0 * np.pi, n_modes)
    return FourierModes2D(a, lx, ly, phx, phy)


def _plane_wave_sum(modes: FourierModes2D, A, x, y, t, derivative: bool) -> np.ndarray:
    """sum_m c_m (-k_m.A.k_m)**derivative exp(-k_m.A.k_m t) cos(k_m.x + psi_m) on a grid."""
    if not isinstance(modes, FourierModes2D):
        raise ValueError(f"modes must be a FourierModes2D, got {type(modes).__name__}")
    A = _as_tensor(A)
    if np.any(np.linalg.eigvalsh(A) <= 0):
        raise ValueError("A must be positive definite")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if x.ndim != 1 or y.ndim != 1 or t.ndim != 1:
        raise ValueError("x, y and t must be 1-D")
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("t must be finite and >= 0")
    k, c, psi = modes.plane_waves()
    rate = homogenized_decay_rate(k, A)  # (M,)
    amp = c * np.exp(-np.outer(t, rate))  # (nt, M)
    if derivative:
        amp = -amp * rate
    # cos(kx x + ky y + psi) = Re[e^{i kx x} e^{i (ky y + psi)}]: separable, so no (x, y, M) temporary
    ex = np.exp(1j * np.outer(x, k[:, 0]))  # (nx, M)
    ey = np.exp(1j * (np.outer(y, k[:, 1]) + psi))  # (ny, M)
    return np.einsum("tm,xm,ym->txy", amp, ex, ey).real


def homogenized_solution_2d(modes: FourierModes2D, A, x, y, t) -> np.ndarray:
    """Exact solution of u_t = A_xx u_xx + 2 A_xy u_xy + A_yy u_yy from a seed eq. (28) field.

    Parameters
    ----------
    modes : FourierModes2D
        Initial condition u(x, y, 0).
    A : (A_xx, A_xy, A_yy) or 2x2 array
        Homogenized tensor (:func:`homogenized_tensor`); positive definite.
    x, y : array_like, 1-D
        Grid coordinates (any reals; the solution is 2 pi-periodic).
    t : array_like, 1-D (or scalar)
        Times >= 0.

    Returns
    -------
    ndarray, shape (len(t), len(x), len(y))
        u on the grid ``x[:, None], y[None, :]`` (axis order time, x, y).

    Notes
    -----
    By :meth:`FourierModes2D.plane_waves` the initial field is a sum of
    c_m cos(k_m.x + psi_m) with k_m = (l^x, -+l^y). Each is an eigenfunction of the
    constant-coefficient operator with eigenvalue -k_m.A.k_m (the cross term
    contributes 2 A_xy k_x k_y, so the two halves of one product of sines decay at
    different rates), hence u = sum_m c_m exp(-k_m.A.k_m t) cos(k_m.x + psi_m).
    """
    return _plane_wave_sum(modes, A, x, y, t, derivative=False)


def homogenized_time_derivative_2d(modes: FourierModes2D, A, x, y, t) -> np.ndarray:
    """Exact u_t of :func:`homogenized_solution_2d` (same arguments and shape).

    u_t = -sum_m k_m.A.k_m c_m exp(-k_m.A.k_m t) cos(k_m.x + psi_m), which equals
    A_xx u_xx + 2 A_xy u_xy + A_yy u_yy.
    """
    return _plane_wave_sum(modes, A, x, y, t, derivative=True)
