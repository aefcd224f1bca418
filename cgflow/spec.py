"""Workflow specs: load YAML, apply ``--set`` overrides, validate completely, freeze.

A spec is validated in full before anything is computed or written. Every problem
is reported with the file, the dotted key and what was expected; the CLI turns a
:class:`SpecError` into exit code 2.

The schema is data: nested dicts of :class:`Field`, the :data:`COMMON` keys plus
the sections of the spec's method. The validator names no method: it asks the
method registry (:mod:`cgflow.methods.registry`) for the method's schema module,
which gives its sections, its optional sections, its stages and its cross-key
rules (a block size that divides the replica count, affine profiles that stay
positive, ...).
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
    "Field",
    "Profile",
    "load_spec",
    "spec_from_dict",
    "parse_override",
    "ratio",
]


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
            "floatmap": "a mapping of names to numbers",
            "strnum": "a name or a number",
        }[self.kind]
        if self.choices is not None:
            what += " in {" + ", ".join(map(str, self.choices)) + "}"
        if self.minimum is not None:
            what += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            what += f" <= {self.maximum:g}"
        return what


_POS = dict(minimum=0, exclusive_minimum=True)

COMMON: dict[str, Any] = {
    "name": Field("str", doc="run name; default store is <name>.zarr"),
    "description": Field("str", required=False, default=""),
    "method": Field("str", doc="coarse-graining method (cgflow.methods.registry: fdr, eqfree, probcg, partial)"),
    "seed": Field("int", minimum=0, doc="root of every random stream in the run"),
    "stages": Field("strs", required=False, doc="stages to run (default: all of the method's)"),
}

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
    elif k == "strnum":  # a keyword or a number, kept as text (e.g. loss.scaling: K | 2.5)
        if isinstance(value, str):
            out = value
        else:
            num = number(value, False)
            out = None if num is None else repr(num)
    elif k == "floatmap":
        if not isinstance(value, Mapping) or not all(isinstance(n, str) for n in value):
            out = None
        else:
            nums = {n: number(v, False) for n, v in value.items()}
            out = None if any(v is None for v in nums.values()) else nums
        if out is not None:
            return out, None  # names are checked by the method's rules
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


def _validate(data: Any, schema: Mapping[str, Any], prefix: str, problems: list,
              optional: frozenset[str] = frozenset()) -> dict:
    """Check ``data`` against ``schema`` recursively; fill defaults; collect problems.

    ``optional`` holds the dotted names of sections that may be omitted (they take their defaults).
    """
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
                if dotted not in optional:
                    problems.append((dotted, "missing required section"))
                else:  # an omitted optional section takes its defaults, if it has no required keys
                    quiet: list = []
                    defaults = _validate({}, sub, dotted + ".", quiet)
                    if not quiet:
                        out[key] = defaults
                continue
            out[key] = _validate(data[key], sub, dotted + ".", problems, optional)
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


def _check_relations(d: dict, method, problems: list) -> None:
    """The stage selection, then the method's rules across keys (only on keys that passed their own checks)."""
    available = method.stages
    stages = d.get("stages") or available
    bad = [s for s in stages if s not in available]
    if bad:
        problems.append(("stages", f"unknown stage(s) {bad} for method '{method.name}'; expected a subset of {list(available)}"))
    d["stages"] = tuple(s for s in available if s in stages)
    method.check(d, problems)


def ratio(numerator: float, denominator: float) -> int | None:
    """``numerator / denominator`` if it is a whole number >= 1 (to 1e-9 relative), else None."""
    q = numerator / denominator
    return round(q) if abs(q - round(q)) <= 1e-9 * max(1.0, abs(q)) and round(q) >= 1 else None


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
    from .methods.registry import UnknownMethodError, get_method

    problems: list[tuple[str, str]] = []
    common_problems: list[tuple[str, str]] = []
    common = _validate({k: v for k, v in data.items() if k in COMMON}, COMMON, "", common_problems)
    try:
        method = get_method(common["method"]) if "method" in common else None
    except UnknownMethodError as exc:
        common_problems.append(("method", str(exc)))
        method = None
    sections = method.sections(data, problems) if method is not None else None
    if sections is None:  # the method (or its micro model) is the problem, not every other section
        problems[:0] = common_problems
    else:
        resolved = _validate(data, {**COMMON, **sections}, "", problems, method.optional_sections)
        if not problems:
            _check_relations(resolved, method, problems)
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
