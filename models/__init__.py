"""lmech.models — what is integrated: networks, real training, and theories of it."""

from ._activations import ACTIVATIONS
from ._data import Dataset
from ._deep_linear import (
    SaxeModes,
    decoupled_init,
    effective_initial_strengths,
    factor_chain,
    target_modes,
)
from ._end_to_end import EndToEnd, balancedness, balancedness_drift
from ._linearized import Linearized
from ._losses import cross_entropy, mse
from ._mlp import MLP, count_params
from ._trained import Trained

__all__ = [
    "ACTIVATIONS",
    "Dataset",
    "EndToEnd",
    "Linearized",
    "MLP",
    "SaxeModes",
    "Trained",
    "balancedness",
    "balancedness_drift",
    "count_params",
    "cross_entropy",
    "decoupled_init",
    "effective_initial_strengths",
    "factor_chain",
    "mse",
    "target_modes",
]
