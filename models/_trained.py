"""Real training as a dynamics: state = parameters, vector field = -grad L."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree, Scalar

from lmech.solvers import AbstractLossDynamics

from ._data import Dataset
from ._losses import AbstractLoss, get_loss
from ._mlp import MLP
from ._validate import check_apply_on_data

__all__ = ["Trained"]


def _no_observables(params: PyTree) -> dict[str, Array]:
    return {}


class Trained(AbstractLossDynamics):
    r"""The network itself, trained by gradient descent on `data`.

    State: the parameters $\theta$. Vector field: $-\Lambda \nabla_\theta L(\theta)$, so
    `GradientDescent()` runs exactly the training step
    $\theta \leftarrow \theta - \eta \Lambda \nabla L$ and `GradientFlow()` its flow.
    $\Lambda$ is diagonal: for an `MLP` spec it holds each layer's learning-rate multiplier
    $\lambda\, (n^{(l)})^{-c_l}$ from its parameterization (`MLP.lr_multipliers()`), so
    layer $l$ steps $w^l \leftarrow w^l - \eta\,\lambda\,(n^{(l)})^{-c_l} \nabla_{w^l} L$;
    for `"ntk"`, `"standard"` and bring-your-own models $\Lambda = I$ (plain $-\nabla L$).
    With $\Lambda \ne I$ the field is a preconditioned gradient: theories that assume
    $F = -\nabla L$ (sharpness, central flows) do not describe it.

    Observables: `"loss"` (training loss), `"f_train"` `(P, k)`, `"f_test"` `(Q, k)`,
    plus the network's own (`MLP.observables`: for a linear network without biases
    `"end_to_end"` `(k, d)` and `"singular_values"`) and any `observables` given.

    **Arguments:**

    - `network`: an `MLP` spec, or any `apply_fn(params, x) -> (P, k)` for a
      bring-your-own model (then pass `params`).
    - `data`: a `Dataset`.
    - `loss`: an `AbstractLoss` or its name (`"mse"`, `"cross_entropy"`/`"ce"`).
    - `key`: draws the initial parameters with `network.init(key)` (keyword-only).
    - `params`: the initial parameters (instead of `key`); checked against the
      network's parameter shapes.
    - `observables`: extra observables, `fn(params) -> dict`.
    """

    apply_fn: Callable
    data: Dataset
    params0: PyTree
    loss_fn: AbstractLoss
    extra: Callable
    lr_multipliers: tuple[float, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        network: MLP | Callable,
        data: Dataset,
        loss: str | AbstractLoss = "mse",
        *,
        key: Any = None,
        params: PyTree | None = None,
        observables: Callable[[PyTree], dict[str, Array]] | None = None,
    ):
        if not isinstance(data, Dataset):
            raise TypeError(f"Trained: `data` must be an lmech Dataset, got {type(data).__name__}.")
        loss_fn = get_loss(loss)
        loss_fn.check_targets(data.y_train, "Trained")
        if not callable(network):
            raise TypeError("Trained: `network` must be an MLP or a callable apply_fn(params, x).")
        if observables is not None and not callable(observables):
            raise TypeError("Trained: `observables` must be a function params -> dict.")
        extra = _no_observables
        lr_multipliers = None
        if isinstance(network, MLP):
            _check_sizes(network, data)
            if params is None:
                if key is None:
                    raise ValueError("Trained: pass `key=` to draw the initial parameters, or `params=`.")
                params = network.init(key)
            else:
                _check_like(params, jax.eval_shape(network.init, jax.random.key(0)))
            extra = network.observables
            if any(m != 1.0 for m in network.lr_multipliers()):
                lr_multipliers = network.lr_multipliers()
        elif params is None:
            raise ValueError(
                "Trained: pass `params=` for a bring-your-own apply function (only an MLP spec can draw its own parameters)."
            )
        check_apply_on_data(network, params, data, "Trained")
        self.apply_fn = network
        self.data = data
        self.params0 = params
        self.loss_fn = loss_fn
        self.extra = extra if observables is None else _Both(extra, observables)
        self.lr_multipliers = lr_multipliers

    def apply(self, params: PyTree, x: Array) -> Array:
        return self.apply_fn(params, x)

    def init(self, *, key: Any = None) -> PyTree:
        return self.params0

    def loss(self, params: PyTree) -> Scalar:
        return self.loss_fn(self.apply(params, self.data.x_train), self.data.y_train)

    def vector_field(self, t, params: PyTree, args: Any) -> PyTree:
        grad = jax.grad(self.loss)(params)
        if self.lr_multipliers is None:
            return jax.tree.map(jnp.negative, grad)
        return tuple(
            jax.tree.map(lambda g, m=m: -m * g, layer) for layer, m in zip(grad, self.lr_multipliers)
        )

    def observe(self, params: PyTree) -> dict[str, Array]:
        f_train = self.apply(params, self.data.x_train)
        return {
            "loss": self.loss_fn(f_train, self.data.y_train),
            "f_train": f_train,
            "f_test": self.apply(params, self.data.x_test),
            **self.extra(params),
        }


class _Both(eqx.Module):
    first: Callable
    second: Callable

    def __call__(self, params):
        return {**self.first(params), **self.second(params)}


def _check_sizes(network: MLP, data: Dataset) -> None:
    if network.in_size != data.in_size:
        raise ValueError(
            f"Trained: the network has in_size={network.in_size} but the data has {data.in_size} features."
        )
    if network.out_size != data.out_size:
        raise ValueError(
            f"Trained: the network has out_size={network.out_size} but the targets have {data.out_size} columns."
        )


def _check_like(params: PyTree, want: PyTree) -> None:
    got_s, want_s = jax.tree.structure(params), jax.tree.structure(want)
    if got_s != want_s:
        raise ValueError(f"Trained: `params` has the structure {got_s}, the network's are {want_s}.")
    for i, (g, w) in enumerate(zip(jax.tree.leaves(params), jax.tree.leaves(want))):
        if jnp.shape(g) != w.shape:
            raise ValueError(
                f"Trained: parameter leaf {i} has shape {jnp.shape(g)}, the network needs {w.shape}."
            )
