"""Tests of cgflow.learn.models: the field-level interface, the networks, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from cgflow.learn import (
    LinearBaseline,
    MLPPointRegressor,
    PointwiseNetwork,
    StencilNetwork,
    model_from_dataset,
    relative_mse,
)

from .conftest import A_STAR, A_TENSOR, EPOCHS, exact_rhs, heat_data, tensor_data



# ----------------------------------------------------------------------------- linear baseline
def test_linear_baseline_recovers_a_star(heat_train, heat_test):
    model = LinearBaseline().fit(*heat_train)
    assert model.feature_names_ == ("U", "U_x", "U_xx")
    assert abs(model.coefficient("U_xx") - A_STAR) < 1e-8
    np.testing.assert_allclose(model.coef_[:2], 0.0, atol=1e-8)
    assert abs(model.intercept_) < 1e-8
    U, F = heat_test
    assert 1.0 - model.score(U, F) < 1e-20
    with pytest.raises(ValueError, match="unknown feature 'U_yy'"):
        model.coefficient("U_yy")


def test_linear_baseline_2d_recovers_tensor():
    U, F = tensor_data(6, np.linspace(0.0, 1.0, 6), seed=5)
    model = LinearBaseline().fit(U, F)
    assert model.grid_.boundary == "periodic"
    c = dict(zip(model.feature_names_, model.coef_))
    np.testing.assert_allclose(
        [c["U_xx"], c["U_xy"], c["U_yy"]], [A_TENSOR[0, 0], 2 * A_TENSOR[0, 1], A_TENSOR[1, 1]], atol=1e-8
    )
    np.testing.assert_allclose([c["U"], c["U_x"], c["U_y"]], 0.0, atol=1e-8)


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("name", ["pointwise", "stencil"])
def test_networks_held_out_rmse(networks, heat_test, name):
    model = networks[name]
    U, F = heat_test
    pred = model.predict(U)
    rmse = relative_mse(pred[:, 1:-1], F[:, 1:-1])
    assert rmse <= 1e-2, f"{name}: held-out rMSE {rmse:.3e}"
    assert model.score(U, F) == pytest.approx(1.0 - rmse, rel=1e-12)
    assert len(model.loss_curve_) == EPOCHS and 1 <= model.best_epoch_ <= EPOCHS
    assert model.loss_curve_[model.best_epoch_ - 1] == min(model.loss_curve_)


def test_stencil_network_is_the_convolution(networks, heat_test):
    """Seed eq. (17)-(19): conv(kernel 3, 32) -> ReLU -> conv1x1(32) -> ReLU -> conv1x1(1), evaluated
    literally as sums over the kernel on each snapshot, equals the dense network on windows."""
    model = networks["stencil"]
    reg = model.regressor_
    assert [W.shape for W in reg.coefs_] == [(3, 32), (32, 32), (32, 1)]
    U = heat_test[0][:20]
    z = (U - reg.x_mean_[0]) / reg.x_scale_[0]  # one input channel, one scaler
    C1, C2, C3 = reg.coefs_
    b1, b2, b3 = reg.intercepts_
    h = sum(z[:, 1 + j : z.shape[1] - 1 + j, None] * C1[j + 1] for j in (-1, 0, 1)) + b1  # eq. (17), n = 1
    h = np.maximum(h, 0.0)
    h = np.maximum(np.einsum("snp,pq->snq", h, C2) + b2, 0.0)  # 1x1 convolution
    out = (np.einsum("snp,pq->snq", h, C3) + b3)[..., 0] * reg.y_scale_ + reg.y_mean_
    np.testing.assert_allclose(model.predict(U)[:, 1:-1], out, rtol=1e-12, atol=1e-9)


def test_fit_is_deterministic_for_fixed_random_state():
    U, F = heat_data(4, 40, seed=7, dt=2e-2)
    for cls in (PointwiseNetwork, StencilNetwork):
        a = cls(max_iter=3, random_state=11).fit(U, F)
        b = cls(max_iter=3, random_state=11).fit(U, F)
        c = cls(max_iter=3, random_state=12).fit(U, F)
        for Wa, Wb in zip(a.regressor_.coefs_, b.regressor_.coefs_):
            np.testing.assert_array_equal(Wa, Wb)
        assert a.loss_curve_ == b.loss_curve_
        np.testing.assert_array_equal(a.predict(U), b.predict(U))
        assert not np.array_equal(a.predict(U), c.predict(U))


def test_predict_shapes_and_dirichlet_ends(networks, heat_test):
    model = networks["pointwise"]
    U = heat_test[0][:5]
    pred = model.predict(U)
    assert pred.shape == U.shape
    np.testing.assert_array_equal(pred[:, [0, -1]], 0.0)
    np.testing.assert_array_equal(model.predict(U[2]), pred[2])
    # derivative features are grid independent: a finer grid of the same domain is allowed
    assert model.predict(np.zeros((1, 21))).shape == (1, 21)
    with pytest.raises(ValueError, match="fitted on a grid of shape \\(11,\\)"):
        networks["stencil"].predict(np.zeros((1, 21)))


def test_rhs_matches_predict_and_is_vectorised(networks, heat_test):
    model = networks["stencil"]
    U = heat_test[0][:4]
    cols = U[:, 1:-1].T.copy()
    left, right = U[0, 0], U[0, -1]
    U_same_ends = U.copy()
    U_same_ends[:, 0], U_same_ends[:, -1] = left, right
    expected = model.predict(U_same_ends)[:, 1:-1].T
    np.testing.assert_array_equal(model.rhs(0.0, cols, left, right), expected)
    np.testing.assert_array_equal(model.rhs(0.0, cols[:, 1], left, right), expected[:, 1])
    with pytest.raises(ValueError, match="needs the fixed end values"):
        model.rhs(0.0, cols[:, 0])
    with pytest.raises(ValueError, match=r"u must have shape \(9,\)"):
        model.rhs(0.0, U[0], left, right)


def test_dirichlet_end_targets_may_be_nan(heat_train):
    U, F = heat_train
    F = F.copy()
    F[:, [0, -1]] = np.nan
    model = LinearBaseline().fit(U, F)
    assert abs(model.coefficient("U_xx") - A_STAR) < 1e-8


def test_periodic_1d_linear_baseline():
    n, a = 16, 0.3
    dx = 1.0 / n
    rng = np.random.default_rng(9)
    x = np.arange(n) * dx
    U = sum(rng.normal(size=(50, 1)) * np.sin(2 * np.pi * k * x + rng.uniform(0, 6.3)) for k in (1, 2, 3))
    F = a * (np.roll(U, 1, axis=1) - 2 * U + np.roll(U, -1, axis=1)) / dx**2
    model = LinearBaseline(boundary="periodic").fit(U, F)
    assert model.grid_.n_interior == n and abs(model.coefficient("U_xx") - a) < 1e-10
    assert model.predict(U).shape == U.shape


def test_two_dimensional_networks_fit_and_predict():
    times = np.linspace(0.0, 1.0, 8)
    U, F = tensor_data(8, times, seed=3)
    Ut, Ft = tensor_data(2, times, seed=4)
    for model in (PointwiseNetwork(max_iter=4, random_state=0), StencilNetwork(max_iter=4, random_state=0)):
        model.fit(U, F)
        assert model.predict(Ut).shape == Ut.shape and model.predict(Ut[0]).shape == (16, 16)
        assert model.score(Ut, Ft) > 0.9
    assert model.feature_names_[4] == "U[+0,+0]" and model.regressor_.coefs_[0].shape == (9, 32)
    np.testing.assert_array_equal(model.rhs(0.0, Ut[0].ravel()), model.predict(Ut[0]).ravel())


# ----------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("name", ["pointwise", "stencil", "linear"])
def test_to_dataset_reload_is_bitwise(networks, heat_train, heat_test, tmp_path, name):
    model = networks.get(name) or LinearBaseline().fit(*heat_train)
    ds = model.to_dataset()
    assert ds.attrs["cgflow_model"] == type(model).__name__
    U = heat_test[0]
    reloaded = model_from_dataset(ds)
    assert reloaded.get_params() == model.get_params()
    np.testing.assert_array_equal(reloaded.predict(U), model.predict(U))
    # through the run's storage format
    path = tmp_path / "model.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unstable Zarr v3 dtypes in the layout
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    with xr.open_zarr(path, consolidated=False) as stored:
        from_zarr = model_from_dataset(stored.load())
    np.testing.assert_array_equal(from_zarr.predict(U), model.predict(U))
    assert from_zarr.grid_ == model.grid_ and from_zarr.feature_names_ == model.feature_names_
    if name != "linear":
        assert from_zarr.loss_curve_ == model.loss_curve_ and from_zarr.best_epoch_ == model.best_epoch_


def test_model_from_dataset_rejects_other_datasets():
    with pytest.raises(ValueError, match="not a saved cgflow.learn model"):
        model_from_dataset(xr.Dataset(attrs={"cgflow_model": "Pickle"}))
    ds = LinearBaseline().fit(*heat_data(1, 5, seed=0)).to_dataset()
    ds.attrs["cgflow_learn_format"] = 99
    with pytest.raises(ValueError, match="unsupported cgflow_learn_format 99"):
        model_from_dataset(ds)


# ----------------------------------------------------------------------------- estimator contract
def test_field_models_are_sklearn_estimators():
    model = StencilNetwork(max_iter=5, random_state=3)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(width=3, max_iter=7).max_iter == 7
    assert not hasattr(PointwiseNetwork(), "grid_")
    with pytest.raises(Exception, match="not fitted"):
        PointwiseNetwork().predict(np.zeros((1, 11)))


def test_point_regressor_passes_check_estimator():
    results = check_estimator(MLPPointRegressor(max_iter=100), on_fail=None, on_skip=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) >= 45


@pytest.mark.parametrize(
    "fit_args, match",
    [
        ((np.zeros(11), np.zeros(11)), r"U must have shape .*got shape \(11,\)"),
        ((np.zeros((3, 11)), np.zeros((3, 10))), r"U and dUdt must have the same shape, got \(3, 11\) and \(3, 10\)"),
        ((np.zeros((3, 11, 4, 2)), np.zeros((3, 11, 4, 2))), "got shape"),
        ((np.full((3, 11), np.nan), np.zeros((3, 11))), "U has a non-finite entry nan at index"),
        (
            (np.zeros((3, 11)), np.full((3, 11), np.inf)),
            r"dUdt at the learned nodes has a non-finite entry inf at index \(0, 0\)",
        ),
    ],
)
def test_bad_fit_inputs_raise(fit_args, match):
    with pytest.raises(ValueError, match=match):
        LinearBaseline().fit(*fit_args)


@pytest.mark.parametrize(
    "model, match",
    [
        (PointwiseNetwork(hidden_layer_sizes=(32, 0)), "hidden_layer_sizes must be an integer >= 1"),
        (PointwiseNetwork(max_iter=0), "max_iter must be an integer >= 1"),
        (StencilNetwork(learning_rate_init=-1.0), "learning_rate_init must be a number"),
        (StencilNetwork(width=5), "only width 3"),
        (LinearBaseline(boundary="neumann"), "boundary must be one of"),
        (LinearBaseline(length=0.0), "length must be"),
    ],
)
def test_bad_parameters_raise_at_fit(model, match):
    U, F = heat_data(1, 5, seed=0)
    with pytest.raises(ValueError, match=match):
        model.fit(U, F)


def test_predict_and_score_input_errors():
    model = LinearBaseline().fit(*heat_data(2, 10, seed=0))
    with pytest.raises(ValueError, match=r"U must have shape \(n_snapshots, n_x\).*got shape \(2, 3, 11\)"):
        model.predict(np.zeros((2, 3, 11)))
    with pytest.raises(ValueError, match="non-finite"):
        model.predict(np.full(11, np.nan))
    with pytest.raises(ValueError, match="same shape"):
        model.score(np.zeros((4, 11)), np.zeros((3, 11)))
    U = heat_data(1, 3, seed=4)[0]
    with pytest.raises(ValueError, match="at least two snapshots"):
        model.score(U[0], exact_rhs(U[0]))
