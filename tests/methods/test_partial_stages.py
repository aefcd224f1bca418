"""Method partial (seed 002) end to end on Curie–Weiss: pairs -> sde -> truth -> rollout -> evaluation.

One small run in process (``--serial``): L = 16, L_s in {4, 8} (K = 16, 4),
2048 pairs per size. The exact oracle is REFERENCE-002 §9: with lambda = K the
learned sigma^2 is the large system's (2/N)(1 - m tanh(beta(m + h))), with
lambda = 1 it is K times larger; the drift is a(m) = -m + tanh(beta(m + h)).
"""

from __future__ import annotations


import numpy as np
import pytest

from cgflow import open_run
from cgflow.engine import check_stage
from cgflow.methods.partial.stages import PairSweep, TruthRuns, load_model, relative_error
from cgflow.methods.partial.systems import SpinSystem
from cgflow.micro import glauber

from ..conftest import run_spec

SPEC = """\
name: cw-test
method: partial
seed: 7
micro: {model: curie_weiss, temperature: 1.1, field: 0.1, size: 16}
partial: {small_size: [4, 8], pairs: 2048, block: 512, pair_duration: 0.4}
upsampling: {window: 8, stride: 4, window_time: 0.1}
sde: {epochs: 30, hidden: [32, 32]}
truth: {runs: 20, block: 10, t_end: 10.0, save_every: 0.5}
rollout: {paths: 100, dt: 0.05}
"""


run = run_spec  # (store, process) of a serial `cgflow run` of a spec text


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return run(SPEC, tmp_path_factory.mktemp("cw"))[0]


def test_layout(store):
    tree = open_run(store)
    assert set(tree.children) >= {"pairs", "sde", "truth", "rollout", "evaluation"}
    pairs = tree["pairs"]
    assert pairs["z0"].dims == ("small_size", "replica", "obs") and pairs["z0"].shape == (2, 2048, 1)
    assert list(pairs["small_size"].values) == [4, 8] and list(pairs["n_tiles"].values) == [16, 4]
    assert np.all(pairs["dt"].values == 0.4)
    # half of the pairs start from random configurations, half from upsampled small-system snapshots
    assert pairs["source"].values.mean() == pytest.approx(0.5)
    # z0 is the whole lattice's m (a multiple of 2/N); the method's increment is K x a tile change
    N = 256
    z0 = pairs["z0"].values[..., 0]
    assert np.allclose(np.round(z0 * N / 2) * 2 / N, z0)
    # the method's increment averages the K tiles' changes (each a multiple of 2/N_s); the baseline's is one tile's
    inc = (pairs["z1"] - pairs["z0"]).values[..., 0]
    small = (pairs["z1_small"] - pairs["z0_small"]).values[..., 0]
    for j, (ls, K) in enumerate([(4, 16), (8, 4)]):
        assert np.allclose(np.round(small[j] * ls * ls / 2), small[j] * ls * ls / 2)
        assert np.allclose(np.round(inc[j] * K * ls * ls / 2), inc[j] * K * ls * ls / 2)
        assert not np.allclose(inc[j], small[j])
    sde = tree["sde"]
    assert sde["drift"].dims == ("variant", "small_size", "m")
    assert list(sde["variant"].values) == ["method", "baseline"]
    # every tile evolved alone and averaged (partial.tiles_per_pair default: all): lambda = K / r = 1
    assert list(pairs["tiles_per_pair"].values) == [16, 4]
    assert sde["loss_scaling"].sel(variant="method").values.tolist() == [1.0, 1.0]
    assert sde.attrs["drift_estimator"] == "richardson" and sde.attrs["noise_factor"] == 5.0
    assert sde["loss_scaling"].sel(variant="baseline").values.tolist() == [1.0, 1.0]
    truth = tree["truth"]
    assert truth["z"].shape == (5, 20, 21, 1)
    assert np.allclose(truth["z"].values[:, :, 0, 0], truth["m0"].values[:, None])  # exact initial m0
    assert tree["rollout"]["z_mean"].shape == (2, 2, 5, 21, 1)
    assert "attempts per spin" in truth.attrs["time_unit"]


def test_learned_diffusion_is_the_large_systems(store):
    """REFERENCE §9: lambda = K recovers (2/N)(1 - m tanh), lambda = 1 is K times larger.

    2048 pairs: a variance from n pairs has relative error sqrt(2/n) = 3%; the
    Richardson targets (dt = 0.4, sde.drift_estimator default) read it ~7% low
    (exact chain, tests/methods/test_partial_numerics.py); the MLP adds a few %. Tolerance 15%.
    """
    ev = open_run(store)["evaluation"]
    ratio = ev["sigma2_ratio"]
    K = ev["n_tiles"].values
    assert np.all(np.abs(ratio.sel(variant="method").values - 1.0) < 0.15), ratio.values
    assert np.all(np.abs(ratio.sel(variant="baseline").values / K - 1.0) < 0.15), ratio.values


def test_learned_model_reloads_and_matches_stored_grid(store):
    tree = open_run(store)
    sde = tree["sde"].to_dataset().load()
    model = load_model(sde, "method", 8)
    g = sde["m"].values[:, None]
    np.testing.assert_array_equal(model.drift(g)[:, 0], sde["drift"].sel(variant="method", small_size=8).values)
    np.testing.assert_array_equal(model.diffusion(g)[:, 0, 0], sde["diffusion"].sel(variant="method", small_size=8).values)


def test_drift_and_rollout(store):
    tree = open_run(store)
    ev = tree["evaluation"]
    # the drift is a(m) over the visited range for the larger tile (K = 4; K = 16 is noisier at 2048 pairs)
    assert ev["drift_error"].sel(variant="method", small_size=8).values <  0.3
    # relative error recomputed from the stored ensembles (REFERENCE §6)
    true = tree["truth"]["z"].values[..., 0].mean(axis=1)
    pred = tree["rollout"]["z_mean"].isel(obs=0).values
    np.testing.assert_allclose(ev["relative_error"].values, relative_error(pred, true[None, None]).mean(axis=-1))
    assert ev["relative_error"].sel(variant="method", small_size=8).values <  0.05
    # late times (t in [8.5, 10]) of every m0: 20 true runs of N = 256 spins give a mean with standard error
    # ~ sqrt(2.45 / 256 / 20) = 0.02 (REFERENCE §9); the learned SDE is within 0.1 of it
    late_true = true[:, -4:].mean(axis=1)
    late = tree["rollout"]["z_mean"].isel(obs=0).sel(variant="method", small_size=8).values[:, -4:].mean(axis=1)
    assert np.all(np.abs(late - late_true) < 0.1), (late, late_true)
    # and the large system approaches the exact fixed point m* = 0.4907 from below
    assert np.all(late_true < glauber.cw_fixed_point(1.1, 0.1)["m_star"] + 0.05)


def test_dt_halving_self_check_is_stored(store):
    ev = open_run(store)["evaluation"]
    r, se = ev["dt_halving_ratio"].values, ev["dt_halving_ratio_stderr"].values
    assert np.all(se > 0) and np.all(np.isfinite(r))
    # expected (1 + e^{-dt/2})/2 = 0.909 at dt = 0.4, within 4 standard errors
    assert np.all(np.abs(r - 0.5 * (1 + np.exp(-0.2))) < 4 * se + 1e-12), (r, se)
    # the Richardson drift the sde stage fits (default) leaves ~ -dt**2/12 = -1.3%: zero within its error
    rb, rse = ev["richardson_bias_estimate"].values, ev["richardson_bias_estimate_stderr"].values
    assert np.all(np.abs(rb) < 4 * rse) and ev.attrs["drift_estimator"] == "richardson"
    assert "richardson_bias_estimate" in ev.attrs["pair_duration_check"]


def test_the_drift_estimators_read_the_same_runs_as_their_expansions_say(store):
    """Curie–Weiss tile runs of dt = 0.4 relax towards the frozen field at rate ~1, E[Delta(s)] ~ a (1 - e^-s):
    the regression slope of each estimator's increment on a(m) dt is (1 - e^-dt)/dt = 0.824 (euler),
    (4 (1 - e^-dt/2) - (1 - e^-dt))/dt = 0.989 (richardson) and 2 (e^-dt/2 - e^-dt)/dt = 0.742 (late_half: blind
    to an offset of the first jumps, at the price of a larger relaxation bias), each within 4 SE."""
    from cgflow.methods.partial.stages import FitSDE

    tree = open_run(store)
    system = SpinSystem("curie_weiss", temperature=1.1, field=0.1, size=16)
    expect = {"euler": (1 - np.exp(-0.4)) / 0.4, "richardson": (4 * (1 - np.exp(-0.2)) - (1 - np.exp(-0.4))) / 0.4,
              "late_half": 2 * (np.exp(-0.2) - np.exp(-0.4)) / 0.4}
    for estimator, slope_exact in expect.items():
        fit = FitSDE(upstream="", seed=0, small_sizes=(4, 8), system=system, drift_estimator=estimator)
        z0, z1, dt, noise = fit.training_pairs(tree, "method", 8)
        assert noise == {"euler": 1.0, "richardson": 5.0, "late_half": 2.0}[estimator]
        x = glauber.cw_drift(z0[:, 0], 1.1, 0.1) * dt
        y = z1[:, 0] - z0[:, 0]
        slope = np.sum(x * y) / np.sum(x * x)
        se = np.sqrt(np.var(y - slope * x) / np.sum(x * x))
        assert abs(slope - slope_exact) < 4 * se, (estimator, slope, slope_exact, se)
    ev = open_run(store)["evaluation"]
    lb = ev["late_half_bias_estimate"].values  # leading order: 2 (ratio - 1) = -0.28 for e^-s relaxation
    assert np.all(np.abs(lb - 2 * ((np.exp(-0.2) - np.exp(-0.4)) / (2 * (np.exp(-0.1) - np.exp(-0.2))) - 1))
                  < 4 * ev["late_half_bias_estimate_stderr"].values + 1e-12), lb


def test_sweep_stages_meet_the_contract():
    system = SpinSystem("curie_weiss", temperature=1.1, field=0.1, size=16, window=8, stride=4, starts=(0.0, 0.5))
    pairs = PairSweep(system, seed=3, small_sizes=(4, 8), pairs=64, block=32, pair_duration=0.1, snapshots_per_run=4)
    check_stage(pairs)
    truth = TruthRuns(system, seed=3, runs=4, block=2, t_end=2.0, save_every=0.5)
    check_stage(truth)


@pytest.mark.parametrize("change, key", [
    ("micro: {model: ising3d, temperature: 1.1, field: 0.1, size: 16}", "micro.model"),
    ("micro: {model: curie_weiss, temperature: 1.1, field: 0.1, size: 20}", "partial.small_size"),
    ("micro: {model: curie_weiss, temperature: 1.1, field: 0.1, size: 16}\npartial: {small_size: 8, large_size: 32}",
     "partial.large_size"),
    ("loss: {scaling: lots}", "loss.scaling"),
])
def test_bad_specs_exit_2_naming_the_key(tmp_path, change, key):
    lines = SPEC.splitlines()
    head = change.split(":")[0]
    if head == "micro" and "partial" in change:
        lines = [ln for ln in lines if not ln.startswith(("micro:", "partial:"))]
    else:
        lines = [ln for ln in lines if not ln.startswith(head + ":")]
    text = "\n".join(lines + [change]) + "\n"
    store, proc = run(text, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr
    assert not store.exists()


def test_reduce_stages_meet_the_contract(store):
    """sde, rollout, evaluation: deterministic, and compute == combine(parts) for the partitioned ones."""
    from cgflow.methods import build_stages
    from cgflow.spec import load_spec

    stages = {s.name: s for s in build_stages(load_spec(store.parent / "spec.yaml"))}
    tree = open_run(store)
    for name in ("sde", "rollout", "evaluation"):
        check_stage(stages[name], tree)


def test_the_central_claim_holds_away_from_the_papers_point(tmp_path):
    """Paramagnetic Curie–Weiss (T = 1.5, h = 0; the paper's T = 1.1, h = 0.1 is ordered): the method still
    learns the large system's sigma^2 = (2/N)(1 - m tanh(beta m)) and the baseline K times that."""
    text = SPEC.replace("temperature: 1.1, field: 0.1", "temperature: 1.5, field: 0.0").replace("seed: 7", "seed: 17")
    ev = open_run(run(text, tmp_path)[0])["evaluation"]
    ratio, K = ev["sigma2_ratio"], ev["n_tiles"].values
    assert np.all(np.abs(ratio.sel(variant="method").values - 1.0) < 0.15), ratio.values
    assert np.all(np.abs(ratio.sel(variant="baseline").values / K - 1.0) < 0.15), ratio.values
    assert np.all(ev["drift_error"].sel(variant="method").values < 0.3), ev["drift_error"].values


ISING = """\
name: ising-test
method: partial
seed: 11
micro: {model: ising2d, temperature: 2.5, field: 0.1, size: 16}
partial: {small_size: [8], pairs: 8192, block: 1024, pair_duration: 0.5}
upsampling: {window: 8, stride: 4, window_time: 8.0}
sde: {epochs: 40, hidden: [32, 32]}
truth: {initial: [0.0, 0.5, -0.5], runs: 20, block: 10, t_end: 200.0, save_every: 5.0}
rollout: {paths: 100, dt: 0.05}
"""


@pytest.fixture(scope="module")
def ising_run(tmp_path_factory):
    return run(ISING, tmp_path_factory.mktemp("ising"))


@pytest.fixture(scope="module")
def ising_store(ising_run):
    return ising_run[0]


def test_ising_runs_on_m_and_domain_wall_density(ising_store):
    tree = open_run(ising_store)
    assert list(tree["pairs"]["obs"].values) == ["m", "rho_dw"]
    assert tree["rollout"]["z_mean"].sizes["obs"] == 2
    assert "drift_exact" not in tree["sde"]  # no exact law on a grid for Ising
    ev = tree["evaluation"]
    # REFERENCE-002 §9: m = 0.72458 at T = 2.5, h = 0.1 (transfer matrix; xi = 1.8, so L = 16 is large enough)
    m, se = float(ev["stationary_truth"].sel(obs="m")), float(ev["stationary_truth_se"].sel(obs="m"))
    assert 0 < se < 0.02 and abs(m - 0.72458) < 4 * se, (m, se)
    # the stored relative error is the REFERENCE §6 sum over (time, obs), recomputed here
    true = tree["truth"]["z"].values.mean(axis=1)  # (m0, time, obs)
    pred = tree["rollout"]["z_mean"].values  # (variant, small_size, m0, time, obs)
    expect = (((pred - true) ** 2).sum(axis=(-2, -1)) / (true**2).sum(axis=(-2, -1))).mean(axis=-1)
    np.testing.assert_allclose(ev["relative_error"].values, expect)
    # method vs baseline at L = 16, K = 4: the ensemble means barely differ (the relative errors are single-seed
    # numbers within ~10% of each other), the spread does: lambda = K gives the large system's ensemble s.d. of m,
    # lambda = 1 about sqrt(K) = 2 times it (REFERENCE-002 §0)
    spread = ev["spread_ratio"].sel(state="m", small_size=8)
    assert abs(float(spread.sel(variant="method")) - 1) < 0.25, spread.values
    assert float(spread.sel(variant="baseline")) > 1.5 * float(spread.sel(variant="method")), spread.values


def test_ising_learned_variance_is_the_large_systems(ising_store):
    ev = open_run(ising_store)["evaluation"]
    # REFERENCE §9: short-time N sigma^2 of m = 0.642 at T = 2.5, h = 0.1; K = 4 here
    method = float(ev["n_sigma2_m_at_stationary"].sel(variant="method", small_size=8))
    baseline = float(ev["n_sigma2_m_at_stationary"].sel(variant="baseline", small_size=8))
    assert abs(method / 0.642 - 1) < 0.3, method
    assert 2.5 < baseline / 0.642 < 6, baseline
    # the method's stationary m is near the large system's but NOT within its standard errors: the closure
    # (m, rho_dw) misses the upsampled microstructure and the fitted stationary mean moves by up to ~0.06 with the
    # random stream (measured: |z| < 4 with the kernel's former stream, z = +5.9, m 0.777 vs 0.715, with the
    # current one; issue 10 keeps the 2-SE target open).
    # Checked here: it stays within 0.1 (a diverging or collapsing rollout fails).
    model = float(ev["stationary_model"].sel(obs="m", small_size=8, variant="method"))
    assert abs(model - float(ev["stationary_truth"].sel(obs="m"))) < 0.1, model


def test_ising_pair_duration_self_check_flags_the_fast_variable(ising_run):
    store, proc = ising_run
    ev = open_run(store)["evaluation"]
    # pair runs of 0.5: rho_dw relaxes at rate ~1, so its increments bend (ratio < 1); m barely does
    bias, ratio, se = (ev[k].sel(small_size=8) for k in ("drift_bias_estimate", "dt_halving_ratio", "dt_halving_ratio_stderr"))
    assert float(ratio.sel(obs="rho_dw")) < 1 - 3 * float(se.sel(obs="rho_dw"))
    assert abs(float(bias.sel(obs="m"))) < 0.5
    # an Euler fit would carry that bend (beyond the 10% tolerance); the Richardson targets the sde stage fits
    # by default leave O(dt**2), and the check (which speaks about the estimator in use) reports on those
    assert float(bias.sel(obs="rho_dw")) < -0.1
    rb = ev["richardson_bias_estimate"].sel(small_size=8, obs="rho_dw")
    rse = ev["richardson_bias_estimate_stderr"].sel(small_size=8, obs="rho_dw")
    assert abs(float(rb)) < max(0.1, 4 * float(rse)), (float(rb), float(rse))
    assert ev.attrs["pair_duration_check"].startswith("ok: no richardson_bias_estimate")
    assert "PairDurationWarning" not in proc.stderr


LATENT = ISING.replace("name: ising-test", "name: ising-latent-test").replace(
    "sde: {epochs: 40, hidden: [32, 32]}",
    "closure: {latent: 2, epochs: 2, snapshots: 512, batch_size: 128}\nsde: {epochs: 20, hidden: [32, 32]}").replace(
    "pairs: 8192, block: 1024", "pairs: 2048, block: 512").replace("runs: 20, block: 10, t_end: 200.0", "runs: 4, block: 2, t_end: 20.0")


@pytest.fixture(scope="module")
def latent_store(tmp_path_factory):
    return run(LATENT, tmp_path_factory.mktemp("latent"))[0]


def test_learned_closure_targets_are_patch_additive(latent_store):
    """z1 - z0 of the method is K x the change of the lattice's closure (1/K) sum_J e(x_J): only tile I changed,
    so z1 = z0 + e(x_{t+dt, I}) - e(x_{t, I}) (REFERENCE §0)."""
    from cgflow.methods.partial.closure_stage import load_closure

    tree = open_run(latent_store)
    assert list(tree["rollout"]["obs"].values) == ["m", "rho_dw", "latent_0", "latent_1"]
    clo = tree["closure"].to_dataset().load()
    pairs = tree["pairs"].to_dataset().sel(small_size=8)
    ae = load_closure(clo, 8)
    mean, sd = clo["latent_mean"].sel(small_size=8).values, clo["latent_sd"].sel(small_size=8).values
    before = ae.transform(pairs["snapshot"].values[:256]).astype(np.float64)
    after = ae.transform(pairs["snapshot_after"].values[:256]).astype(np.float64)
    z1 = clo["z1"].sel(small_size=8).values[:256]
    K = 4
    np.testing.assert_allclose((before + K * (after - before) - mean) / sd, z1, atol=2e-4 * np.abs(z1).max())
    np.testing.assert_allclose((before - mean) / sd, clo["z0"].sel(small_size=8).values[:256], atol=1e-4)
    # the baseline pair is the evolved tile's own encoding, and the truth latents encode the truth lattices
    tile = pairs["tile"].values[:256]
    np.testing.assert_allclose((ae.transform(pairs["snapshot_after"].values[:256], tile=tile) - mean) / sd,
                               clo["z1_small"].sel(small_size=8).values[:256], rtol=1e-4, atol=1e-4)
    snap = tree["truth"]["snapshot"].values[1, 0]  # m0 = 0.5, first run, every save time
    np.testing.assert_allclose((ae.transform(snap) - mean) / sd, clo["truth_latent"].sel(small_size=8).values[1, 0],
                               rtol=1e-4, atol=1e-4)
    # the observables of the stored lattices are the pairs' z (the lattices are the ones the pairs came from)
    z = glauber.observables(pairs["snapshot"].values[:64], glauber.GlauberParams("ising2d", 2.5, 0.1, 16))
    np.testing.assert_allclose(z, pairs["z0"].values[:64])


@pytest.mark.parametrize("change, key", [
    ("micro: {model: ising2d, temperature: 2.5, field: 0.1, size: 16}|micro: {model: curie_weiss, temperature: 2.5, field: 0.1, size: 16}", "closure.latent"),
    ("small_size: [8]|small_size: [2]", "partial.small_size"),
    ("snapshots: 512|snapshots: 4096", "closure.snapshots"),
])
def test_bad_closure_specs_exit_2_naming_the_key(tmp_path, change, key):
    old, new = change.split("|")
    assert old in LATENT
    store, proc = run(LATENT.replace(old, new), tmp_path, check=False)
    assert proc.returncode == 2 and key in proc.stderr, proc.stderr
    assert not store.exists()


def test_tiles_per_pair_keeps_the_mean_and_divides_the_variance_by_r():
    """partial.tiles_per_pair: r tiles of one snapshot, each evolved alone, averaged. Curie–Weiss L = 16, L_s = 4
    (K = 16), random configurations: the mean increment per unit a(m) dt is the same for r = 1 and r = K (within 4
    standard errors), the residual variance is K times smaller (the reason for lambda = K / r)."""
    common = dict(system=SpinSystem("curie_weiss", temperature=1.1, field=0.1, size=16), seed=5, small_sizes=(4,),
                  pairs=4096, block=4096, pair_duration=0.2, random_fraction=1.0)
    out = {tp: PairSweep(**common, tiles_per_pair=tp).compute_block(0, 0).arrays for tp in ("1", "all")}
    stats = {}
    for tp, a in out.items():
        z0, inc = a["z0"][:, 0], (a["z1"] - a["z0"])[:, 0]
        w = glauber.cw_drift(z0, 1.1, 0.1) * 0.2
        stats[tp] = (np.sum(w * inc) / np.sum(w * w), inc - w)  # regression slope on a(m) dt, residuals
    (s1, r1), (sK, rK) = stats["1"], stats["all"]
    se = np.sqrt(r1.var() / np.sum(glauber.cw_drift(out["1"]["z0"][:, 0], 1.1, 0.1) ** 2 * 0.04))
    assert abs(s1 - sK) < 4 * se, (s1, sK, se)
    assert 0.85 < sK < 1.0  # the Euler increment over dt = 0.2 is ~(1 - e^-dt)/dt = 0.91 of a dt
    assert r1.var() / rK.var() == pytest.approx(16, rel=0.2)
    # the baseline pair is one tile's own in both
    np.testing.assert_allclose((out["all"]["z1_small"] - out["all"]["z0_small"]) * 16 % 2, 0, atol=1e-9)


# ----------------------------------------------------------------------------- temperature-conditioned SDE
def test_conditioned_spin_blocks_take_the_temperatures_in_turn_and_are_the_single_temperature_blocks():
    system = SpinSystem("ising2d", temperature=2.25, field=0.0, size=16, window=8, stride=4, starts=(0.0, 0.5),
                        temperatures=(2.25, 2.29), truth_temperatures=(2.25, 2.27, 2.29))
    kw = dict(seed=4, small_sizes=(8,), pairs=64, block=32, pair_duration=0.25, snapshots_per_run=4)
    stage = PairSweep(system, **kw)
    for block, T in ((0, 2.25), (1, 2.29)):
        out = stage.compute_block(0, block).arrays
        np.testing.assert_array_equal(out.pop("conditions"), np.full((32, 1), T))
        ref = PairSweep(system.at_condition(block), **kw).compute_block(0, block).arrays
        assert sorted(out) == sorted(ref)
        for name in ref:
            np.testing.assert_array_equal(out[name], ref[name], err_msg=name)
    # the truth runs every m0 at every test temperature, on a start dimension carrying both
    assert system.start_dim == "start" and len(system.test_starts) == 6
    check_stage(TruthRuns(system, seed=3, runs=2, block=1, t_end=2.0, save_every=1.0))


CONDITIONED_CW = SPEC.replace("temperature: 1.1, field: 0.1, size: 16", "temperature: [1.1, 1.35, 1.6], field: 0.1, size: 16") \
    .replace("partial: {small_size: [4, 8], pairs: 2048, block: 512", "partial: {small_size: [8], pairs: 6144, block: 512") \
    .replace("truth: {runs: 20,", "truth: {temperature: [1.1, 1.225, 1.6], initial: [0.0, 0.5], runs: 20,")


def test_a_conditioned_curie_weiss_sde_learns_the_drift_at_every_temperature(tmp_path):
    """Curie–Weiss trained at T = 1.1, 1.35 and 1.6 (h = 0.1, N = 256, L_s = 8, K = 4; 2048 pairs each): the one
    conditioned SDE's drift is the exact a(m; T) = -m + tanh((m + h)/T) over the visited range at the trained
    temperatures and at T = 1.225 (never trained on); its sigma^2 is the large system's (2/N)(1 - m tanh(...))
    (lambda = K), not K times it. (With two training temperatures, 1.1 and 1.6, the drift interpolated to 1.35
    within the same tolerance but sigma^2 came out 1.7-2.5 times the exact one there: nothing ties the sigma
    network between two condition values.)"""
    from cgflow.methods.partial.stages import load_model

    assert "temperature: [1.1, 1.35, 1.6]" in CONDITIONED_CW and "temperature: [1.1, 1.225, 1.6]" in CONDITIONED_CW
    store, _ = run(CONDITIONED_CW, tmp_path)
    tree = open_run(store)
    assert tree["sde"].attrs["conditions"] == ["temperature"] and "drift_exact" not in tree["sde"]
    lo, hi = tree["sde"]["visited"].sel(variant="method", small_size=8, obs="m").values
    m = np.linspace(lo, hi, 41)
    method = load_model(tree["sde"].to_dataset(), "method", 8)
    baseline = load_model(tree["sde"].to_dataset(), "baseline", 8)
    for T, tol in ((1.1, 0.2), (1.35, 0.2), (1.6, 0.2), (1.225, 0.2)):  # measured 0.05-0.11
        a = glauber.cw_drift(m, T, 0.1)
        b = method.drift(m[:, None], conditions=np.full(len(m), T))[:, 0]
        assert np.max(np.abs(b - a)) / np.max(np.abs(a)) < tol, (T, np.max(np.abs(b - a)), np.max(np.abs(a)))
        s2 = glauber.cw_diffusion(m, T, 0.1, 256)
        ratio = np.mean(method.diffusion(m[:, None], conditions=np.full(len(m), T))[:, 0, 0] / s2)
        ratio_baseline = np.mean(baseline.diffusion(m[:, None], conditions=np.full(len(m), T))[:, 0, 0] / s2)
        assert 0.8 < ratio < 1.25 and ratio_baseline > 2.5, (T, ratio, ratio_baseline)  # measured 0.91-1.03
    # the two trained laws differ (a model that ignored T could not pass both): a(0.5; 1.1) - a(0.5; 1.6) = 0.15
    d = method.drift([[0.5], [0.5]], conditions=[1.1, 1.6])[:, 0]
    assert d[0] - d[1] > 0.075, d
    ev = tree["evaluation"]
    np.testing.assert_array_equal(ev["temperature"].values, [1.1, 1.1, 1.225, 1.225, 1.6, 1.6])
    assert np.all(np.isfinite(ev["stationary_model_per_start"].values))


# ----------------------------------------------------------------------------- small-system burn-in
def test_burn_in_runs_each_small_system_before_its_first_snapshot():
    """partial.burn_in: the first snapshot of a small run is the random start evolved for burn_in on the same
    stream (then the run goes on as without it); burn_in = 0 reads no random numbers (stores as before)."""
    system = SpinSystem("ising2d", temperature=2.5, field=0.1, size=16)
    pool = system.small_snapshots(2, 3, 1.0, 8, np.random.default_rng(7), burn_in=4.0)
    rng = np.random.default_rng(7)
    start = glauber.random_spins(2, 8, rng)
    small = system.params(8)
    for r in range(2):
        s, _ = glauber.run_time(start[r], [4.0], small, rng)
        np.testing.assert_array_equal(pool[3 * r], s)
        for k in range(1, 3):
            s, _ = glauber.run_time(s, [1.0], small, rng)
            np.testing.assert_array_equal(pool[3 * r + k], s)
    zero = system.small_snapshots(2, 3, 1.0, 8, np.random.default_rng(7), burn_in=0.0)
    np.testing.assert_array_equal(zero, system.small_snapshots(2, 3, 1.0, 8, np.random.default_rng(7)))
    np.testing.assert_array_equal(zero[[0, 3]], glauber.random_spins(2, 8, np.random.default_rng(7)))


def test_burn_in_brings_the_small_snapshots_to_the_stationary_law():
    """At T = 2.5, h = 0.1 the 8 x 8 runs from random shuffles (m0 ~ U(-1, 1), domain-wall density ~1/2) reach
    the small system's stationary domain-wall density within ~10; without burn-in the first snapshot is the
    shuffle itself. Mean rho_dw of the first snapshots against the later ones, within 4 standard errors."""
    system = SpinSystem("ising2d", temperature=2.5, field=0.1, size=16)
    rng = np.random.default_rng(11)
    runs, per = 200, 4
    raw = system.observables(system.small_snapshots(runs, per, 5.0, 8, rng), 8)[:, 1].reshape(runs, per)
    burnt = system.observables(system.small_snapshots(runs, per, 5.0, 8, rng, burn_in=20.0), 8)[:, 1]
    burnt = burnt.reshape(runs, per)
    late = raw[:, 2:].ravel()
    se = np.sqrt(burnt[:, 0].var() / runs + late.var() / late.size)
    assert abs(burnt[:, 0].mean() - late.mean()) < 4 * se, (burnt[:, 0].mean(), late.mean(), se)
    assert raw[:, 0].mean() - late.mean() > 10 * se  # the shuffles are far from it: the check can fail


def test_burn_in_check_flags_relaxing_small_runs_and_passes_stationary_ones():
    """The evaluation's burn-in check reads the pairs' small-snapshot observables run by run: with the authors'
    random starts the domain-wall density falls along every run (flagged in the record, no warning), after a
    burn-in of 100 at T = 2.5 (~10 relaxation times of m, whose rate is ~0.09) nothing moves beyond 4 s.e.; too
    short a burn-in warns (20: m still moves by ~0.1)."""
    import warnings

    import xarray as xr

    from cgflow.methods.partial.stages import BurnInWarning, Evaluation

    system = SpinSystem("ising2d", temperature=2.5, field=0.1, size=8)

    def check(burn_in):
        stage = PairSweep(system, seed=9, small_sizes=(8,), pairs=1024, block=1024, pair_duration=0.25,
                          snapshots_per_run=4, snapshot_interval=5.0, burn_in=burn_in, random_fraction=0.25)
        src = stage.compute_block(0, 0).arrays["z_source"]
        pairs = xr.Dataset({"z_source": (("small_size", "replica", "obs"), src[None])},
                           coords={"small_size": [8], "obs": ["m", "rho_dw"]},
                           attrs=dict(snapshots_per_run=4, block_size=1024, random_fraction=0.25, burn_in=burn_in))
        out = xr.Dataset()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Evaluation._burn_in_check(out, pairs)
        return out, [w for w in caught if issubclass(w.category, BurnInWarning)]

    raw, warned = check(0.0)
    assert "rho_dw moves" in raw.attrs["burn_in_check"] and not warned
    assert raw["snapshot_drift"].values[0, 1] < -4 * raw["snapshot_drift_se"].values[0, 1]  # obs: m, rho_dw
    burnt, warned = check(100.0)
    assert burnt.attrs["burn_in_check"].startswith("ok") and not warned
    short, warned = check(20.0)
    assert "m moves" in short.attrs["burn_in_check"] and len(warned) == 1
