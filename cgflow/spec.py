"""Workflow specs: load YAML, apply ``--set`` overrides, validate completely, freeze.

A spec is validated in full before anything is computed or written. Every problem
is reported with the file, the dotted key and what was expected; the CLI turns a
:class:`SpecError` into exit code 2.

The schema is data (:data:`SCHEMA`): nested dicts of :class:`Field`. Cross-field
rules (a block size that divides the replica count, affine profiles that stay
positive, ...) live in :func:`_check_relations`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = [
    "Spec",
    "SpecError",
    "Profile",
    "load_spec",
    "spec_from_dict",
    "parse_override",
    "METHOD_STAGES",
]

#: The stages each method provides, in execution order.
METHOD_STAGES: dict[str, tuple[str, ...]] = {
    "fdr": ("ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro"),
}

#: Estimators of the discretised operator <K gamma_a, gamma_b> (method fdr).
FDR_ESTIMATORS = ("increment", "quadratic_variation", "carre_du_champ")

#: Macroscopic test cases of the fdr method (seed 000, Fig. 4).
MACRO_CASES = ("periodic-cosine", "dirichlet-asymmetric")


class SpecError(ValueError):
    """An invalid workflow spec; ``problems`` holds one ``(dotted_key, message)`` per error."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]):
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {key}: {msg}" if key else f"{source}: {msg}" for key, msg in self.problems]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- YAML

class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e5`` and ``4.0e-4`` as floats (YAML 1.2), not strings."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


# --------------------------------------------------------------------------- schema

@dataclass(frozen=True)
class Field:
    """One leaf of the schema.

    ``kind`` is one of ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"floats"``
    (a list of numbers; a single number is accepted as a one-element list),
    ``"strs"`` (a list of strings).
    """

    kind: str
    required: bool = True
    default: Any = None
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    doc: str = ""

    def describe(self) -> str:
        what = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "bools": "true/false or a list of them",
            "str": "a string",
            "floats": "a number or a list of numbers",
            "strs": "a list of strings",
        }[self.kind]
        if self.choices is not None:
            what += " in {" + ", ".join(map(str, self.choices)) + "}"
        if self.minimum is not None:
            what += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            what += f" <= {self.maximum:g}"
        return what


_POS = dict(minimum=0, exclusive_minimum=True)

SCHEMA: dict[str, Any] = {
    "name": Field("str", doc="run name; default store is <name>.zarr"),
    "description": Field("str", required=False, default=""),
    "method": Field("str", choices=tuple(METHOD_STAGES), doc="coarse-graining method"),
    "seed": Field("int", minimum=0, doc="root of every random stream in the run"),
    "stages": Field("strs", required=False, doc="stages to run (default: all of the method's)"),
    "micro": {
        "model": Field("str", choices=("zrp",)),
        "sites": Field("int", minimum=8, doc="lattice sites L"),
        "rate_exponent": Field("int", choices=(0, 1, 2), doc="g(k) = k**p (p = 0: 1 if k > 0)"),
        "boundary": Field("str", choices=("periodic", "closed"), required=False, default="closed"),
    },
    "ensemble": {
        "profiles": {
            "flat": {"rho": Field("floats", **_POS, doc="flat densities")},
            "affine": {
                "rho_mid": Field("floats", **_POS, doc="density at x = 1/2"),
                "slopes": Field("floats", doc="slopes s of rho(x) = rho_mid + s (x - 1/2)"),
            },
        },
        "basis_functions": Field("int", minimum=2, doc="number of finite elements N_gamma (hat spacing 1/N_gamma)"),
        "replicas": {
            "preparations": Field("int", minimum=1, doc="R1: independent preparations"),
            "continuations": Field("int", minimum=1, required=False, default=1, doc="R2 per preparation"),
            "block": Field("int", minimum=1, doc="replicas per task"),
        },
        "times": {
            "equilibrate": Field("float", minimum=0, doc="macroscopic preparation time t_prep - t_ini"),
            "decorrelate": Field("float", minimum=0, required=False, default=0.0, doc="t0 - t_prep per continuation"),
            "h": Field("float", **_POS, doc="observation interval"),
            "window": Field("float", **_POS, required=False, doc="quadratic-variation window from t0 (default h; >= h)"),
        },
        "store_replicas": Field("bool", required=False, default=False),
    },
    "operator": {
        "estimators": Field("strs", required=False, default=FDR_ESTIMATORS, choices=FDR_ESTIMATORS),
        "margin": Field("int", required=False, default=1, minimum=0, doc="elements next to a closed wall left out of V_discr"),
    },
    "fit": {
        "order": Field("int", required=False, default=2, choices=(1, 2), doc="polynomial order in (rho, slope)"),
        "mass_conservation": Field("bools", required=False, default=(True, False), doc="fit variants: column sums imposed / free"),
    },
    "macro": {
        "elements": Field("int", required=False, default=40, minimum=4),
        "cases": Field("strs", required=False, default=MACRO_CASES, choices=MACRO_CASES),
        "t_end": Field("float", required=False, default=2.0e-3, **_POS),
        "saves": Field("int", required=False, default=5, minimum=1, doc="output times, equally spaced up to t_end"),
        "method": Field("str", required=False, default="explicit", choices=("explicit", "implicit")),
    },
    "particles": {
        "sites": Field("int", required=False, default=400, minimum=8, doc="lattice of the direct particle simulation"),
        "replicas": Field("int", required=False, default=128, minimum=2),
        "block": Field("int", required=False, default=16, minimum=1),
    },
}

#: Sections that may be omitted as a whole (at least one profile kind is required).
_OPTIONAL_SECTIONS = {"ensemble.profiles.flat", "ensemble.profiles.affine", "operator", "fit", "macro", "particles"}


def _coerce(value: Any, spec: Field) -> tuple[Any, str | None]:
    """Return ``(typed value, None)`` or ``(None, problem)``."""

    def number(v: Any, integer: bool) -> Any:
        if isinstance(v, bool):
            return None
        if integer:
            if isinstance(v, int):
                return v
            if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                return int(v)
            return None
        return float(v) if isinstance(v, (int, float)) else None

    k = spec.kind
    if k in ("int", "float"):
        out = number(value, k == "int")
    elif k == "bool":
        out = value if isinstance(value, bool) else None
    elif k == "str":
        out = value if isinstance(value, str) else None
    elif k == "floats":
        items = value if isinstance(value, list) else [value]
        out = [number(v, False) for v in items]
        out = None if not items or any(v is None for v in out) else tuple(out)
    elif k == "bools":
        items = value if isinstance(value, list) else [value]
        out = tuple(items) if items and all(isinstance(v, bool) for v in items) else None
    elif k == "strs":
        items = value if isinstance(value, list) else [value]
        out = tuple(items) if items and all(isinstance(v, str) for v in items) else None
    else:  # pragma: no cover - schema bug
        raise AssertionError(k)
    if out is None:
        return None, f"expected {spec.describe()}, got {value!r}"

    values = out if isinstance(out, tuple) else (out,)
    for v in values:
        if spec.choices is not None and v not in spec.choices:
            return None, f"expected {spec.describe()}, got {v!r}"
        if spec.minimum is not None and (v <= spec.minimum if spec.exclusive_minimum else v < spec.minimum):
            return None, f"expected {spec.describe()}, got {v!r}"
        if spec.maximum is not None and v > spec.maximum:
            return None, f"expected {spec.describe()}, got {v!r}"
    return out, None


def _validate(data: Any, schema: Mapping[str, Any], prefix: str, problems: list) -> dict:
    """Check ``data`` against ``schema`` recursively; fill defaults; collect problems."""
    if not isinstance(data, Mapping):
        problems.append((prefix.rstrip("."), f"expected a mapping, got {data!r}"))
        return {}
    out: dict[str, Any] = {}
    for key in data:
        if key not in schema:
            hint = difflib.get_close_matches(str(key), list(schema), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            known = ", ".join(schema)
            problems.append((prefix + str(key), f"unknown key{extra}; expected one of: {known}"))
    for key, sub in schema.items():
        dotted = prefix + key
        if isinstance(sub, dict):
            if key not in data or data[key] is None:
                if dotted not in _OPTIONAL_SECTIONS:
                    problems.append((dotted, "missing required section"))
                else:  # an omitted optional section takes its defaults, if it has no required keys
                    quiet: list = []
                    defaults = _validate({}, sub, dotted + ".", quiet)
                    if not quiet:
                        out[key] = defaults
                continue
            out[key] = _validate(data[key], sub, dotted + ".", problems)
        elif key in data and data[key] is not None:
            value, problem = _coerce(data[key], sub)
            if problem:
                problems.append((dotted, problem))
            else:
                out[key] = value
        elif sub.required:
            problems.append((dotted, f"missing required key; expected {sub.describe()}"))
        else:
            out[key] = sub.default
    return out


def _check_relations(d: dict, problems: list) -> None:
    """Rules that involve several keys. Only runs on keys that passed their own checks."""
    method = d.get("method")
    if method in METHOD_STAGES:
        available = METHOD_STAGES[method]
        stages = d.get("stages") or available
        bad = [s for s in stages if s not in available]
        if bad:
            problems.append(("stages", f"unknown stage(s) {bad} for method '{method}'; expected a subset of {list(available)}"))
        d["stages"] = tuple(s for s in available if s in stages)

    micro, ens = d.get("micro", {}), d.get("ensemble", {})
    sites, nb = micro.get("sites"), ens.get("basis_functions")
    if sites is not None and nb is not None:
        if sites % nb:
            problems.append(("ensemble.basis_functions", f"must divide micro.sites = {sites} (hat nodes sit on lattice bonds), got {nb}"))
        elif sites // nb < 2:
            problems.append(("ensemble.basis_functions", f"needs at least 2 lattice sites per element, got {sites // nb}"))

    reps = ens.get("replicas", {})
    prep, cont, block = reps.get("preparations"), reps.get("continuations"), reps.get("block")
    if None not in (prep, cont, block):
        total = prep * cont
        if total % block:
            problems.append(("ensemble.replicas.block", f"must divide the replica count preparations x continuations = {total}, got {block}"))
        elif block % cont and cont % block:
            problems.append(("ensemble.replicas.block", f"must be a multiple or a divisor of ensemble.replicas.continuations = {cont}, got {block}"))

    parts, macro = d.get("particles", {}), d.get("macro", {})
    if parts.get("replicas") and parts.get("block") and parts["replicas"] % parts["block"]:
        problems.append(("particles.block", f"must divide particles.replicas = {parts['replicas']}, got {parts['block']}"))
    if parts.get("sites") and macro.get("elements") and parts["sites"] % macro["elements"]:
        problems.append(("particles.sites", f"must be a multiple of macro.elements = {macro['elements']}, got {parts['sites']}"))

    times = ens.get("times", {})
    if times.get("window") is not None and times.get("h") is not None and times["window"] < times["h"]:
        problems.append(("ensemble.times.window", f"must be >= ensemble.times.h = {times['h']:g}, got {times['window']:g}"))

    profiles = ens.get("profiles")
    if profiles is not None and not (profiles.get("flat") or profiles.get("affine")):
        problems.append(("ensemble.profiles", "expected at least one of 'flat' or 'affine'"))
    affine = (profiles or {}).get("affine") or {}
    if affine and micro.get("boundary") == "periodic":
        problems.append(("ensemble.profiles.affine", "affine profiles need micro.boundary: closed (on a ring they jump at x = 0)"))
    for rho in affine.get("rho_mid", ()):
        for s in affine.get("slopes", ()):
            if rho - abs(s) / 2 <= 0:
                problems.append(("ensemble.profiles.affine.slopes", f"rho_mid + s (x - 1/2) must stay > 0 on [0, 1]; rho_mid = {rho:g}, s = {s:g} reaches {rho - abs(s) / 2:g}"))


# --------------------------------------------------------------------------- frozen spec

@dataclass(frozen=True)
class Profile:
    """A sweep point: rho(x) = rho_mid + slope (x - 1/2) on [0, 1]."""

    kind: str  # "flat" | "affine"
    rho_mid: float
    slope: float


@dataclass(frozen=True)
class Spec:
    """A validated workflow spec.

    ``data`` is the resolved nested dict (defaults filled, overrides applied); use
    attribute-style helpers for the common fields and ``spec["a.b.c"]`` for any key.
    """

    data: Mapping[str, Any]
    source: str = "<spec>"
    text: str = field(default="", compare=False)

    # -- generic access
    def __getitem__(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    def get(self, dotted: str, default: Any = None) -> Any:
        try:
            return self[dotted]
        except (KeyError, TypeError):
            return default

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def method(self) -> str:
        return self.data["method"]

    @property
    def seed(self) -> int:
        return self.data["seed"]

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.data["stages"])

    @property
    def canonical(self) -> str:
        """Canonical JSON of the resolved spec (sorted keys, tuples as lists)."""
        return json.dumps(_plain(self.data), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """sha256 of :attr:`canonical`; identifies the computation a store holds."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()

    @property
    def resolved_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.data), sort_keys=False)

    # -- ensemble helpers (method fdr)
    @property
    def profiles(self) -> tuple[Profile, ...]:
        p = self.data["ensemble"]["profiles"]
        out = [Profile("flat", r, 0.0) for r in (p.get("flat") or {}).get("rho", ())]
        aff = p.get("affine") or {}
        out += [Profile("affine", r, s) for r in aff.get("rho_mid", ()) for s in aff.get("slopes", ())]
        return tuple(out)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _freeze(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        from types import MappingProxyType

        return MappingProxyType({k: _freeze(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return tuple(_freeze(v) for v in obj)
    return obj


# --------------------------------------------------------------------------- overrides

def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b.c=value"``; the value is typed by YAML (``3``, ``4e-4``, ``[1, 2]``, ``true``).

    >>> parse_override("ensemble.replicas.block=16")
    ('ensemble.replicas.block', 16)
    >>> parse_override("ensemble.profiles.flat.rho=[4, 7.5]")
    ('ensemble.profiles.flat.rho', [4, 7.5])
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set expects dotted.key=value, got {text!r}")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    return key, value


def _apply_override(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise ValueError(f"--set {key}: '{part}' is not a section")
        node = nxt
    node[parts[-1]] = value


# --------------------------------------------------------------------------- entry points

def spec_from_dict(data: Mapping[str, Any], source: str = "<spec>", text: str = "") -> Spec:
    """Validate a nested mapping and return a frozen :class:`Spec` (raises :class:`SpecError`)."""
    problems: list[tuple[str, str]] = []
    resolved = _validate(data, SCHEMA, "", problems)
    if not problems:
        _check_relations(resolved, problems)
    if problems:
        raise SpecError(source, problems)
    return Spec(_freeze(resolved), source=source, text=text)


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read a YAML spec, apply ``--set`` overrides, validate.

    Parameters
    ----------
    path
        YAML file.
    overrides
        ``"dotted.key=value"`` strings, applied in order before validation.

    Raises
    ------
    SpecError
        Listing every problem as ``file: dotted.key: what was expected``.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(source, [("", f"cannot read spec: {exc.strerror}")]) from exc
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(source, [("", f"not valid YAML: {exc}")]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(source, [("", "expected a mapping at the top level")])
    problems = []
    for item in overrides:
        try:
            key, value = parse_override(item)
            _apply_override(data, key, value)
        except ValueError as exc:
            problems.append(("", str(exc)))
    if problems:
        raise SpecError(source, problems)
    return spec_from_dict(data, source=source, text=text)
