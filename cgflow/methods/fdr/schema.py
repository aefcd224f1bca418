"""Spec sections of method ``fdr`` (seed 000), read by :mod:`cgflow.spec` through :mod:`cgflow.methods.registry`.

``micro.model`` is any registered fdr micro model (:mod:`cgflow.micro.registry`,
family ``fdr``); the model's own parameters are ``micro.*`` keys, and the checks
ask the model object (its density domain, capability flags and macro cases), never its name.
"""

from __future__ import annotations

from typing import Any

from ...spec import Field

__all__ = ["STAGES", "OPTIONAL_SECTIONS", "FDR_ESTIMATORS", "MACRO_CASES", "SCHEMA", "sections", "check"]

#: The stages of method fdr, in execution order.
STAGES: tuple[str, ...] = ("ensemble", "operator", "fit", "macro", "particles", "particles_vs_macro")

#: Sections that may be omitted as a whole (at least one profile kind is required).
OPTIONAL_SECTIONS: frozenset[str] = frozenset(
    {"ensemble.profiles.flat", "ensemble.profiles.affine", "operator", "fit", "macro", "particles"}
)

#: Estimators of the discretised operator <K gamma_a, gamma_b>.
FDR_ESTIMATORS = ("increment", "quadratic_variation", "carre_du_champ")

#: Macroscopic test cases (seed 000, Fig. 4).
MACRO_CASES = ("periodic-cosine", "dirichlet-asymmetric")

_POS = dict(minimum=0, exclusive_minimum=True)

SCHEMA: dict[str, Any] = {
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
        "h_tolerance": Field("float", required=False, default=0.02, **_POS, doc="self-check of the increment time: the increment estimator's relative bias against the h-free carre_du_champ (or quadratic_variation) estimator on the diagonal, pooled over the table; above it (and > 3 SE) an IncrementWarning (stored: increment_relative_bias)"),
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

#: Spec keys of the fdr micro section that are model parameters (the rest are lattice settings).
FDR_MODEL_PARAMETER_KEYS = ("rate_exponent",)


def sections(data: Any = None, problems: list | None = None) -> dict[str, Any]:
    """SCHEMA with ``micro.model`` restricted to the registered fdr models, plus the selected model's parameters.

    A model's ``parameters`` that SCHEMA does not know become required ``micro.*``
    keys of the kind its optional ``parameter_kinds`` mapping gives (``"int"``,
    ``"float"``, ``"str"`` or ``"bool"``; default ``"float"``), so a plugin brings
    its own keys. A model that cannot be loaded adds none here; the rules report it.
    """
    from ...micro.registry import ContractError, UnknownModelError, available_models, get_model_class

    micro = dict(SCHEMA["micro"])
    micro["model"] = Field("str", choices=tuple(available_models(family="fdr")), doc=SCHEMA["micro"]["model"].doc)
    raw = data.get("micro") if isinstance(data, dict) else None
    name = raw.get("model") if isinstance(raw, dict) else None
    if isinstance(name, str):
        try:
            cls = get_model_class(name, family="fdr")
        except (ContractError, UnknownModelError):
            cls = None
        kinds = getattr(cls, "parameter_kinds", {}) or {}
        for key in getattr(cls, "parameters", ()):
            if key not in micro:
                micro[key] = Field(kinds.get(key, "float"), doc=f"parameter of the {name} model")
    return {**SCHEMA, "micro": micro}


def _check_fdr_model(d: dict, problems: list):
    """The micro model of an fdr spec, built with its parameters; None (and problems) if it cannot be."""
    from ...micro.registry import ContractError, create_model, get_model_class

    micro = d.get("micro", {})
    name = micro.get("model")
    if name is None:
        return None
    try:
        cls = get_model_class(name, family="fdr")
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
        return create_model(name, {key: micro[key] for key in cls.parameters}, family="fdr")
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
        from .macro import model_cases

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


def check(d: dict, problems: list) -> None:
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
