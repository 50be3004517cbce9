"""The DMFT of a network spec: which mean-field theory describes an `MLP`."""

from __future__ import annotations

from typing import Any

from .._activations import AbstractActivation
from .._data import Dataset
from .._mlp import MLP
from ._deep import DeepDMFT
from ._deep_linear import DeepLinearDMFT
from ._two_layer import TwoLayerDMFT
from ._two_layer_linear import TwoLayerLinearDMFT

__all__ = ["dmft"]


def dmft(net: MLP, data: Dataset, *, samples: int = 16384, key: Any = None):
    r"""The infinite-width mean-field dynamics of the network `net` trained on `data`.

    `net` must be a mean-field network — `Parameterization.mean_field(depth, γ₀)` or a table
    on its symmetry orbit — without biases, $\sigma_w = 1$, one output. Returns
    `TwoLayerLinearDMFT` (depth 2, linear; whitened inputs), `TwoLayerDMFT` (depth 2, any
    activation; `samples` Monte-Carlo sites from `key`) or `DeepLinearDMFT` (deeper, linear;
    whitened inputs) or `DeepDMFT` (deeper, any smooth activation; at most 4096 of the
    `samples` sites per layer) — solve the deep ones with `SelfConsistent()`.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"dmft: `net` must be an lmech MLP, got {type(net).__name__}.")
    table = net.abc
    g = table.mean_field_gamma0()
    if g is None:
        hint = (
            f"its infinite-width limit is the kernel regime: use Linearized.from_network (it is on the "
            f"orbit of {table.kernel_limit()!r})"
            if table.kernel_limit()
            else "no mean-field DMFT covers it"
        )
        raise ValueError(
            f"dmft: the network's parameterization ({table.name}) is not a mean-field table; {hint}. "
            "The DMFTs describe Parameterization.mean_field(depth, gamma0) networks (or tables on its orbit with "
            "the same placement of constants; 'mup' puts them in the init, which changes the per-layer rates)."
        )
    if net.bias or net.sigma_w != 1.0 or net.readout != 1.0 or net.out_size != 1:
        raise ValueError(
            "dmft: the DMFTs cover networks without biases, with sigma_w = 1, readout = 1 and one output; "
            f"got bias={net.bias}, sigma_w={net.sigma_w}, readout={net.readout}, out_size={net.out_size}."
        )
    act = net.activation
    name = act.name if isinstance(act, AbstractActivation) else act
    linear = name == "linear"
    if table.depth == 2:
        if linear:
            return TwoLayerLinearDMFT(data, g)
        return TwoLayerDMFT(data, g, act, samples=samples, key=key)
    if linear:
        return DeepLinearDMFT(data, g, table.depth)
    return DeepDMFT(data, g, table.depth, act, samples=min(samples, 4096), key=key)
