"""Real training as a dynamics: state = parameters, vector field = -grad L."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree, Scalar

from lmech.solvers import AbstractDynamics

from ._data import Dataset
from ._losses import get_loss
from ._mlp import MLP


class Trained(AbstractDynamics):
    r"""The network itself, trained by gradient descent on `data`.

    State: the parameters $\theta$. Vector field: $-\nabla_\theta L(\theta)$, so
    `GradientDescent()` runs exactly the training step
    $\theta \leftarrow \theta - \eta \nabla L$ and `GradientFlow()` its flow.

    Observables: `"loss"` (training loss), `"f_train"` `(P, k)`, `"f_test"` `(Q, k)`;
    for a linear network without biases also `"end_to_end"` (the product matrix
    `(k, d)`) and `"singular_values"` (descending, length min(k, d)).

    **Arguments:**

    - `network`: an `MLP` spec (its `apply`), or any `apply_fn(params, x) -> (P, k)`
      for a bring-your-own model (pass `params`).
    - `data`: a `Dataset`.
    - `loss`: `"mse"` ($\frac{1}{2P}\sum\lVert f-y\rVert^2$) or `"cross_entropy"`.
    - `key`: draws the initial parameters with `network.init(key)` (keyword-only).
    - `params`: the initial parameters (instead of `key`).
    """

    network: Any
    data: Dataset
    params0: PyTree
    loss_name: str = eqx.field(static=True)

    def __init__(
        self,
        network: MLP | Callable,
        data: Dataset,
        loss: str = "mse",
        *,
        key: Any = None,
        params: PyTree | None = None,
    ):
        if not isinstance(data, Dataset):
            raise TypeError(f"Trained: `data` must be an lmech Dataset, got {type(data).__name__}.")
        get_loss(loss)
        if params is None:
            if not isinstance(network, MLP):
                raise ValueError(
                    "Trained: pass `params=` for a bring-your-own apply function "
                    "(only an MLP spec can draw its own parameters)."
                )
            if key is None:
                raise ValueError("Trained: pass `key=` to draw the initial parameters, or `params=`.")
            params = network.init(key)
        if isinstance(network, MLP):
            if network.in_size != data.in_size:
                raise ValueError(
                    f"Trained: the network has in_size={network.in_size} but the data has "
                    f"{data.in_size} features."
                )
            if network.out_size != data.out_size:
                raise ValueError(
                    f"Trained: the network has out_size={network.out_size} but the targets "
                    f"have {data.out_size} columns."
                )
        elif not callable(network):
            raise TypeError("Trained: `network` must be an MLP or a callable apply_fn(params, x).")
        else:
            out = jax.eval_shape(network, params, data.x_train)
            if out.shape != data.y_train.shape:
                raise ValueError(
                    f"Trained: apply_fn(params, x_train) has shape {out.shape}, the targets "
                    f"have shape {data.y_train.shape}."
                )
        self.network = network
        self.data = data
        self.params0 = params
        self.loss_name = loss

    def apply(self, params: PyTree, x: Array) -> Array:
        return self.network(params, x) if not isinstance(self.network, MLP) else self.network.apply(params, x)

    def init(self, *, key: Any = None) -> PyTree:
        return self.params0

    def loss(self, params: PyTree) -> Scalar:
        return get_loss(self.loss_name)(self.apply(params, self.data.x_train), self.data.y_train)

    def vector_field(self, t, params: PyTree, args: Any) -> PyTree:
        grads = jax.grad(self.loss)(params)
        return jax.tree.map(jnp.negative, grads)

    def observe(self, params: PyTree) -> dict[str, Array]:
        f_train = self.apply(params, self.data.x_train)
        obs = {
            "loss": get_loss(self.loss_name)(f_train, self.data.y_train),
            "f_train": f_train,
            "f_test": self.apply(params, self.data.x_test),
        }
        if isinstance(self.network, MLP) and self.network.is_linear:
            w = self.network.end_to_end(params)
            obs["end_to_end"] = w
            obs["singular_values"] = jnp.linalg.svd(w, compute_uv=False)
        return obs
