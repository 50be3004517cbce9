r"""Two-layer linear network with whitened data: the mean-field (DMFT) dynamics as a
closed ODE in its order parameters (THEORY.md §4; Bordelon & Pehlevan 2022).

**Network and time** (our normalization). Width $N$, inputs $x \in \mathbb R^D$,
$f(x) = \sum_i a_i\, w_i\cdot x / (\gamma_0 N \sqrt D)$, $a_i, w_i \sim \mathcal N(0, 1)$,
$L = \frac1{2P}\sum_\mu (f_\mu - y_\mu)^2$, and mean-field gradient flow
$\dot\theta = -\gamma_0^2 N\,\nabla_\theta L$ ($\gamma_0$: feature-learning strength;
$\gamma_0 \to 0$ is the kernel regime). Whitened data: $X^\top X/P = I_D$; the learnable
part of the target is $y = X\beta/\sqrt D$ with $\beta = \sqrt D\, X^\top y/P$.

**The closure (derived here).** With the end-to-end vector $v = \sum_i a_i w_i/(\gamma_0 N)$,
$f(x) = x\cdot v/\sqrt D$ and $\partial L/\partial v = (v - \beta)/D =: e$. Per neuron
$\dot a_i = -\gamma_0\, w_i\cdot e$ and $\dot w_i = -\gamma_0\, a_i e$, so with the order
parameters $C_w = \frac1N\sum_i w_i w_i^\top$ and $c_a = \frac1N\sum_i a_i^2$:

$$\dot v = -(C_w + c_a I)\,e,\qquad
  \dot C_w = -\gamma_0^2\,(e v^\top + v e^\top),\qquad
  \dot c_a = -2\gamma_0^2\, v\cdot e.$$

These equations are **exact at every width** for the empirical order parameters: the
network's only dependence on $N$ is the initial condition. The DMFT limit $N \to \infty$
starts from $v = 0$, $C_w = I$, $c_a = 1$ (`init`); a realization starts from its own
$(v_0, C_{w,0}, c_{a,0})$ (`order_parameters`), whose fluctuations are $O(N^{-1/2})$ — which
is why a single network's distance to the DMFT prediction falls as $N^{-1/2}$.
$\operatorname{tr}C_w - c_a$ is conserved (balancedness). The NTK of the network under this
flow is $\Theta(x, x') = x^\top K x'$ with $K = (C_w + c_a I)/D$ (observable `"ntk"`, the
$D\times D$ matrix $K$): frozen at $2I/D$ as $\gamma_0 \to 0$, where
$v(t) = \beta\,(1 - e^{-2t/D})$ (`closed_form_kernel_limit`). Along a target
$\beta = \sqrt D\, y_0 e_1$ from the DMFT start, $c_a^2 - \gamma_0^2 v_1^2 = 1$ reduces it to
THEORY's scalar ODE for $\Delta = y_0 - v_1/\sqrt D$.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Scalar

from lmech.solvers import AbstractLossDynamics

from .._data import Dataset
from ._checks import check_gamma0, whitened_linear_target

__all__ = ["TwoLayerLinearDMFT", "whiten"]


def whiten(x: Float[Array, "P D"]) -> Float[Array, "P D"]:
    r"""$\sqrt P\,Q$ from the thin QR of `x`: the same column span with $X^\top X/P = I$."""
    x = np.asarray(x, float)
    q, _ = np.linalg.qr(x)
    return np.sqrt(x.shape[0]) * q


class TwoLayerLinearDMFT(AbstractLossDynamics):
    r"""The mean-field dynamics of a two-layer linear network on whitened data (see the
    module docs): state `{"v": (D,), "C_w": (D, D), "c_a": ()}`.

    Observables: `"loss"`, `"f_train"` `(P, 1)`, `"f_test"` `(Q, 1)`, `"ntk"` `(D, D)` (the
    kernel $K$ with $\Theta(x, x') = x^\top K x'$), `"c_a"`, `"v"`.

    **Arguments:**

    - `data`: a `Dataset` with whitened training inputs ($X^\top X/P = I$ to 1e-8; `whiten`
      makes them) and one output.
    - `gamma0`: the feature-learning strength $\gamma_0 \geq 0$ (may be traced:
      derivatives of a solve with respect to it are exact).
    """

    x_train: Float[Array, "P D"]
    x_test: Float[Array, "Q D"]
    beta: Float[Array, " D"]
    gamma0: Array
    loss_offset: Scalar

    def __init__(self, data: Dataset, gamma0: ArrayLike):
        x, beta, resid = whitened_linear_target(data, "TwoLayerLinearDMFT")
        check_gamma0(gamma0, "TwoLayerLinearDMFT")
        self.x_train, self.x_test = jnp.asarray(x), jnp.asarray(data.x_test)
        self.beta = jnp.asarray(beta)
        self.gamma0 = jnp.asarray(gamma0, dtype=self.x_train.dtype)
        self.loss_offset = jnp.asarray(0.5 * np.mean(resid**2))

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    def init(self, *, key: Any = None) -> dict[str, Array]:
        """The DMFT start: $v = 0$, $C_w = I$, $c_a = 1$."""
        D = self.dim
        return {"v": jnp.zeros(D), "C_w": jnp.eye(D), "c_a": jnp.ones(())}

    def order_parameters(self, a: Float[Array, " N"], w: Float[Array, "N D"]) -> dict[str, Array]:
        """The state of one realization with first-layer rows `w` and readout `a`."""
        a, w = jnp.asarray(a), jnp.asarray(w)
        if w.ndim != 2 or w.shape[1] != self.dim or a.shape != (w.shape[0],):
            raise ValueError(
                f"order_parameters: need a (N,) and w (N, {self.dim}), got {a.shape} and {w.shape}."
            )
        N = w.shape[0]
        return {"v": a @ w / (self.gamma0 * N), "C_w": w.T @ w / N, "c_a": jnp.mean(a**2)}

    def vector_field(self, t, s, args):
        e = (s["v"] - self.beta) / self.dim
        g2 = self.gamma0**2
        return {
            "v": -(s["C_w"] @ e + s["c_a"] * e),
            "C_w": -g2 * (jnp.outer(e, s["v"]) + jnp.outer(s["v"], e)),
            "c_a": -2 * g2 * jnp.vdot(s["v"], e),
        }

    def loss(self, s) -> Scalar:
        r = s["v"] - self.beta
        return 0.5 * jnp.vdot(r, r) / self.dim + self.loss_offset

    def observe(self, s) -> dict[str, Array]:
        root = jnp.sqrt(self.dim)
        return {
            "loss": self.loss(s),
            "f_train": (self.x_train @ s["v"] / root)[:, None],
            "f_test": (self.x_test @ s["v"] / root)[:, None],
            "ntk": (s["C_w"] + s["c_a"] * jnp.eye(self.dim)) / self.dim,
            "c_a": s["c_a"],
            "v": s["v"],
        }

    def closed_form_kernel_limit(self, t: ArrayLike) -> Float[Array, " D"]:
        r"""$v(t) = \beta(1 - e^{-2t/D})$: the $\gamma_0 \to 0$ (kernel-regime) solution from the DMFT start."""
        return self.beta * (1 - jnp.exp(-2 * jnp.asarray(t) / self.dim))
