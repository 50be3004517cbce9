"""lmech.models.finite_width — a network of finite width beyond its kernel limit (THEORY.md §3).

- At init: the NTK's and NNGP's fluctuations and mean corrections to first order in 1/n for any
  activation (`finite_width_statistics`, `pair_statistics`), exactly for linear and ReLU networks
  (`exact_statistics`), and measured on ensembles of real networks (`ensemble_statistics`,
  `aspect_ratio_scan`) — PDLT's L/n expansion.
- In training: the neural tangent hierarchy of one realization with O3 or O4 frozen at init
  (`TangentHierarchy`, matrix-free; `DenseTangentHierarchy`, its literal small-P form), the
  order-2/3 Taylor models in the parameters (`TaylorModel`), and the O(1/n) closed-form kernel
  correction (`kernel_correction`, `hierarchy_tensors`) with its outputs (`CorrectedKernel`), and the
  ensemble mean over init to O(1/n) of two-layer networks under GD (`ensemble_mean`).
"""

from ._corrected_kernel import CorrectedKernel
from ._ensemble_mean import EnsembleMean, ensemble_mean
from ._kernel_correction import hierarchy_tensors, kernel_correction
from ._pdlt import (
    FiniteWidthStatistics,
    PairStatistics,
    criticality,
    exact_statistics,
    finite_width_statistics,
    pair_statistics,
)
from ._pdlt_ensemble import EnsembleStatistics, aspect_ratio_scan, ensemble_samples, ensemble_statistics
from ._tangent_dense import DenseTangentHierarchy
from ._tangent_hierarchy import TangentHierarchy
from ._taylor import TaylorModel

__all__ = [
    "CorrectedKernel",
    "DenseTangentHierarchy",
    "EnsembleMean",
    "EnsembleStatistics",
    "FiniteWidthStatistics",
    "PairStatistics",
    "TangentHierarchy",
    "TaylorModel",
    "aspect_ratio_scan",
    "criticality",
    "ensemble_mean",
    "ensemble_samples",
    "ensemble_statistics",
    "exact_statistics",
    "finite_width_statistics",
    "hierarchy_tensors",
    "kernel_correction",
    "pair_statistics",
]
