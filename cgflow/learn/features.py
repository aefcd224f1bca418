"""Fields to per-point samples and back: derivative features, stencil windows, grids.

Data layout (seed 001 §5). Every function takes a stack of snapshots with the
snapshot axis first:

* 1-D: ``U`` of shape (n_snapshots, n_x). With Dirichlet ends (seed eq. (21)) the
  nodes are x_i = i L/(n_x - 1), i = 0..n_x-1, on [0, L] (L = 1 in the paper); the
  two end values are fixed, so time derivatives are learned at the n_x - 2 interior
  nodes only. With periodic ends the nodes are x_i = i L/n_x on [0, L).
* 2-D: ``U`` of shape (n_snapshots, n_x, n_y) on the periodic square [0, L)^2
  (L = 2 pi in the paper), x_i = i L/n_x, y_j = j L/n_y; axis 1 is x (index i),
  axis 2 is y (index j). Every node is learned.

Features (seed §4, eq. (12), (13)):

* :func:`finite_difference_features`: (U, U_x, U_xx) by second-order central
  differences with a three-point stencil, the inputs of the pointwise network in
  1-D (seed §5.1);
* :func:`spectral_features_2d`: (U, U_x, U_y, U_xx, U_xy, U_yy) by FFT, its inputs
  in 2-D (seed §5.2);
* :func:`stencil_windows`: the neighbourhood (U_{j-1}, U_j, U_{j+1}) of every
  learned node (3 x 3 in 2-D), the input of the stencil network, eq. (13).

:class:`Grid` is the plumbing between fields and samples: which nodes are learned,
their spacing, and the inverse map from per-point values back to full fields.

Everything is vectorised numpy; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "BOUNDARIES",
    "FD_FEATURES",
    "SPECTRAL_FEATURES_2D",
    "Grid",
    "check_fields",
    "finite_difference_features",
    "spectral_features_2d",
    "stencil_feature_names",
    "stencil_windows",
]

#: Names of the columns of :func:`finite_difference_features`.
FD_FEATURES = ("U", "U_x", "U_xx")
#: Names of the columns of :func:`spectral_features_2d`.
SPECTRAL_FEATURES_2D = ("U", "U_x", "U_y", "U_xx", "U_xy", "U_yy")
#: Supported boundary conditions.
BOUNDARIES = ("dirichlet", "periodic")

_LAYOUT = "(n_snapshots, n_x) for 1-D fields or (n_snapshots, n_x, n_y) for 2-D fields"


# ----------------------------------------------------------------------------- validation
def check_fields(U, name: str = "U", ndim: int | None = None) -> np.ndarray:
    """Validate a stack of snapshots and return it as a float64 array.

    Parameters
    ----------
    U : array_like
        Shape (n_snapshots, n_x) or (n_snapshots, n_x, n_y).
    name : str
        Name used in error messages.
    ndim : {1, 2}, optional
        Required number of spatial dimensions.

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        On a wrong number of axes, an empty axis or a non-numeric array. Finiteness
        is *not* checked here (the callers check the entries they use).
    """
    try:
        arr = np.asarray(U, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array of shape {_LAYOUT}") from e
    allowed = (2, 3) if ndim is None else (ndim + 1,)
    if arr.ndim not in allowed:
        layout = _LAYOUT if ndim is None else ("(n_snapshots, n_x)" if ndim == 1 else "(n_snapshots, n_x, n_y)")
        raise ValueError(
            f"{name} must have shape {layout} (snapshot axis first; use {name}[None] for one snapshot), "
            f"got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} must not have an empty axis, got shape {arr.shape}")
    return arr


def _check_spacing(dx, name: str = "dx") -> float:
    if isinstance(dx, bool) or not isinstance(dx, Real) or not math.isfinite(dx) or dx <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {dx!r}")
    return float(dx)


def _check_width(width) -> int:
    if isinstance(width, bool) or not isinstance(width, Integral) or width < 1 or width % 2 == 0:
        raise ValueError(f"width must be an odd integer >= 1, got {width!r}")
    return int(width)


# ----------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class Grid:
    """A uniform macro grid and the map between fields and per-point samples.

    Parameters
    ----------
    shape : tuple of int
        (n_x,) or (n_x, n_y): the nodes of one snapshot.
    length : float
        Domain side L: [0, L] (Dirichlet) or [0, L) (periodic).
    boundary : {"dirichlet", "periodic"}
        Dirichlet (1-D only): the two end nodes carry fixed values (seed eq. (21)),
        only the n_x - 2 interior nodes are learned. Periodic: all nodes are learned.

    Notes
    -----
    The learned ("interior") nodes are where a time derivative exists; per-point
    samples are the learned nodes of all snapshots in C order (snapshot-major).
    :meth:`interior` maps fields to them and :meth:`to_field` maps per-point values
    back, writing ``fill`` at the Dirichlet ends.
    """

    shape: tuple
    length: float
    boundary: str

    def __post_init__(self):
        shape = tuple(self.shape)
        if len(shape) not in (1, 2) or any(
            isinstance(n, bool) or not isinstance(n, Integral) or n < 1 for n in shape
        ):
            raise ValueError(f"grid shape must be (n_x,) or (n_x, n_y) of positive integers, got {self.shape!r}")
        shape = tuple(int(n) for n in shape)
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.boundary == "dirichlet":
            if len(shape) != 1:
                raise ValueError("Dirichlet boundaries are supported in 1-D only; 2-D fields are periodic")
            if shape[0] < 3:
                raise ValueError(f"a 1-D Dirichlet grid needs n_x >= 3 nodes (two ends + interior), got {shape[0]}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "length", _check_spacing(self.length, "length"))

    @classmethod
    def for_fields(cls, U, length=None, boundary="auto") -> Grid:
        """The grid of a stack of snapshots ``U`` (n_snapshots, *shape).

        ``length=None`` means the seed's domains, L = 1 in 1-D and L = 2 pi in 2-D;
        ``boundary="auto"`` means Dirichlet in 1-D and periodic in 2-D.
        """
        shape = np.shape(U)[1:]
        if len(shape) not in (1, 2):
            raise ValueError(f"U must have shape {_LAYOUT}, got shape {np.shape(U)}")
        if length is None:
            length = 1.0 if len(shape) == 1 else 2.0 * np.pi
        if boundary == "auto":
            boundary = "dirichlet" if len(shape) == 1 else "periodic"
        return cls(shape, length, boundary)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.shape)

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @property
    def spacing(self) -> tuple:
        """Node spacing per axis: L/(n - 1) (Dirichlet) or L/n (periodic)."""
        if self.periodic:
            return tuple(self.length / n for n in self.shape)
        return (self.length / (self.shape[0] - 1),)

    @property
    def coordinates(self) -> tuple:
        """Node coordinates per axis (1-D arrays)."""
        return tuple(np.arange(n) * h for n, h in zip(self.shape, self.spacing))

    @property
    def interior_shape(self) -> tuple:
        """Shape of the learned nodes of one snapshot."""
        return (self.shape[0] - 2,) if self.boundary == "dirichlet" else self.shape

    @property
    def n_interior(self) -> int:
        """Number of learned nodes per snapshot."""
        return math.prod(self.interior_shape)

    def check(self, U, name: str = "U") -> np.ndarray:
        """Validate a stack of snapshots on this grid (float64, shape (n_snapshots, *shape))."""
        arr = check_fields(U, name, ndim=self.ndim)
        if arr.shape[1:] != self.shape:
            raise ValueError(f"{name} must have snapshots of shape {self.shape} on this grid, got {arr.shape[1:]}")
        return arr

    def interior(self, F) -> np.ndarray:
        """Restrict (n_snapshots, *shape, ...) to the learned nodes (n_snapshots, *interior_shape, ...)."""
        F = np.asarray(F)
        return F[:, 1:-1] if self.boundary == "dirichlet" else F

    def to_field(self, values, n_snapshots: int | None = None, fill: float = 0.0) -> np.ndarray:
        """Map per-point values back to fields; the inverse of :meth:`interior`.

        Parameters
        ----------
        values : array_like
            Shape (n_snapshots, *interior_shape) or flat (n_snapshots * n_interior,)
            per-point samples in C order.
        n_snapshots : int, optional
            Needed only to check flat input; inferred from its length otherwise.
        fill : float, default 0.0
            Value written at the Dirichlet end nodes.

        Returns
        -------
        ndarray, shape (n_snapshots, *shape)
        """
        v = np.asarray(values, dtype=np.float64)
        if v.size % self.n_interior:
            raise ValueError(
                f"{v.size} values are not a whole number of snapshots of {self.n_interior} learned nodes"
            )
        n = v.size // self.n_interior
        if n_snapshots is not None and n != n_snapshots:
            raise ValueError(f"expected values for {n_snapshots} snapshots, got {n}")
        v = v.reshape((n, *self.interior_shape))
        if self.boundary != "dirichlet":
            return v
        out = np.full((n, *self.shape), float(fill))
        out[:, 1:-1] = v
        return out


# ----------------------------------------------------------------------------- derivative features
def finite_difference_features(U, dx, periodic: bool = False) -> np.ndarray:
    """(U, U_x, U_xx) at the learned 1-D nodes by second-order central differences.

    Parameters
    ----------
    U : array_like, shape (n_snapshots, n_x)
        1-D snapshots.
    dx : float
        Node spacing.
    periodic : bool, default False
        False: nodes 1..n_x-2 (the end nodes only enter the stencils of their
        neighbours; Dirichlet). True: all nodes, wrapping around.

    Returns
    -------
    ndarray, shape (n_snapshots, n_x - 2, 3) or (n_snapshots, n_x, 3)
        Last axis ``FD_FEATURES`` = (U_j, (U_{j+1} - U_{j-1})/(2 dx),
        (U_{j+1} - 2 U_j + U_{j-1})/dx**2).

    Notes
    -----
    Seed §5.1: "a second-order finite-difference method with stencil size of three
    to estimate the spatial derivatives required as inputs by the first
    architecture". The U_xx column is the discrete Laplacian D2 of the macro grid.
    """
    U = check_fields(U, ndim=1)
    dx = _check_spacing(dx)
    if periodic:
        left, mid, right = np.roll(U, 1, axis=1), U, np.roll(U, -1, axis=1)
    else:
        if U.shape[1] < 3:
            raise ValueError(f"central differences need n_x >= 3 nodes, got {U.shape[1]}")
        left, mid, right = U[:, :-2], U[:, 1:-1], U[:, 2:]
    return np.stack([mid, (right - left) / (2.0 * dx), (right - 2.0 * mid + left) / dx**2], axis=-1)


def _wavenumbers(n: int, length: float, real: bool):
    """Angular wavenumbers for (r)fft of n points on [0, length), and a copy with the
    Nyquist mode zeroed for odd derivatives."""
    k = 2.0 * np.pi / length * (np.fft.rfftfreq(n, 1.0 / n) if real else np.fft.fftfreq(n, 1.0 / n))
    k_odd = k.copy()
    if n % 2 == 0:
        # The Nyquist mode is cos(n x/2) on the grid: its first derivative vanishes
        # at the nodes, its second derivative is -(n/2)**2 times it.
        k_odd[n // 2] = 0.0
    return k, k_odd


def spectral_features_2d(U, length: float = 2.0 * np.pi) -> np.ndarray:
    """(U, U_x, U_y, U_xx, U_xy, U_yy) of periodic 2-D snapshots by FFT.

    Parameters
    ----------
    U : array_like, shape (n_snapshots, n_x, n_y)
        Snapshots on the periodic square [0, length)^2; axis 1 is x, axis 2 is y.
    length : float, default 2 pi
        Period in both directions (seed §5.2: [0, 2 pi)^2).

    Returns
    -------
    ndarray, shape (n_snapshots, n_x, n_y, 6)
        Last axis ``SPECTRAL_FEATURES_2D``.

    Notes
    -----
    Seed §5.2: "we use FFT to estimate the spatial derivatives for the first neural
    net architecture". Trigonometric polynomials with |k| < n/2 in each direction
    are differentiated exactly (to rounding). For even n the Nyquist wavenumber is
    set to 0 in odd derivatives (U_x, U_y, and both factors of U_xy) and kept in
    U_xx, U_yy, which keeps the results real and exact for the resolved cos(n x/2).
    """
    U = check_fields(U, ndim=2)
    length = _check_spacing(length, "length")
    n_x, n_y = U.shape[1:]
    kx, kx_odd = _wavenumbers(n_x, length, real=False)
    ky, ky_odd = _wavenumbers(n_y, length, real=True)
    kx, kx_odd = kx[:, None], kx_odd[:, None]
    U_hat = np.fft.rfft2(U, axes=(1, 2))

    def back(symbol):
        return np.fft.irfft2(symbol * U_hat, s=(n_x, n_y), axes=(1, 2))

    return np.stack(
        [U, back(1j * kx_odd), back(1j * ky_odd), back(-(kx**2)), back(-kx_odd * ky_odd), back(-(ky**2))],
        axis=-1,
    )


# ----------------------------------------------------------------------------- stencil windows
def stencil_windows(U, width: int = 3, periodic: bool = False) -> np.ndarray:
    """Every window of ``width`` neighbours (``width`` x ``width`` in 2-D).

    Parameters
    ----------
    U : array_like
        (n_snapshots, n_x) or (n_snapshots, n_x, n_y); the number of axes decides
        the dimension.
    width : int, default 3
        Odd window width 2r + 1 (the kernel size of the first convolution, seed
        eq. (17)).
    periodic : bool, default False
        True: one window centred at every node, wrapping around. False: only the
        windows that fit ("valid"), centred at nodes r..n-1-r; for r = 1 in 1-D these
        are exactly the interior nodes of a Dirichlet grid.

    Returns
    -------
    ndarray
        1-D: (n_snapshots, n_centres, width) with ``out[s, c, k] = U[s, c' + k - r]``,
        c' the node index of centre c. 2-D: (n_snapshots, n_cx, n_cy, width, width)
        with ``out[s, i, j, a, b] = U[s, i' + a - r, j' + b - r]``.
        A read-only view where possible.
    """
    U = check_fields(U)
    width = _check_width(width)
    r = width // 2
    axes = tuple(range(1, U.ndim))
    if periodic:
        if width > min(U.shape[1:]):
            raise ValueError(
                f"a periodic window of width {width} needs at least {width} nodes per axis, got {U.shape[1:]}"
            )
        U = np.pad(U, [(0, 0)] + [(r, r)] * len(axes), mode="wrap")
    elif width > min(U.shape[1:]):
        raise ValueError(f"no window of width {width} fits in snapshots of shape {U.shape[1:]}")
    return sliding_window_view(U, (width,) * len(axes), axis=axes)


def stencil_feature_names(width: int, ndim: int) -> tuple:
    """Names of the flattened window entries, e.g. ``U[-1]``, ``U[+0]``, ``U[+1]``;
    in 2-D ``U[-1,-1]``... (x offset first, C order as in :func:`stencil_windows`)."""
    width = _check_width(width)
    offs = [f"{o:+d}" for o in range(-(width // 2), width // 2 + 1)]
    if ndim == 1:
        return tuple(f"U[{a}]" for a in offs)
    return tuple(f"U[{a},{b}]" for a in offs for b in offs)
