r"""The neural tangent hierarchy of one network realization, matrix-free.

**The hierarchy** (Huang & Yau 2019; Dyer & Gur-Ari 2019), in our normalization
$L = \frac1P\sum_\mu \ell(f_\mu, y_\mu)$, $r = \nabla_f\ell$ (for MSE $r = f - y$),
$\dot\theta = -\frac1P J^\top r$. For outputs $a$ on any points and $c, d, e$ on the training
points, with $D$ the derivative in $\theta$:

$$\dot f_a = -\tfrac1P\textstyle\sum_c \Theta_{ac} r_c,\quad
  \dot\Theta_{ac} = -\tfrac1P\sum_d O_{3,acd}\, r_d,\quad
  \dot O_{3,acd} = -\tfrac1P\sum_e O_{4,acde}\, r_e,$$

$\Theta_{ac} = \nabla f_a\cdot\nabla f_c$, $O_{3,acd} = D\Theta_{ac}[\nabla f_d]
= \nabla f_a^\top H_c \nabla f_d + \nabla f_c^\top H_a\nabla f_d$ ($H_a = \nabla^2 f_a$),
$O_{4,acde} = D O_{3,acd}[\nabla f_e]$. Freezing $O_s$ at its initial value truncates it:
`frozen=2` is the linearized model, `frozen=3` keeps $\Theta$ moving with $O_3$ fixed,
`frozen=4` keeps $O_3$ moving with $O_4$ fixed.

**Matrix-free form.** A frozen tensor makes the one above it *linear* in the time
integral of the residual, $R(t) = \int_0^t r$. With $u_\theta(a) = J(\theta)^\top a$ (one vjp),
$u_R = u_{\theta_0}(R)$ and $h(r, R) = D[u_\theta(r)](\theta_0)[u_R] = \sum_d r_d H_d u_R$
(a jvp of a vjp):

- `frozen=4`: $O_3(t) = O_{3,0} - \frac1P O_{4,0}[\cdot, R]$, so
  $\Theta(t) = \Theta_0 - \frac1P O_{3,0}[R] + \frac1{P^2}\int_0^t O_{4,0}[r, R]\,ds$. Now
  $O_{3,0}[R] = D\Theta_0[u_R]$ and
  $O_{4,0}[r, R] = D^2\Theta_0[u_r, u_R] + D\Theta_0[h(r, R)]$; the first part is a symmetric
  bilinear form in $(u_r, u_R) = (u_{\dot R}, u_R)$, so it integrates to
  $\frac12 D^2\Theta_0[u_R, u_R]$. Hence

  $$\Theta(t) = \Theta_0 + D\Theta_0[\alpha + \beta] + \tfrac12 D^2\Theta_0[\alpha,\alpha],\quad
    \alpha = -\tfrac1P u_R,\ \beta = \tfrac1{P^2}W,\quad \dot R = r,\ \dot W = h(r, R).$$

- `frozen=3`: $\Theta(t) = \Theta_0 + D\Theta_0[\alpha]$.

$\alpha + \beta$ is the parameter displacement $\theta(t) - \theta_0$ to second order
($\dot\theta = -\frac1P u_{\theta}(r)$ expanded once around $\theta_0$). The state is
$(f, R, W)$, never $O_3$ or $O_4$: $\Theta(t)\,r$ is the second-order jet
$g(0) + g'(0) + \frac12 g''(0)$ of $g(\epsilon) = \Theta(\theta_0 + \epsilon\alpha + \epsilon^2\beta)\,r$,
where $\Theta(\theta)r$ is one vjp and one jvp. Each step costs a few dozen network passes —
like training the network, at any $P$. The observable `"ntk"` (the training kernel at the
saved times) is the same jet of the full kernel (a Jacobian: $P \times n_\theta$ memory; pass
`observe_ntk=False` for large $P\,n_\theta$). `DenseTangentHierarchy` integrates the
literal system with $O_3$ and $O_4$ as arrays (small $P$ only); they agree to round-off.

**The GD map.** Gradient descent is not the Euler step of the function-space flow:
$f(\theta_k + \Delta_k) - f(\theta_k) = J\Delta_k + \frac12 H[\Delta_k, \Delta_k] + \dots$ with
$\Delta_k = -\frac\eta P J^\top r_k$, and the curvature terms are $O(\eta^2/n)$ per step — the
same order as the $O_3$ effects. The map kept here (`discrete="remainder"`, default):

$$R_{k+1} = R_k + \eta r_k,\quad W_{k+1} = W_k + \eta\,h(r_k, R_k),\quad
  f_{k+1} = f_k - \tfrac\eta P\Theta_k r_k + \rho_k,$$

where $R$ and $W$ are the exact Euler sums of GD's displacement
$\theta_{k+1} - \theta_k = -\frac\eta P J(\theta_k)^\top r_k$ expanded around $\theta_0$ (so
$\Theta_k$ is again the jet above), and $\rho_k = f(\tilde\theta + \Delta) - f(\tilde\theta) -
J(\tilde\theta)\Delta$ is the exact curvature remainder of one step, taken at the
truncation's own parameter proxy $\tilde\theta = \theta_0 + \alpha_k (+\beta_k)$ with
$\Delta = -\frac\eta P J(\tilde\theta)^\top r_k$ (two forward passes, a vjp and a jvp). As
$\eta \to 0$ at fixed $t = \eta k$, $\rho = O(\eta^2)$ and the map tends to the flow.
`discrete="euler"` drops $\rho$ (the Euler step of the flow, which differs from real GD at
$O(\eta/n)$). For `frozen=2` the map is the linearized model's, exactly the Euler step.
How much it matters depends on $\eta$: on 2-layer tanh nets on digits at $\eta = 0.5$ the two
maps differ by a few percent of their error; at $\eta = 0.8\,\eta_{\max}$ the Euler map's error
falls only like $1/n$ while the remainder map keeps $n^{-2}$ (see the tests).

**Cost.** A step is a fixed number of network passes (the jets of $\Theta(\theta)r$: about
four vjp/jvp pairs; $h$: one jvp of a vjp; the remainder: two forwards, a vjp and a jvp),
independent of $P$ beyond the network's own cost: measured 10–30× a training step of the
same network (2-layer tanh, $P$ = 64–1024, widths up to 4096), with memory of a few
parameter vectors and no $P^2$ or $P^3$ array unless `observe_ntk`.

**Blow-up.** Frozen $O_3$ lets $\Theta(t)$ leave the positive cone; the outputs then grow
exponentially, and `solve` ends with `RESULTS.diverged` (or `nonfinite`), NaN after the
failure, instead of silent NaNs.

Smooth activations only: for ReLU $H$ misses the kinks (a `UserWarning` for `MLP` specs).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from lmech.solvers import AbstractLossDynamics, AbstractMapDynamics

from .._activations import ReLU, get_activation
from .._data import Dataset
from .._losses import AbstractLoss, get_loss
from .._mlp import MLP
from .._validate import check_apply_on_data
from ._jets import jet

__all__ = ["TangentHierarchy", "check_network"]

_FROZEN = (2, 3, 4)
_DISCRETE = ("remainder", "euler")


def _axpy(p0, a, s, b=None, s2=None):
    """θ0 + s·a (+ s2·b), leafwise."""
    if b is None:
        return jax.tree.map(lambda p, x: p + s * x, p0, a)
    return jax.tree.map(lambda p, x, y: p + s * x + s2 * y, p0, a, b)


def check_network(network, data, params, who: str) -> Callable:
    """Validate `(network, data, params)` like `Trained`; warn for ReLU; return the apply_fn."""
    if not isinstance(data, Dataset):
        raise TypeError(f"{who}: `data` must be an lmech Dataset, got {type(data).__name__}.")
    if not callable(network):
        raise TypeError(f"{who}: `network` must be an MLP or a callable apply_fn(params, x).")
    if params is None:
        raise ValueError(f"{who}: pass `params=` (the realization to expand around, e.g. net.init(key)).")
    if isinstance(network, MLP):
        want = jax.eval_shape(network.init, jax.random.key(0))
        if jax.tree.structure(want) != jax.tree.structure(params) or any(
            jnp.shape(p) != w.shape for p, w in zip(jax.tree.leaves(params), jax.tree.leaves(want))
        ):
            raise ValueError(
                f"{who}: `params` does not have the network's parameter shapes; pass network.init(key)."
            )
        if isinstance(get_activation(network.activation), ReLU):
            warnings.warn(
                f"{who}: ReLU has zero second derivative almost everywhere, so O3 and O4 built from "
                "Hessians miss the kinks that move during training; the correction beyond the kernel "
                "is incomplete. Use a smooth activation (erf, tanh, gelu, softplus).",
                UserWarning,
                stacklevel=3,
            )
    check_apply_on_data(network, params, data, who)
    return network


class TangentHierarchy(AbstractLossDynamics, AbstractMapDynamics):
    r"""The neural tangent hierarchy of one network realization, truncated by freezing
    $O_s$ at init (see the module docs for the equations and the GD map).

    State: `{"f_train": (P, k), "f_test": (Q, k)}` plus `"R"` `(P, k)` (`frozen >= 3`)
    and `"W"` (a pytree like the parameters, `frozen = 4`). Observables: `"loss"`,
    `"f_train"`, `"f_test"` and, with `observe_ntk`, `"ntk"` — the training kernel
    $\Theta(X, X)$ at that time, `(P, P)` for one output, `(P, k, P, k)` otherwise.

    **Arguments:**

    - `network`: an `MLP` spec or any `apply_fn(params, x) -> (P, k)`.
    - `data`: a `Dataset`.
    - `params`: the realization $\theta_0$ (keyword-only).
    - `frozen`: the first frozen tensor, 2 (the kernel: linearized), 3 or 4.
    - `loss`: `"mse"` (default) or any `AbstractLoss` ($r = \nabla_f\ell$).
    - `discrete`: the GD map, `"remainder"` (default) or `"euler"` (see the module docs).
    - `observe_ntk`: whether to record `"ntk"` (needs a $P \times n_\theta$ Jacobian per save).
    """

    apply_fn: Callable
    data: Dataset
    params0: PyTree
    loss_fn: AbstractLoss
    frozen: int = eqx.field(static=True)
    discrete: str = eqx.field(static=True)
    observe_ntk: bool = eqx.field(static=True)

    def __init__(
        self,
        network: MLP | Callable,
        data: Dataset,
        *,
        params: PyTree,
        frozen: int = 4,
        loss: str | AbstractLoss = "mse",
        discrete: str = "remainder",
        observe_ntk: bool = True,
    ):
        if isinstance(frozen, bool) or frozen not in _FROZEN:
            raise ValueError(
                f"TangentHierarchy: `frozen` must be 2 (kernel), 3 (O3 frozen) or 4 (O4 frozen), got {frozen!r}."
            )
        if discrete not in _DISCRETE:
            raise ValueError(f"TangentHierarchy: `discrete` must be one of {_DISCRETE}, got {discrete!r}.")
        if not isinstance(observe_ntk, bool):
            raise TypeError(f"TangentHierarchy: `observe_ntk` must be True or False, got {observe_ntk!r}.")
        self.apply_fn = check_network(network, data, params, "TangentHierarchy")
        self.loss_fn = get_loss(loss)
        self.loss_fn.check_targets(data.y_train, "TangentHierarchy")
        self.data = data
        self.params0 = params
        self.frozen = frozen
        self.discrete = discrete
        self.observe_ntk = observe_ntk

    # -- building blocks ---------------------------------------------------------------
    @property
    def n_train(self) -> int:
        return self.data.x_train.shape[0]

    def _points(self) -> Array:
        return jnp.concatenate([self.data.x_train, self.data.x_test])

    def _grad(self, theta: PyTree, a: Array) -> PyTree:
        """$u_\\theta(a) = J_X(\\theta)^\\top a$."""
        _, vjp = jax.vjp(lambda p: self.apply_fn(p, self.data.x_train), theta)
        return vjp(a)[0]

    def _ntvp(self, theta: PyTree, a: Array) -> Array:
        """$\\Theta(Z, X)\\,a$ at `theta`, Z = train then test points."""
        return jax.jvp(lambda p: self.apply_fn(p, self._points()), (theta,), (self._grad(theta, a),))[1]

    def _displacement(self, state: dict) -> tuple[PyTree | None, PyTree | None]:
        """$\\alpha = -u_R/P$ and $\\beta = W/P^2$ (None where the truncation has none)."""
        P = self.n_train
        alpha = None
        if self.frozen >= 3:
            alpha = jax.tree.map(lambda x: -x / P, self._grad(self.params0, state["R"]))
        beta = jax.tree.map(lambda x: x / P**2, state["W"]) if self.frozen == 4 else None
        return alpha, beta

    def _kernel_times(self, fn: Callable[[PyTree], Array], state: dict) -> Array:
        r"""The truncation's jet of a function of $\theta$ (a kernel, or a kernel times r)."""
        alpha, beta = self._displacement(state)
        dtype = jnp.result_type(*jax.tree.leaves(self.params0))
        if self.frozen == 2:
            return fn(self.params0)
        if self.frozen == 3:
            g = jet(lambda s: fn(_axpy(self.params0, alpha, s)), 1, dtype)
            return g[0] + g[1]
        g = jet(lambda s: fn(_axpy(self.params0, alpha, s, beta, s**2)), 2, dtype)
        return g[0] + g[1] + 0.5 * g[2]

    def _residual(self, state: dict) -> Array:
        return self.loss_fn.grad_f(state["f_train"], self.data.y_train)

    def _rates(self, state: dict, r: Array) -> dict:
        P = self.n_train
        theta_r = self._kernel_times(lambda th: self._ntvp(th, r), state)
        df = -theta_r / P
        out = {"f_train": df[:P], "f_test": df[P:]}
        if self.frozen >= 3:
            out["R"] = r
        if self.frozen == 4:
            u_R = self._grad(self.params0, state["R"])
            out["W"] = jax.jvp(lambda p: self._grad(p, r), (self.params0,), (u_R,))[1]
        return out

    # -- dynamics interface ------------------------------------------------------------
    def init(self, *, key: Any = None) -> dict:
        f = self.apply_fn(self.params0, self._points())
        P = self.n_train
        state = {"f_train": f[:P], "f_test": f[P:]}
        if self.frozen >= 3:
            state["R"] = jnp.zeros_like(self.data.y_train, dtype=f.dtype)
        if self.frozen == 4:
            state["W"] = jax.tree.map(jnp.zeros_like, self.params0)
        return state

    def loss(self, state: dict) -> Scalar:
        return self.loss_fn(state["f_train"], self.data.y_train)

    def vector_field(self, t, state: dict, args: Any) -> dict:
        return self._rates(state, self._residual(state))

    def step(self, state: dict, lr: ArrayLike) -> dict:
        r = self._residual(state)
        rates = self._rates(state, r)
        new = jax.tree.map(lambda s, d: s + lr * d, state, rates)
        if self.discrete == "euler" or self.frozen == 2:
            return new
        alpha, beta = self._displacement(state)
        proxy = (
            _axpy(self.params0, alpha, 1.0) if beta is None else _axpy(self.params0, alpha, 1.0, beta, 1.0)
        )
        delta = jax.tree.map(lambda x: -lr / self.n_train * x, self._grad(proxy, r))
        fz = lambda p: self.apply_fn(p, self._points())  # noqa: E731
        f_here, jd = jax.jvp(fz, (proxy,), (delta,))
        rho = fz(_axpy(proxy, delta, 1.0)) - f_here - jd
        P = self.n_train
        new["f_train"] = new["f_train"] + rho[:P]
        new["f_test"] = new["f_test"] + rho[P:]
        return new

    def ntk(self, state: dict) -> Array:
        """The training kernel $\\Theta(X, X)$ of the truncation at `state`."""
        return self._kernel_times(self._train_kernel, state)

    def _train_kernel(self, theta: PyTree) -> Array:
        jac = jax.jacrev(lambda p: self.apply_fn(p, self.data.x_train))(theta)
        P, k = self.data.y_train.shape
        flat = jnp.concatenate([j.reshape(P * k, -1) for j in jax.tree.leaves(jac)], axis=1)
        ker = flat @ flat.T
        return ker if k == 1 else ker.reshape(P, k, P, k)

    def observe(self, state: dict) -> dict[str, Array]:
        obs = {"loss": self.loss(state), "f_train": state["f_train"], "f_test": state["f_test"]}
        if self.observe_ntk:
            obs["ntk"] = self.ntk(state)
        return obs
