"""Operator stage: the discretised operator <K gamma_a, gamma_b> on V_discr, by three estimators.

Seed 000, eq. (5) and Algorithm 1 lines 14–19; REFERENCE §1 "Three estimators".
Every profile of the ensemble contributes one V_discr point per interior node a
(its local state (rho_a, s)), with the row stencil (K_a,a-1, K_aa, K_a,a+1):

* ``increment`` — (1/2h) Cov(dY_a, dY_b) over [t0, t0 + h] (the paper's estimator);
* ``quadratic_variation`` — realised quadratic covariation over [t0, t0 + T_w] / 2 T_w;
* ``carre_du_champ`` — its conditional expectation given the configuration at t0.

Standard errors are cluster-robust: replicas that share a preparation (nested
scheme) are correlated, so the spread is taken between independent clusters
of blocks (one preparation, or whole preparations per block), SE = sd / sqrt(n).
The locality probe gives the increment estimate of entries with disjoint
supports (|a - b| = 2, 3), which vanish for a local operator.

V_discr coordinates are measured, model-free: rho_a is the ensemble mean of the
local density at t0, s_a the central difference of neighbouring rho_a. The
reference ``K_reference`` is exact for the particle system up to local
equilibrium: the lattice operator (L/2) sum_i E[r_i] dgamma_a dgamma_b (E[r_i] the
model's ``mean_bond_rates``; ZRP: (phi_i + phi_i+1)/2, SEP:
(rho_i (1 - rho_i+1) + rho_i+1 (1 - rho_i))/2) at the mean-field profile of t0,
obtained by evolving the initial profile with the model's lattice
hydrodynamics (``lattice_mean_field``; ZRP:
:func:`~cgflow.micro.zrp_hydro.lattice_mean_field`) — during equilibration a
steep affine profile bends (ZRP: d rho/dt = phi'' s**2 / 2), so its nominal
values are not the state at t0. A model without exact facts
(``has_exact_facts = False``, :mod:`cgflow.micro.contract`) gets NaN.

Two numerical times are checked by measurement, never assumed (issue 11):

* the preparation time (``ensemble.times.equilibrate``): a steep profile bends
  while it is prepared, so every table row is placed at the *measured* (rho_a, s_a)
  of t0, and the largest distance from the nominal profile is stored
  (``profile_relaxation``);
* the increment time h: Cov(dP)/2h = <K gamma_a, gamma_b> + O(h) (the drift of the
  hat projections and the change of the rates within [t0, t0 + h]). The
  carre-du-champ estimator is the instantaneous rate at t0 and has no h at all, so
  :func:`increment_h_check` measures the increment estimator's bias against it on
  the diagonal, pooled over the table with its standard error, stores it and warns
  (:class:`IncrementWarning`) when it is both significant (> 3 SE) and larger than
  ``operator.h_tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np
import xarray as xr

from ...engine.stats import Moments
from ...engine.types import fingerprint
from ...micro import zrp_hydro
from .ensemble import micro_model, project

__all__ = ["OperatorTable", "ESTIMATORS", "IncrementWarning", "increment_h_check"]

ESTIMATORS = ("increment", "quadratic_variation", "carre_du_champ")
OFFSETS = (-1, 0, 1)
FAR_OFFSETS = (-3, -2, 2, 3)


class IncrementWarning(UserWarning):
    """The increment estimator's O(h) bias exceeds ``operator.h_tolerance`` (shorten ``ensemble.times.h``)."""


#: h-free estimators the increment estimator is checked against, in order of preference.
H_FREE = ("carre_du_champ", "quadratic_variation")


def increment_h_check(K: np.ndarray, K_se: np.ndarray, estimators, tolerance: float) -> dict:
    """Relative bias of the increment estimator against an h-free one, pooled over the table's diagonal.

    Parameters
    ----------
    K, K_se : ndarray, shape (estimator, point, 3)
        Stencils and standard errors as the operator stage tabulates them.
    estimators : sequence of str
        Names along the first axis.
    tolerance : float
        Relative bias above which (if also > 3 SE) the check fails.

    Returns
    -------
    dict
        ``h_check_reference`` (the h-free estimator, or "none": the check cannot
        run and its numbers are NaN), ``increment_relative_bias`` (inverse-variance
        weighted mean over points of K_inc,aa / K_ref,aa - 1), its standard error
        ``increment_relative_bias_se``, ``increment_bias_z`` and ``h_check_passed``
        (False only when the bias is significant and above the tolerance).
    """
    names = list(estimators)
    reference = next((e for e in H_FREE if e in names), None)
    out = {"h_check_reference": reference or "none", "h_tolerance": float(tolerance)}
    if "increment" not in names or reference is None:
        return {**out, "increment_relative_bias": np.nan, "increment_relative_bias_se": np.nan,
                "increment_bias_z": np.nan, "h_check_passed": True}
    inc, ref = names.index("increment"), names.index(reference)
    a, b = K[inc, :, 1], K[ref, :, 1]
    va, vb = K_se[inc, :, 1] ** 2, K_se[ref, :, 1] ** 2
    ratio = a / b - 1.0
    var = (va + (a / b) ** 2 * vb) / b**2  # delta method
    ok = np.isfinite(ratio) & np.isfinite(var) & (var > 0)
    if not ok.any():
        return {**out, "increment_relative_bias": np.nan, "increment_relative_bias_se": np.nan,
                "increment_bias_z": np.nan, "h_check_passed": True}
    w = 1.0 / var[ok]
    bias = float(np.sum(w * ratio[ok]) / np.sum(w))
    se = float(1.0 / np.sqrt(np.sum(w)))
    z = bias / se
    passed = not (abs(bias) > tolerance and abs(z) > 3.0)
    return {**out, "increment_relative_bias": bias, "increment_relative_bias_se": se,
            "increment_bias_z": float(z), "h_check_passed": bool(passed)}


def _merge_all(moments: list[Moments]) -> Moments:
    out = moments[0]
    for m in moments[1:]:
        out = out.merge(m)
    return out


@dataclass(frozen=True)
class OperatorTable:
    """The ``operator`` reduce stage (implements ``ReduceStage``)."""

    upstream: str  # fingerprint of the ensemble it reads
    estimators: tuple[str, ...]
    margin: int
    sites: int
    elements: int
    periodic: bool
    rate_exponent: int | None
    h: float
    t0: float
    rho_mid: tuple[float, ...]
    profile_slope: tuple[float, ...]
    blocks_per_cluster: int
    model: str = "zrp"
    model_params: tuple = ()
    h_tolerance: float = 0.02
    name: str = "operator"

    @property
    def micro(self):
        """The micro model object (registry; cached)."""
        return micro_model(self.model, self.rate_exponent, self.model_params)

    @classmethod
    def from_spec(cls, spec, ensemble) -> "OperatorTable":
        op = spec["operator"]
        return cls(
            upstream=fingerprint(ensemble),
            estimators=tuple(e for e in ESTIMATORS if e in op["estimators"]),
            margin=op["margin"],
            sites=ensemble.sites,
            elements=ensemble.elements,
            periodic=ensemble.periodic,
            rate_exponent=ensemble.rate_exponent,
            h=ensemble.h,
            t0=float(ensemble.times[0]),
            rho_mid=ensemble.rho_mid,
            profile_slope=ensemble.slope,
            blocks_per_cluster=max(1, ensemble.continuations // ensemble.block_size),
            model=ensemble.model,
            model_params=ensemble.model_params,
            h_tolerance=op["h_tolerance"],
        )

    # ------------------------------------------------------------------ geometry
    def v_discr_nodes(self) -> np.ndarray:
        """Nodes whose stencil is complete, ``margin`` elements away from closed walls."""
        if self.periodic:
            return np.arange(self.elements)
        return np.arange(1 + self.margin, self.elements - self.margin)

    def reference_stencils(self, profile: int) -> np.ndarray:
        """(n_nodes, 3) exact band of the operator at t0 for one profile (see module docstring)."""
        m = self.micro
        x = m.site_positions(self.sites)
        rho0 = self.rho_mid[profile] + self.profile_slope[profile] * (x - 0.5)
        if not getattr(m, "has_exact_facts", False):
            return np.full((self.elements if self.periodic else self.elements + 1, 3), np.nan)
        if self.profile_slope[profile] != 0:  # flat profiles are stationary
            rho0 = m.lattice_mean_field(rho0, self.t0 * self.sites**2, self.periodic)
        rates = m.mean_bond_rates(rho0, self.periodic)
        return zrp_hydro.carre_du_champ_stencil(rates, self.sites, self.elements, self.periodic)

    # ------------------------------------------------------------------ per-profile estimates
    def _increment_band(self, m: Moments) -> np.ndarray:
        """(nodes, 7) entries C[a, a + k] / 2h for k = -3..3 (NaN outside the lattice)."""
        cov = m.covariance / (2 * self.h)
        n = cov.shape[0]
        a = np.arange(n)[:, None]
        b = a + np.arange(-3, 4)[None, :]
        if self.periodic:
            return cov[a, b % n]
        inside = (b >= 0) & (b < n)
        return np.where(inside, cov[a, np.clip(b, 0, n - 1)], np.nan)

    def _estimates(self, estimator: str, per_block: list[Moments], merged: Moments) -> tuple[np.ndarray, np.ndarray]:
        """Pooled estimate and cluster-robust standard error, shape (nodes, 3) [(nodes, 7) for increment]."""
        k = self.blocks_per_cluster
        clusters = [_merge_all(per_block[i:i + k]) for i in range(0, len(per_block), k)]
        if estimator == "increment":
            pooled = self._increment_band(merged)
            each = np.stack([self._increment_band(c) for c in clusters])
        else:
            pooled = merged.mean.reshape(-1, 3)
            each = np.stack([c.mean.reshape(-1, 3) for c in clusters])
        n = len(clusters)
        if n < 2:
            return pooled, np.full_like(pooled, np.nan)
        return pooled, each.std(axis=0, ddof=1) / np.sqrt(n)

    def compute(self, tree: xr.DataTree) -> xr.Dataset:
        ens = tree["ensemble"].ds
        blocks = tree["ensemble/blocks"].ds
        n_profiles, n_blocks = blocks.sizes["point"], blocks.sizes["block"]
        nodes = self.v_discr_nodes()
        x_nodes = ens.x_node.values
        hat_mass = project(np.ones(self.sites), self.elements, self.periodic) * np.sqrt(self.sites)

        K = np.full((len(self.estimators), n_profiles, len(nodes), 3), np.nan)
        K_se = np.full_like(K, np.nan)
        far = np.full((n_profiles, len(nodes), len(FAR_OFFSETS)), np.nan)
        far_se = np.full_like(far, np.nan)
        rho = np.empty((n_profiles, len(nodes)))
        slope = np.empty_like(rho)
        reference = np.empty((n_profiles, len(nodes), 3))
        delta = 1.0 / self.elements
        for p in range(n_profiles):
            b = blocks.isel(point=p).load()
            for e, estimator in enumerate(self.estimators):
                count = b[f"{estimator}_count"].values
                mean = b[f"{estimator}_mean"].values
                second = b[f"{estimator}_comoment"].values if f"{estimator}_comoment" in b else b[f"{estimator}_m2"].values
                per_block = [Moments(int(count[i]), mean[i], second[i]) for i in range(n_blocks)]
                merged = _merge_all(per_block)
                est, se = self._estimates(estimator, per_block, merged)
                if estimator == "increment":
                    far[p] = est[nodes][:, [0, 1, 5, 6]]
                    far_se[p] = se[nodes][:, [0, 1, 5, 6]]
                    est, se = est[:, 2:5], se[:, 2:5]
                K[e, p], K_se[e, p] = est[nodes], se[nodes]
            local = ens.state_mean.isel(point=p).values * np.sqrt(self.sites) / hat_mass
            rho[p] = local[nodes]
            slope[p] = (local[(nodes + 1) % len(local)] - local[nodes - 1]) / (2 * delta)
            reference[p] = self.reference_stencils(p)[nodes]

        # flatten (profile, node) into V_discr points
        n_pts = n_profiles * len(nodes)
        profile = np.repeat(np.arange(n_profiles), len(nodes))
        node = np.tile(nodes, n_profiles)
        slope_nominal = ens.slope.values[profile]
        rho_nominal = ens.rho_mid.values[profile] + slope_nominal * (x_nodes[node] - 0.5)

        ds = xr.Dataset(
            {
                "K": (("estimator", "point", "offset"), K.reshape(len(self.estimators), n_pts, 3)),
                "K_stderr": (("estimator", "point", "offset"), K_se.reshape(len(self.estimators), n_pts, 3)),
                "K_far": (("point", "far_offset"), far.reshape(n_pts, -1)),
                "K_far_stderr": (("point", "far_offset"), far_se.reshape(n_pts, -1)),
                "K_reference": (("point", "offset"), reference.reshape(n_pts, 3)),
            },
            coords={
                "estimator": np.array(self.estimators, dtype=object),
                "point": np.arange(n_pts),
                "offset": np.array(OFFSETS),
                "far_offset": np.array(FAR_OFFSETS),
                "rho": ("point", rho.reshape(-1)),
                "rho_nominal": ("point", rho_nominal),
                "slope": ("point", slope.reshape(-1)),
                "slope_nominal": ("point", slope_nominal),
                "profile": ("point", profile),
                "node": ("point", node),
                "x": ("point", x_nodes[node]),
            },
        )
        ds["K"].attrs["description"] = "row stencil (K_a,a-1, K_aa, K_a,a+1) of <K gamma_a, gamma_b> at V_discr point (rho_a, s) (seed eq. 5, 8)"
        ds["K_stderr"].attrs["description"] = "cluster-robust standard error of K (spread between independent preparations)"
        ds["K_far"].attrs["description"] = "locality probe: increment estimate of <K gamma_a, gamma_a+k>, |k| >= 2 (disjoint supports; 0 for a local operator)"
        ds["K_reference"].attrs["description"] = (
            "exact operator of the particle system under local equilibrium at the mean-field profile of t0: "
            "(L/2) sum_i E[r_i] dgamma_a dgamma_b, E[r_i] the mean jump rate across bond i under the product measure "
            "(ZRP: (phi_i + phi_i+1)/2; REFERENCE §1); NaN if the model gives no exact facts"
        )
        ds["rho"].attrs["description"] = "measured local density rho_a at t0 (ensemble mean of the hat projection)"
        ds["slope"].attrs["description"] = "measured local gradient (rho_a+1 - rho_a-1) / 2 Delta at t0 (macroscopic units)"
        ds["rho_nominal"].attrs["description"] = "initial profile density at the node, rho_mid + s (x_a - 1/2)"
        ds["slope_nominal"].attrs["description"] = "initial profile slope s"
        ds.attrs.update({"h": self.h, "elements": self.elements, "clusters_per_profile": n_blocks // self.blocks_per_cluster,
                         "margin": self.margin, "model": self.model})
        ds.attrs["profile_relaxation"] = float(np.max(np.abs(rho.reshape(-1) - rho_nominal))) if n_pts else 0.0
        check = increment_h_check(K, K_se, self.estimators, self.h_tolerance)
        ds.attrs.update(check)
        if not check["h_check_passed"]:
            warnings.warn(
                f"operator: the increment estimator is {100 * check['increment_relative_bias']:+.2g}% "
                f"(+- {100 * check['increment_relative_bias_se']:.2g}%) off the h-free {check['h_check_reference']} "
                f"estimator on the diagonal, more than operator.h_tolerance = {self.h_tolerance:g}: its O(h) bias at "
                f"ensemble.times.h = {self.h:g}; shorten h or use the h-free estimator's table",
                IncrementWarning, stacklevel=2)
        return ds
