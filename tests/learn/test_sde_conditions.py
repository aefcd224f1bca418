"""Tests of the conditioning inputs of cgflow.learn.sde.SDEModel: dz = b(z, c) dt + sigma(z, c) dW, c constant.

Oracle: a one-parameter family of Ornstein-Uhlenbeck processes with exact transitions,
dz = -k(c) (z - mu(c)) dt + s(c) dW. Fixed seeds; every tolerance is stated and checked to be able to fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cgflow.learn.sde import SIGMA_KINDS, SDEModel, sde_loss_numpy

from ..oracles import mlp_numpy

jax = pytest.importorskip("jax")

# ----------------------------------------------------------------------------- the OU family
C_TRAIN = np.array([0.5, 1.0, 1.5])
C_UNSEEN = 1.25
DT = 0.1
N_PER_C = 4000


def k_of(c):
    return 0.5 + c


def mu_of(c):
    return 2.0 * c - 2.0


def s_of(c):
    return 0.2 + 0.2 * c


def drift_pairs(z, c):
    """E[z1 - z0 | z0] / dt of the exact transition: -(1 - exp(-k dt)) / dt (z - mu).

    This, not -k (z - mu), is what the REFERENCE-002 §0 loss estimates from pairs of step dt (k dt = 0.1-0.2 here:
    the two differ by 5-10 %)."""
    return -(1.0 - np.exp(-k_of(c) * DT)) / DT * (z - mu_of(c))


def sigma2_pairs(c):
    """Var[z1 | z0] / dt of the exact transition: s^2 (1 - exp(-2 k dt)) / (2 k dt)."""
    return s_of(c) ** 2 * (1.0 - np.exp(-2.0 * k_of(c) * DT)) / (2.0 * k_of(c) * DT)


def ou_data(seed=20261204):
    """N_PER_C exact OU pairs per training condition; z0 ~ U(mu - 1.2, mu + 1.2)."""
    rng = np.random.default_rng(seed)
    z0s, z1s, cs = [], [], []
    for c in C_TRAIN:
        z0 = mu_of(c) + rng.uniform(-1.2, 1.2, N_PER_C)
        a = math.exp(-k_of(c) * DT)
        z1 = mu_of(c) + a * (z0 - mu_of(c)) + math.sqrt(sigma2_pairs(c) * DT) * rng.standard_normal(N_PER_C)
        z0s.append(z0)
        z1s.append(z1)
        cs.append(np.full(N_PER_C, c))
    return np.concatenate(z0s), np.concatenate(z1s), np.concatenate(cs)


@pytest.fixture(scope="module")
def ou_fit():
    """One conditioned model for the three conditions: (32, 32) networks, 40 epochs, ~12 s on one core."""
    z0, z1, c = ou_data()
    m = SDEModel((32, 32), epsilon=1e-8, learning_rate=5e-3, epochs=40, batch_size=256, random_state=(5, 1))
    m.fit(z0, z1, DT, conditions=c)
    return m, (z0, z1, c)


def linear_fit_se(z0, z1, z):
    """Standard error of a straight-line regression of (z1 - z0) / dt on z0, evaluated at z, and its prediction."""
    y = (z1 - z0) / DT
    X = np.stack([np.ones_like(z0), z0], axis=1)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    s2 = np.sum((y - X @ beta) ** 2) / (len(y) - 2)
    cov = s2 * np.linalg.inv(X.T @ X)
    Z = np.stack([np.ones_like(z), z], axis=1)
    return np.sqrt(np.einsum("ni,ij,nj->n", Z, cov, Z)), Z @ beta


OFFSETS = np.array([-0.8, -0.4, 0.0, 0.4, 0.8])

#: Drift tolerance as a fraction of the drift's range over mu +- 0.8 (1.6 (1 - exp(-k dt)) / dt = 1.5-2.9). The
#: straight-line regression of the same data has a standard error of 1-1.5 % of that range; the network is far more
#: flexible (its error near the edge of a condition's data is a few times larger: 1.6-5.5 % measured) and must
#: represent the bilinear -k(c) (z - mu(c)). The drifts of different conditions differ by more than 4 tolerances at
#: some checked z (asserted), so a model that ignored c could not pass.
DRIFT_TOL = 0.10


# ----------------------------------------------------------------------------- 1. the OU family
def test_conditioned_fit_recovers_each_condition_drift_and_diffusion(ou_fit):
    m, (z0, z1, c) = ou_fit
    assert m.n_conditions_ == 1
    np.testing.assert_array_equal(m.condition_shift_, [c.mean()])
    np.testing.assert_array_equal(m.condition_scale_, [c.std()])
    for cc in C_TRAIN:
        z = mu_of(cc) + OFFSETS
        exact = drift_pairs(z, cc)
        tol = DRIFT_TOL * np.ptp(exact)
        got = m.drift(z, conditions=np.full(len(z), cc))[:, 0]
        assert np.max(np.abs(got - exact)) < tol, (cc, got - exact, tol)
        # the sampling noise of the data alone (straight-line regression's s.e.) is well inside the tolerance
        sel = c == cc
        se, _ = linear_fit_se(z0[sel], z1[sel], z)
        assert np.all(se < tol / 4), (tol, se)
        # the test can fail: the other conditions' drifts are far outside the tolerance somewhere (so no model
        # ignoring c can pass for both)
        for other in C_TRAIN[C_TRAIN != cc]:
            assert np.max(np.abs(drift_pairs(z, other) - exact)) > 4 * tol
        # sigma^2 within 10 % (the variance of 4000 residuals alone has a relative s.e. of 2.2 %)
        ratio = m.diffusion(z, conditions=np.full(len(z), cc))[:, 0, 0] / sigma2_pairs(cc)
        assert np.all(np.abs(ratio - 1.0) < 0.10), (cc, ratio)
    # the diffusions of the three conditions differ by far more than 10 % (0.09 : 0.16 : 0.25 per unit time)
    s2 = sigma2_pairs(C_TRAIN)
    assert np.min(s2[1:] / s2[:-1]) > 1.4
    # a single state with a single condition (n_cond,) gives the row of the batch call
    z = np.array([0.3])
    assert m.drift(z, conditions=np.array([1.0])).shape == (1,)
    assert m.drift(z, conditions=1.0)[0] == m.drift(z[None], conditions=np.array([[1.0]]))[0, 0]
    assert m.diffusion(z, conditions=[1.0]).shape == (1, 1)


def test_conditioned_fit_interpolates_to_an_unseen_condition(ou_fit):
    m, _ = ou_fit
    z = mu_of(C_UNSEEN) + OFFSETS
    exact = drift_pairs(z, C_UNSEEN)
    got = m.drift(z, conditions=np.full(len(z), C_UNSEEN))[:, 0]
    tol = DRIFT_TOL * np.ptp(exact)
    assert np.max(np.abs(got - exact)) < tol, (got - exact, tol)
    # the nearest trained conditions' drifts are outside the tolerance: the fit really interpolates
    for other in (1.0, 1.5):
        assert np.max(np.abs(drift_pairs(z, other) - exact)) > 3 * tol
    ratio = m.diffusion(z, conditions=np.full(len(z), C_UNSEEN))[:, 0, 0] / sigma2_pairs(C_UNSEEN)
    assert np.all(np.abs(ratio - 1.0) < 0.20), ratio  # "roughly": twice the trained conditions' 10 %


# ----------------------------------------------------------------------------- 2. rollout with conditions
def test_conditioned_rollout_stationary_means(ou_fit):
    """Paths of all three conditions in one batch; each relaxes to its own mu(c).

    Bound: 4 combined standard errors, of the ensemble mean (stationary s.d. s / sqrt(2k), 1000 paths) and of the
    fitted fixed point (s.e. of the straight-line fit's drift at mu divided by the slope)."""
    m, (z0, z1, c) = ou_fit
    n_paths = 1000
    cs = np.repeat(C_TRAIN, n_paths)
    start = np.full(len(cs), 0.0)  # the same start for every condition
    paths = m.rollout(start, DT, 100, key=(3, 1), save_every=50, conditions=cs)
    assert paths.shape == (len(cs), 3, 1)
    means = []
    for i, cc in enumerate(C_TRAIN):
        x = paths[i * n_paths:(i + 1) * n_paths, -1, 0]  # t = 10 >= 10 / k: stationary
        se_mc = s_of(cc) / math.sqrt(2 * k_of(cc)) / math.sqrt(n_paths)
        sel = c == cc
        se_b, _ = linear_fit_se(z0[sel], z1[sel], np.array([mu_of(cc)]))
        se_fix = se_b[0] / ((1 - math.exp(-k_of(cc) * DT)) / DT)
        bound = 4 * math.hypot(se_mc, se_fix)
        assert abs(x.mean() - mu_of(cc)) < bound, (cc, x.mean(), mu_of(cc), bound)
        means.append(x.mean())
        # the test can fail: the means of the conditions are 1 apart, >> the bound (~0.06)
        assert bound < 0.1
    assert np.all(np.diff(means) > 0.8)
    single = m.rollout(np.array([0.0]), DT, 4, key=0, save_every=2, conditions=np.array([1.5]))
    assert single.shape == (3, 1)


# ----------------------------------------------------------------------------- small conditioned fits
def cond_pairs(n, n_dim, n_cond, seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(300.0, 1500.0, (n, n_cond))  # temperature-like: far from standardised
    z0 = rng.normal(size=(n, n_dim))
    z1 = z0 - 0.1 * z0 * (c[:, :1] / 1000.0) + 0.3 * rng.normal(size=(n, n_dim))
    dt = rng.uniform(0.05, 0.5, n)
    return z0, z1, dt, c


def small_fit(kind="cholesky", n_dim=2, n_cond=2, epochs=0, seed=(11, 2), data_seed=0, **kw):
    """A conditioned model; epochs=0 (default) keeps the initial parameters (no optimiser step, nothing to compile)."""
    z0, z1, dt, c = cond_pairs(300, n_dim, n_cond, data_seed)
    fit_kw = {"validation_data": kw.pop("validation_data")} if "validation_data" in kw else {}
    m = SDEModel((8, 8), sigma=kind, loss_scaling=4.0, epochs=epochs, batch_size=128, random_state=seed, **kw)
    return m.fit(z0, z1, dt, conditions=c, **fit_kw), (z0, z1, dt, c)


@pytest.mark.parametrize("kind", SIGMA_KINDS)
def test_conditioned_networks_match_their_definition_and_the_loss_oracle(kind):
    m, (z0, z1, dt, c) = small_fit(kind)
    assert m.params_["drift"][0]["W"].shape == (4, 8)  # n_dim + n_cond inputs
    if kind != "constant_diagonal":
        assert m.params_["sigma"][0]["W"].shape == (4, 8)
    cshift, cscale = c.mean(axis=0), c.std(axis=0)
    np.testing.assert_array_equal(m.condition_shift_, cshift)
    np.testing.assert_array_equal(m.condition_scale_, cscale)
    z, cc = z0[:9], c[:9]
    u = np.concatenate([(z - m.shift_) / m.scale_, (cc - cshift) / cscale], axis=1)
    np.testing.assert_allclose(m.drift(z, conditions=cc), m.scale_ * mlp_numpy(m.params_["drift"], u), rtol=1e-12,
                               atol=1e-14)
    s = m.sigma_matrix(z, conditions=cc)
    if kind == "constant_diagonal":  # ignores the conditions
        np.testing.assert_array_equal(s, m.sigma_matrix(z, conditions=cc[::-1]))
    else:
        assert np.max(np.abs(s - m.sigma_matrix(z, conditions=cc[::-1]))) > 1e-6
    # the loss is the REFERENCE-002 §0 loss of b(., c) and sigma(., c), pair by pair
    ref = sde_loss_numpy(m.drift(z0, conditions=c), m.sigma_matrix(z0, conditions=c), z0, z1, dt, 4.0, m.epsilon)
    assert m.loss(z0, z1, dt, conditions=c) == pytest.approx(ref, rel=1e-12)
    ref1 = sde_loss_numpy(m.drift(z0, conditions=c), m.sigma_matrix(z0, conditions=c), z0, z1, dt, 1.0, m.epsilon)
    assert m.loss(z0, z1, dt, loss_scaling=1.0, conditions=c) == pytest.approx(ref1, rel=1e-12)
    # and its conditions matter (the test can fail)
    assert abs(m.loss(z0, z1, dt, conditions=c[::-1]) - ref) > 1e-6


def test_conditioned_loss_gradient_matches_finite_differences():
    m, (z0, z1, dt, c) = small_fit("cholesky")
    grad = m.loss_grad(z0, z1, dt, conditions=c)
    state = m.state_dict()
    h = 1e-6
    rng = np.random.default_rng(4)
    for name, g in [("drift.0.W", grad["drift"][0]["W"]), ("sigma.0.W", grad["sigma"][0]["W"])]:
        for row in (0, 3):  # row 3 of the first layer: a condition input's weights
            col = int(rng.integers(0, g.shape[1]))
            plus, minus = dict(state), dict(state)
            plus[name], minus[name] = state[name].copy(), state[name].copy()
            plus[name][row, col] += h
            minus[name][row, col] -= h
            probe = SDEModel(**m.get_params())
            fd = (probe.load_state_dict(plus).loss(z0, z1, dt, conditions=c)
                  - probe.load_state_dict(minus).loss(z0, z1, dt, conditions=c)) / (2 * h)
            assert g[row, col] == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, row, col)


def test_conditions_are_not_whitened_and_a_single_condition_value_is_allowed():
    """The standardisation, whitening and rollout box are those of z alone; a constant condition gets scale 1."""
    rng = np.random.default_rng(3)
    x, v = rng.normal(size=(2, 500))
    z0 = np.stack([x, -x + 3e-3 * v], axis=1)  # collinear: "auto" whitens
    z1 = z0 + 0.2 * rng.normal(size=z0.shape)
    dt = np.full(500, 0.2)
    c = x[:, None] * 50.0 + 700.0  # perfectly correlated with z: must not enter R
    kw = dict(epochs=0, random_state=2)
    a = SDEModel((8,), **kw).fit(z0, z1, dt, conditions=c)
    b = SDEModel((8,), **kw).fit(z0, z1, dt)
    assert a.decorrelation_ is not None
    np.testing.assert_array_equal(a.decorrelation_, b.decorrelation_)
    np.testing.assert_array_equal(a.shift_, b.shift_)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    for lo_hi_a, lo_hi_b in zip(a.bounds_, b.bounds_):
        np.testing.assert_array_equal(lo_hi_a, lo_hi_b)
    # one temperature only: s.d. 0 -> scale 1, c' = 0; still a conditioned model
    one = SDEModel((8,), **kw).fit(z0, z1, dt, conditions=np.full(500, 900.0))
    assert one.n_conditions_ == 1
    np.testing.assert_array_equal(one.condition_shift_, [900.0])
    np.testing.assert_array_equal(one.condition_scale_, [1.0])
    assert np.all(np.isfinite(one.drift(z0[:3], conditions=np.full(3, 900.0))))
    assert np.isfinite(one.loss(z0, z1, dt, conditions=np.full(500, 900.0)))


def test_validation_data_with_conditions():
    v0, v1, vdt, vc = cond_pairs(100, 2, 2, 6)
    m, _ = small_fit(epochs=3, seed=(11, 2, 3, 4), validation_loss_scaling=2.0, validation_data=(v0, v1, vdt, vc))
    assert len(m.validation_curve_) == 3
    assert m.validation_curve_[-1] == pytest.approx(m.loss(v0, v1, vdt, loss_scaling=2.0, conditions=vc), rel=1e-12)
    # validation does not influence training
    plain, _ = small_fit(epochs=3, seed=(11, 2, 3, 4))
    assert all(v.tobytes() == plain.state_dict()[k].tobytes() for k, v in m.state_dict().items())


# ----------------------------------------------------------------------------- 3. persistence
@pytest.mark.parametrize("kind", SIGMA_KINDS)
def test_conditioned_state_dict_round_trip_is_exact(kind):
    m, (z0, _, _, c) = small_fit(kind)
    state = m.state_dict()
    assert {"condition_shift", "condition_scale"} <= set(state)
    assert state["condition_shift"].shape == state["condition_scale"].shape == (2,)
    r = SDEModel(**m.get_params()).load_state_dict(state)
    assert r.n_conditions_ == 2 and r.n_dim_ == 2
    z, cc = z0[:30], c[:30]
    assert r.drift(z, conditions=cc).tobytes() == m.drift(z, conditions=cc).tobytes()
    assert r.diffusion(z, conditions=cc).tobytes() == m.diffusion(z, conditions=cc).tobytes()
    ra = r.rollout(z, 0.1, 6, key=(1, 2), save_every=2, conditions=cc)
    ma = m.rollout(z, 0.1, 6, key=(1, 2), save_every=2, conditions=cc)
    assert ra.tobytes() == ma.tobytes()
    assert not np.array_equal(ma, m.rollout(z, 0.1, 6, key=(1, 2), save_every=2, conditions=cc[::-1]))
    # "shift" / "scale" are optional on loading (0 and 1): n_dim is then the input width less the conditions
    loose = dict(state)
    loose.pop("shift"), loose.pop("scale")
    r2 = SDEModel(**m.get_params()).load_state_dict(loose)
    assert r2.n_dim_ == 2 and r2.n_conditions_ == 2 and r2.drift(z, conditions=cc).shape == (30, 2)
    # loading errors: the condition arrays belong to the networks' input width
    bad = dict(state)
    bad.pop("condition_shift")
    with pytest.raises(ValueError, match="condition_shift"):
        SDEModel(**m.get_params()).load_state_dict(bad)
    bad = dict(state)
    bad.pop("condition_shift"), bad.pop("condition_scale")
    with pytest.raises(ValueError, match="condition"):
        SDEModel(**m.get_params()).load_state_dict(bad)
    bad = dict(state, condition_shift=np.zeros(3), condition_scale=np.ones(3))
    with pytest.raises(ValueError, match="condition"):
        SDEModel(**m.get_params()).load_state_dict(bad)
    bad = dict(state, condition_scale=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="condition_scale"):
        SDEModel(**m.get_params()).load_state_dict(bad)


# ----------------------------------------------------------------------------- 4. errors
def test_condition_errors():
    m, (z0, z1, dt, c) = small_fit("cholesky", n_cond=2)
    calls = {
        "drift": lambda **kw: m.drift(z0, **kw),
        "sigma_matrix": lambda **kw: m.sigma_matrix(z0, **kw),
        "diffusion": lambda **kw: m.diffusion(z0, **kw),
        "loss": lambda **kw: m.loss(z0, z1, dt, **kw),
        "loss_grad": lambda **kw: m.loss_grad(z0, z1, dt, **kw),
        "rollout": lambda **kw: m.rollout(z0, 0.1, 2, key=0, **kw),
    }
    bad_c = c.copy()
    bad_c[7, 1] = np.nan
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"conditions.*\(n, 2\)"):
            call()
        with pytest.raises(ValueError, match="conditions has 1 columns.*n_conditions=2"):
            call(conditions=c[:, 0])
        with pytest.raises(ValueError, match="conditions has 3 columns"):
            call(conditions=np.ones((len(z0), 3)))
        with pytest.raises(ValueError, match=r"conditions must have shape \(300, 2\)"):
            call(conditions=c[:5])
        with pytest.raises(ValueError, match=r"non-finite entry at index \(7, 1\)"):
            call(conditions=bad_c)
        call(conditions=c)  # and the right ones work
    plain = SDEModel((8,), epochs=0).fit(z0, z1, dt)
    assert plain.n_conditions_ == 0 and plain.condition_shift_.shape == plain.condition_scale_.shape == (0,)
    for call in (lambda: plain.drift(z0, conditions=c), lambda: plain.diffusion(z0, conditions=c),
                 lambda: plain.loss(z0, z1, dt, conditions=c), lambda: plain.loss_grad(z0, z1, dt, conditions=c),
                 lambda: plain.rollout(z0, 0.1, 2, key=0, conditions=c)):
        with pytest.raises(ValueError, match="fitted without conditions"):
            call()
    # fit: non-finite conditions, wrong rows, validation tuples
    with pytest.raises(ValueError, match=r"conditions has a non-finite entry at index \(7, 1\)"):
        SDEModel(epochs=0).fit(z0, z1, dt, conditions=bad_c)
    with pytest.raises(ValueError, match="conditions must have shape"):
        SDEModel(epochs=0).fit(z0, z1, dt, conditions=c[:10])
    with pytest.raises(ValueError, match="conditions must have shape"):
        SDEModel(epochs=0).fit(z0, z1, dt, conditions=np.ones((len(z0), 0)))
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(z0, z1, dt, conditions\)"):
        SDEModel(epochs=0).fit(z0, z1, dt, conditions=c, validation_data=(z0, z1, dt))
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(z0, z1, dt\)"):
        SDEModel(epochs=0).fit(z0, z1, dt, validation_data=(z0, z1, dt, c))
    with pytest.raises(ValueError, match="validation conditions has 1 columns"):
        SDEModel(epochs=0).fit(z0, z1, dt, conditions=c, validation_data=(z0, z1, dt, c[:, 0]))
    with pytest.raises(ValueError, match="validation conditions"):
        SDEModel(epochs=0).fit(z0, z1, dt, conditions=c, validation_data=(z0, z1, dt, None))
    # an unconditioned state cannot be loaded into ... anything but an unconditioned model
    state = plain.state_dict()
    state["condition_shift"], state["condition_scale"] = np.zeros(1), np.ones(1)
    with pytest.raises(ValueError, match="condition"):
        SDEModel((8,)).load_state_dict(state)


# ----------------------------------------------------------------------------- 5. unconditioned path unchanged
#: state_dict keys of an unconditioned fit before conditioning existed (hidden (4,)).
OLD_KEYS = {
    "cholesky": {"format", "shift", "scale", "decorrelation", "lower", "upper", "drift.0.W", "drift.0.b", "drift.1.W",
                 "drift.1.b", "sigma.0.W", "sigma.0.b", "sigma.1.W", "sigma.1.b"},
    "constant_diagonal": {"format", "shift", "scale", "decorrelation", "lower", "upper", "drift.0.W", "drift.0.b",
                          "drift.1.W", "drift.1.b", "sigma_diag"},
}
OLD_KEYS["arbitrary"] = OLD_KEYS["cholesky"]

#: Recorded with the code before conditioning was added (this environment, XLA_FLAGS unset):
#: SDEModel((4,), loss_scaling=4.0, epochs=2, batch_size=64, learning_rate=1e-2, random_state=(1, 2)) fitted to
#: golden_pairs(). Compared to 1e-9 relative (bitwise in the recording environment; 1e-9 leaves room for another
#: CPU's rounding of the same computation, while any change of the computation moves these by >> 1e-9).
GOLDEN = {
    "drift.1.b": [-0.10466035848502943, -0.3984853778404286],
    "sigma.1.b": [-0.31964004691414527, -0.2954886769813657, -0.40591175328962653],
    "loss_curve": [-1.4225882844726203, -1.6603191780969828],
}


def golden_pairs():
    r = np.random.default_rng(123)
    z0 = r.normal(size=(200, 2))
    z1 = z0 + 0.3 * r.normal(size=(200, 2))
    dt = r.uniform(0.05, 0.5, 200)
    return z0, z1, dt


@pytest.mark.parametrize("kind", SIGMA_KINDS)
def test_unconditioned_state_dict_has_the_old_keys(kind):
    z0, z1, dt = golden_pairs()
    a = SDEModel((4,), sigma=kind, epochs=0).fit(z0, z1, dt)
    assert set(a.state_dict()) == OLD_KEYS[kind]
    assert a.n_conditions_ == 0 and a.params_["drift"][0]["W"].shape == (2, 4)
    # an unconditioned state (no condition keys) loads into an unconditioned model
    r = SDEModel((4,), sigma=kind).load_state_dict(a.state_dict())
    assert r.n_conditions_ == 0 and r.drift(z0).tobytes() == a.drift(z0).tobytes()


def test_unconditioned_fit_is_unchanged():
    z0, z1, dt = golden_pairs()
    kw = dict(loss_scaling=4.0, epochs=2, batch_size=64, learning_rate=1e-2, random_state=(1, 2))
    a = SDEModel((4,), **kw).fit(z0, z1, dt)
    b = SDEModel((4,), **kw).fit(z0, z1, dt, conditions=None)
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == OLD_KEYS["cholesky"] == set(sb)
    assert all(sa[k].tobytes() == sb[k].tobytes() for k in sa)
    assert a.loss_curve_ == b.loss_curve_
    # the numbers of the code before conditioning existed
    np.testing.assert_allclose(sa["drift.1.b"], GOLDEN["drift.1.b"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(sa["sigma.1.b"], GOLDEN["sigma.1.b"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(a.loss_curve_, GOLDEN["loss_curve"], rtol=1e-9, atol=0)


# ----------------------------------------------------------------------------- 6. reproducibility
def test_conditioned_fit_is_bitwise_reproducible_for_a_seed():
    a, data = small_fit(epochs=3, seed=(11, 2, 3, 4))
    b, _ = small_fit(epochs=3, seed=(11, 2, 3, 4))
    d, _ = small_fit(epochs=3, seed=(11, 2, 3, 5))
    sa, sb, sd = a.state_dict(), b.state_dict(), d.state_dict()
    assert set(sa) == set(sb) and all(sa[k].tobytes() == sb[k].tobytes() for k in sa)
    assert a.loss_curve_ == b.loss_curve_
    assert any(sa[k].tobytes() != sd[k].tobytes() for k in sa if k.startswith(("drift", "sigma")))
    # the conditions are part of the data: other conditions, other parameters
    z0, z1, dt, c = data
    e = SDEModel((8, 8), loss_scaling=4.0, epochs=3, batch_size=128, random_state=(11, 2, 3, 4)).fit(
        z0, z1, dt, conditions=c[::-1])
    se = e.state_dict()
    assert any(sa[k].tobytes() != se[k].tobytes() for k in sa if k.startswith("drift"))
