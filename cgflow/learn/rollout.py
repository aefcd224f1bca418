"""Time integration of learned right-hand sides and the coefficients they imply (seed 001 §5).

* :func:`rollout`: integrate a fitted field model on its macro grid with BDF
  (seed §5.1: "We use the BDF method as the time stepper on the same macroscopic
  grid").
* :func:`effective_coefficient` (1-D) and :func:`effective_tensor` (2-D): the
  diffusion coefficient(s) a learned model implies, for comparison with the
  homogenized a* (seed eq. (22); REFERENCE §2) and A (seed eq. (27); REFERENCE §2).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.integrate import solve_ivp
from threadpoolctl import threadpool_limits

from .features import finite_difference_features, spectral_features_2d

__all__ = ["effective_coefficient", "effective_tensor", "rollout"]

#: Up to this many unknowns the BDF linear algebra (dense LU of the Jacobian) runs
#: with single-threaded BLAS: for a 16 x 16 grid (256 unknowns) that is 6x faster
#: than two BLAS threads on a busy 2-core machine.
SERIAL_BLAS_MAX_UNKNOWNS = 1024

#: Default probe modes of :func:`effective_tensor`: sin x, sin y, sin(x + y), sin(x - y).
TENSOR_MODES = ((1, 0), (0, 1), (1, 1), (1, -1))


def _fitted_grid(model):
    grid = getattr(model, "grid_", None)
    if grid is None:
        raise ValueError(f"{type(model).__name__} is not fitted (no grid_); call fit first")
    return grid


def _check_amplitude(amplitude) -> float:
    if isinstance(amplitude, bool) or not isinstance(amplitude, Real) or not np.isfinite(amplitude) or amplitude <= 0:
        raise ValueError(f"amplitude must be a finite number > 0, got {amplitude!r}")
    return float(amplitude)


def _base_field(base, grid) -> np.ndarray:
    if base is None:
        return np.zeros(grid.shape)
    base = np.asarray(base, dtype=np.float64)
    if base.shape != grid.shape:
        raise ValueError(f"base must be one snapshot of the fitted grid, shape {grid.shape}, got {base.shape}")
    return base


def rollout(model, U0, times, *, boundary=None, method="BDF", rtol=1e-6, atol=1e-9, **options):
    """Integrate dU/dt = model(U) from ``U0`` with :func:`scipy.integrate.solve_ivp`.

    Parameters
    ----------
    model : FieldModel
        A fitted field model (:mod:`cgflow.learn.models`).
    U0 : array_like
        Initial snapshot on the model's fitted grid, shape ``model.grid_.shape``.
    times : array_like, shape (n_times,)
        Increasing output times; integration runs from times[0] to times[-1].
    boundary : {"dirichlet", "periodic"}, optional
        The model's boundary condition (default). 1-D Dirichlet: the end values stay
        at their initial values (seed eq. (21)); periodic: no boundary. Passing a
        different one raises, since the features were learned with the model's.
    method : str, default "BDF"
        solve_ivp method; BDF as in seed §5.1 (the learned diffusion is stiff:
        its fastest rate is about 4 a*/dx**2).
    rtol, atol : float
        solve_ivp tolerances.
    **options
        Passed to solve_ivp (e.g. ``max_step``, ``first_step``).

    Returns
    -------
    ndarray, shape (n_times, *grid_shape)
        Snapshots at ``times`` (row 0 is ``U0``), end nodes included in 1-D.

    Raises
    ------
    ValueError
        On a shape mismatch, non-increasing or non-finite times, a non-finite
        ``U0`` or a mismatched ``boundary``.
    RuntimeError
        If the integrator fails (the message says where).

    Notes
    -----
    The right-hand side is :meth:`FieldModel.rhs` with ``vectorized=True``, so the
    finite-difference Jacobian BDF needs costs one batched prediction. Systems of
    up to ``SERIAL_BLAS_MAX_UNKNOWNS`` unknowns are integrated with single-threaded
    BLAS (the dense LU factorisations are too small to gain from threads).
    """
    grid = _fitted_grid(model)
    if boundary is not None and boundary != grid.boundary:
        raise ValueError(f"boundary={boundary!r} does not match the model's {grid.boundary!r}")
    U0 = np.asarray(U0, dtype=np.float64)
    if U0.shape != grid.shape:
        raise ValueError(f"U0 must be one snapshot of the fitted grid, shape {grid.shape}, got {U0.shape}")
    if not np.all(np.isfinite(U0)):
        raise ValueError("U0 has non-finite entries")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError(f"times must be a non-empty 1-D array of finite values, got shape {times.shape}")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times must be strictly increasing")

    if grid.boundary == "dirichlet":
        y0, args = U0[1:-1], (float(U0[0]), float(U0[-1]))
    else:
        y0, args = U0.ravel(), ()
    if times.size == 1:
        states = y0[None, :]
    else:
        with threadpool_limits(limits=1 if y0.size <= SERIAL_BLAS_MAX_UNKNOWNS else None, user_api="blas"):
            sol = solve_ivp(
                model.rhs,
                (times[0], times[-1]),
                y0,
                method=method,
                t_eval=times,
                args=args,
                rtol=rtol,
                atol=atol,
                vectorized=True,
                **options,
            )
        if not sol.success:
            reached = sol.t[-1] if sol.t.size else times[0]
            raise RuntimeError(f"{method} integration of the learned model failed at t = {reached:g}: {sol.message}")
        states = sol.y.T
    out = grid.to_field(states)
    if grid.boundary == "dirichlet":
        out[:, 0], out[:, -1] = args
    return out


def effective_coefficient(model, states=None, *, amplitude=1.0, mode=1, base=None) -> float:
    """The diffusion coefficient a learned 1-D model implies on its macro grid.

    A least-squares fit of the model's response against the macro grid's discrete
    Laplacian D2 (three-point, as in the features), over the learned nodes:

    * probe (default): r = (F(base + eps v) - F(base - eps v))/(2 eps) for
      v = sin(mode pi x/L) (Dirichlet; sin(2 pi mode x/L) if periodic),
      a = <r, D2 v>/<D2 v, D2 v>;
    * ``states`` given: a = <F(U), D2 U>/<D2 U, D2 U> over those snapshots, i.e.
      the coefficient of the best fit F ~ a D2 U on the data's own distribution.

    F is the model's dU/dt, eps = ``amplitude``.

    Parameters
    ----------
    model : FieldModel
        Fitted 1-D model.
    states : array_like, shape (n_snapshots, n_x), optional
        Snapshots on the fitted grid to fit over instead of the probe.
    amplitude : float, default 1.0
        Probe amplitude eps. For a linear model any value gives the same result.
        For a network it sets where the response is measured: 1.0 matches the
        scale of the seed's fields (eq. (23) gives |U| up to a few), which the
        MSE-trained network has learned well; much smaller probes sit in the
        near-zero region where the training loss puts almost no weight (seed §5.2
        makes the same observation) and scatter widely between seeds.
    mode : int, default 1
        Probe wavenumber index.
    base : array_like, optional
        Snapshot to linearise about (default 0, ends included).

    Returns
    -------
    float

    Notes
    -----
    Why the discrete Laplacian. The exact semi-discrete homogenized model is
    dU/dt = a* D2 U; for it r = a* D2 v exactly, so this returns a* to rounding.
    The probe is an eigenvector of D2: D2 v = -lambda v with
    lambda = (4/dx**2) sin**2(k dx/2), k = mode pi/L, so the fit equals the nodewise
    ratio -r_j/(lambda v_j) (weighted by v_j**2). The continuum ratio
    -r_j/(k**2 v_j) would instead give a* lambda/k**2 = a* (1 - (k dx)**2/12 + ...),
    0.8% low at dx = 0.1. The central difference cancels any constant offset of the
    model (e.g. a learned intercept).
    """
    grid = _fitted_grid(model)
    if grid.ndim != 1:
        raise ValueError("effective_coefficient needs a 1-D model; use effective_tensor for 2-D")
    dx = grid.spacing[0]
    if states is not None:
        U = grid.check(states, "states")
        lap = finite_difference_features(U, dx, periodic=grid.periodic)[..., 2]
        norm = float(np.vdot(lap, lap))
        if norm == 0.0:
            raise ValueError("states have a vanishing discrete Laplacian (affine profiles): no coefficient to fit")
        return float(np.vdot(grid.interior(model.predict(U)), lap)) / norm
    eps = _check_amplitude(amplitude)
    if isinstance(mode, bool) or not isinstance(mode, Integral) or mode < 1:
        raise ValueError(f"mode must be an integer >= 1, got {mode!r}")
    n_x = grid.shape[0]
    # sin(mode pi x) on n_x Dirichlet nodes is nonzero for mode <= n_x - 2; sin(2 pi mode x)
    # on n_x periodic nodes for 2 mode < n_x.
    if (mode > n_x - 2) if grid.boundary == "dirichlet" else (2 * mode >= n_x):
        raise ValueError(f"mode {mode} is not resolved on {n_x} {grid.boundary} nodes")
    x = grid.coordinates[0]
    k = (np.pi if grid.boundary == "dirichlet" else 2.0 * np.pi) * mode / grid.length
    v = np.sin(k * x)
    lap = finite_difference_features(v[None], dx, periodic=grid.periodic)[0, :, 2]
    b = _base_field(base, grid)
    pred = grid.interior(model.predict(np.stack([b + eps * v, b - eps * v])))
    response = (pred[0] - pred[1]) / (2.0 * eps)
    return float(response @ lap) / float(lap @ lap)


def effective_tensor(model, *, amplitude=1.0, modes=TENSOR_MODES, base=None) -> np.ndarray:
    """The diffusion tensor A a learned 2-D model implies, u_t = A_xx u_xx + 2 A_xy u_xy + A_yy u_yy.

    Probes v_m = sin(k0 (p_m x + q_m y)), k0 = 2 pi/L, for the ``modes`` (p_m, q_m);
    the central-difference responses r_m (as in :func:`effective_coefficient`) are
    fitted by least squares, over all nodes and modes, against the spectral
    (v_xx, 2 v_xy, v_yy) of the probes.

    Parameters
    ----------
    model : FieldModel
        Fitted 2-D (periodic) model.
    amplitude : float, default 1.0
        Probe amplitude, as in :func:`effective_coefficient`.
    modes : sequence of (int, int), default sin x, sin y, sin(x + y), sin(x - y)
        At least three modes whose (p^2, 2pq, q^2) span R^3, each resolved on the grid.
    base : array_like, optional
        Snapshot to linearise about (default 0).

    Returns
    -------
    ndarray, shape (2, 2)
        Symmetric [[A_xx, A_xy], [A_xy, A_yy]]; x is axis 1 of the snapshots.

    Notes
    -----
    For u_t = div(A grad u) the mode sin(k . x) is an eigenfunction with rate
    k^T A k = A_xx kx^2 + 2 A_xy kx ky + A_yy ky^2: sin x gives A_xx and sin y A_yy
    directly, sin(x +- y) carry the cross term. Directions are fixed by the probes,
    not by sorting rates (REFERENCE §2). Spectral derivatives are exact for these
    modes, so an exact spectral model returns A to rounding.
    """
    grid = _fitted_grid(model)
    if grid.ndim != 2:
        raise ValueError("effective_tensor needs a 2-D model; use effective_coefficient for 1-D")
    eps = _check_amplitude(amplitude)
    modes = np.asarray(modes)
    if modes.ndim != 2 or modes.shape[1] != 2 or modes.shape[0] < 3 or not np.issubdtype(modes.dtype, np.integer):
        raise ValueError(f"modes must be at least three integer pairs (p, q), got {modes.tolist()!r}")
    n_x, n_y = grid.shape
    if np.any(2 * np.abs(modes[:, 0]) >= n_x) or np.any(2 * np.abs(modes[:, 1]) >= n_y):
        raise ValueError(f"modes {modes.tolist()} are not all resolved (|p| < n_x/2, |q| < n_y/2) on {grid.shape}")
    symbols = np.stack([modes[:, 0] ** 2, 2 * modes[:, 0] * modes[:, 1], modes[:, 1] ** 2], axis=1)
    if np.linalg.matrix_rank(symbols) < 3:
        raise ValueError(f"modes {modes.tolist()} do not determine A_xx, A_xy and A_yy")
    x, y = grid.coordinates
    k0 = 2.0 * np.pi / grid.length
    V = np.sin(k0 * (modes[:, 0, None, None] * x[:, None] + modes[:, 1, None, None] * y[None, :]))
    b = _base_field(base, grid)
    pred = model.predict(np.concatenate([b + eps * V, b - eps * V]))
    response = (pred[: len(V)] - pred[len(V) :]) / (2.0 * eps)
    F = spectral_features_2d(V, grid.length)
    design = np.stack([F[..., 3], 2.0 * F[..., 4], F[..., 5]], axis=-1).reshape(-1, 3)
    (a_xx, a_xy, a_yy), *_ = np.linalg.lstsq(design, response.ravel(), rcond=None)
    return np.array([[a_xx, a_xy], [a_xy, a_yy]])
