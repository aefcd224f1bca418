"""Bin counts a user brings instead of the ``fine`` stage (``infer.data: PATH``).

Format (netCDF 3 or Zarr, read with xarray):

``counts``
    integer variable with dims ``(experiment, time, bin)``: walkers per coarse
    bin at each recorded coarse step; every ``(experiment, time)`` row sums to
    the walker number.
``walkers`` (attribute of the dataset or of ``counts``)
    the number of walkers n_f.
``bin_edges`` (optional)
    ``bin + 1`` increasing edges from -1 to 1; the coarse model assumes equal
    bins, so unequal edges are refused.

Sequences longer than one step are used as consecutive pairs ``(t, t + 1)``;
the coarse state at the start of each pair is the centred ``log(m + 1/2)`` of
its counts (REFERENCE-003 §2: the training gauge, mean zero). The last
``holdout`` steps of every experiment are kept out of training for
``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DataError", "CountData", "check_count_data", "load_count_data", "gauge_state"]

DIMS = ("experiment", "time", "bin")


class DataError(ValueError):
    """The external dataset does not have the documented format (the message says what is wrong)."""


@dataclass(frozen=True)
class CountData:
    """Validated counts: ``counts[experiment, time, bin]`` and the walker number."""

    counts: np.ndarray
    walkers: int
    source: str

    @property
    def bins(self) -> int:
        return self.counts.shape[2]


def gauge_state(counts: np.ndarray) -> np.ndarray:
    """The coarse state of counts in the training gauge: centred ``log(m + 1/2)`` along the last axis."""
    x = np.log(np.asarray(counts, dtype=np.float64) + 0.5)
    return x - x.mean(axis=-1, keepdims=True)


def _open(path: Path):
    import xarray as xr

    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    try:
        if path.is_dir():
            return xr.open_zarr(path, consolidated=None)
        return xr.open_dataset(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a format problem
        raise DataError(f"{path}: cannot be read as netCDF or Zarr by xarray ({type(exc).__name__}: {exc})") from None


def load_count_data(path: str | Path, bins: int | None = None, holdout: int = 0) -> CountData:
    """Read and validate an external count dataset; raise :class:`DataError` naming what is wrong."""
    path = Path(path)
    ds = _open(path)
    try:
        if "counts" not in ds:
            raise DataError(f"{path}: no variable 'counts' (variables: {sorted(map(str, ds.data_vars))})")
        var = ds["counts"]
        if tuple(var.dims) != DIMS:
            raise DataError(f"{path}: 'counts' has dims {tuple(var.dims)}, expected {DIMS}")
        if not np.issubdtype(var.dtype, np.integer):
            raise DataError(f"{path}: 'counts' must be integers, got {var.dtype}")
        counts = np.asarray(var.values, dtype=np.int64)
        walkers = ds.attrs.get("walkers", var.attrs.get("walkers"))
        if walkers is None:
            raise DataError(f"{path}: the walker number is missing (attribute 'walkers' of the dataset or of 'counts')")
        try:
            walkers = int(walkers)
        except (TypeError, ValueError):
            raise DataError(f"{path}: attribute 'walkers' must be an integer, got {walkers!r}") from None
        if walkers < 1:
            raise DataError(f"{path}: attribute 'walkers' must be positive, got {walkers}")
        n_exp, n_time, n_bins = counts.shape
        if n_exp < 1:
            raise DataError(f"{path}: no experiments")
        if n_bins < 3:
            raise DataError(f"{path}: at least 3 bins are needed, got {n_bins}")
        if bins is not None and n_bins != bins:
            raise DataError(f"{path}: the data have {n_bins} bins but coarse.bins is {bins}; set coarse.bins: {n_bins}")
        if n_time - holdout < 2:
            raise DataError(f"{path}: {n_time} time steps leave no training pair with infer.holdout = {holdout}")
        if (counts < 0).any():
            raise DataError(f"{path}: 'counts' has negative values")
        sums = counts.sum(axis=2)
        bad = np.argwhere(sums != walkers)
        if bad.size:
            e, t = bad[0]
            raise DataError(f"{path}: counts of experiment {e} at time {t} sum to {sums[e, t]}, not walkers = {walkers} ({len(bad)} such rows)")
        if "bin_edges" in ds:
            edges = np.asarray(ds["bin_edges"].values, dtype=float)
            if edges.shape != (n_bins + 1,):
                raise DataError(f"{path}: 'bin_edges' must have {n_bins + 1} values, got shape {edges.shape}")
            if not (np.isclose(edges[0], -1.0) and np.isclose(edges[-1], 1.0) and np.all(np.diff(edges) > 0)):
                raise DataError(f"{path}: 'bin_edges' must increase from -1 to 1, got {edges[0]:g} .. {edges[-1]:g}")
            if not np.allclose(np.diff(edges), 2.0 / n_bins, rtol=1e-6):
                raise DataError(f"{path}: 'bin_edges' must be equally spaced (the coarse model has equal bins)")
    finally:
        ds.close()
    return CountData(counts=counts, walkers=walkers, source=str(path))


def check_count_data(path: str | Path, bins: int | None = None, holdout: int = 0) -> None:
    """Validate without keeping the data (the spec validator calls this before anything is written)."""
    load_count_data(path, bins=bins, holdout=holdout)
