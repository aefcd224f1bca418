"""Where numba caches compiled kernels: the user's cache directory, never the package.

numba's ``cache=True`` writes ``*.nbi``/``*.nbc`` files next to the source by
default, i.e. into ``site-packages/cgflow/.../__pycache__`` of a regular
install. pip does not know those files, so an uninstall leaves a
``site-packages/cgflow`` directory behind that Python then imports as a
namespace package, ahead of a later editable install. Pointing
``NUMBA_CACHE_DIR`` at a per-user directory avoids that. An explicit
``NUMBA_CACHE_DIR`` (the Docker image sets one) is respected.

The variable is set in ``os.environ`` so every process cgflow starts (the
LocalCluster's workers) inherits it; a worker of an external cluster imports
``cgflow`` before any kernel module when it unpickles its first task, so it
configures itself the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["configure_numba_cache", "numba_cache_dir"]


def _user_cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    return Path.home() / ".cache"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def numba_cache_dir() -> Path:
    """The directory numba should cache cgflow's kernels in.

    ``$NUMBA_CACHE_DIR`` if set; else ``<user cache>/cgflow/numba``
    (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux); else, if that is not
    writable (a read-only home), a per-user directory under the system's
    temporary directory.
    """
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    preferred = _user_cache_home() / "cgflow" / "numba"
    if _writable(preferred):
        return preferred
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return Path(tempfile.gettempdir()) / f"cgflow-numba-{uid}"


def configure_numba_cache() -> Path:
    """Set ``NUMBA_CACHE_DIR`` (if unset) and tell an already imported numba; return the directory."""
    path = numba_cache_dir()
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before cgflow: its config was read already
        numba.config.CACHE_DIR = str(path)
    return path
