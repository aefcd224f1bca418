"""A minimal in-tree PEP 517 build backend (pure-Python wheels only; no build tools needed).

It exists so that the example plugin installs offline with
``pip install --no-build-isolation ./examples/plugin`` into any environment that has
cgflow, even one without ``setuptools``/``wheel``. It reads the standard ``[project]``
table of pyproject.toml (name, version, description, dependencies, entry points) and
packs the ``[tool.example-backend] packages`` directories into a py3-none-any wheel.
A real plugin would use an ordinary backend instead, with the same ``[project]`` and
``[project.entry-points."cgflow.micro_models"]`` tables, e.g.::

    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _project():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"], data.get("tool", {}).get("example-backend", {})


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata(proj) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {proj['name']}", f"Version: {proj['version']}"]
    if "description" in proj:
        lines.append(f"Summary: {proj['description']}")
    if "requires-python" in proj:
        lines.append(f"Requires-Python: {proj['requires-python']}")
    lines += [f"Requires-Dist: {d}" for d in proj.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _entry_points(proj) -> str:
    out = []
    for group, eps in proj.get("entry-points", {}).items():
        out.append(f"[{group}]")
        out += [f"{k} = {v}" for k, v in eps.items()]
        out.append("")
    for group, key in (("console_scripts", "scripts"), ("gui_scripts", "gui-scripts")):
        if proj.get(key):
            out.append(f"[{group}]")
            out += [f"{k} = {v}" for k, v in proj[key].items()]
            out.append("")
    return "\n".join(out)


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    proj, tool = _project()
    dist, version = _dist(proj["name"]), proj["version"]
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for pkg in tool.get("packages", [_dist(proj["name"])]):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            files[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    files[f"{info}/METADATA"] = _metadata(proj).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: example-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = _entry_points(proj).encode()
    record = "".join(f"{name},{_hash(data)},{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    wheel_name = f"{dist}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    (Path(wheel_directory) / wheel_name).write_bytes(buf.getvalue())
    return wheel_name
