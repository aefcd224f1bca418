"""cgflow: learn macroscopic evolution equations from microscopic stochastic simulations, on Dask."""

from __future__ import annotations

from ._cache import configure_numba_cache

# Before any submodule imports numba: compiled kernels are cached under the
# user's cache directory, never inside the installed package (files pip does not
# know would survive an uninstall and shadow the next install).
configure_numba_cache()

__version__ = "0.1.0"
__all__ = ["open_run", "__version__"]


def open_run(path, consolidated=None, chunks="auto"):
    """Open a run's Zarr store as an :class:`xarray.DataTree` (one group per stage).

    Variables are dask arrays chunked as stored; ``chunks=None`` gives lazily
    indexed arrays read directly with zarr (faster for many small reads).
    """
    from .engine.store import open_run as _open_run

    return _open_run(path, consolidated=consolidated, chunks=chunks)
