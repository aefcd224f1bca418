"""The ``closure`` stage of method ``partial``: learned, patch-additive closure variables (REFERENCE-002 §0, §5).

For every small size L_s the system's per-tile autoencoder (Ising: the CNN
:class:`~cgflow.learn.closure.ClosureAutoencoder` with tiles of side L_s;
predator–prey: the per-species MLP :class:`~cgflow.learn.field_closure.FieldClosureAutoencoder`
on its tiles) is trained on the large snapshots of the ``pairs`` stage; its
encoder e gives the closure ẑ(x) = (1/K) Σ_J e(x_J), patch-additive by
construction, so the partial-evolution target extends to it exactly as to m and
ρ_dw (REFERENCE §0):

    ẑ₁ = ẑ(x_t) + e(x_{t+δt,I}) − e(x_{t,I}),

(φ(x_I) = e(x_I) is the single-tile term, so ẑ₁ − ẑ₀ is the tile's own change:
K times the change of the lattice's closure, with K times its variance — the
reason for λ = K),

and the baseline pair is the tile's own (e(x_{t,I}), e(x_{t+δt,I})). The truth
runs' lattices are encoded with the same encoder, so each L_s has its own closure
space (the paper's errors are "not comparable across L_s", REFERENCE §6).
Latents are standardised with the mean and s.d. of the training snapshots'
encodings (the authors min–max scale theirs; any fixed affine map leaves the SDE
fit equivalent and keeps the network inputs O(1)).

:func:`closure_pairs` and :func:`truth_states` give the downstream stages the
full state z = (observables, latents) whether or not the run has latents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ...engine.keys import stage_id
from ...engine.types import TIMING_ATTR

__all__ = ["FitClosure", "closure_pairs", "load_closure", "truth_states", "state_names"]

_PAIR_VARS = ("z0", "z1", "z0_small", "z1_small")


def state_names(tree: xr.DataTree) -> list[str]:
    """Names of the closure state: the observables, then ``latent_0``, ``latent_1``, …"""
    names = [str(o) for o in tree["pairs"]["obs"].values]
    if "closure" in tree.children:
        names += [str(v) for v in tree["closure"]["latent"].values]
    return names


def closure_pairs(tree: xr.DataTree, small_size: int) -> dict[str, np.ndarray]:
    """Training pairs of one L_s with the latents appended: z0, z1, z0_small, z1_small (n, d) and dt (n,)."""
    ds = tree["pairs"].to_dataset().sel(small_size=small_size)
    out = {k: np.asarray(ds[k].values) for k in _PAIR_VARS}
    out["dt"] = np.asarray(ds["dt"].values)
    if "closure" in tree.children:
        lat = tree["closure"].to_dataset().sel(small_size=small_size)
        out = {k: np.concatenate([v, np.asarray(lat[k].values)], axis=-1) for k, v in out.items() if k != "dt"} | \
            {"dt": out["dt"]}
    return out


def truth_states(tree: xr.DataTree, small_size: int) -> np.ndarray:
    """The truth runs' states (m0, replica, time, d) in the closure space of L_s."""
    z = np.asarray(tree["truth"]["z"].values)
    if "closure" in tree.children:
        lat = np.asarray(tree["closure"]["truth_latent"].sel(small_size=small_size).values)
        z = np.concatenate([z, lat], axis=-1)
    return z


def _autoencoder_class(name: str):
    from ...learn.closure import ClosureAutoencoder
    from ...learn.field_closure import FieldClosureAutoencoder

    return {c.__name__: c for c in (ClosureAutoencoder, FieldClosureAutoencoder)}[name]


def load_closure(closure: xr.Dataset, small_size: int):
    """Rebuild the fitted autoencoder of one L_s from the ``closure`` group.

    Its ``transform`` gives its latents; the stored ones are
    ``(latents - latent_mean) / latent_sd`` of that L_s.
    """
    import importlib

    a = closure.attrs
    cls = _autoencoder_class(a.get("autoencoder", "ClosureAutoencoder"))
    module = importlib.import_module(cls.__module__)
    state = {"format": np.array(module.STATE_FORMAT)}
    for var in closure.data_vars.values():
        key = var.attrs.get("state_key")
        if key is None:
            continue
        if "small_size" in var.dims:
            state[key] = np.asarray(var.sel(small_size=small_size).values)
        elif var.attrs.get("small_size") == small_size:
            state[key] = np.asarray(var.values)
    tile = int(closure["tile_size"].sel(small_size=small_size)) if "tile_size" in closure else small_size
    ae = cls(tile_size=tile, latent=int(a.get("autoencoder_latent", a["latent"])))
    return ae.load_state_dict(state)


@dataclass(frozen=True)
class FitClosure:
    """The ``closure`` partitioned reduce: one autoencoder per small size; encodes the pairs and the truth runs."""

    upstream: str
    seed: int
    small_sizes: tuple[int, ...]
    system: Any
    latent: int = 2
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 2e-4
    snapshots: int = 2048
    name: str = field(default="closure", kw_only=True)

    @classmethod
    def from_spec(cls, spec, pairs, truth) -> "FitClosure":
        from ...engine.types import fingerprint

        c = spec["closure"]
        from .systems import system_from_spec

        return cls(upstream=fingerprint(pairs) + fingerprint(truth), seed=spec.seed,
                   small_sizes=tuple(spec["partial"]["small_size"]), system=system_from_spec(spec),
                   latent=c["latent"], epochs=c["epochs"],
                   batch_size=c["batch_size"], learning_rate=c["learning_rate"], snapshots=c["snapshots"])

    def parts(self) -> tuple:
        return tuple(int(s) for s in self.small_sizes)

    def autoencoder(self, Ls: int):
        return self.system.closure_autoencoder(Ls, self.latent, epochs=self.epochs, batch_size=self.batch_size,
                                               learning_rate=self.learning_rate,
                                               random_state=(self.seed, stage_id(self.name), self.small_sizes.index(Ls)))

    def compute_part(self, tree: xr.DataTree, Ls: int) -> dict:
        from .stages import _single_thread

        _single_thread()
        pairs = tree["pairs"].to_dataset().sel(small_size=Ls)
        x = np.asarray(pairs["snapshot"].values)
        after = np.asarray(pairs["snapshot_after"].values)
        tile = np.asarray(pairs["tile"].values)
        ae = self.autoencoder(Ls)
        start = time.process_time()
        ae.fit(x[: self.snapshots])
        seconds = time.process_time() - start
        lat0 = ae.transform(x).astype(np.float64)
        e_before = ae.transform(x, tile=tile).astype(np.float64)
        e_after = ae.transform(after, tile=tile).astype(np.float64)
        train = lat0[: self.snapshots]
        mean, sd = train.mean(axis=0), train.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)

        def scaled(v):
            return (v - mean) / sd

        truth = np.asarray(tree["truth"]["snapshot"].values)  # (start, replica, time, *state shape (2 axes))
        lat_truth = ae.transform(truth.reshape((-1,) + truth.shape[-2:])).astype(np.float64)
        lat_truth = scaled(lat_truth).reshape(truth.shape[:3] + (self.latent,))
        state = ae.state_dict()
        r = int(pairs["tiles_per_pair"].values) if "tiles_per_pair" in pairs.coords else 1
        if r == 1:  # the evolved tile's own change
            z1 = scaled(lat0 + e_after - e_before)
        else:  # r tiles evolved alone and placed together: their mean change is K/r x the lattice encoding's change
            K = int(pairs["n_tiles"].values)
            z1 = scaled(lat0 + (K / r) * (ae.transform(after).astype(np.float64) - lat0))
        return dict(z0=scaled(lat0), z1=z1, z0_small=scaled(e_before),
                    z1_small=scaled(e_after), truth=lat_truth, mean=mean, sd=sd, loss=np.asarray(ae.loss_curve_),
                    reconstruction=ae.reconstruction_loss(x[self.snapshots:][:512] if len(x) > self.snapshots
                                                          else x[:512]),
                    seconds=seconds, state=state)

    def combine(self, tree: xr.DataTree, results) -> xr.Dataset:
        S = self.small_sizes
        res = [results[int(s)] for s in S]
        from .stages import start_coords

        truth = tree["truth"].to_dataset()
        dim, coords = start_coords(truth)
        names = np.array([f"latent_{i}" for i in range(self.latent)], dtype=object)
        out = xr.Dataset(coords={"small_size": np.array(S, np.int64), "latent": names, "epoch": np.arange(self.epochs),
                                 **coords, "time": truth["time"].values})
        desc = {"z0": "standardised closure (1/K) sum_J e(x_J) of the snapshot",
                "z1": "method target: z0 + e(x_{t+dt, I}) - e(x_{t, I}) (REFERENCE-002 §0), standardised",
                "z0_small": "baseline input: e of the evolved tile before the run, standardised",
                "z1_small": "baseline target: e of the evolved tile after the run, standardised"}
        for k, text in desc.items():
            out[k] = (("small_size", "replica", "latent"), np.stack([r[k] for r in res]))
            out[k].attrs["description"] = text
        out["truth_latent"] = (("small_size", dim, "run", "time", "latent"), np.stack([r["truth"] for r in res]))
        out["truth_latent"].attrs["description"] = "the truth runs' lattices (run = the truth replica) encoded by the L_s autoencoder, standardised"
        out["latent_mean"] = (("small_size", "latent"), np.stack([r["mean"] for r in res]))
        out["latent_sd"] = (("small_size", "latent"), np.stack([r["sd"] for r in res]))
        out["latent_sd"].attrs["description"] = "raw latent = latent_mean + latent_sd x stored latent"
        out["loss_curve"] = (("small_size", "epoch"), np.stack([r["loss"] for r in res]))
        out["loss_curve"].attrs["description"] = "the autoencoder's training loss per epoch (BCE for spins, MSE for fields)"
        ae = self.autoencoder(S[0])
        bce = type(ae).__name__ == "ClosureAutoencoder"
        name = "reconstruction_bce" if bce else "reconstruction_mse"
        out[name] = ("small_size", np.array([r["reconstruction"] for r in res]))
        out[name].attrs["description"] = ("BCE on up to 512 snapshots not trained on (log 2 = 0.693: chance)" if bce
                                          else "mean squared reconstruction error on up to 512 snapshots not trained on")
        out["tile_size"] = ("small_size", np.array([self.system.tile_size(s) for s in S], np.int64))
        out["fit_cpu_seconds"] = ("small_size", np.array([r["seconds"] for r in res]))
        out["fit_cpu_seconds"].attrs[TIMING_ATTR] = True
        for key in res[0]["state"]:
            if key == "format":
                continue
            arrs = [np.asarray(r["state"][key]) for r in res]
            if any(a.shape != arrs[0].shape for a in arrs):  # the encoder depth depends on L_s
                for s, a in zip(S, arrs):
                    safe = f"param_L{s}_" + key.replace(".", "_")
                    out[safe] = (tuple(f"{safe}_dim{i}" for i in range(a.ndim)), a)
                    out[safe].attrs.update(state_key=key, small_size=int(s))
                continue
            safe = "param_" + key.replace(".", "_")
            out[safe] = (("small_size",) + tuple(f"{safe}_dim{i}" for i in range(arrs[0].ndim)), np.stack(arrs))
            out[safe].attrs["state_key"] = key
        out.attrs.update(latent=self.latent, epochs=self.epochs, batch_size=self.batch_size,
                         learning_rate=self.learning_rate, snapshots=self.snapshots, upstream=self.upstream,
                         autoencoder=type(ae).__name__, autoencoder_latent=int(ae.latent),
                         architecture=f"per-tile encoder averaged over the K tiles (REFERENCE-002 §5); "
                                      f"{type(ae).__module__}.{type(ae).__name__}")
        return out

    def compute(self, tree: xr.DataTree) -> xr.Dataset:
        return self.combine(tree, {p: self.compute_part(tree, p) for p in self.parts()})
