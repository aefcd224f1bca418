"""What cgflow's learned models share with scikit-learn estimators: the parameter protocol and its checks.

A model lists its constructor parameters in ``_PARAM_NAMES``; :class:`ParamsMixin`
gives ``get_params``, ``set_params`` and ``repr`` from it (``__init__`` only stores
them, validation happens in ``fit``, as scikit-learn's estimators do).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["ParamsMixin", "check_int", "check_real"]


class ParamsMixin:
    """scikit-learn's ``get_params``/``set_params`` and a parameter ``repr`` from ``_PARAM_NAMES``."""

    _PARAM_NAMES: tuple[str, ...] = ()

    def get_params(self, deep=True):
        """Constructor parameters as a dict (scikit-learn convention)."""
        return {k: getattr(self, k) for k in self._PARAM_NAMES}

    def set_params(self, **params):
        """Set constructor parameters; unknown names raise ValueError. Returns self."""
        for k, v in params.items():
            if k not in self._PARAM_NAMES:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}; valid: {self._PARAM_NAMES}")
            setattr(self, k, v)
        return self

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"


def check_int(v, name: str, lo: int) -> int:
    """``v`` as an int >= ``lo`` (bools refused), else ValueError naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def check_real(v, name: str, lo: float, strict: bool = True) -> float:
    """``v`` as a finite float > ``lo`` (>= if not ``strict``), else ValueError naming ``name``."""
    ok = isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and (v > lo if strict else v >= lo)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {lo}, got {v!r}")
    return float(v)
