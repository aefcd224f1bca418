"""The ``predict`` stage: posterior predictive against fine-grained truth (seed 003, §2.5, eq. 2.39–2.41).

For each held-out initial condition the start state is the MAP-like state of
its fine state's counts in the training gauge (REFERENCE-003 §2, §4), θ is
drawn from q(θ), v is <v> (or drawn, ``predict.noise: sampled``), and the law
is iterated with multinomial observations (:func:`.predict.posterior_predictive`).
Observables at every coarse step: bin densities at ``coarse.bins`` and at the
observation resolution (walkers uniform in their bin), and the 2-bin
probability m_k1 (m_k2 − δ) / (n_f (n_f − 1)); each as mean and 95% interval.

Against the fine-grained runs (the ``reference`` stage, or the held-out steps
of a user's dataset): the ensemble mean and spread, ``abs_error`` (max over
bins of |predicted mean − fine-grained mean|) and ``coverage``, the fraction of
single fine-grained values inside the 95% interval, by observable, initial
condition and step. One part (a cluster task) per initial condition.
If the fine-grained runs start from independent fine states (``fine.test_shared_start:
false``), predictive sample s starts from run s mod R: the same mixture of starts.
For the Burgers sine start the shock detectors (:mod:`.shock`) are applied to the
predictive mean, the fine-grained mean and the continuum mean fields
(:func:`mean_field_shock_checks`), with t* and the Rankine–Hugoniot speed in steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ...engine import BlockKey, block_stream
from .data import load_count_data
from .features import centred_log_counts
from .predict import posterior_predictive
from .shock import formation_step, peak_step, shock_speed, shock_track, viscous_bin_drop

__all__ = ["PosteriorPredictive"]

OBSERVABLES = ("density", "fine_density", "pair")


def shock_threshold(attrs, bins: int, fraction: float = 0.5) -> float | None:
    """Drop (walker fraction per bin) at which a shock counts as formed, for the Burgers sine test; else None.

    ``fraction`` × the drop between neighbouring bin averages of a formed viscous shock
    (:func:`.shock.viscous_bin_drop`) carrying the initial contrast 2ρ̄A of ρ = ρ̄(1 + A sin πy),
    ρ̄ = 1/2, with the walkers' viscosity D = δy²/(2δt). The walker fraction in a bin is ρw.
    """
    if attrs.get("law") != "burgers" or attrs.get("initial") != "sine":
        return None
    width = 2.0 / bins
    viscosity = float(attrs["step"]) ** 2 / (2.0 * float(attrs["fine_dt"]))
    jump = 2.0 * 0.5 * float(attrs["sine_amplitude"])
    return fraction * width * viscous_bin_drop(jump, width, float(attrs["density_scale"]), viscosity)


def mean_field_shock_checks(attrs, bins: int, T: int, coarse_dt: float) -> dict:
    """The shock detectors applied to the continuum mean fields at the same steps (the calibration of the rules).

    For the sine start ρ = ρ̄(1 + A sin πy), ρ̄ = 1/2: the inviscid mean field ρ_t + (cρ²/2)_y = 0
    (gradient blow-up at t*) and the viscous one with the walkers' D = δy²/(2δt) (REFERENCE-003 §1c, §6),
    binned like the data (:func:`cgflow.micro.walkers.burgers_mean_field_binned`), at steps 0..T-1 of
    ``coarse_dt``. Reported in steps: ``formation`` (80 % of the horizon's largest drop), ``formation_viscous``
    (the absolute threshold, from step 1), ``peak`` (largest drop, from step 1); ``coarse_cfl`` is the largest
    characteristic displacement per coarse step in bins, c ρ̄ (1 + A) Δt / w (a law with first neighbours can
    follow a front only if it is <= 1).
    """
    from ...micro import walkers as wk

    c, amplitude = float(attrs["density_scale"]), float(attrs["sine_amplitude"])
    viscosity = float(attrs["step"]) ** 2 / (2.0 * float(attrs["fine_dt"]))
    times = np.arange(T) * coarse_dt
    threshold = shock_threshold(attrs, bins)
    out = {"coarse_cfl": c * 0.5 * (1.0 + amplitude) * coarse_dt / (2.0 / bins)}
    for label, D, cells in (("inviscid", 0.0, 50 * bins), ("viscous", viscosity, 25 * bins)):
        mass = wk.burgers_mean_field_binned(times, 0.5, amplitude, c, bins, viscosity=D, cells=cells)
        height = shock_track(mass)[1]
        out[f"mean_field_{label}_formation"] = formation_step(height)
        out[f"mean_field_{label}_formation_viscous"] = formation_step(height, threshold=threshold, start=1)
        out[f"mean_field_{label}_peak"] = peak_step(height, start=1)
    return out


def _pair(counts: np.ndarray, n_f: int) -> np.ndarray:
    """2-bin probabilities of counts (..., n_c) -> (..., n_c, n_c)."""
    m = counts.astype(np.float64)
    return m[..., :, None] * (m[..., None, :] - np.eye(m.shape[-1])) / (n_f * (n_f - 1.0))


@dataclass(frozen=True)
class PosteriorPredictive:
    """The ``predict`` stage (a partitioned reduce: one part per initial condition)."""

    seed: int
    neighbours: int
    bins: int
    samples: int
    initial_conditions: int
    noise: str = "mean"
    theta: str = "posterior"  # "bootstrap": the mixture of the infer.bootstrap fits (bagged posterior)
    data: str | None = None
    holdout: int = 0
    upstream: str = ""  # fingerprints of infer and reference
    name: str = field(default="predict", kw_only=True)

    @classmethod
    def from_spec(cls, spec, infer, reference=None) -> "PosteriorPredictive":
        from ...engine import fingerprint

        p, i = spec["predict"], spec["infer"]
        up = fingerprint(infer) + (fingerprint(reference) if reference is not None else "")
        data = i.get("data")
        n_ic = load_count_data(data).counts.shape[0] if data is not None else spec["fine.test_initial_conditions"]
        return cls(seed=spec.seed, neighbours=spec["coarse.neighbours"], bins=spec["coarse.bins"], samples=p["samples"],
                   initial_conditions=n_ic, noise=p["noise"], theta=p.get("theta", "posterior"), data=data, holdout=i["holdout"], upstream=up)

    # ------------------------------------------------------------------ truth
    def truth(self, tree: xr.DataTree) -> tuple[np.ndarray, int]:
        """Fine-grained counts ``(ic, replica, step, obs_bin)`` and n_f."""
        if self.data is not None:
            data = load_count_data(self.data, holdout=self.holdout)
            held = data.counts[:, data.counts.shape[1] - self.holdout - 1:]  # the last training step, then the held-out ones
            return held[:, None], data.walkers
        ref = tree["reference"]
        return np.asarray(ref["counts"].values), int(ref.attrs["walkers"])

    def parts(self) -> tuple:
        return tuple(range(self.initial_conditions))

    # ------------------------------------------------------------------ one initial condition
    def compute_part(self, tree: xr.DataTree, ic: int) -> dict:
        counts, n_f = self.truth(tree)
        runs = counts[ic]  # (replica, step, obs_bin)
        R, T, nb = runs.shape
        fine = nb // self.bins
        coarse = runs.reshape(R, T, self.bins, fine).sum(axis=-1)
        infer = tree["infer"]
        kwargs = dict(mu_theta=infer["theta_mean"].values, S_theta=infer["theta_cov"].values)
        if self.noise == "sampled":
            kwargs.update(v_shape=infer["v_gamma"].values, v_rate=infer["v_zeta"].values, sample_v=True)
        else:
            kwargs.update(v_shape=infer["v_gamma"].values, v_rate=infer["v_zeta"].values)
        rng = block_stream(self.seed, BlockKey(self.name, ic, 0))
        if self.theta == "bootstrap":
            from .predict import bootstrap_draws

            if "bootstrap_theta_mean" not in infer:
                raise ValueError("predict.theta: bootstrap needs the infer stage's bootstrap fits (infer.bootstrap > 0)")
            th, vinv = bootstrap_draws(infer["bootstrap_theta_mean"].values, infer["bootstrap_theta_cov"].values,
                                       infer["bootstrap_v_gamma"].values, infer["bootstrap_v_zeta"].values,
                                       self.samples, rng, sample_v=self.noise == "sampled")
            kwargs = dict(mu_theta=infer["theta_mean"].values, theta_draws=th, v_inv=vinv)
        shared = self.data is not None or bool(tree["reference"].attrs.get("shared_start", 1))
        if shared:
            start = centred_log_counts(coarse[0, 0])  # every replica starts from the same fine state
        else:  # the replicas start from independent x0 ~ p_cf(.|X̄0): the predictive is the mixture over their starts
            start = centred_log_counts(coarse[np.arange(self.samples) % R, 0])
        pred = posterior_predictive(start, T - 1, n_f, self.neighbours, rng, n_samples=self.samples, fine=fine, pairs=True, **kwargs)

        truth = {"density": coarse / n_f, "fine_density": runs / n_f, "pair": _pair(coarse, n_f)}
        predicted = {
            "density": (pred.density_mean, pred.density_lo, pred.density_hi),
            "fine_density": (pred.fine_mean, pred.fine_lo, pred.fine_hi),
            "pair": (pred.pair_mean, pred.pair_lo, pred.pair_hi),
        }
        out = {"blown": pred.blown_fraction}
        threshold = shock_threshold(tree["reference"].attrs, self.bins) if "reference" in tree.children else None
        for source, density in (("predicted", pred.density_mean), ("fine_grained", coarse.mean(axis=0) / n_f)):
            position, height = shock_track(density)
            formed = formation_step(height)
            viscous = formation_step(height, threshold=threshold, start=1) if threshold is not None else -1
            out[f"shock_{source}"] = {"position": position, "height": height, "formation": formed, "peak": peak_step(height, start=1),
                                      "speed": shock_speed(position, formed), "formation_viscous": viscous,
                                      "speed_viscous": shock_speed(position, viscous) if viscous >= 0 else float("nan")}
        for obs in OBSERVABLES:
            mean, lo, hi = predicted[obs]
            t = truth[obs]  # (R, T, ...)
            inside = (t >= lo[None]) & (t <= hi[None])
            axes = tuple(range(2, t.ndim))
            out[obs] = {
                "mean": mean, "lo": lo, "hi": hi,
                "truth_mean": t.mean(axis=0), "truth_sd": t.std(axis=0, ddof=1) if R > 1 else np.zeros_like(mean),
                "coverage": inside.mean(axis=(0,) + axes), "abs_error": np.abs(mean - t.mean(axis=0)).max(axis=tuple(range(1, mean.ndim))),
            }
        return out

    def combine(self, tree: xr.DataTree, results) -> xr.Dataset:
        counts, n_f = self.truth(tree)
        n_ic, R, T, nb = counts.shape
        ics = list(range(n_ic))
        ds = xr.Dataset(coords={"ic": ics, "step": np.arange(T), "bin": np.arange(self.bins), "bin_b": np.arange(self.bins),
                                "obs_bin": np.arange(nb), "observable": np.array(OBSERVABLES, dtype=object)})
        dims = {"density": ("bin",), "fine_density": ("obs_bin",), "pair": ("bin", "bin_b")}
        for obs in OBSERVABLES:
            for key in ("mean", "lo", "hi", "truth_mean", "truth_sd"):
                ds[f"{obs}_{key}"] = (("ic", "step") + dims[obs], np.stack([results[i][obs][key] for i in ics]))
        ds["coverage"] = (("observable", "ic", "step"), np.stack([[results[i][o]["coverage"] for i in ics] for o in OBSERVABLES]))
        ds["abs_error"] = (("observable", "ic", "step"), np.stack([[results[i][o]["abs_error"] for i in ics] for o in OBSERVABLES]))
        ds["blown_fraction"] = (("ic", "step"), np.stack([results[i]["blown"] for i in ics]))
        sources = ("predicted", "fine_grained")
        ds.coords["source"] = np.array(sources, dtype=object)
        for key in ("position", "height"):
            ds[f"shock_{key}"] = (("source", "ic", "step"), np.stack([[results[i][f"shock_{s}"][key] for i in ics] for s in sources]))
        for key in ("formation", "peak", "speed", "formation_viscous", "speed_viscous"):
            ds[f"shock_{key}"] = (("source", "ic"), np.array([[results[i][f"shock_{s}"][key] for i in ics] for s in sources]))
        ds["shock_position"].attrs["description"] = "right edge of the bin pair with the largest drop rho_j - rho_j+1 (a rightward Burgers shock)"
        ds["shock_formation"].attrs["description"] = "first step whose largest drop reaches 80% of its maximum over the horizon"
        ds["shock_peak"].attrs["description"] = "step (>= 1) of the largest drop over the horizon (a viscous shock's binned drop peaks after it has formed)"
        ds["shock_speed"].attrs["description"] = "least-squares slope of the unwrapped shock position after formation (per coarse step)"
        ds["shock_formation_viscous"].attrs["description"] = ("first step whose largest drop reaches shock_threshold "
                                                              "(half the binned drop of a formed viscous shock carrying the initial contrast), "
                                                              "searched from step 1 (step 0's drop is the start state's multinomial noise); -1: never")
        ds["shock_speed_viscous"].attrs["description"] = "least-squares slope of the unwrapped shock position from shock_formation_viscous on (NaN if never formed)"
        ref_attrs = tree["reference"].attrs if "reference" in tree.children else {}
        if ref_attrs.get("law") == "burgers" and ref_attrs.get("initial") == "sine":
            from ...micro import walkers as wk

            c, amplitude = float(ref_attrs["density_scale"]), float(ref_attrs["sine_amplitude"])
            coarse_dt = float(ref_attrs["fine_steps_per_coarse_step"]) * float(ref_attrs["fine_dt"])  # 1 at the paper's 400 x 2.5e-3
            t_star = wk.burgers_shock_time(0.5, amplitude, c)
            ds.attrs.update(shock_time_mean_field=t_star, shock_speed_rankine_hugoniot=c * 0.5, coarse_dt=coarse_dt,
                            shock_time_mean_field_steps=t_star / coarse_dt, shock_speed_rankine_hugoniot_per_step=c * 0.5 * coarse_dt,
                            shock_threshold=shock_threshold(ref_attrs, self.bins),
                            **mean_field_shock_checks(ref_attrs, self.bins, T, coarse_dt),
                            shock_note="inviscid mean field of rho_t + (c rho^2 / 2)_y = 0, rho normalised to mean 1/2 "
                            "(REFERENCE-003 §6); the walkers' mean field has viscosity step^2 / (2 dt)")
        ds["coverage"].attrs["description"] = "fraction of single fine-grained values (every replica and bin) inside the 95% predictive interval"
        ds["abs_error"].attrs["description"] = "max over bins of |predictive mean - fine-grained ensemble mean|"
        ds["blown_fraction"].attrs["description"] = "fraction of predictive samples whose quadratic law blew up (|X| > 50)"
        for obs in OBSERVABLES:
            ds[f"{obs}_lo"].attrs["description"] = "2.5th percentile of the posterior predictive"
            ds[f"{obs}_hi"].attrs["description"] = "97.5th percentile of the posterior predictive"
            ds[f"{obs}_truth_mean"].attrs["description"] = f"mean over the {R} fine-grained runs"
        ds.attrs.update(samples=self.samples, noise=self.noise, theta=self.theta, walkers=n_f, replicas=R,
                        start="MAP-like state centred log(m + 1/2) of the fine state's counts (training gauge); "
                        "with independent starts of the fine-grained runs, sample s starts from run s mod replicas")
        return ds

    def compute(self, tree: xr.DataTree) -> xr.Dataset:
        return self.combine(tree, {i: self.compute_part(tree, i) for i in self.parts()})
