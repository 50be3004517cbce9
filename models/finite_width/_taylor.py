r"""Taylor models: a network expanded to order 2 or 3 in its parameters around init.

For a network $f(\theta, x)$ and its initial parameters $\theta_0$, the Taylor model of
order $m$ is a function of the displacement $\delta = \theta - \theta_0$:

$$f^{(m)}(\delta, x) = \sum_{j=0}^{m} \frac{1}{j!}\,\partial_\theta^j f(\theta_0, x)[\delta, \dots, \delta]
  = f_0 + J\delta + \tfrac12\,\partial^2 f[\delta,\delta]\;\big(+\ \tfrac16\,\partial^3 f[\delta,\delta,\delta]\big).$$

Each term is a derivative of the scalar function $s \mapsto f(\theta_0 + s\delta, x)$ at
$s = 0$: $\partial^j f[\delta^{\otimes j}] = \frac{d^j}{ds^j} f(\theta_0 + s\delta)\big|_0$, so
the model is computed by $m$ nested forward-mode derivatives (`jax.jvp`) of the network
along $\delta$ — matrix-free: no $P \times n_\theta$ Jacobian, no Hessian, no $n_\theta^3$
array, only a few network passes per evaluation (about $2^m$). It therefore runs wherever the
network runs, and is trained exactly like it: it is an `apply_fn(delta, x)` with initial
parameters $\delta = 0$, so `TaylorModel.trained(data)` is a `Trained` dynamics and
`solve(..., GradientDescent())` runs $\delta \leftarrow \delta - \eta\nabla_\delta L$.

Order 1 is the linearized network (see `Linearized`); the quadratic model (order 2) is the
function-space hierarchy with every derivative of $f$ of order $\geq 3$ set to zero (Bai &
Lee 2020; Huang & Yau 2019); the cubic model keeps $\partial^3 f$.

**Error against the network, in the width $n$ (NTK parameterization).** A Taylor model of
order $m$ has the network's $f, J, \dots, \partial^m f$ at init, so its $\Theta$ and its $O_s$
built from derivatives of order $\leq m$ are exact at init. $O_4 = D(D\Theta[\nabla f])[\nabla f]$
contains $\nabla f_a^\top \partial^3 f_c[\nabla f_d, \nabla f_e]$, an $O(1/n)$ term (four factors
of $f$: its mean over init does not vanish): the quadratic model lacks it, so its $O_3$
drifts wrongly at $O(1/n)$ and its outputs err at $O(1/n)$ — the linearized order with a
smaller constant. The cubic model has $O_3$ and $O_4$ exact at init and misses only
$\partial^4 f$, which enters through $O_5 = O(n^{-2})$: its outputs err at $O(n^{-2})$, like
the O4-frozen hierarchy. Measured (2-layer tanh, digits, $\eta = 0.5$, 1000 steps, widths
256–4096): slopes about $-1.1$ (order 2) and $-1.8$ to $-2.1$ (order 3).

**Smoothness.** The expansion is only meaningful for a twice (thrice) differentiable network.
For ReLU $\phi'' = 0$ almost everywhere: $\partial^2 f$ keeps only the cross terms between
layers and misses the kinks, which move as the pre-activations cross zero — the correction is
incomplete and the error need not fall faster than the linearized model's. An `MLP` with
ReLU gives a `UserWarning`; for a bare `apply_fn` this cannot be detected.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._activations import ReLU, get_activation
from .._mlp import MLP
from ._jets import jet

__all__ = ["TaylorModel", "taylor_terms"]

_ORDERS = (2, 3)


def taylor_terms(apply_fn: Callable, params0: PyTree, delta: PyTree, x: Array, order: int) -> list[Array]:
    r"""$[\partial^j f(\theta_0, x)[\delta^{\otimes j}]]_{j=0..\text{order}}$ by nested jvps along
    `delta` (the $j$-th derivative of $s \mapsto f(\theta_0 + s\delta, x)$ at $s = 0$)."""

    def along(s):
        return apply_fn(jax.tree.map(lambda p, d: p + s * d, params0, delta), x)

    return jet(along, order, jax.tree.leaves(params0)[0].dtype)


class TaylorModel(eqx.Module):
    r"""The order-2 or order-3 Taylor model of `(apply_fn, params0)` in its parameters.

    Called as `model(delta, x)` (the signature of an `apply_fn`), with `delta` a pytree
    like `params0`: $f_0 + J\delta + \frac12\partial^2 f[\delta,\delta]$ (order 2) or
    $+\frac16\partial^3 f[\delta,\delta,\delta]$ (order 3), see the module docs.

    **Arguments:**

    - `network`: an `MLP` spec, or any `apply_fn(params, x) -> (P, k)`.
    - `params0`: the expansion point $\theta_0$ (e.g. `net.init(key)`).
    - `order`: 2 or 3.

    For an `MLP` with a non-smooth activation (ReLU) a `UserWarning` says why the
    correction is incomplete.

    `trained(data, loss="mse")` gives the `Trained` dynamics that trains $\delta$ from 0
    by the same `solve` as the network.
    """

    apply_fn: Callable
    params0: PyTree
    order: int = eqx.field(static=True)

    def __init__(self, network: MLP | Callable, params0: PyTree, *, order: int = 2):
        if isinstance(order, bool) or order not in _ORDERS:
            raise ValueError(
                f"TaylorModel: `order` must be 2 or 3 (order 1 is the linearized model, see Linearized), got {order!r}."
            )
        if not callable(network):
            raise TypeError("TaylorModel: `network` must be an MLP or a callable apply_fn(params, x).")
        leaves = jax.tree.leaves(params0)
        if not leaves or not all(
            hasattr(p, "dtype") and jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating) for p in leaves
        ):
            raise TypeError("TaylorModel: `params0` must be a non-empty pytree of floating arrays.")
        if isinstance(network, MLP):
            want = jax.eval_shape(network.init, jax.random.key(0))
            if jax.tree.structure(want) != jax.tree.structure(params0) or any(
                jnp.shape(p) != w.shape for p, w in zip(leaves, jax.tree.leaves(want))
            ):
                raise ValueError(
                    "TaylorModel: `params0` does not have the network's parameter shapes; pass network.init(key)."
                )
            if isinstance(get_activation(network.activation), ReLU):
                warnings.warn(
                    "TaylorModel: ReLU has zero second derivative almost everywhere, so the order-"
                    f"{order} terms keep only products of first derivatives across layers and miss "
                    "the kinks that move during training; the correction beyond the linearized model "
                    "is incomplete. Use a smooth activation (erf, tanh, gelu, softplus).",
                    UserWarning,
                    stacklevel=2,
                )
        self.apply_fn = network
        self.params0 = params0
        self.order = order

    def zero(self) -> PyTree:
        """$\\delta = 0$: the initial parameters of the Taylor model."""
        return jax.tree.map(jnp.zeros_like, self.params0)

    def _check_delta(self, delta: PyTree) -> None:
        s_got, s_want = jax.tree.structure(delta), jax.tree.structure(self.params0)
        if s_got != s_want:
            raise ValueError(
                f"TaylorModel: `delta` has the structure {s_got}, it must be like params0: {s_want}."
            )
        for i, (d, p) in enumerate(zip(jax.tree.leaves(delta), jax.tree.leaves(self.params0))):
            if jnp.shape(d) != jnp.shape(p):
                raise ValueError(
                    f"TaylorModel: leaf {i} of `delta` has shape {jnp.shape(d)}, params0 has {jnp.shape(p)}."
                )

    def terms(self, delta: PyTree, x: Array) -> list[Array]:
        r"""The terms $\frac{1}{j!}\partial^j f[\delta^{\otimes j}]$, $j = 0..$`order`."""
        self._check_delta(delta)
        raw = taylor_terms(self.apply_fn, self.params0, delta, x, self.order)
        fact = 1.0
        out = []
        for j, t in enumerate(raw):
            fact *= max(j, 1)
            out.append(t / fact)
        return out

    def __call__(self, delta: PyTree, x: Float[Array, "P d"]) -> Float[Array, "P k"]:
        return sum(self.terms(delta, x))

    def trained(self, data: Any, loss: Any = "mse", **kwargs: Any):
        """The `Trained` dynamics of this model on `data`, started at $\\delta = 0$
        (extra keyword arguments, e.g. `observables=`, go to `Trained`)."""
        from .._trained import Trained

        return Trained(self, data, loss, params=self.zero(), **kwargs)
