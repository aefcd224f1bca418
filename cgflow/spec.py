"""Workflow specs: load YAML, apply ``--set`` overrides, validate completely, freeze.

A spec is validated in full before anything is computed or written. Every problem
is reported with the file, the dotted key and what was expected; the CLI turns a
:class:`SpecError` into exit code 2.

The schema is data: nested dicts of :class:`Field`, the :data:`COMMON` keys plus
the sections of the method (:func:`method_schema`). Cross-field
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
    "eqfree": ("trajectories", "homogenized", "learn", "rollout"),
    "probcg": ("fine", "infer", "reference", "predict"),
}

#: Fine-grained walker laws of method probcg (seed 003, §3; REFERENCE-003 §1).
WALKER_LAWS = ("synthetic", "advection_diffusion", "burgers")

#: Detailed models of method eqfree: 1-D heterogeneous diffusion (patch dynamics), 2-D lattice (gap-tooth).
EQFREE_MODELS = ("heterodiffusion", "lattice2d")

#: Learned right-hand sides (seed 001, §4): derivative features, stencil windows, least squares.
LEARNED_MODELS = ("pointwise", "stencil", "linear")

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
    "method": Field("str", choices=("fdr", "eqfree", "probcg", "partial"), doc="coarse-graining method"),
    "seed": Field("int", minimum=0, doc="root of every random stream in the run"),
    "stages": Field("strs", required=False, doc="stages to run (default: all of the method's)"),
}

FDR_SCHEMA: dict[str, Any] = {
    "micro": {
        "model": Field("str", doc="a registered micro model (entry-point group cgflow.micro_models): zrp, sep, ..."),
        "sites": Field("int", minimum=8, doc="lattice sites L"),
        "rate_exponent": Field("int", required=False, choices=(0, 1, 2), doc="zrp only (required there): g(k) = k**p (p = 0: 1 if k > 0)"),
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

#: Sections shared by both eqfree models: training data, learning, rollouts (seed 001, §4–5).
_EQFREE_COMMON: dict[str, Any] = {
    "trajectories": {
        "train": Field("int", minimum=1, doc="trajectories the models are fitted on"),
        "test": Field("int", minimum=1, doc="held-out trajectories for the rMSE of dU/dt (eq. 24)"),
        "modes": Field("int", minimum=1, doc="Fourier terms of the random initial conditions (eq. 23 / 28)"),
        "t_end": Field("float", **_POS, doc="horizon of every trajectory"),
        "sample_every": Field("float", **_POS, doc="interval between recorded snapshots"),
    },
    "learn": {
        "models": Field("strs", required=False, default=LEARNED_MODELS, choices=LEARNED_MODELS),
        "epochs": Field("int", required=False, default=40, minimum=1, doc="passes of Adam over the training set (the best epoch's weights are kept)"),
        "batch": Field("int", required=False, default=64, minimum=1),
        "learning_rate": Field("float", required=False, default=1.0e-3, **_POS),
    },
    "rollout": {
        "initial_conditions": Field("int", required=False, default=1, minimum=1, doc="unseen initial conditions integrated with each model"),
        "times": Field("floats", required=False, default=(0.1, 0.5, 1.0), **_POS, doc="times at which the rollout error is reported"),
    },
}

EQFREE_1D_SCHEMA: dict[str, Any] = {
    "micro": {
        "model": Field("str", choices=EQFREE_MODELS),
        "coefficient": {
            "mean": Field("float", required=False, doc="a(y) = mean + amplitude sin(2 pi y) (default 1.1)"),
            "amplitude": Field("float", required=False, doc="(default 1.0)"),
            "table": Field("floats", required=False, **_POS, doc="or: values of a piecewise-constant a(y) on equal cells of one period"),
        },
        "eps": Field("float", **_POS, doc="period of the heterogeneity"),
        "dx": Field("float", **_POS, doc="micro grid spacing"),
    },
    "patch_dynamics": {
        "nodes": Field("int", minimum=3, doc="macro nodes on [0, 1] incl. the two Dirichlet ends; teeth at the interior ones"),
        "tooth": Field("float", **_POS, doc="tooth width h"),
        "buffer": Field("strnum", required=False, default="auto", doc="patch width H (tooth + buffers), or auto: the narrowest width on a x1.5 ladder from 2 tooth whose estimate of U = x**2 changes by < buffer_tolerance when H widens 1.5x (chosen H and error stored in the attrs; an explicit width is checked the same way and warns above the tolerance)"),
        "buffer_tolerance": Field("float", required=False, default=1.0e-3, **_POS, doc="relative tolerance of the buffer self-check (max over nodes of the change of the patch estimate from H to ~1.5 H)"),
        "burst": Field("float", **_POS, doc="micro simulation time per derivative estimate (eq. 11)"),
        "substeps": Field("int", required=False, default=4, minimum=1, doc="implicit (TR-BDF2) micro steps per burst"),
        "lift_order": Field("int", required=False, default=2, choices=(2, 4), doc="degree of the lifting polynomial (eq. 10)"),
        "macro_dt": Field("float", **_POS, doc="projective time step"),
    },
    **_EQFREE_COMMON,
}

EQFREE_2D_SCHEMA: dict[str, Any] = {
    "micro": {
        "model": Field("str", choices=EQFREE_MODELS),
        "convention": Field("str", required=False, default="paper", choices=("paper", "same-site"), doc="tiling of the 3-periodic kappa_y (REFERENCE §2)"),
        "lattice": Field("int", minimum=3, doc="lattice points per side of [0, 2 pi)"),
    },
    "gap_tooth": {
        "patches": Field("int", minimum=2, doc="patches per direction"),
        "patch_points": Field("int", minimum=3, doc="lattice points per patch side, edges included"),
        "coupling": Field("str", required=False, default="spectral", choices=("spectral", "polynomial")),
        "order": Field("int", required=False, default=6, minimum=2, doc="interpolation degree (coupling: polynomial; 6 is the lowest that meets 1e-3 in the slow decay rates)"),
        "integrator": Field("str", required=False, default="exact", choices=("exact", "bdf", "euler", "rkc"), doc="exact propagator (linear scheme only); rkc: adaptive Runge-Kutta-Chebyshev on the compiled patch kernel, for any right-hand side (~1e-5 of exact, ~85x cheaper than the full lattice); euler: explicit at 0.9 x the stability limit (first order, ~1e-4); bdf: scipy BDF (slow: LU fill-in)"),
    },
    **_EQFREE_COMMON,
}

PROBCG_SCHEMA: dict[str, Any] = {
    "micro": {
        "model": Field("str", choices=("walkers",)),
        "law": Field("str", choices=WALKER_LAWS, doc="synthetic: a prescribed coarse law theta; advection_diffusion or burgers walkers"),
        "walkers": Field("int", minimum=1, doc="n_f walkers on [-1, 1), periodic"),
        "jump_right": Field("float", required=False, default=0.205, minimum=0, maximum=1, doc="probability of a +step jump per fine step (advection_diffusion)"),
        "jump_left": Field("float", required=False, default=0.195, minimum=0, maximum=1, doc="probability of a -step jump per fine step (advection_diffusion)"),
        "step": Field("float", required=False, default=3.875e-3, **_POS, doc="jump length delta y"),
        "dt": Field("float", required=False, default=2.5e-3, **_POS, doc="fine time step delta t"),
        "fine_steps": Field("int", required=False, default=400, minimum=1, doc="fine steps per coarse step Delta t"),
        "density_scale": Field("float", required=False, default=1.0 / 12.0, **_POS, doc="c of the Burgers walkers' local density (REFERENCE-003 §1c)"),
        "theta": Field("floatmap", required=False, doc="synthetic law: {feature name: value}, e.g. {'X[j-1]': 0.5}; features not named are 0"),
    },
    "coarse": {
        "bins": Field("int", required=False, default=24, minimum=3, doc="n_c coarse bins on [-1, 1)"),
        "neighbours": Field("int", required=False, default=2, minimum=0, doc="M: features X[j+m], |m| <= M, and their ordered products"),
    },
    "fine": {
        "experiments": Field("int", required=False, default=64, minimum=1, doc="N training experiments (one coarse step each)"),
        "block": Field("int", required=False, default=16, minimum=1, doc="experiments per task"),
        "modes": Field("int", required=False, default=12, minimum=1, doc="K: Fourier modes of the initial-state prior"),
        "amplitude": Field("float", required=False, default=0.4, minimum=0, doc="A: prior amplitude, a_k, b_k ~ N(0, (A/k^decay)^2)"),
        "decay": Field("float", required=False, default=1.0, minimum=0, doc="spectrum exponent of the initial-state prior (1: REFERENCE-003's proposal; 0.5 decorrelates neighbouring bins, so the quadratic features are identifiable)"),
        "test_initial_conditions": Field("int", required=False, default=2, minimum=0, doc="held-out initial conditions"),
        "test_replicas": Field("int", required=False, default=32, minimum=1, doc="fine-grained runs from each held-out initial condition"),
        "test_steps": Field("int", required=False, default=10, minimum=1, doc="coarse steps of the test runs"),
        "observe_bins": Field("int", required=False, default=96, minimum=1, doc="finer observation resolution (a multiple of coarse.bins)"),
        "test_initial": Field("str", required=False, default="prior", choices=("prior", "sine"), doc="held-out initial states: prior draws, or log(1 + A sin(pi y)) (shock formation)"),
        "test_amplitude": Field("float", required=False, default=0.5, minimum=0, maximum=0.99, doc="A of the sine initial state"),
    },
    "infer": {
        "data": Field("str", required=False, doc="bring your own bin counts (netCDF or Zarr; see the README); then the fine stage is skipped"),
        "holdout": Field("int", required=False, default=0, minimum=0, doc="with infer.data: the last steps of each experiment kept out of training, for predict"),
        "restarts": Field("int", required=False, default=2, minimum=1, doc="independent fits; the highest ELBO is kept"),
        "iterations": Field("int", required=False, default=150, minimum=1, doc="outer iterations at most"),
        "block": Field("int", required=False, default=16, minimum=1, doc="experiments per task in each iteration"),
        "learning_rate": Field("float", required=False, default=0.02, **_POS, doc="Adam step on (mu, log s) of q(X_i)"),
        "samples": Field("int", required=False, default=16, minimum=1, doc="Monte Carlo samples per SVI gradient"),
        "svi_steps": Field("int", required=False, default=40, minimum=1, doc="Adam steps per outer iteration"),
        "tolerance": Field("float", required=False, default=1.0e-4, **_POS, doc="stopping rule: absolute floor of the allowed drift of each mu_theta over the window"),
        "relative_tolerance": Field("float", required=False, default=0.1, minimum=0, doc="stopping rule: allowed drift of mu_theta_l over the window, in posterior s.d. of theta_l"),
        "stop_z": Field("float", required=False, default=3.0, minimum=0, doc="stopping rule: drifts within this many standard errors of the iteration noise count as no drift"),
        "window": Field("int", required=False, default=10, minimum=3, doc="iterations the stopping rule fits its line to"),
    },
    "predict": {
        "samples": Field("int", required=False, default=1000, minimum=10, doc="posterior predictive samples"),
        "noise": Field("str", required=False, default="mean", choices=("mean", "sampled"), doc="v at prediction time: <v>, or drawn from q(v)"),
    },
}

#: Sections that may be omitted as a whole (at least one profile kind is required).
_OPTIONAL_SECTIONS = {
    "ensemble.profiles.flat", "ensemble.profiles.affine", "operator", "fit", "macro", "particles",
    "micro.coefficient", "learn", "rollout",
    "coarse", "fine", "infer", "predict",
}


def _optional_sections() -> set[str]:
    """Sections that may be omitted (those of every method: an absent section of another method never matters)."""
    from .methods.partial import schema

    return _OPTIONAL_SECTIONS | set(schema.OPTIONAL_SECTIONS)


def method_schema(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sections of the spec's method (and, for eqfree, of its micro model); None if undecidable."""
    method = data.get("method")
    if method == "fdr":
        return _fdr_schema()
    if method == "eqfree":
        model = (data.get("micro") or {}).get("model") if isinstance(data.get("micro"), Mapping) else None
        return {"heterodiffusion": EQFREE_1D_SCHEMA, "lattice2d": EQFREE_2D_SCHEMA}.get(model)
    if method == "probcg":
        return PROBCG_SCHEMA
    if method == "partial":
        from .methods.partial import schema

        return schema.SCHEMA
    return None


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
                if dotted not in _optional_sections():
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
    if method == "partial":
        from .methods.partial import schema

        METHOD_STAGES.setdefault("partial", schema.STAGES)
    if method in METHOD_STAGES:
        available = METHOD_STAGES[method]
        stages = d.get("stages") or available
        bad = [s for s in stages if s not in available]
        if bad:
            problems.append(("stages", f"unknown stage(s) {bad} for method '{method}'; expected a subset of {list(available)}"))
        d["stages"] = tuple(s for s in available if s in stages)
    if method == "fdr":
        _check_fdr(d, problems)
    elif method == "eqfree":
        _check_eqfree(d, problems)
    elif method == "probcg":
        _check_probcg(d, problems)
    elif method == "partial":
        from .methods.partial import schema

        schema.check(d, problems)


def _ratio(numerator: float, denominator: float) -> int | None:
    """``numerator / denominator`` if it is a whole number (to 1e-9 relative), else None."""
    q = numerator / denominator
    return round(q) if abs(q - round(q)) <= 1e-9 * max(1.0, abs(q)) and round(q) >= 1 else None


def _check_eqfree(d: dict, problems: list) -> None:
    micro, traj, rollout = d.get("micro", {}), d.get("trajectories", {}), d.get("rollout", {})
    t_end, every = traj.get("t_end"), traj.get("sample_every")
    if t_end is not None and every is not None and _ratio(t_end, every) is None:
        problems.append(("trajectories.sample_every", f"must divide trajectories.t_end = {t_end:g} a whole number of times, got {every:g}"))
    for t in rollout.get("times", ()):
        if t_end is not None and t > t_end * (1 + 1e-12):
            problems.append(("rollout.times", f"must be <= trajectories.t_end = {t_end:g}, got {t:g}"))

    if micro.get("model") == "heterodiffusion":
        coef, pd = micro.get("coefficient", {}), d.get("patch_dynamics", {})
        if coef.get("table") is not None and (coef.get("mean") is not None or coef.get("amplitude") is not None):
            problems.append(("micro.coefficient.table", "give either a table or mean/amplitude, not both"))
        mean = coef.get("mean") if coef.get("mean") is not None else 1.1
        amp = coef.get("amplitude") if coef.get("amplitude") is not None else 1.0
        if coef.get("table") is None and mean - abs(amp) <= 0:
            problems.append(("micro.coefficient", f"a(y) = mean + amplitude sin(2 pi y) must stay > 0: mean = {mean:g}, amplitude = {amp:g}"))
        eps, dx = micro.get("eps"), micro.get("dx")
        if eps is not None and dx is not None and eps < 4 * dx:
            problems.append(("micro.dx", f"must resolve the heterogeneity (at least 4 points per period eps = {eps:g}), got {dx:g}"))
        nodes, tooth, buffer = pd.get("nodes"), pd.get("tooth"), pd.get("buffer")
        if isinstance(buffer, str) and buffer != "auto":  # strnum: "auto" or a number kept as text
            try:
                buffer = float(buffer)
            except ValueError:
                buffer = None
            if buffer is None or not 0 < buffer < float("inf"):
                problems.append(("patch_dynamics.buffer", f"must be auto or a number > 0, got {pd['buffer']!r}"))
                buffer = None
            pd["buffer"] = buffer if buffer is not None else pd["buffer"]
        if buffer == "auto":
            buffer = None  # its rungs are admissible by construction (buffer_ladder)
            if None not in (nodes, tooth) and 2 * tooth >= 1.0 / (nodes - 1):
                problems.append(("patch_dynamics.buffer", f"auto needs room for a buffer: 2 tooth < node spacing 1/(nodes - 1) = {1.0 / (nodes - 1):g}, got tooth = {tooth:g}"))
        if None not in (nodes, tooth, buffer):
            spacing = 1.0 / (nodes - 1)
            if not tooth < buffer:
                problems.append(("patch_dynamics.buffer", f"must be wider than patch_dynamics.tooth = {tooth:g}, got {buffer:g}"))
            elif not buffer < spacing:
                problems.append(("patch_dynamics.buffer", f"patches must not overlap: buffer < node spacing 1/(nodes - 1) = {spacing:g}, got {buffer:g}"))
            for key, width in (("tooth", tooth), ("buffer", buffer)):
                n = _ratio(width, dx) if dx is not None else 0
                if n is None or (dx is not None and (n < 2 or n % 2)):
                    problems.append((f"patch_dynamics.{key}", f"must be an even number (>= 2) of micro grid spacings micro.dx = {dx:g} (centred on a grid point), got {width:g}"))
        burst, macro_dt = pd.get("burst"), pd.get("macro_dt")
        if burst is not None and macro_dt is not None and burst > macro_dt:
            problems.append(("patch_dynamics.burst", f"must not exceed patch_dynamics.macro_dt = {macro_dt:g}, got {burst:g}"))
        if macro_dt is not None and every is not None and _ratio(every, macro_dt) is None:
            problems.append(("trajectories.sample_every", f"must be a whole multiple of patch_dynamics.macro_dt = {macro_dt:g}, got {every:g}"))
    elif micro.get("model") == "lattice2d":
        gt, n = d.get("gap_tooth", {}), micro.get("lattice")
        patches, points = gt.get("patches"), gt.get("patch_points")
        if None not in (n, patches) and n % patches:
            problems.append(("gap_tooth.patches", f"must divide micro.lattice = {n}, got {patches}"))
        elif None not in (n, patches, points) and points >= n // patches:
            problems.append(("gap_tooth.patch_points", f"patches must leave gaps: fewer than micro.lattice / patches = {n // patches} points, got {points}"))
        if gt.get("coupling") == "polynomial" and gt.get("order", 0) % 2:
            problems.append(("gap_tooth.order", f"must be even, got {gt['order']}"))


def _check_probcg(d: dict, problems: list) -> None:
    micro, coarse, fine, infer = d.get("micro", {}), d.get("coarse", {}), d.get("fine", {}), d.get("infer", {})
    right, left = micro.get("jump_right"), micro.get("jump_left")
    if right is not None and left is not None and right + left > 1:
        problems.append(("micro.jump_right", f"jump_right + jump_left must not exceed 1 (the rest is the probability to stay), got {right:g} + {left:g}"))
    if fine.get("experiments") and fine.get("block") and fine["experiments"] % fine["block"]:
        problems.append(("fine.block", f"must divide fine.experiments = {fine['experiments']}, got {fine['block']}"))
    bins, observe = coarse.get("bins"), fine.get("observe_bins")
    if bins is not None and observe is not None and observe % bins:
        problems.append(("fine.observe_bins", f"must be a multiple of coarse.bins = {bins}, got {observe}"))
    theta = micro.get("theta")
    if micro.get("law") == "synthetic":
        if not theta:
            problems.append(("micro.theta", "the synthetic law needs its coefficients: {feature name: value}"))
    elif theta:
        problems.append(("micro.theta", f"only the synthetic law takes coefficients (law is {micro.get('law')!r})"))
    if theta and coarse.get("neighbours") is not None:
        from .methods.probcg.features import feature_names

        names = feature_names(coarse["neighbours"])
        unknown = sorted(set(theta) - set(names))
        if unknown:
            hint = difflib.get_close_matches(unknown[0], names, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(("micro.theta", f"unknown feature(s) {unknown}{extra} for coarse.neighbours = {coarse['neighbours']}; names look like X[j-1], X[j], X[j+1]*X[j+1]"))
    if infer.get("data") is not None:
        from .methods.probcg.data import DataError, check_count_data

        try:
            check_count_data(infer["data"], bins=coarse.get("bins"), holdout=infer.get("holdout", 0))
        except DataError as exc:
            problems.append(("infer.data", str(exc)))
        d["stages"] = tuple(s for s in d.get("stages", ()) if s not in ("fine", "reference"))  # the data replace them
    elif infer.get("holdout"):
        problems.append(("infer.holdout", "only with infer.data (the fine stage makes its own test runs)"))


#: Spec keys of the fdr micro section that are model parameters (the rest are lattice settings).
FDR_MODEL_PARAMETER_KEYS = ("rate_exponent",)


def _fdr_schema() -> dict[str, Any]:
    """FDR_SCHEMA with ``micro.model`` restricted to the registered micro models (listed in the error)."""
    from .micro.registry import available_models

    micro = dict(FDR_SCHEMA["micro"])
    micro["model"] = Field("str", choices=tuple(available_models()), doc=FDR_SCHEMA["micro"]["model"].doc)
    return {**FDR_SCHEMA, "micro": micro}


def _check_fdr_model(d: dict, problems: list):
    """The micro model of an fdr spec, built with its parameters; None (and problems) if it cannot be."""
    from .micro.registry import ContractError, create_model, get_model_class

    micro = d.get("micro", {})
    name = micro.get("model")
    if name is None:
        return None
    try:
        cls = get_model_class(name)
    except (ContractError, KeyError) as exc:
        problems.append(("micro.model", str(exc)))
        return None
    ok = True
    for key in cls.parameters:
        if micro.get(key) is None:
            problems.append((f"micro.{key}", f"missing required key for micro.model: {name}"))
            ok = False
    for key in FDR_MODEL_PARAMETER_KEYS:
        if key not in cls.parameters and micro.get(key) is not None:
            problems.append((f"micro.{key}", f"the {name} model takes no {key} (its parameters: {list(cls.parameters) or 'none'})"))
            ok = False
    if not ok:
        return None
    try:
        return create_model(name, {key: micro[key] for key in cls.parameters})
    except ValueError as exc:
        problems.append(("micro", str(exc)))
        return None


def _check_fdr_against_model(d: dict, model, problems: list) -> None:
    """Densities inside the model's domain; stages and estimators the model's capabilities allow."""
    import numpy as np

    name = d["micro"]["model"]
    lo, hi = model.density_domain
    domain = f"({lo:g}, {hi:g})" if hi != float("inf") else f"> {lo:g}"
    profiles = (d.get("ensemble") or {}).get("profiles") or {}
    for rho in (profiles.get("flat") or {}).get("rho", ()):
        try:
            model.check_density(rho)
        except ValueError:
            problems.append(("ensemble.profiles.flat.rho", f"the {name} model needs densities {domain}, got {rho:g}"))
    affine = profiles.get("affine") or {}
    for rho in affine.get("rho_mid", ()):
        for s in affine.get("slopes", ()):
            ends = (rho - abs(s) / 2, rho + abs(s) / 2)
            if ends[0] > 0 and hi != float("inf"):  # the lower end has its own check (stay > 0)
                try:
                    model.check_density(np.array(ends))
                except ValueError:
                    problems.append(("ensemble.profiles.affine.slopes", f"rho_mid + s (x - 1/2) must stay in the {name} "
                                     f"model's densities {domain} on [0, 1]; rho_mid = {rho:g}, s = {s:g} reaches "
                                     f"{ends[0]:g} .. {ends[1]:g}"))
    stages = d.get("stages") or ()
    estimators = (d.get("operator") or {}).get("estimators") or ()
    if "carre_du_champ" in estimators and not getattr(model, "has_bond_rates", False):
        problems.append(("operator.estimators", f"the {name} model gives no bond rates (has_bond_rates is false): "
                         "the carre_du_champ estimator is unavailable; list the others"))
    needs_facts = [s for s in ("macro", "particles", "particles_vs_macro") if s in stages]
    if needs_facts and not getattr(model, "has_exact_facts", False):
        problems.append(("stages", f"the {name} model gives no exact facts (has_exact_facts is false): stages "
                         f"{needs_facts} need its thermodynamic force; leave them out"))
    elif needs_facts:
        from .methods.fdr.macro import model_cases

        table = model_cases(model)
        cases = list((d.get("macro") or {}).get("cases") or ())
        if any(s.startswith("particles") for s in stages) and "periodic-cosine" not in cases:
            cases.append("periodic-cosine")
        x = np.linspace(0.0, 1.0, 201)
        for case in cases:
            if case not in table:
                problems.append(("macro.cases", f"the {name} model has no case {case!r}; it has {sorted(table)}"))
                continue
            try:
                model.check_density(table[case].profile(x))
            except ValueError as exc:
                problems.append(("macro.cases", f"case {case!r} leaves the {name} model's densities {domain}: {exc}"))


def _check_fdr(d: dict, problems: list) -> None:
    micro, ens = d.get("micro", {}), d.get("ensemble", {})
    model = _check_fdr_model(d, problems)
    if model is not None:
        _check_fdr_against_model(d, model, problems)
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
    sections = method_schema(data)
    if sections is None:  # method (or eqfree model) invalid: report it, not every section as unknown
        resolved = _validate({k: v for k, v in data.items() if k in COMMON}, COMMON, "", problems)
        if data.get("method") == "eqfree":
            micro = data.get("micro")
            model = micro.get("model") if isinstance(micro, Mapping) else None
            problems.append(("micro.model", f"expected one of {{{', '.join(EQFREE_MODELS)}}}, got {model!r}"))
    else:
        resolved = _validate(data, {**COMMON, **sections}, "", problems)
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
