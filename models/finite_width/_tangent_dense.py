r"""The tangent hierarchy with its tensors as arrays: a reference for small P.

The literal system of `TangentHierarchy` (same normalization, outputs flattened to
$a = (\mu, c)$), with $\Theta(Z, X)$, $O_3$ and $O_4$ built as dense arrays from Jacobians of
Jacobians at $\theta_0$:

$$\Theta_{ac} = \nabla f_a\cdot\nabla f_c,\quad O_{3,acd} = \sum_\theta \partial_\theta\Theta_{ac}\,\partial_\theta f_d,
  \quad O_{4,acde} = \sum_\theta \partial_\theta O_{3,acd}\,\partial_\theta f_e,$$

state $(f, \Theta)$ with $O_3$ frozen, or $(f, \Theta, O_3)$ with $O_4$ frozen, and

$$\dot f = -\tfrac1P\Theta r,\quad \dot\Theta = -\tfrac1P O_3\cdot r,\quad \dot O_3 = -\tfrac1P O_4\cdot r.$$

Memory $O(M P^3 n_\theta)$ while building $O_4$: for checking the matrix-free hierarchy
(`TangentHierarchy`) on tiny problems only. Its gradient-descent map is the Euler step of
this flow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree, Scalar

from lmech.solvers import AbstractLossDynamics

from .._data import Dataset
from .._losses import AbstractLoss, get_loss
from .._mlp import MLP
from ._tangent_hierarchy import check_network

__all__ = ["DenseTangentHierarchy", "dense_tensors"]


def dense_tensors(apply_fn: Callable, params: PyTree, x_all: Array, x_train: Array, upto: int) -> list[Array]:
    r"""$[\Theta(Z, X), O_3, O_4, Q_4][: \text{upto} - 1]$ at `params` as dense arrays (outputs
    flattened), with $Q_{4,acde} = D^2\Theta_{ac}[\nabla f_d, \nabla f_e]$ (`upto=5`; the GD map's
    second-order kernel term, see `kernel_correction`)."""
    return _dense_tensors(apply_fn, params, x_all, x_train, upto)


@eqx.filter_jit
def _dense_tensors(apply_fn, params, x_all, x_train, upto):
    flat0, unravel = ravel_pytree(params)

    def jac(x):
        return lambda w: jax.jacrev(lambda v: apply_fn(unravel(v), x).reshape(-1))(w)

    jz, jx = jac(x_all), jac(x_train)
    theta = lambda w: jz(w) @ jx(w).T  # noqa: E731
    o3 = lambda w: jnp.einsum("acn,dn->acd", jax.jacfwd(theta)(w), jx(w))  # noqa: E731
    out = [theta(flat0)]
    if upto >= 3:
        out.append(o3(flat0))
    if upto >= 4:
        out.append(jnp.einsum("acdn,en->acde", jax.jacfwd(o3)(flat0), jx(flat0)))
    if upto >= 5:
        j0 = jx(flat0)
        out.append(jnp.einsum("acnm,dn,em->acde", jax.hessian(theta)(flat0), j0, j0))
    return out


class DenseTangentHierarchy(AbstractLossDynamics):
    r"""The tangent hierarchy with dense $\Theta$, $O_3$, $O_4$ (see the module docs).

    State: `{"f_train", "f_test"}` plus `"ntk"` `(M k, P k)` (`frozen >= 3`) and `"O3"`
    `(M k, P k, P k)` (`frozen = 4`), rows over train then test outputs. Observables as
    `TangentHierarchy` (`"ntk"` always).

    **Arguments:** `network`, `data`, `params=`, `frozen` (2, 3 or 4), `loss`.
    """

    data: Dataset
    loss_fn: AbstractLoss
    f0: Array
    tensors: list[Array]
    frozen: int = eqx.field(static=True)

    def __init__(
        self, network: MLP | Callable, data: Dataset, *, params: PyTree, frozen: int = 4, loss="mse"
    ):
        if isinstance(frozen, bool) or frozen not in (2, 3, 4):
            raise ValueError(f"DenseTangentHierarchy: `frozen` must be 2, 3 or 4, got {frozen!r}.")
        apply_fn = check_network(network, data, params, "DenseTangentHierarchy")
        self.loss_fn = get_loss(loss)
        self.data = data
        self.frozen = frozen
        z = jnp.concatenate([data.x_train, data.x_test])
        self.f0 = apply_fn(params, z)
        self.tensors = dense_tensors(apply_fn, params, z, data.x_train, frozen)

    def _split(self, f_flat: Array) -> tuple[Array, Array]:
        P, k = self.data.y_train.shape
        f = f_flat.reshape(-1, k)
        return f[:P], f[P:]

    def init(self, *, key: Any = None) -> dict:
        P = self.data.y_train.shape[0]
        state = {"f_train": self.f0[:P], "f_test": self.f0[P:]}
        if self.frozen >= 3:
            state["ntk"] = self.tensors[0]
        if self.frozen == 4:
            state["O3"] = self.tensors[1]
        return state

    def loss(self, state: dict) -> Scalar:
        return self.loss_fn(state["f_train"], self.data.y_train)

    def vector_field(self, t, state: dict, args: Any) -> dict:
        P = self.data.y_train.shape[0]
        r = self.loss_fn.grad_f(state["f_train"], self.data.y_train).reshape(-1)
        theta = state["ntk"] if self.frozen >= 3 else self.tensors[0]
        df_train, df_test = self._split(-(theta @ r) / P)
        out = {"f_train": df_train, "f_test": df_test}
        if self.frozen >= 3:
            o3 = state["O3"] if self.frozen == 4 else self.tensors[1]
            out["ntk"] = -(o3 @ r) / P
        if self.frozen == 4:
            out["O3"] = -(self.tensors[2] @ r) / P
        return out

    def observe(self, state: dict) -> dict[str, Array]:
        P, k = self.data.y_train.shape
        theta = state["ntk"] if self.frozen >= 3 else self.tensors[0]
        ker = theta[: P * k]
        return {
            "loss": self.loss(state),
            "f_train": state["f_train"],
            "f_test": state["f_test"],
            "ntk": ker if k == 1 else ker.reshape(P, k, P, k),
        }
