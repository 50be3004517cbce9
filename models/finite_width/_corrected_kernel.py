r"""Outputs to O(1/n): the kernel model with the closed-form kernel correction.

One realization's outputs obey $\dot f = -\frac1P\Theta(t)\,r$ exactly. With the first-order
closed form $\Theta(t) = \Theta_0 + \Theta^{(1)}(t) + O(n^{-2})$ (`kernel_correction`, built
from the kernel residual $r_{\rm lin}$), the linear time-dependent system

$$\dot f = -\tfrac1P\big(\Theta_0 + \Theta^{(1)}(t)\big)\,r$$

gives $f(t)$ to $O(n^{-2})$: the error of $\Theta^{(1)}$ from using $r_{\rm lin}$ for $r$ is
$O(1/n)\cdot O(1/n)$. For gradient descent the step also bends: $f(\theta + \Delta) - f(\theta)
- J\Delta = \frac12 K[\cdot]\dots$; to $O(1/n)$, with $\Delta_k = -\frac\eta P J_0^\top r_k$,

$$f_{k+1} = f_k - \tfrac\eta P\big(\Theta_0 + \Theta^{(1)}_k\big) r_k
  + \tfrac{\eta^2}{2P^2} K_0[r_k, r_k] - \tfrac{\eta^3}{6P^3} T_0[r_k, r_k, r_k],$$

$K_{a;cd}(\theta) = \partial^2 f_a[\nabla f_c, \nabla f_d]$, $T_{0,a;cde} = \partial^3 f_a[\nabla f_c,
\nabla f_d, \nabla f_e]$ at init (both $O(1/n)$; $\partial^4 f[\nabla f^{\otimes 4}] = O(n^{-2})$ is
dropped). $K$ itself moves at $O(1/n)$ relative to its size (its derivative along a gradient,
$K_4$, is $O(1/n)$ like $O_4$), so the map uses $K(\theta_k) \approx K_0 - \frac1P K_4[\cdot,\cdot,R_k]$
with $R_k = \eta\sum_{j<k} r_{{\rm lin},j}$ (closed form); $T$ moves at $O(n^{-2})$ and stays frozen.

All tensors are dense over the training outputs ($T_0$ is $M N^3$, $O_4$ and $Q_4$ are $M N^3$):
a theory for small $P$ at any width — its ensemble mean over initializations is the
O(1/n)-corrected ensemble-mean prediction (Dyer & Gur-Ari 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from lmech.solvers import AbstractLossDynamics, AbstractMapDynamics

from .._data import Dataset
from .._mlp import MLP
from ._kernel_correction import hierarchy_tensors, kernel_correction
from ._tangent_hierarchy import check_network

__all__ = ["CorrectedKernel", "output_tensors"]


@eqx.filter_jit
def output_tensors(
    apply_fn: Callable, params: PyTree, x_all: Array, x_train: Array
) -> tuple[Array, Array, Array]:
    r"""$K_0$ `(M, N, N)`, $K_4$ `(M, N, N, N)` and $T_0$ `(M, N, N, N)` (outputs flattened, $N$
    training outputs): with $u_\theta(v) = J(\theta)^\top v$ and basis vectors $e$,
    $K_0[e_c, e_d] = \partial^2 f(\theta_0)[u(e_c), u(e_d)]$,
    $K_4[e_c, e_d, e_e] = D\big(\theta \mapsto \partial^2 f(\theta)[u_\theta(e_c), u_\theta(e_d)]\big)[u(e_e)]$,
    $T_0[e_c, e_d, e_e] = \partial^3 f(\theta_0)[u(e_c), u(e_d), u(e_e)]$."""

    def f(p):
        return apply_fn(p, x_all).reshape(-1)

    def grad(p, v):
        _, vjp = jax.vjp(lambda q: apply_fn(q, x_train).reshape(-1), p)
        return vjp(v)[0]

    n = jax.eval_shape(lambda: apply_fn(params, x_train)).size
    eye = jnp.eye(n, dtype=jax.tree.leaves(params)[0].dtype)

    def d1(p, u):
        return jax.jvp(f, (p,), (u,))[1]

    def d2(p, u, w):
        return jax.jvp(lambda q: d1(q, u), (p,), (w,))[1]

    def k_at(p, v, w):  # ∂²f(p)[u_p(v), u_p(w)]
        return d2(p, grad(p, v), grad(p, w))

    def triple(fn):
        return jax.vmap(lambda a: jax.vmap(lambda b: jax.vmap(lambda c: fn(a, b, c))(eye))(eye))(eye)

    k0 = jax.vmap(lambda a: jax.vmap(lambda b: k_at(params, a, b))(eye))(eye)  # (N, N, M)
    k4 = triple(lambda a, b, c: jax.jvp(lambda p: k_at(p, a, b), (params,), (grad(params, c),))[1])
    t0 = triple(
        lambda a, b, c: jax.jvp(
            lambda p: d2(p, grad(params, a), grad(params, b)), (params,), (grad(params, c),)
        )[1]
    )
    return tuple(jnp.moveaxis(x, -1, 0) for x in (k0, k4, t0))


class CorrectedKernel(AbstractLossDynamics, AbstractMapDynamics):
    r"""Outputs of one realization to O(1/n) (see the module docs), MSE loss.

    State: `{"f_train": (P, k), "f_test": (Q, k), "t": ()}` (the flow time, which the
    closed-form kernel needs). Observables: `"loss"`, `"f_train"`, `"f_test"`; the
    corrected kernel itself is `kernel(t, lr)`.

    Build it with `CorrectedKernel.from_network(network, data, params=...)`.
    """

    data: Dataset
    f0: Array
    theta0: Array
    o3: Array
    o4: Array
    q4: Array
    k0: Array
    k4: Array
    t0: Array

    @classmethod
    def from_network(cls, network: MLP | Callable, data: Dataset, *, params: PyTree) -> CorrectedKernel:
        apply_fn = check_network(network, data, params, "CorrectedKernel")
        z = jnp.concatenate([data.x_train, data.x_test])
        theta0, o3, o4, q4 = hierarchy_tensors(apply_fn, params, z, data.x_train)
        k0, k4, t0 = output_tensors(apply_fn, params, z, data.x_train)
        return cls(data, apply_fn(params, z), theta0, o3, o4, q4, k0, k4, t0)

    @property
    def n_train(self) -> int:
        return self.data.y_train.shape[0]

    def _r(self, f_train: Array) -> Array:
        return (f_train - self.data.y_train).reshape(-1)

    def kernel(self, t: ArrayLike, lr: ArrayLike | None = None) -> Array:
        r"""$\Theta_0 + \Theta^{(1)}$ (rows: all points, columns: training outputs) at flow time
        `t` of the flow, or of GD at `lr`."""
        r0 = self._r(self.f0[: self.n_train])
        corr = kernel_correction(
            self.theta0,
            self.o3,
            self.o4,
            r0,
            t,
            n_train=self.n_train,
            lr=lr,
            q4=None if lr is None else self.q4,
        )
        return self.theta0 + corr[0]

    def _split(self, flat: Array) -> dict:
        P, k = self.data.y_train.shape
        f = flat.reshape(-1, k)
        return {"f_train": f[:P], "f_test": f[P:]}

    def init(self, *, key: Any = None) -> dict:
        P = self.n_train
        return {"f_train": self.f0[:P], "f_test": self.f0[P:], "t": jnp.zeros((), self.f0.dtype)}

    def loss(self, state: dict) -> Scalar:
        return 0.5 * jnp.mean(jnp.sum((state["f_train"] - self.data.y_train) ** 2, axis=-1))

    def vector_field(self, t, state: dict, args: Any) -> dict:
        r = self._r(state["f_train"])
        out = self._split(-(self.kernel(state["t"]) @ r) / self.n_train)
        out["t"] = jnp.ones_like(state["t"])
        return out

    def step(self, state: dict, lr: ArrayLike) -> dict:
        P = self.n_train
        r = self._r(state["f_train"])
        s = lr / P
        # R_k = η Σ_{j<k} r_lin,j in closed form (eigenbasis of Θ0), for K(θ_k) ≈ K0 − K4[·, ·, R_k]/P
        lam, vec = jnp.linalg.eigh(0.5 * (self.theta0[: r.size] + self.theta0[: r.size].T))
        c0 = vec.T @ self._r(self.f0[:P])
        R = vec @ (c0 * P * (1 - (1 - lr * lam / P) ** jnp.round(state["t"] / lr)) / lam)
        kk = self.k0 - jnp.einsum("acde,e->acd", self.k4, R) / P
        df = (
            -s * (self.kernel(state["t"], lr) @ r)
            + 0.5 * s**2 * jnp.einsum("acd,c,d->a", kk, r, r)
            - s**3 / 6 * jnp.einsum("acde,c,d,e->a", self.t0, r, r, r)
        )
        new = self._split(jnp.concatenate([state["f_train"], state["f_test"]]).reshape(-1) + df)
        new["t"] = state["t"] + lr
        return new

    def observe(self, state: dict) -> dict[str, Array]:
        return {
            "loss": self.loss(state),
            "f_train": state["f_train"],
            "f_test": state["f_test"],
        }
