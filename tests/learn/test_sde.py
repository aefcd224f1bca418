"""Tests of cgflow.learn.sde (the K-scaled SDE learner of seed 002) and cgflow.learn._jax.

Oracles: a direct NumPy evaluation of the REFERENCE-002 §0 loss, finite
differences, the exact Curie-Weiss drift and diffusion (REFERENCE-002 §9), and
the exact stationary covariance of the Euler-Maruyama discretised
Ornstein-Uhlenbeck process. Fixed seeds; tolerances in standard errors or
stated fractions, each checked to be able to fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cgflow.learn import _jax
from cgflow.learn.sde import SIGMA_KINDS, SDEModel, sde_loss_numpy

from ..oracles import mlp_numpy

jax = pytest.importorskip("jax")


def pairs(n, n_dim, seed):
    rng = np.random.default_rng(seed)
    z0 = rng.normal(size=(n, n_dim))
    z1 = z0 + 0.3 * rng.normal(size=(n, n_dim))
    dt = rng.uniform(0.05, 0.5, n)
    return z0, z1, dt


def initialised(kind, n_dim, *, lam=16.0, eps=1e-4, hidden=(8, 8), seed=0):
    """A model with its initial (random) parameters: epochs=0 runs no optimiser step."""
    z0, z1, dt = pairs(16, n_dim, 99)
    return SDEModel(hidden, sigma=kind, loss_scaling=lam, epsilon=eps, epochs=0, random_state=seed).fit(z0, z1, dt)


# ----------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("kind", SIGMA_KINDS)
@pytest.mark.parametrize("n_dim", [1, 3])
def test_loss_matches_direct_numpy(kind, n_dim):
    model = initialised(kind, n_dim, lam=16.0, eps=1e-4)
    z0, z1, dt = pairs(257, n_dim, 1)
    expected = sde_loss_numpy(model.drift(z0), model.sigma_matrix(z0), z0, z1, dt, 16.0, 1e-4)
    got = model.loss(z0, z1, dt)
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    # lambda enters: the baseline's loss differs and matches its own oracle
    expected1 = sde_loss_numpy(model.drift(z0), model.sigma_matrix(z0), z0, z1, dt, 1.0, 1e-4)
    assert model.loss(z0, z1, dt, loss_scaling=1.0) == pytest.approx(expected1, rel=1e-12, abs=0)
    assert abs(expected1 - expected) > 1e-3 * abs(expected)


def test_diffusion_is_sigma_sigma_t_and_cholesky_is_lower_triangular_positive():
    model = initialised("cholesky", 3)
    z = np.random.default_rng(2).normal(size=(50, 3))
    s = model.sigma_matrix(z)
    assert np.all(np.triu(s, 1) == 0.0)
    assert np.all(np.diagonal(s, axis1=1, axis2=2) > 0.0)
    np.testing.assert_allclose(model.diffusion(z), s @ np.swapaxes(s, 1, 2), rtol=1e-15)
    assert np.all(np.linalg.eigvalsh(model.diffusion(z)) > 0)
    cd = initialised("constant_diagonal", 3)
    np.testing.assert_array_equal(cd.diffusion(z), np.broadcast_to(np.eye(3), (50, 3, 3)))  # v initialised to 1


@pytest.mark.parametrize("kind", SIGMA_KINDS)
def test_loss_gradient_matches_finite_differences(kind):
    model = initialised(kind, 2, lam=4.0, eps=1e-3, hidden=(6,))
    z0, z1, dt = pairs(64, 2, 3)
    grad = model.loss_grad(z0, z1, dt)
    state = model.state_dict()
    flat_grad = {}
    for i, layer in enumerate(grad["drift"]):
        flat_grad[f"drift.{i}.W"], flat_grad[f"drift.{i}.b"] = layer["W"], layer["b"]
    if kind == "constant_diagonal":
        flat_grad["sigma_diag"] = grad["sigma_diag"]
    else:
        for i, layer in enumerate(grad["sigma"]):
            flat_grad[f"sigma.{i}.W"], flat_grad[f"sigma.{i}.b"] = layer["W"], layer["b"]
    rng = np.random.default_rng(4)
    h = 1e-6
    checked = 0
    for name, g in flat_grad.items():
        for _ in range(2):
            idx = tuple(int(rng.integers(0, s)) for s in g.shape)
            plus, minus = dict(state), dict(state)
            plus[name], minus[name] = state[name].copy(), state[name].copy()
            plus[name][idx] += h
            minus[name][idx] -= h
            probe = SDEModel(**model.get_params())
            up = probe.load_state_dict(plus).loss(z0, z1, dt)
            fd = (up - probe.load_state_dict(minus).loss(z0, z1, dt)) / (2 * h)
            assert g[idx] == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, idx)
            checked += abs(fd) > 1e-4
    assert checked >= len(flat_grad)  # most probes see a non-trivial slope


# ----------------------------------------------------------------------------- the central claim
BETA, H, N, K = 1 / 1.1, 0.1, 4096, 16


def cw_drift(m):
    """REFERENCE-002 §9: a(m) = -m + tanh(beta (m + h))."""
    return -m + np.tanh(BETA * (m + H))


def cw_sigma2(m):
    """REFERENCE-002 §9: sigma^2(m) = (2/N)(1 - m tanh(beta (m + h)))."""
    return (2.0 / N) * (1.0 - m * np.tanh(BETA * (m + H)))


@pytest.fixture(scope="module")
def cw_fits():
    """Partial-evolution-like Curie-Weiss pairs: exact EM mean, K times the large-system noise.

    40,000 pairs, m0 ~ U(-0.8, 0.8), dt ~ U(0.1, 0.3); z1 = m0 + a dt + sqrt(K sigma^2 dt) xi.
    Small networks (32, 32), 30 epochs, lr 1e-2: ~5 s per fit.
    """
    rng = np.random.default_rng(20251112)
    n = 40_000
    z0 = rng.uniform(-0.8, 0.8, n)
    dt = rng.uniform(0.1, 0.3, n)
    z1 = z0 + cw_drift(z0) * dt + np.sqrt(K * cw_sigma2(z0) * dt) * rng.standard_normal(n)
    common = dict(sigma="cholesky", epsilon=1e-6, learning_rate=1e-2, epochs=30, random_state=(7, 1, 0, 0))
    ours = SDEModel((32, 32), loss_scaling=K, **common).fit(z0[:, None], z1[:, None], dt)
    base = SDEModel((32, 32), loss_scaling=1.0, **common).fit(z0[:, None], z1[:, None], dt)
    return ours, base


GRID = np.linspace(-0.75, 0.75, 31)[:, None]


def test_k_scaled_fit_recovers_large_system_diffusion_and_drift(cw_fits):
    ours, _ = cw_fits
    ratio = ours.diffusion(GRID)[:, 0, 0] / cw_sigma2(GRID[:, 0])
    assert np.all(np.abs(ratio - 1.0) < 0.15), ratio
    err = np.abs(ours.drift(GRID)[:, 0] - cw_drift(GRID[:, 0]))
    assert err.max() < 0.05 * np.abs(cw_drift(GRID[:, 0])).max(), err.max()


def test_baseline_fit_has_k_times_the_diffusion(cw_fits):
    ours, base = cw_fits
    ratio = base.diffusion(GRID)[:, 0, 0] / cw_sigma2(GRID[:, 0])
    assert np.all(np.abs(ratio / K - 1.0) < 0.20), ratio
    # same drift either way (the mean increment is unbiased)
    err = np.abs(base.drift(GRID)[:, 0] - cw_drift(GRID[:, 0]))
    assert err.max() < 0.05 * np.abs(cw_drift(GRID[:, 0])).max()
    # and the two diffusions differ by ~K, which a lambda-blind loss could not produce
    r = base.diffusion(GRID)[:, 0, 0] / ours.diffusion(GRID)[:, 0, 0]
    assert np.all(np.abs(r / K - 1.0) < 0.2)


# ----------------------------------------------------------------------------- determinism
def test_fit_is_bitwise_reproducible_for_a_seed():
    z0, z1, dt = pairs(3000, 2, 5)

    def fit(seed):
        return SDEModel((16, 16), loss_scaling=4.0, epochs=3, batch_size=512, random_state=seed).fit(z0, z1, dt)

    a, b, c = fit((11, 2, 3, 4)), fit((11, 2, 3, 4)), fit((11, 2, 3, 5))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(sa[k].tobytes() == sb[k].tobytes() for k in sa)
    assert a.loss_curve_ == b.loss_curve_
    assert any(sa[k].tobytes() != sc[k].tobytes() for k in sa if k != "format")
    # training moved the parameters away from their initialisation
    s0 = SDEModel((16, 16), loss_scaling=4.0, epochs=0, random_state=(11, 2, 3, 4)).fit(z0, z1, dt).state_dict()
    assert all(s0[k].tobytes() != sa[k].tobytes() for k in sa if k not in ("format", "shift", "scale", "decorrelation", "lower", "upper"))
    # the standardisation is the data's, not the optimiser's
    np.testing.assert_array_equal(sa["shift"], z0.mean(axis=0))
    np.testing.assert_array_equal(sa["scale"], z0.std(axis=0))


def test_fit_leaves_global_precision_alone_and_returns_numpy_float64():
    before = jax.config.jax_enable_x64
    m = initialised("cholesky", 2)
    assert jax.config.jax_enable_x64 == before
    assert jax.numpy.ones(1).dtype == (np.float64 if before else np.float32)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in m.state_dict().values() if v.ndim)


def test_training_reduces_the_loss_and_the_plateau_rule_acts():
    z0, z1, dt = pairs(2048, 2, 6)
    vz = pairs(512, 2, 7)
    m = SDEModel((16,), loss_scaling=2.0, epochs=25, learning_rate=5e-2, plateau_patience=1, random_state=1)
    m.fit(z0, z1, dt, validation_data=vz)
    assert len(m.loss_curve_) == len(m.lr_curve_) == len(m.validation_curve_) == 25
    assert m.loss_curve_[-1] < m.loss_curve_[0] - 0.5
    assert m.validation_curve_[-1] == pytest.approx(m.loss(*vz, loss_scaling=1.0), rel=1e-12)
    assert min(m.lr_curve_) < 5e-2 and all(x >= y for x, y in zip(m.lr_curve_, m.lr_curve_[1:]))
    assert m.n_steps_ == 25 * 2


def test_plateau_schedule_matches_the_pytorch_rule():
    st = _jax._PlateauState(_jax.PlateauSchedule(factor=0.5, patience=2, min_lr=0.3), lr=1.0)
    lrs = [st.step(x) for x in [5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]]
    # 3 epochs without improvement (> patience 2) halve the rate; the floor is min_lr
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3]
    neg = _jax._PlateauState(_jax.PlateauSchedule(patience=0, threshold=1e-2), lr=1.0)
    assert [neg.step(x) for x in (-10.0, -10.05, -10.2)] == [1.0, 0.5, 0.5]  # -10.05 is not a 1% improvement


# ----------------------------------------------------------------------------- rollout
def ou_model(theta, chol):
    """dz = -theta z dt + L dW in 2-D, built by hand: drift theta (relu(-z) - relu(z)), constant L."""
    m = SDEModel((4,), sigma="cholesky", sigma_hidden_layer_sizes=(1,))
    W0 = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    W1 = np.array([[-theta, 0.0], [theta, 0.0], [0.0, -theta], [0.0, theta]])
    raw = np.array([chol[0, 0], chol[1, 0], chol[1, 1]])
    raw[[0, 2]] = np.log(np.expm1(raw[[0, 2]]))  # inverse softplus on the diagonal
    state = {
        "format": np.array(1),
        "drift.0.W": W0, "drift.0.b": np.zeros(4), "drift.1.W": W1, "drift.1.b": np.zeros(2),
        "sigma.0.W": np.zeros((2, 1)), "sigma.0.b": np.zeros(1), "sigma.1.W": np.zeros((1, 3)), "sigma.1.b": raw,
    }
    return m.load_state_dict(state)


def test_rollout_ou_stationary_covariance_within_standard_errors():
    theta, dt, n_paths = 1.0, 0.05, 4000
    L = np.array([[0.5, 0.0], [0.3, 0.4]])
    m = ou_model(theta, L)
    z = np.array([[0.2, -0.1]])
    np.testing.assert_allclose(m.drift(z), -theta * z, rtol=1e-15)
    np.testing.assert_allclose(m.diffusion(z)[0], L @ L.T, rtol=1e-12)
    paths = m.rollout(np.zeros((n_paths, 2)), dt, 300, key=(3, 0, 0, 0), save_every=100)
    assert paths.shape == (n_paths, 4, 2) and np.all(paths[:, 0] == 0.0)
    x = paths[:, -1]  # t = 15 >> 1/theta: stationary, independent across paths
    # exact stationary covariance of z' = (1 - theta dt) z + sqrt(dt) L xi
    C = dt * (L @ L.T) / (1.0 - (1.0 - theta * dt) ** 2)
    S = np.cov(x.T)
    for i in range(2):
        for j in range(2):
            se = math.sqrt((C[i, i] * C[j, j] + C[i, j] ** 2) / n_paths)
            assert abs(S[i, j] - C[i, j]) < 4 * se, (i, j, S[i, j], C[i, j], se)
    assert np.all(np.abs(x.mean(axis=0)) < 4 * np.sqrt(np.diag(C) / n_paths))
    # the test can fail: doubling the noise variance is far outside
    assert abs(S[0, 0] - 2 * C[0, 0]) > 10 * math.sqrt(2 / n_paths) * C[0, 0]


def test_rollout_is_reproducible_and_key_dependent():
    m = initialised("arbitrary", 2)
    z0 = np.zeros((5, 2))
    a = m.rollout(z0, 0.01, 20, key=(1, 2))
    b = m.rollout(z0, 0.01, 20, key=(1, 2))
    c = m.rollout(z0, 0.01, 20, key=(1, 3))
    assert a.shape == (5, 21, 2)
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    single = m.rollout(np.zeros(2), 0.01, 4, key=0, save_every=2)
    assert single.shape == (3, 2)


# ----------------------------------------------------------------------------- persistence and API
@pytest.mark.parametrize("kind", SIGMA_KINDS)
def test_state_dict_round_trip_is_exact(kind):
    m = initialised(kind, 2)
    state = m.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    r = SDEModel(**m.get_params()).load_state_dict(state)
    z = np.random.default_rng(8).normal(size=(30, 2))
    assert r.drift(z).tobytes() == m.drift(z).tobytes()
    assert r.diffusion(z).tobytes() == m.diffusion(z).tobytes()
    assert r.rollout(z, 0.1, 5, key=1).tobytes() == m.rollout(z, 0.1, 5, key=1).tobytes()
    with pytest.raises(ValueError, match="drift layer 0"):
        SDEModel((3, 8), sigma=kind).load_state_dict(state)
    bad = dict(state)
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match="unexpected"):
        SDEModel(**m.get_params()).load_state_dict(bad)


def test_estimator_conventions_and_errors():
    m = SDEModel(epochs=3)
    assert m.get_params()["epochs"] == 3 and not hasattr(m, "params_")
    assert m.set_params(loss_scaling=16) is m and m.loss_scaling == 16
    with pytest.raises(ValueError, match="invalid parameter"):
        m.set_params(nonsense=1)
    with pytest.raises(ValueError, match="not fitted"):
        m.drift(np.zeros((1, 1)))
    z0, z1, dt = pairs(10, 2, 0)
    for kw, name in [
        ({"sigma": "full"}, "sigma"),
        ({"loss_scaling": 0.0}, "loss_scaling"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": 1.5}, "random_state"),
    ]:
        with pytest.raises(ValueError, match=name):
            SDEModel(epochs=0, **kw).fit(z0, z1, dt)
    with pytest.raises(ValueError, match="dt"):
        SDEModel(epochs=0).fit(z0, z1, -dt)
    with pytest.raises(ValueError, match="same shape"):
        SDEModel(epochs=0).fit(z0, z1[:5], dt)
    with pytest.raises(ValueError, match="non-finite"):
        SDEModel(epochs=0).fit(np.full_like(z0, np.nan), z1, dt)
    fitted = SDEModel(epochs=0).fit(z0, z1, dt)
    with pytest.raises(ValueError, match="n_dim=2"):
        fitted.drift(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="save_every"):
        fitted.rollout(z0, 0.1, 5, key=0, save_every=2)


# ----------------------------------------------------------------------------- _jax helpers
def test_prng_key_depends_only_on_the_integers():
    data = lambda k: np.asarray(jax.random.key_data(_jax.prng_key(k)))  # noqa: E731
    assert np.array_equal(data((1, 2, 3, 4)), data([1, 2, 3, 4]))
    assert not np.array_equal(data((1, 2, 3, 4)), data((1, 2, 3, 5)))
    assert not np.array_equal(data(1), data(2))
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(data(g1), data(g2))
    for bad in (-1, 1.0, True, (), "1", (1, -2)):
        with pytest.raises(ValueError, match="random_state"):
            _jax.prng_key(bad)


def test_configure_single_thread_edits_the_given_environment_idempotently():
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert _jax.configure_single_thread(env) is True
    assert _jax.configure_single_thread(env) is True
    flags = env["XLA_FLAGS"].split()
    assert flags[0] == "--xla_dump_to=/tmp/x"
    assert flags.count("--xla_cpu_multi_thread_eigen=false") == 1
    assert flags.count("intra_op_parallelism_threads=1") == 1


def test_standardised_fit_is_equivariant_under_affine_changes_of_the_state():
    """standardize=True: the networks see (z - mean) / sd, b = sd * b', sigma = diag(sd) sigma'. Fitting z' = a z + c
    (eps scaled by a**2) then trains the same networks, so b'(a z + c) = a b(z) and sigma' = a sigma, up to rounding;
    without standardisation the fits differ (the test can fail)."""
    z0, z1, dt = pairs(2000, 2, 21)
    a, c = np.array([0.05, 3.0]), np.array([0.4, -1.0])

    def fit(u0, u1, eps, standardize=True):
        return SDEModel((16, 16), loss_scaling=4.0, epsilon=eps, epochs=3, batch_size=500, random_state=3,
                        standardize=standardize).fit(u0, u1, dt)

    # a uniform scale s (eps scaled by s**2 with it): the same optimisation step by step
    s = 0.05
    m1 = fit(z0, z1, 1e-4)
    m2 = fit(s * z0 + c, s * z1 + c, 1e-4 * s**2)
    z = np.random.default_rng(3).normal(size=(40, 2))
    np.testing.assert_allclose(m2.drift(s * z + c), s * m1.drift(z), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(m2.sigma_matrix(s * z + c), s * m1.sigma_matrix(z), rtol=1e-6, atol=1e-12)
    assert m2.loss_curve_ == pytest.approx(list(np.array(m1.loss_curve_) + 2 * 2 * np.log(s)), rel=1e-8)
    # per-variable scales a: the networks' inputs are the same standardised data, so b'_d(a z + c) / a_d is b_d(z)
    # up to the eps term (eps I is not rescaled per variable): close, not exact
    m3 = fit(a * z0 + c, a * z1 + c, 1e-10)
    m4 = fit(z0, z1, 1e-10)
    np.testing.assert_allclose(m3.drift(a * z + c) / a, m4.drift(z), rtol=1e-4, atol=1e-8)
    plain = fit(s * z0 + c, s * z1 + c, 1e-4 * s**2, standardize=False)
    assert np.max(np.abs(plain.drift(s * z + c) - s * m1.drift(z))) > 1e-3 * np.max(np.abs(s * m1.drift(z)))


# ----------------------------------------------------------------------------- decorrelation and confinement
def collinear_pairs(n, seed, thickness=3e-3):
    """3-d states on a thin sheet: (x, -x + thickness * v, w), as the learned Ising latents (corr -0.9999)."""
    rng = np.random.default_rng(seed)
    x, v, w = rng.normal(size=(3, n))
    z0 = np.stack([x, -x + thickness * v, w], axis=1)
    z1 = z0 + 0.2 * rng.normal(size=(n, 3)) * np.array([1.0, 1.0, 0.5])
    return z0, z1, rng.uniform(0.05, 0.5, n)


def test_whitening_is_chosen_for_collinear_states_and_matches_its_definition():
    """standardize="auto" whitens nearly collinear states: b(z) = diag(s) R^(1/2) b'(z'), sigma = diag(s) R^(1/2) L'(z'),
    z' = R^(-1/2) (z - mu) / s (checked against NumPy); well-conditioned states keep the per-variable fit bit for bit."""
    z0, z1, dt = collinear_pairs(600, 1)
    m = SDEModel((8,), loss_scaling=4.0, epsilon=1e-6, epochs=2, batch_size=200, random_state=5).fit(z0, z1, dt)
    M = m.decorrelation_
    assert M is not None
    R = np.corrcoef(z0.T)
    np.testing.assert_allclose(M @ M, R, rtol=1e-10, atol=1e-12)
    z = z0[:7]
    u = ((z - m.shift_) / m.scale_) @ np.linalg.inv(M).T
    np.testing.assert_allclose(m.drift(z), m.scale_ * (mlp_numpy(m.params_["drift"], u) @ M.T), rtol=1e-9, atol=1e-12)
    raw = mlp_numpy(m.params_["sigma"], u)
    L = np.zeros((len(z), 3, 3))
    L[:, *np.tril_indices(3)] = raw
    d = np.arange(3)
    L[:, d, d] = np.log1p(np.exp(L[:, d, d]))
    np.testing.assert_allclose(m.sigma_matrix(z), m.scale_[:, None] * np.einsum("ij,njk->nik", M, L), rtol=1e-9,
                               atol=1e-14)
    # the training loss is the REFERENCE-002 §0 loss of these b and sigma
    ref = sde_loss_numpy(m.drift(z0), m.sigma_matrix(z0), z0, z1, dt, 4.0, 1e-6)
    assert m.loss(z0, z1, dt) == pytest.approx(ref, rel=1e-10)
    # the training box is the min/max of the network coordinates of the training states
    u0 = ((z0 - m.shift_) / m.scale_) @ np.linalg.inv(M).T
    np.testing.assert_allclose(m.bounds_[0], u0.min(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.bounds_[1], u0.max(axis=0), rtol=1e-12)
    # state round trip keeps the decorrelation exactly
    r = SDEModel(**m.get_params()).load_state_dict(m.state_dict())
    assert r.drift(z).tobytes() == m.drift(z).tobytes() and r.diffusion(z).tobytes() == m.diffusion(z).tobytes()
    # without the thin direction nothing is whitened, and "auto" is the per-variable fit bit for bit
    w0, w1, wdt = pairs(600, 3, 2)
    a = SDEModel((8,), epochs=2, batch_size=200, random_state=5).fit(w0, w1, wdt)
    b = SDEModel((8,), epochs=2, batch_size=200, random_state=5, standardize=True).fit(w0, w1, wdt)
    assert a.decorrelation_ is None and np.array_equal(a.state_dict()["decorrelation"], np.eye(3))
    assert all(a.state_dict()[k].tobytes() == b.state_dict()[k].tobytes() for k in a.state_dict())
    # the test can fail: per-variable standardisation of the collinear states gives other networks
    c = SDEModel((8,), loss_scaling=4.0, epsilon=1e-6, epochs=2, batch_size=200, random_state=5,
                 standardize=True).fit(z0, z1, dt)
    assert np.max(np.abs(c.drift(z) - m.drift(z))) > 1e-3 * np.max(np.abs(m.drift(z)))


def test_whitened_fit_is_equivariant_under_per_variable_affine_maps():
    """R is unchanged by z -> a z + c (a > 0), so the whitened networks see the same inputs: b_a(a z + c) = a b(z)
    up to rounding, which the thin direction amplifies (R^(-1/2) multiplies it by ~300): 1e-3 of the drift's size.
    The test can fail: a per-variable fit of the same data differs by ~10 %."""
    z0, z1, dt = collinear_pairs(1000, 4)
    a, c = np.array([0.05, 3.0, 0.7]), np.array([0.4, -1.0, 2.0])

    def fit(u0, u1):
        return SDEModel((16,), loss_scaling=4.0, epsilon=1e-12, epochs=3, batch_size=500, random_state=3,
                        standardize="whiten").fit(u0, u1, dt)

    m1, m2 = fit(z0, z1), fit(a * z0 + c, a * z1 + c)
    z = z0[:40]
    b1 = m1.drift(z)
    tol = 1e-3 * np.max(np.abs(b1))
    np.testing.assert_allclose(m2.drift(a * z + c) / a, b1, rtol=0, atol=tol)
    d1 = m1.diffusion(z)
    np.testing.assert_allclose(m2.diffusion(a * z + c) / (a[:, None] * a[None, :]), d1, rtol=0,
                               atol=1e-3 * np.max(np.abs(d1)))
    plain = SDEModel((16,), loss_scaling=4.0, epsilon=1e-12, epochs=3, batch_size=500, random_state=3,
                     standardize=True).fit(z0, z1, dt)
    assert np.max(np.abs(plain.drift(z) - b1)) > 10 * tol


def test_confined_rollout_stays_in_the_training_box_and_is_unchanged_inside():
    """A repelling drift (theta < 0) sends unconfined paths to infinity; confined paths stay in the box, some on its
    faces. Paths that never reach the box are bit for bit the unconfined ones."""
    L = np.array([[0.5, 0.0], [0.3, 0.4]])
    state = ou_model(-1.0, L).state_dict()
    state.update(lower=np.array([-1.0, -2.0]), upper=np.array([1.0, 2.0]))
    m = SDEModel((4,), sigma="cholesky", sigma_hidden_layer_sizes=(1,)).load_state_dict(state)
    free = SDEModel((4,), sigma="cholesky", sigma_hidden_layer_sizes=(1,), confine=False).load_state_dict(state)
    z0 = np.zeros((200, 2))
    p = m.rollout(z0, 0.05, 200, key=4, save_every=10)
    q = free.rollout(z0, 0.05, 200, key=4, save_every=10)
    assert np.all(np.abs(q[:, -1]) > 5.0)  # e^10 growth without the box
    assert np.all(p[..., 0] >= -1.0) and np.all(p[..., 0] <= 1.0) and np.all(np.abs(p[..., 1]) <= 2.0)
    assert np.mean(np.abs(p[:, -1, 0]) == 1.0) > 0.2  # held on the faces (39 % at the last save)
    # an attracting OU process far from a wide box: confinement changes nothing
    ou = ou_model(1.0, L).state_dict()
    ou.update(lower=np.array([-50.0, -50.0]), upper=np.array([50.0, 50.0]))
    a = SDEModel((4,), sigma="cholesky", sigma_hidden_layer_sizes=(1,)).load_state_dict(ou)
    b = SDEModel((4,), sigma="cholesky", sigma_hidden_layer_sizes=(1,), confine=False).load_state_dict(ou)
    assert a.rollout(z0, 0.05, 50, key=2).tobytes() == b.rollout(z0, 0.05, 50, key=2).tobytes()
    with pytest.raises(ValueError, match="lower"):
        bad = dict(ou)
        bad.pop("upper")
        SDEModel((4,), sigma="cholesky", sigma_hidden_layer_sizes=(1,)).load_state_dict(bad)


def test_an_exact_linear_constraint_is_invisible_to_the_networks_and_conserved_by_rollouts():
    """States obeying z_1 + z_2 + z_3 = 1 exactly (as the alloy's SRO parameters obey their composition sums):
    R^(1/2) is singular (in standardised coordinates, along scale), the networks never see that direction (a state
    shifted along it gives the same drift), and the SDE never moves the sum: rollouts keep the sum to rounding, also from a state whose sum
    differs from the training one, and stay bounded (before, the direction's rounding noise was amplified ~1e6 and a
    fitted alloy flow grew to 1e26)."""
    rng = np.random.default_rng(3)
    n = 4000
    x, y = rng.normal(size=(2, n)) * 0.2
    z0 = np.stack([x, y, 1.0 - x - y], axis=1)
    step = -0.5 * (z0 - z0.mean(axis=0)) * 0.1 + 0.05 * rng.normal(size=(n, 3)) * np.sqrt(0.1)
    step -= step.mean(axis=1, keepdims=True)  # the increments keep the sum
    m = SDEModel((16, 16), epochs=20, batch_size=256, learning_rate=1e-2, random_state=1).fit(z0, z0 + step, 0.1)
    M = m.decorrelation_
    assert M is not None and np.linalg.matrix_rank(M, hermitian=True) == 2
    ones = np.ones(3) / np.sqrt(3.0)
    np.testing.assert_allclose(M @ m.scale_, 0.0, atol=1e-12)  # sum z = sum (shift + scale u): null along scale
    # the input direction the networks cannot see: u = (z - shift) / scale along M's null vector scale, z along scale**2
    shifted = z0[:5] + 0.01 * m.scale_**2
    np.testing.assert_allclose(m.drift(shifted), m.drift(z0[:5]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.abs(m.drift(z0[:50]) @ ones), 0.0, atol=1e-12)
    start = np.concatenate([z0[:20], z0[:20] + 0.01 * ones])  # the second half off the training sum
    paths = m.rollout(start, 0.1, 400, key=7, save_every=100)
    sums = paths.sum(axis=2)
    np.testing.assert_allclose(sums, sums[:, :1].repeat(sums.shape[1], axis=1), rtol=0, atol=1e-9)
    assert np.all(np.abs(paths - paths[:, :1]) < 5.0)
    again = SDEModel((16, 16), epochs=20, batch_size=256, learning_rate=1e-2).load_state_dict(m.state_dict())
    assert again.rollout(start, 0.1, 400, key=7, save_every=100).tobytes() == paths.tobytes()
