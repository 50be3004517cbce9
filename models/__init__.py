"""lmech.models — what is integrated: networks, real training, and theories of it."""

from . import finite_width, mean_field
from ._activations import (
    ACTIVATIONS,
    AbstractActivation,
    Activation,
    GaussianPair,
    PairMoments,
    get_activation,
)
from ._data import Dataset
from ._deep_linear import SaxeModes, target_modes
from ._empirical_ntk import empirical_ntk, ntk_vector_product
from ._end_to_end import EndToEnd, balancedness, balancedness_drift
from ._ensemble import infinite_ensemble
from ._kernels import analytic_kernels, analytic_nngp, analytic_ntk
from ._linear_init import decoupled_init, effective_initial_strengths, factor_chain
from ._linearized import Linearized
from ._losses import LOSSES, MSE, AbstractLoss, CrossEntropy, cross_entropy, get_loss, mse
from ._mlp import MLP, count_params
from ._parameterization import Parameterization
from ._trained import Trained
from .finite_width import (
    CorrectedKernel,
    DenseTangentHierarchy,
    EnsembleMean,
    EnsembleStatistics,
    FiniteWidthStatistics,
    PairStatistics,
    TangentHierarchy,
    TaylorModel,
    aspect_ratio_scan,
    criticality,
    ensemble_mean,
    ensemble_samples,
    ensemble_statistics,
    exact_statistics,
    finite_width_statistics,
    hierarchy_tensors,
    kernel_correction,
    pair_statistics,
)
from .mean_field import (
    DeepDMFT,
    DeepLinearDMFT,
    Perturbative,
    TwoLayerDMFT,
    TwoLayerLinearDMFT,
    WidthFluctuations,
    dmft,
    network_deviation,
    perturbative,
    whiten,
    width_fluctuations,
)

__all__ = [
    "DeepDMFT",
    "DeepLinearDMFT",
    "Parameterization",
    "TwoLayerDMFT",
    "TwoLayerLinearDMFT",
    "mean_field",
    "WidthFluctuations",
    "dmft",
    "network_deviation",
    "Perturbative",
    "perturbative",
    "width_fluctuations",
    "whiten",
    "finite_width",
    "kernel_correction",
    "hierarchy_tensors",
    "TaylorModel",
    "TangentHierarchy",
    "DenseTangentHierarchy",
    "EnsembleMean",
    "CorrectedKernel",
    "ACTIVATIONS",
    "AbstractActivation",
    "Activation",
    "GaussianPair",
    "PairMoments",
    "get_activation",
    "LOSSES",
    "MSE",
    "AbstractLoss",
    "CrossEntropy",
    "get_loss",
    "Dataset",
    "EndToEnd",
    "EnsembleStatistics",
    "FiniteWidthStatistics",
    "PairStatistics",
    "Linearized",
    "MLP",
    "SaxeModes",
    "Trained",
    "analytic_kernels",
    "aspect_ratio_scan",
    "analytic_nngp",
    "analytic_ntk",
    "balancedness",
    "balancedness_drift",
    "count_params",
    "criticality",
    "cross_entropy",
    "decoupled_init",
    "effective_initial_strengths",
    "empirical_ntk",
    "ensemble_mean",
    "ensemble_samples",
    "ensemble_statistics",
    "exact_statistics",
    "factor_chain",
    "finite_width_statistics",
    "infinite_ensemble",
    "mse",
    "ntk_vector_product",
    "pair_statistics",
    "target_modes",
]
