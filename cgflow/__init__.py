"""cgflow: learn macroscopic evolution equations from microscopic stochastic simulations, on Dask."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["open_run", "__version__"]


def open_run(path):
    """Open a run's Zarr store as an :class:`xarray.DataTree` (one group per stage)."""
    from .engine.store import open_run as _open_run

    return _open_run(path)
