"""Probabilistic coarse-graining (seed 003, Felsberger & Koutsourelakis 2019).

Softmax state-space model of walker counts with ARD and mean-field variational
inference: :mod:`.features` (feature functions, eq. 2.18), :mod:`.inference`
(closed-form and SVI updates, ELBO, serial driver), :mod:`.predict` (posterior
predictive, §2.5).
"""

from .features import *  # noqa: F401,F403
from .features import __all__ as _features_all
from .inference import *  # noqa: F401,F403
from .inference import __all__ as _inference_all
from .predict import *  # noqa: F401,F403
from .predict import __all__ as _predict_all

__all__ = [*_features_all, *_inference_all, *_predict_all]
