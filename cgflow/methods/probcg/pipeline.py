"""The stages of method ``probcg`` from a spec: fine -> infer -> reference -> predict."""

from __future__ import annotations

from typing import Any

from .fine import FineExperiments, ReferenceRuns
from .infer import VariationalFit
from .predict_stage import PosteriorPredictive

__all__ = ["build_stages"]


def build_stages(spec: Any) -> list:
    """All stages of the method, chained by fingerprints; those in ``spec.stages`` are returned.

    With ``infer.data`` the user's counts replace ``fine`` and ``reference`` (the
    held-out steps are the truth ``predict`` is checked against).
    """
    external = spec["infer"].get("data") is not None
    fine = None if external else FineExperiments.from_spec(spec)
    reference = None if external else ReferenceRuns.from_spec(spec)
    infer = VariationalFit.from_spec(spec, fine)
    stages = {"fine": fine, "infer": infer, "reference": reference, "predict": PosteriorPredictive.from_spec(spec, infer, reference)}
    return [stages[name] for name in spec.stages if stages.get(name) is not None]
