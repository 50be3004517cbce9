"""lmech.models.mean_field — feature learning at infinite width: the mean-field (muP) limit and
its dynamical mean-field theory (DMFT, THEORY.md §4), with the finite-width fluctuations around it.

- `TwoLayerLinearDMFT`: two-layer linear network, whitened data — a closed ODE in the order
  parameters, exact at every width from a realization's own start.
- `DeepLinearDMFT`: deep linear network, whitened data — two-time order parameters closed
  self-consistently on a time grid (`lmech.solvers.SelfConsistent`).
- `DeepDMFT`: deep nonlinear network — Monte-Carlo single sites and their response functions
  on a time grid (`SelfConsistent`), the exact initial kernels as control variate.
- `TwoLayerDMFT`: two-layer nonlinear network — a Monte-Carlo population of single-site
  processes with the exact initial kernels as control variate (exactly the kernel regime at γ₀ = 0).
- `dmft(net, data)`: which of them describes a network spec (refuses tables with no mean-field
  limit, with a pointer to the kernel regime where that is the limit).
- `perturbative`: the O(γ₀²) theory — the kernel regime plus the exact γ₀-curvature of any of
  them at γ₀ = 0.
- `width_fluctuations`: the O(1/N) covariance of a width-N network's outputs around either
  DMFT (linear response to the empirical measure of its neurons).
"""

from ._deep import DeepDMFT
from ._deep_linear import DeepLinearDMFT
from ._fluctuations import WidthFluctuations, network_deviation, width_fluctuations
from ._from_network import dmft
from ._perturbative import Perturbative, perturbative
from ._two_layer import TwoLayerDMFT
from ._two_layer_linear import TwoLayerLinearDMFT, whiten

__all__ = [
    "DeepDMFT",
    "DeepLinearDMFT",
    "Perturbative",
    "TwoLayerDMFT",
    "TwoLayerLinearDMFT",
    "WidthFluctuations",
    "dmft",
    "network_deviation",
    "perturbative",
    "whiten",
    "width_fluctuations",
]
