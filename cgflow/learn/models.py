"""Learned PDE right-hand sides with the scikit-learn estimator API (seed 001 §4).

Two levels.

* Point level: :class:`MLPPointRegressor` maps samples X (n_samples, n_features)
  to y (n_samples,). It is the network of seed eq. (14)-(16) trained as in seed
  §5.1 (Adam, batch 64, learning rate 1e-3, mean squared error) and a plain
  scikit-learn regressor (``check_estimator``). The linear point regressor is
  :class:`sklearn.linear_model.LinearRegression` itself.
* Field level: :class:`PointwiseNetwork` (eq. (12), (16)), :class:`StencilNetwork`
  (eq. (13), (17)-(19)) and :class:`LinearBaseline` share one interface
  (:class:`FieldModel`): ``fit(U, dUdt)`` and ``predict(U)`` on stacks of
  snapshots (layout in :mod:`cgflow.learn.features`), ``score``, ``rhs`` for
  :func:`scipy.integrate.solve_ivp`, and pickle-free persistence through
  :meth:`FieldModel.to_dataset` / :func:`model_from_dataset`.

Fields become per-point samples internally: one sample per learned node and
snapshot (the interior nodes of a 1-D Dirichlet grid, every node of a periodic
grid); :class:`cgflow.learn.features.Grid` maps predictions back to fields.
"""

from __future__ import annotations

import abc
import json
import math
from numbers import Integral, Real

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .features import (
    FD_FEATURES,
    SPECTRAL_FEATURES_2D,
    Grid,
    check_fields,
    finite_difference_features,
    spectral_features_2d,
    stencil_feature_names,
    stencil_windows,
)
from .metrics import relative_mse

__all__ = [
    "FORMAT_VERSION",
    "FieldModel",
    "LinearBaseline",
    "MLPPointRegressor",
    "PointwiseNetwork",
    "StencilNetwork",
    "model_from_dataset",
]

#: Version of the :meth:`FieldModel.to_dataset` layout.
FORMAT_VERSION = 1

_INPUT_SCALINGS = ("feature", "shared", None)


# ----------------------------------------------------------------------------- validation helpers
def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(value, name: str, low: float, high: float = math.inf, *, low_open=True, high_open=True) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


def _check_hidden(sizes) -> tuple:
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(f"hidden_layer_sizes must be a sequence of positive integers, got {sizes!r}") from None
    for s in sizes:
        _check_int(s, "each entry of hidden_layer_sizes", 1)
    return tuple(int(s) for s in sizes)


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} has a non-finite entry {float(arr[idx])!r} at index {idx}")


def _scale(sd, mean):
    """Standard deviations with (near-)constant columns mapped to 1, as sklearn's StandardScaler."""
    sd = np.asarray(sd, dtype=np.float64)
    tiny = 10.0 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    return np.where(sd > tiny, sd, 1.0)


# ----------------------------------------------------------------------------- the network
#: Rows per block when evaluating a network on many samples (bounds the memory of
#: the hidden activations to a few MB per layer).
_CHUNK = 1 << 15


def _forward(X: np.ndarray, coefs, intercepts) -> np.ndarray:
    """Seed eq. (16): A3 max(A2 max(A1 z + b1, 0) + b2, 0) + b3 (any depth), in row blocks."""
    out = np.empty((X.shape[0], coefs[-1].shape[1]))
    for start in range(0, X.shape[0], _CHUNK):
        h = X[start : start + _CHUNK]
        for W, b in zip(coefs[:-1], intercepts[:-1]):
            h = h @ W
            h += b
            np.maximum(h, 0.0, out=h)
        np.matmul(h, coefs[-1], out=out[start : start + _CHUNK])
        out[start : start + _CHUNK] += intercepts[-1]
    return out


def _train_adam(X, y, hidden, *, epochs, batch_size, lr, beta_1, beta_2, epsilon, shuffle, restore_best, rng):
    """Minibatch Adam on the mean squared error of a ReLU network.

    X (n, p) and y (n, 1) are already standardised. Weights: Glorot-uniform, biases
    0 (the Keras defaults the seed's code used). Adam as in Kingma & Ba (and
    scikit-learn's MLPRegressor): step lr sqrt(1 - b2^t)/(1 - b1^t) m/(sqrt(v) + eps).
    All weights and biases are views into one flat vector, so the Adam update is
    five vector operations per step instead of five per layer.

    Returns (coefs, intercepts, loss_curve, n_steps, best_epoch): loss_curve holds
    the MSE on all of (X, y) after each epoch; with ``restore_best`` the returned
    weights are those after epoch ``best_epoch`` (1-based, lowest loss), otherwise
    after the last epoch.
    """
    dims = (X.shape[1], *hidden, 1)
    shapes = [s for a, b in zip(dims[:-1], dims[1:]) for s in ((a, b), (b,))]
    bounds = np.cumsum([0] + [math.prod(s) for s in shapes])
    theta = np.zeros(bounds[-1])
    grad = np.zeros_like(theta)
    P = [theta[i:j].reshape(s) for i, j, s in zip(bounds[:-1], bounds[1:], shapes)]
    G = [grad[i:j].reshape(s) for i, j, s in zip(bounds[:-1], bounds[1:], shapes)]
    W, b, gW, gb = P[0::2], P[1::2], G[0::2], G[1::2]
    for k, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        W[k][...] = rng.uniform(-lim, lim, size=(fan_in, fan_out))

    m, v = np.zeros_like(theta), np.zeros_like(theta)
    n, n_layers = X.shape[0], len(W)
    bs = min(batch_size, n)
    step, curve = 0, []
    best_theta, best_loss, best_epoch = theta.copy(), math.inf, 0
    for epoch in range(1, epochs + 1):
        if shuffle:
            order = rng.permutation(n)
            Xe, ye = X[order], y[order]
        else:
            Xe, ye = X, y
        for start in range(0, n, bs):
            xb, yb = Xe[start : start + bs], ye[start : start + bs]
            acts = [xb]
            h = xb
            for k in range(n_layers - 1):
                h = h @ W[k]
                h += b[k]
                np.maximum(h, 0.0, out=h)
                acts.append(h)
            d = h @ W[-1]
            d += b[-1]
            d -= yb
            d *= 2.0 / len(xb)  # d MSE / d output
            for k in range(n_layers - 1, -1, -1):
                np.matmul(acts[k].T, d, out=gW[k])
                np.sum(d, axis=0, out=gb[k])
                if k:
                    d = d @ W[k].T
                    d *= acts[k] > 0.0  # ReLU'(z) = 1[z > 0] = 1[max(z, 0) > 0]
            step += 1
            m *= beta_1
            m += (1.0 - beta_1) * grad
            v *= beta_2
            v += (1.0 - beta_2) * grad * grad
            theta -= (lr * math.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)) * m / (np.sqrt(v) + epsilon)
        r = _forward(X, W, b) - y
        loss = float(np.vdot(r, r)) / n
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged in epoch {epoch} (loss {loss!r}); lower learning_rate_init")
        curve.append(loss)
        if loss < best_loss:
            best_loss, best_epoch = loss, epoch
            if restore_best:
                best_theta[:] = theta
    if restore_best:
        theta[:] = best_theta
    else:
        best_epoch = epochs
    return [np.array(w) for w in W], [np.array(c) for c in b], curve, step, best_epoch


class MLPPointRegressor(RegressorMixin, BaseEstimator):
    """ReLU network y = F(x) on per-point samples, trained by minibatch Adam on the MSE.

    The network of seed eq. (14)-(16): dense layers of ``hidden_layer_sizes``
    units with ReLU, then a linear output. Defaults follow seed §4-§5.1:
    (32, 32) hidden units ("three fully connected layers with 32 nodes", the third
    being the output), Adam with batch 64 and learning rate 1e-3, mean squared error.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (32, 32)
        Widths of the ReLU layers; ``()`` gives an affine model.
    max_iter : int, default 200
        Number of epochs (passes over the data). There is no early stopping: every
        fit runs exactly ``max_iter`` epochs.
    batch_size : int, default 64
        Minibatch size (clipped to n_samples).
    learning_rate_init : float, default 1e-3
        Adam step size (constant).
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam moment decay rates and denominator guard.
    shuffle : bool, default True
        Reshuffle the samples every epoch.
    restore_best : bool, default True
        Return the weights after the epoch with the lowest training MSE (measured
        on all samples after each epoch) instead of those after the last epoch.
        With a constant step Adam's loss keeps fluctuating, and a late spike can
        multiply the final error several times; this selection uses training data
        only.
    input_scaling : {"feature", "shared", None}, default "feature"
        Standardise each input column ("feature"), all columns with one common mean
        and standard deviation ("shared": a single input channel, as for the
        stencil windows of :class:`StencilNetwork`), or not at all.
    scale_target : bool, default True
        Standardise y for training (predictions are mapped back).
    random_state : int, RandomState instance or None
        Seeds the weight initialisation and the shuffles; an int gives bitwise
        reproducible fits on one machine.

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Weight matrices A^(i) (n_in, n_out) and biases b^(i) of eq. (16), acting on
        standardised inputs and producing the standardised output.
    x_mean_, x_scale_ : ndarray, shape (n_features_in_,)
        Input standardisation, z = (x - x_mean_)/x_scale_.
    y_mean_, y_scale_ : float
        Output standardisation, y = y_mean_ + y_scale_ * out.
    loss_curve_ : list of float
        Training MSE on all samples after each epoch, in standardised units (1e-3 is
        an error of about 1e-3 of the target's variance).
    best_epoch_ : int
        Epoch (1-based) whose weights were kept.
    n_iter_ : int
        Epochs run. ``t_`` : int, Adam steps taken.
    n_features_in_ : int

    Notes
    -----
    Why standardise inside the estimator. The inputs differ by orders of
    magnitude: for the seed's initial conditions (eq. (23), wavenumbers up to
    2 pi * 4) U is O(1), U_x is O(10) and U_xx is O(100), and so is
    dU/dt = a* U_xx. Adam moves every parameter by about ``learning_rate_init``
    per step whatever the size of the gradient, so with raw data the output weights
    would need ~1e5 steps just to reach the O(100) scale of the target, and the
    Glorot initialisation (which assumes unit-scale inputs) would leave the first
    layer dominated by U_xx. Standardising x and y is an affine change of variables
    that can be folded into the first and last layers, so it changes the
    conditioning of training, not the set of functions the network represents.
    """

    def __init__(
        self,
        hidden_layer_sizes=(32, 32),
        *,
        max_iter=200,
        batch_size=64,
        learning_rate_init=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        shuffle=True,
        restore_best=True,
        input_scaling="feature",
        scale_target=True,
        random_state=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.shuffle = shuffle
        self.restore_best = restore_best
        self.input_scaling = input_scaling
        self.scale_target = scale_target
        self.random_state = random_state

    def _validated_params(self) -> dict:
        if self.input_scaling not in _INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {_INPUT_SCALINGS}, got {self.input_scaling!r}")
        return dict(
            hidden=_check_hidden(self.hidden_layer_sizes),
            epochs=_check_int(self.max_iter, "max_iter", 1),
            batch_size=_check_int(self.batch_size, "batch_size", 1),
            lr=_check_real(self.learning_rate_init, "learning_rate_init", 0.0),
            beta_1=_check_real(self.beta_1, "beta_1", 0.0, 1.0, low_open=False),
            beta_2=_check_real(self.beta_2, "beta_2", 0.0, 1.0, low_open=False),
            epsilon=_check_real(self.epsilon, "epsilon", 0.0),
        )

    def fit(self, X, y):
        """Fit on samples X (n_samples, n_features), targets y (n_samples,). Returns self."""
        p = self._validated_params()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        rng = check_random_state(self.random_state)
        if self.input_scaling == "feature":
            mean = X.mean(axis=0)
            scale = _scale(X.std(axis=0), mean)
        elif self.input_scaling == "shared":
            mean = np.full(X.shape[1], X.mean())
            scale = np.full(X.shape[1], _scale(X.std(), X.mean()))
        else:
            mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        y_mean, y_scale = (float(y.mean()), float(_scale(y.std(), y.mean()))) if self.scale_target else (0.0, 1.0)
        # The products are (64 x 32)-sized: BLAS threads only add overhead (about 2x
        # slower and 1.7x the CPU time here), so train single-threaded.
        with threadpool_limits(limits=1, user_api="blas"):
            coefs, intercepts, curve, steps, best = _train_adam(
                (X - mean) / scale,
                ((y - y_mean) / y_scale)[:, None],
                p["hidden"],
                epochs=p["epochs"],
                batch_size=p["batch_size"],
                lr=p["lr"],
                beta_1=p["beta_1"],
                beta_2=p["beta_2"],
                epsilon=p["epsilon"],
                shuffle=bool(self.shuffle),
                restore_best=bool(self.restore_best),
                rng=rng,
            )
        self.x_mean_, self.x_scale_ = mean, scale
        self.y_mean_, self.y_scale_ = y_mean, y_scale
        self.coefs_, self.intercepts_ = coefs, intercepts
        self.loss_curve_, self.best_epoch_, self.n_iter_, self.t_ = curve, best, p["epochs"], steps
        return self

    def predict(self, X):
        """Predictions, shape (n_samples,)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        out = _forward((X - self.x_mean_) / self.x_scale_, self.coefs_, self.intercepts_)
        return out[:, 0] * self.y_scale_ + self.y_mean_

    # ------------------------------------------------------------------ persistence helpers
    def _state_variables(self) -> dict:
        n = len(self.coefs_)
        dims = ["feature", *(f"hidden_{i}" for i in range(1, n)), "output"]
        out = {
            "input_mean": (("feature",), self.x_mean_),
            "input_scale": (("feature",), self.x_scale_),
            "target_mean": ((), self.y_mean_),
            "target_scale": ((), self.y_scale_),
            "loss_curve": (("epoch",), np.asarray(self.loss_curve_, dtype=np.float64)),
            "best_epoch": ((), np.int64(self.best_epoch_)),
            "adam_steps": ((), np.int64(self.t_)),
        }
        for i, (W, c) in enumerate(zip(self.coefs_, self.intercepts_)):
            out[f"weight_{i}"] = ((dims[i], dims[i + 1]), W)
            out[f"bias_{i}"] = ((dims[i + 1],), c)
        return out

    def _load_state(self, ds: xr.Dataset) -> MLPPointRegressor:
        def arr(name):
            return np.ascontiguousarray(ds[name].values, dtype=np.float64)

        n_layers = sum(1 for name in ds.data_vars if str(name).startswith("weight_"))
        self.coefs_ = [arr(f"weight_{i}") for i in range(n_layers)]
        self.intercepts_ = [arr(f"bias_{i}") for i in range(n_layers)]
        self.x_mean_, self.x_scale_ = arr("input_mean"), arr("input_scale")
        self.y_mean_, self.y_scale_ = float(ds["target_mean"].values), float(ds["target_scale"].values)
        self.loss_curve_ = [float(x) for x in ds["loss_curve"].values]
        self.best_epoch_, self.t_ = int(ds["best_epoch"].values), int(ds["adam_steps"].values)
        self.n_iter_ = len(self.loss_curve_)
        self.n_features_in_ = self.coefs_[0].shape[0]
        return self


# ----------------------------------------------------------------------------- field level
class FieldModel(RegressorMixin, BaseEstimator, abc.ABC):
    """Common field-level interface of the learned right-hand sides.

    Subclasses define the per-point features (:meth:`_features`) and the point
    regression (:meth:`_fit_points`, :meth:`_predict_points`). Geometry parameters
    shared by all: ``length`` (None: 1 in 1-D, 2 pi in 2-D, the seed's domains) and
    ``boundary`` ("auto": Dirichlet in 1-D, periodic in 2-D).

    Fitted attributes: ``grid_`` (:class:`~cgflow.learn.features.Grid`),
    ``feature_names_``, plus the subclass's own.

    Not for :func:`sklearn.utils.estimator_checks.check_estimator`: X here is a
    stack of fields and y a stack of time derivatives of the same shape, not
    (n_samples, n_features) and (n_samples,). The point-level regressors
    (:class:`MLPPointRegressor`, :class:`~sklearn.linear_model.LinearRegression`) are
    the ones checked.
    """

    #: True if the learned map depends on the grid (stencil weights), so predictions
    #: need the fitted grid; False if it acts on grid-independent derivatives.
    _grid_dependent = False

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _features(self, U: np.ndarray, grid: Grid) -> np.ndarray:
        """(n_snapshots, *grid.interior_shape, n_features)."""

    @abc.abstractmethod
    def _feature_names(self, grid: Grid) -> tuple:
        """Names of the feature columns."""

    @abc.abstractmethod
    def _fit_points(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit the point-level regressor on samples (n_samples, n_features) -> (n_samples,)."""

    @abc.abstractmethod
    def _predict_points(self, X: np.ndarray) -> np.ndarray:
        """Predict (n_samples,) from samples (n_samples, n_features)."""

    @abc.abstractmethod
    def _state_variables(self) -> dict:
        """Fitted state as xarray variables (for :meth:`to_dataset`)."""

    @abc.abstractmethod
    def _load_state(self, ds: xr.Dataset) -> None:
        """Restore the fitted state written by :meth:`_state_variables`."""

    # ------------------------------------------------------------------ fields <-> samples
    def _samples(self, U: np.ndarray, grid: Grid) -> np.ndarray:
        X = self._features(U, grid)
        return X.reshape(-1, X.shape[-1])

    def _stack(self, U, name: str = "U"):
        """(stack, single) with single = True if U was one snapshot of the fitted dimension."""
        arr = np.asarray(U, dtype=np.float64)
        single = arr.ndim == self.grid_.ndim
        arr = check_fields(arr[None] if single else arr, name, ndim=self.grid_.ndim)
        return arr, single

    def _grid_for(self, U: np.ndarray) -> Grid:
        fitted = self.grid_
        if U.shape[1:] == fitted.shape:
            return fitted
        if self._grid_dependent:
            raise ValueError(
                f"{type(self).__name__} was fitted on a grid of shape {fitted.shape}; its weights are a "
                f"discretisation on that grid (seed §4) and cannot be used on snapshots of shape {U.shape[1:]}"
            )
        return Grid(U.shape[1:], fitted.length, fitted.boundary)

    # ------------------------------------------------------------------ estimator API
    def fit(self, U, dUdt):
        """Fit on snapshots ``U`` and their time derivatives ``dUdt`` (same shape).

        Parameters
        ----------
        U : array_like, shape (n_snapshots, n_x) or (n_snapshots, n_x, n_y)
            Snapshots, possibly from several trajectories (the samples are per
            point and time, so their order does not matter).
        dUdt : array_like, same shape
            Time derivatives. At the Dirichlet end nodes of a 1-D grid they are
            ignored (may be NaN).

        Returns
        -------
        self
        """
        U = check_fields(U, "U")
        dUdt = check_fields(dUdt, "dUdt")
        if dUdt.shape != U.shape:
            raise ValueError(f"U and dUdt must have the same shape, got {U.shape} and {dUdt.shape}")
        grid = Grid.for_fields(U, self.length, self.boundary)
        _check_finite(U, "U")
        y = grid.interior(dUdt)
        _check_finite(y, "dUdt at the learned nodes")
        X = self._samples(U, grid)
        self.feature_names_ = self._feature_names(grid)
        self._fit_points(X, y.reshape(-1))
        self.grid_ = grid
        return self

    def predict(self, U):
        """Learned dU/dt of snapshots ``U``.

        Parameters
        ----------
        U : array_like
            A stack (n_snapshots, *grid) or one snapshot (*grid). Networks on
            derivative features accept other grid sizes of the same domain; the
            stencil network needs the fitted grid.

        Returns
        -------
        ndarray, same shape as ``U``
            dU/dt at every node. At 1-D Dirichlet end nodes it is 0: the boundary
            values are time independent (seed eq. (21)), so 0 is their exact time
            derivative, not a filler, and rollouts that use it keep them fixed.
        """
        check_is_fitted(self, "grid_")
        U, single = self._stack(U)
        _check_finite(U, "U")
        grid = self._grid_for(U)
        out = grid.to_field(self._predict_points(self._samples(U, grid)), fill=0.0)
        return out[0] if single else out

    def score(self, U, dUdt):
        """1 - rMSE of the predicted dU/dt at the learned nodes, seed eq. (24).

        This is the coefficient of determination R^2 with the per-node mean over
        snapshots as baseline (scikit-learn's ``r2_score(..., multioutput=
        "variance_weighted")`` with snapshots as samples and nodes as outputs), so
        greater is better, 1 is perfect, and ``1 - score`` is exactly the paper's
        rMSE (:func:`cgflow.learn.metrics.relative_mse`). Needs >= 2 snapshots.
        """
        check_is_fitted(self, "grid_")
        U, single = self._stack(U)
        dUdt = np.asarray(dUdt, dtype=np.float64)
        dUdt = check_fields(dUdt[None] if single else dUdt, "dUdt", ndim=self.grid_.ndim)
        if dUdt.shape != U.shape:
            raise ValueError(f"U and dUdt must have the same shape, got {U.shape} and {dUdt.shape}")
        grid = self._grid_for(U)
        return 1.0 - relative_mse(grid.interior(self.predict(U)), grid.interior(dUdt))

    def rhs(self, t, u, left=None, right=None):
        """Right-hand side f(t, u) of the learned semi-discrete system, for ``solve_ivp``.

        Parameters
        ----------
        t : float
            Time (unused: the learned equation is autonomous).
        u : ndarray, shape (n,) or (n, k)
            State at the learned nodes of the fitted grid: the n_x - 2 interior
            values (1-D Dirichlet) or the flattened field (periodic); k columns for
            ``solve_ivp(..., vectorized=True)``.
        left, right : float, optional
            The fixed end values (1-D Dirichlet only, required there), e.g.
            ``solve_ivp(model.rhs, span, U0[1:-1], args=(U0[0], U0[-1]), vectorized=True)``.

        Returns
        -------
        ndarray, same shape as ``u``
        """
        check_is_fitted(self, "grid_")
        g = self.grid_
        u = np.asarray(u, dtype=np.float64)
        if u.ndim not in (1, 2) or u.shape[0] != g.n_interior:
            raise ValueError(
                f"u must have shape ({g.n_interior},) or ({g.n_interior}, k): the learned nodes of the "
                f"fitted grid {g.shape}, got {u.shape}"
            )
        cols = u if u.ndim == 2 else u[:, None]
        k = cols.shape[1]
        if g.boundary == "dirichlet":
            if left is None or right is None:
                raise ValueError(
                    "a 1-D Dirichlet model needs the fixed end values: rhs(t, u, left, right), "
                    "e.g. solve_ivp(model.rhs, span, U0[1:-1], args=(U0[0], U0[-1]))"
                )
            fields = np.empty((k, g.shape[0]))
            fields[:, 0], fields[:, -1], fields[:, 1:-1] = left, right, cols.T
        else:
            if left is not None or right is not None:
                raise ValueError("end values are meaningful only for a 1-D Dirichlet model; this one is periodic")
            fields = cols.T.reshape((k, *g.shape))
        d = g.interior(self.predict(fields)).reshape(k, -1).T
        return d if u.ndim == 2 else d[:, 0]

    # ------------------------------------------------------------------ persistence
    def to_dataset(self) -> xr.Dataset:
        """The fitted model as an :class:`xarray.Dataset` (no pickle).

        Variables hold the learned arrays (float64); attrs hold the class name
        (``cgflow_model``), ``cgflow_learn_format``, the constructor parameters as
        JSON (``params``; a RandomState instance as random_state is stored as null)
        and the fitted grid. Writable to Zarr/netCDF as is; reload with
        :func:`model_from_dataset`, which predicts bitwise identically.
        """
        check_is_fitted(self, "grid_")
        attrs = {
            "cgflow_model": type(self).__name__,
            "cgflow_learn_format": FORMAT_VERSION,
            "params": json.dumps({k: _jsonable(v) for k, v in self.get_params().items()}),
            "grid_shape": list(self.grid_.shape),
            "grid_length": self.grid_.length,
            "boundary": self.grid_.boundary,
            "feature_names": list(self.feature_names_),
        }
        return xr.Dataset(self._state_variables(), attrs=attrs)


def _jsonable(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return None  # e.g. a RandomState instance: irrelevant for prediction


def _derivative_features(U: np.ndarray, grid: Grid) -> np.ndarray:
    if grid.ndim == 1:
        return finite_difference_features(U, grid.spacing[0], periodic=grid.periodic)
    return spectral_features_2d(U, grid.length)


def _derivative_names(grid: Grid) -> tuple:
    return FD_FEATURES if grid.ndim == 1 else SPECTRAL_FEATURES_2D


class _NetworkModel(FieldModel):
    """Field model whose point regression is an :class:`MLPPointRegressor`."""

    _input_scaling = "feature"

    def _point_regressor(self) -> MLPPointRegressor:
        return MLPPointRegressor(
            hidden_layer_sizes=self.hidden_layer_sizes,
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            learning_rate_init=self.learning_rate_init,
            restore_best=self.restore_best,
            input_scaling=self._input_scaling,
            random_state=self.random_state,
        )

    def _set_regressor(self, regressor: MLPPointRegressor) -> None:
        self.regressor_ = regressor
        self.loss_curve_ = list(regressor.loss_curve_)
        self.best_epoch_ = regressor.best_epoch_
        self.n_iter_ = regressor.n_iter_

    def _fit_points(self, X, y):
        self._set_regressor(self._point_regressor().fit(X, y))

    def _predict_points(self, X):
        return self.regressor_.predict(X)

    def _state_variables(self):
        return self.regressor_._state_variables()

    def _load_state(self, ds):
        self._set_regressor(self._point_regressor()._load_state(ds))


class PointwiseNetwork(_NetworkModel):
    """dU/dt = F(U, U_x, U_xx, ...) at every point, learned by a ReLU network (seed eq. (12), (16)).

    Features: (U, U_x, U_xx) by second-order central differences on the macro grid
    in 1-D (seed §5.1), (U, U_x, U_y, U_xx, U_xy, U_yy) by FFT in 2-D (seed §5.2).
    Network: ``hidden_layer_sizes`` ReLU layers and a linear output, (32, 32) as in
    the paper's Fig. 3(a); trained by :class:`MLPPointRegressor` (Adam, batch 64,
    learning rate 1e-3, MSE, inputs and output standardised).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (32, 32)
    max_iter : int, default 40
        Epochs (the paper does not give its count). On the seed's 1-D data set
        (8 trajectories x 1000 snapshots x 9 interior nodes = 72,000 samples, 1125
        steps per epoch) 40 epochs give a held-out rMSE (eq. (24)) of about 2e-4
        to 5e-4 against the exact semi-discrete equation, for about 4-5 s of CPU
        time; 10 epochs already give about 1e-3. Scale it inversely with the data
        size.
    batch_size : int, default 64
    learning_rate_init : float, default 1e-3
    restore_best : bool, default True
        Keep the weights of the epoch with the lowest training MSE.
    random_state : int, RandomState instance or None
    length : float or None, default None
        Domain side: None means 1 in 1-D ([0, 1], Dirichlet) and 2 pi in 2-D.
    boundary : {"auto", "dirichlet", "periodic"}, default "auto"
        "auto": Dirichlet in 1-D, periodic in 2-D.

    Attributes
    ----------
    grid_ : Grid
    feature_names_ : tuple of str
    regressor_ : MLPPointRegressor
    loss_curve_ : list of float
    best_epoch_ : int
    n_iter_ : int
    """

    def __init__(
        self,
        hidden_layer_sizes=(32, 32),
        *,
        max_iter=40,
        batch_size=64,
        learning_rate_init=1e-3,
        restore_best=True,
        random_state=None,
        length=None,
        boundary="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.restore_best = restore_best
        self.random_state = random_state
        self.length = length
        self.boundary = boundary

    def _features(self, U, grid):
        return _derivative_features(U, grid)

    def _feature_names(self, grid):
        return _derivative_names(grid)


class StencilNetwork(_NetworkModel):
    """dU_j/dt = G(U_{j-1}, U_j, U_{j+1}) on the macro grid, a convolutional network (seed eq. (13), (17)-(19)).

    The paper's network (Fig. 3(b)): a convolution with kernel ``width`` and 32
    filters, ReLU, a 1x1 convolution with 32 filters, ReLU, a 1x1 convolution with
    one filter. It is implemented exactly as a dense network applied to every
    stencil window:

    * a convolution with one input channel and kernel 2r + 1 (eq. (17)) computes at
      node i, for filter q, sum_j C_jq U_{i+j} + b_q: a dense layer with weight
      matrix C (2r + 1, n_filters) applied to the window (U_{i-r}, ..., U_{i+r});
      in 2-D the same with the flattened 3 x 3 window;
    * a 1x1 convolution (kernel size 1, n = 0 in eq. (17)) mixes channels at one
      point only: a dense layer per point;
    * ReLU acts per entry.

    So eq. (19) at node i is eq. (16) applied to the window of node i, and the
    first hidden width is the number of filters of the first convolution. Windows
    are the interior nodes' 3-windows in 1-D Dirichlet (``width`` must be 3 there:
    wider windows do not fit next to the ends) and periodic windows otherwise.
    The single input channel is standardised with one mean and scale
    (``input_scaling="shared"``), which keeps the equivalence exact.

    The weights are a discretisation on the training grid (seed §4): predictions
    need snapshots on the fitted grid.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (32, 32)
        Filters of the first convolution and of the 1x1 convolutions.
    width : int, default 3
        Kernel size of the first convolution (odd).
    max_iter, batch_size, learning_rate_init, restore_best, random_state, length, boundary
        As in :class:`PointwiseNetwork`.

    Attributes
    ----------
    As :class:`PointwiseNetwork`; ``feature_names_`` are the window offsets.
    """

    _grid_dependent = True
    _input_scaling = "shared"

    def __init__(
        self,
        hidden_layer_sizes=(32, 32),
        *,
        width=3,
        max_iter=40,
        batch_size=64,
        learning_rate_init=1e-3,
        restore_best=True,
        random_state=None,
        length=None,
        boundary="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.width = width
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.restore_best = restore_best
        self.random_state = random_state
        self.length = length
        self.boundary = boundary

    def _features(self, U, grid):
        if grid.boundary == "dirichlet" and self.width != 3:
            raise ValueError(
                f"width={self.width!r}: on a 1-D Dirichlet grid only width 3 gives a window at every interior node"
            )
        W = stencil_windows(U, self.width, periodic=grid.periodic)
        return W.reshape((*W.shape[: 1 + grid.ndim], -1))

    def _feature_names(self, grid):
        return stencil_feature_names(self.width, grid.ndim)


class LinearBaseline(FieldModel):
    """Ordinary least squares dU/dt = c . (U, U_x, U_xx) + c0 on the derivative features.

    Same features as :class:`PointwiseNetwork`. A homogenized diffusion equation is
    linear in the second derivatives, so in 1-D the coefficient on U_xx estimates
    a* (seed eq. (22)); in 2-D the coefficients on U_xx, U_xy, U_yy estimate
    A_xx, 2 A_xy, A_yy. Fitted with :class:`sklearn.linear_model.LinearRegression`.

    Parameters
    ----------
    fit_intercept : bool, default True
    length, boundary
        As in :class:`PointwiseNetwork`.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features,)
        Coefficients on ``feature_names_``.
    intercept_ : float
    grid_, feature_names_
    """

    def __init__(self, *, fit_intercept=True, length=None, boundary="auto"):
        self.fit_intercept = fit_intercept
        self.length = length
        self.boundary = boundary

    def _features(self, U, grid):
        return _derivative_features(U, grid)

    def _feature_names(self, grid):
        return _derivative_names(grid)

    def _fit_points(self, X, y):
        lr = LinearRegression(fit_intercept=bool(self.fit_intercept)).fit(X, y)
        self.coef_ = np.array(lr.coef_, dtype=np.float64)
        self.intercept_ = float(lr.intercept_)

    def _predict_points(self, X):
        return X @ self.coef_ + self.intercept_

    def coefficient(self, name: str) -> float:
        """The fitted coefficient on feature ``name`` (e.g. ``"U_xx"``: the estimate of a*)."""
        check_is_fitted(self, "coef_")
        if name not in self.feature_names_:
            raise ValueError(f"unknown feature {name!r}; features are {self.feature_names_}")
        return float(self.coef_[self.feature_names_.index(name)])

    def _state_variables(self):
        return {"coef": (("feature",), self.coef_), "intercept": ((), self.intercept_)}

    def _load_state(self, ds):
        self.coef_ = np.ascontiguousarray(ds["coef"].values, dtype=np.float64)
        self.intercept_ = float(ds["intercept"].values)


_REGISTRY = {cls.__name__: cls for cls in (PointwiseNetwork, StencilNetwork, LinearBaseline)}


def model_from_dataset(ds: xr.Dataset) -> FieldModel:
    """Rebuild a fitted field model from :meth:`FieldModel.to_dataset` output.

    Parameters
    ----------
    ds : xarray.Dataset
        As written by ``to_dataset`` (possibly after a round trip through Zarr).

    Returns
    -------
    FieldModel
        Fitted; predicts bitwise identically to the saved model.

    Raises
    ------
    ValueError
        If ``ds`` is not a saved cgflow.learn model or has an unknown format.
    """
    attrs = ds.attrs
    name = attrs.get("cgflow_model")
    if name not in _REGISTRY:
        raise ValueError(
            f"not a saved cgflow.learn model: attr 'cgflow_model' is {name!r}, expected one of {sorted(_REGISTRY)}"
        )
    if attrs.get("cgflow_learn_format") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported cgflow_learn_format {attrs.get('cgflow_learn_format')!r}, this version reads {FORMAT_VERSION}"
        )
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(attrs["params"]).items()}
    model = _REGISTRY[name](**params)
    model._load_state(ds)
    model.feature_names_ = tuple(attrs["feature_names"])
    model.grid_ = Grid(tuple(int(n) for n in attrs["grid_shape"]), float(attrs["grid_length"]), attrs["boundary"])
    return model
