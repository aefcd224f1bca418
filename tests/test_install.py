"""Install hygiene: numba's kernel cache lives in the user's cache directory, never in the package.

The README's two commands run in order in one clone (``.ci/run`` does exactly
that): a regular install, then an editable one over it. Files that pip does not
know (numba's ``*.nbi``/``*.nbc``) left in ``site-packages/cgflow`` would make
that directory a namespace package shadowing the editable install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cgflow

from .conftest import TINY_SPEC, cgflow_cmd

PACKAGE = Path(cgflow.__file__).resolve().parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(extra)
    return env


def test_kernels_are_cached_under_the_user_cache_dir_not_in_the_package(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    cache_home = tmp_path / "xdg"
    started = time.time() - 1.0
    proc = subprocess.run(
        cgflow_cmd("run", str(spec), "--store", str(tmp_path / "s.zarr"), "--serial", "--no-progress"),
        capture_output=True, text=True, env=_env(XDG_CACHE_HOME=str(cache_home)), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    cached = list((cache_home / "cgflow" / "numba").rglob("*.nbi"))
    assert any("zrp" in p.name for p in cached), f"no ZRP kernel cached under {cache_home}: {cached}"
    fresh_in_package = [p for p in PACKAGE.rglob("*.nb[ic]") if p.stat().st_mtime >= started]
    assert not fresh_in_package, f"numba wrote into the package: {fresh_in_package[:3]}"


def test_explicit_numba_cache_dir_is_respected(tmp_path):
    code = "import cgflow, numba, os; print(os.environ['NUMBA_CACHE_DIR']); print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=_env(NUMBA_CACHE_DIR=str(tmp_path / "mine")))
    assert out.stdout.split() == [str(tmp_path / "mine")] * 2


def test_numba_imported_before_cgflow_is_reconfigured(tmp_path):
    code = "import numba, cgflow; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=_env(XDG_CACHE_HOME=str(tmp_path)))
    assert out.stdout.strip() == str(tmp_path / "cgflow" / "numba")


def test_version_from_the_console_script():
    out = subprocess.run(cgflow_cmd("--version"), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"cgflow, version {cgflow.__version__}"
