r"""The central flow of gradient descent at the edge of stability.

Cohen, Damian, Talwalkar, Kolter & Lee (2025), "Understanding optimization in deep
learning with central flows". In flow time $t = \eta k$, full-batch GD on $L$ is
described, once the top Hessian eigenvalues reach $2/\eta$, by its time average
$\theta(t)$, which follows

$$\dot\theta = -\Big[\nabla L(\theta) + \tfrac12 \nabla_\theta\big\langle \nabla^2 L(\theta), \Sigma(t)\big\rangle\Big],
  \qquad \Sigma = U X U^\top,\ X \succeq 0,$$

where the columns of $U$ are the top-$k$ Hessian eigenvectors $u_i$ (eigenvalues
$\lambda_i$) and $\Sigma$ is the covariance of GD's oscillation around $\theta$. With
$G_{ij} = \nabla_\theta (u_i^\top \nabla^2 L\, u_j)$ (third derivatives, $u$ held
fixed), the projected Hessian moves as
$\frac{d}{dt}(U^\top H U)_{ij} = \langle G_{ij}, -\nabla L\rangle - \frac12\sum_{kl}\langle G_{ij}, G_{kl}\rangle X_{kl}
= B_{ij} - \mathcal A(X)_{ij}$. $X$ solves the semidefinite complementarity problem

$$X \succeq 0,\quad \mathcal A(X) - B' \succeq 0,\quad \langle X, \mathcal A(X) - B'\rangle = 0,
  \qquad B' = B + \kappa\,(\Lambda - \tfrac2\eta I),$$

i.e. the convex QP $\min_{X\succeq0} \frac12\langle X,\mathcal A X\rangle - \langle B', X\rangle$:
eigenvalues below $2/\eta$ move freely, and those at $2/\eta$ may not rise above it.
The $\kappa$ term ($\kappa = $ `stiffness`$/\eta$) pulls a constrained eigenvalue back
onto $2/\eta$ at rate $\kappa$ (Baumgarte stabilization of the constraint
$\lambda_i \le 2/\eta$); it plays the role of the reference implementation's
"next-substep residual" rule with `stiffness` substeps per GD step, and it makes the
vector field Lipschitz so an adaptive ODE solver (and autodiff) can integrate it.

For one eigenvalue ($k = 1$) the QP is solved in closed form:
$\sigma^2 = \max\big(0,\ 2[\langle -\nabla L, \nabla S\rangle + \kappa(S - 2/\eta)] / \lVert\nabla S\rVert^2\big)$,
$\dot\theta = -\nabla L - \frac12\sigma^2\nabla S$, which keeps $S = 2/\eta$. For
$k > 1$ it is solved in JAX by accelerated projected gradient (FISTA) on the
$k\times k$ PSD cone. The predicted time-averaged GD loss is
$L(\theta) + \operatorname{tr}\Sigma/\eta$.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PyTree, Scalar

from ._dynamics import AbstractDynamics, AbstractLossDynamics, AbstractMapDynamics, require
from ._gradient_flow import GradientFlow
from ._hessian import check_k, default_iters, flat_hessian_ritz
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid
from ._psd import psd_complementarity
from ._trajectory import Trajectory

__all__ = ["CentralFlow", "CentralFlowState"]


class CentralFlowState(eqx.Module):
    """What the central flow computes at a point: the pieces of its vector field."""

    grad: Float[Array, " n"]
    eigenvalues: Float[Array, " k"]
    next_eigenvalue: Float[Array, ""]
    X: Float[Array, "k k"]
    G: Float[Array, "k k n"]


class _Central(AbstractLossDynamics):
    """`dynamics` moved by its central flow at learning rate `lr`."""

    dynamics: AbstractLossDynamics
    lr: Array
    k: int = eqx.field(static=True)
    iters: int = eqx.field(static=True)
    stiffness: float = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    qp_iters: int = eqx.field(static=True)
    key: Any = None

    def init(self, *, key: Any = None) -> PyTree:
        return self.dynamics.init(key=key)

    def loss(self, state) -> Scalar:
        return self.dynamics.loss(state)

    def pieces(self, state: PyTree) -> CentralFlowState:
        flat, unravel = ravel_pytree(state)
        loss = lambda x: self.dynamics.loss(unravel(x))
        grad = jax.grad(loss)(flat)
        vals, vecs = flat_hessian_ritz(loss, flat, self.iters, key=self.key)
        lam, U = vals[: self.k], vecs[: self.k]
        next_lam = vals[self.k] if self.k < vals.shape[0] else jnp.full((), -jnp.inf, vals.dtype)

        def g(ui, uj):
            d2 = lambda x: jnp.vdot(ui, jax.jvp(jax.grad(loss), (x,), (uj,))[1])
            return jax.grad(d2)(flat)

        ii, jj = jnp.triu_indices(self.k)
        upper = jax.vmap(g)(U[ii], U[jj])  # (k(k+1)/2, n)
        G = jnp.zeros((self.k, self.k, flat.shape[0]), flat.dtype)
        G = G.at[ii, jj].set(upper).at[jj, ii].set(upper)
        kappa = self.stiffness / self.lr
        B = jnp.einsum("ijn,n->ij", G, -grad) + kappa * jnp.diag(lam - 2.0 / self.lr)
        critical = lam >= self.threshold * 2.0 / self.lr
        if self.k == 1:
            gg = jnp.vdot(G[0, 0], G[0, 0])
            X = jnp.maximum(0.0, 2.0 * B / jnp.where(gg > 0, gg, 1.0))
            X = jnp.where((gg > 0) & critical[0], X, 0.0)
        else:
            Gf = G.reshape(self.k * self.k, -1)
            X = psd_complementarity(Gf @ Gf.T, B, iters=self.qp_iters, support=critical)
        return CentralFlowState(grad=grad, eigenvalues=lam, next_eigenvalue=next_lam, X=X, G=G)

    def vector_field(self, t, state, args):
        p = self.pieces(state)
        _, unravel = ravel_pytree(state)
        return unravel(-p.grad - 0.5 * jnp.einsum("ij,ijn->n", p.X, p.G))

    def observe(self, state) -> dict[str, Array]:
        return {**self.dynamics.observe(state), **self.central_observables(state)}

    def central_observables(self, state) -> dict[str, Array]:
        """What the central flow adds: sharpness, σ², the predicted averaged loss ..."""
        obs = {}
        p = self.pieces(state)
        trace = jnp.trace(p.X)
        obs["sharpness"] = p.eigenvalues[0]
        if self.k > 1:
            obs["hessian_eigenvalues"] = p.eigenvalues
        obs["next_eigenvalue"] = p.next_eigenvalue
        obs["sigma2"] = trace
        obs["loss_averaged"] = self.dynamics.loss(state) + trace / self.lr
        return obs


class CentralFlow(AbstractMethod):
    r"""Integrate the central flow of gradient descent (Cohen et al. 2025) from
    $t = 0$ to $\eta\cdot$`steps`: gradient flow while the top Hessian eigenvalues are
    below $2/\eta$, and the sharpness-constrained flow once they reach it (see the
    module docstring for the equations).

    The dynamics must define `loss` and have plain gradient descent as its map
    (e.g. `lmech.models.Trained`). The trajectory has the dynamics' observables at the
    central point $\theta(t)$ (its `"loss"` is $L(\theta)$) plus `"sharpness"`,
    `"sigma2"` ($\operatorname{tr}\Sigma$, the predicted variance of GD's oscillation)
    and `"loss_averaged"` ($L + \operatorname{tr}\Sigma/\eta$, the predicted
    time-averaged GD loss), `"next_eigenvalue"` ($\lambda_{k+1}$, the largest eigenvalue
    the flow does not control); with `k > 1` also `"hessian_eigenvalues"`.

    Choose `k` at least the number of eigenvalues that reach $2/\eta$: once
    $\lambda_{k+1}$ reaches it (watch `"next_eigenvalue"`), the flow pins whichever
    eigenvector is on top, the top two swap back and forth, and the adaptive solver's
    steps collapse (it ends with `"max_steps_reached"`). On the `discrete-gd`
    experiment's network the top two eigenvalues reach the edge together: `k = 1`
    stalls there and `k = 2` runs at normal cost.

    Every vector-field evaluation runs Lanczos (`iters` Hessian-vector products,
    from a fixed random start) and $k(k+1)/2$ third-derivative gradients.

    **Arguments:**

    - `k`: how many top eigenvalues may sit at $2/\eta$ (default 1).
    - `iters`: Lanczos Krylov dimension (default `min(n, 2k + 40)`).
    - `stiffness`: $\kappa\eta$, the rate (per GD step) at which a constrained
      eigenvalue is pulled back to $2/\eta$ (default 4).
    - `threshold`: only eigenvalues at or above `threshold`$\cdot 2/\eta$ are
      *critical* and may carry oscillation ($X$ is supported on them; default 0.95,
      as the reference implementation's $1.95/\eta$). Lower ones move freely: without
      this, the $\kappa$ term would couple far sub-critical eigenvectors to the
      critical ones through off-diagonal entries, an artefact of order
      $1/(\kappa\,\text{gap})$.
    - `qp_iters`: projected-gradient iterations of the $k\times k$ problem ($k > 1$).
    - `flow`: the `GradientFlow` that integrates it (default: Tsit5, rtol 1e-6,
      atol 1e-9).
    - `key`: the Lanczos start vector's key (default `jax.random.key(0)`).
    """

    k: int = eqx.field(static=True, default=1)
    iters: int | None = eqx.field(static=True, default=None)
    stiffness: float = eqx.field(static=True, default=4.0)
    threshold: float = eqx.field(static=True, default=0.95)
    qp_iters: int = eqx.field(static=True, default=500)
    flow: GradientFlow = GradientFlow(rtol=1e-6, atol=1e-9)
    key: Any = None

    def __check_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"CentralFlow: `k` must be a positive int, got {self.k!r}.")
        if not self.stiffness > 0:
            raise ValueError(f"CentralFlow: `stiffness` must be positive, got {self.stiffness}.")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"CentralFlow: `threshold` must be in (0, 1], got {self.threshold}.")
        if not isinstance(self.flow, GradientFlow):
            raise TypeError("CentralFlow: `flow` must be a GradientFlow (it sets the solver and tolerances).")

    def wrap(self, dynamics: AbstractDynamics, lr: ArrayLike, state: PyTree) -> _Central:
        """The central-flow dynamics of `dynamics` at learning rate `lr` (checks the inputs)."""
        self.check(dynamics)
        n = ravel_pytree(state)[0].shape[0]
        check_k(self.k, n, "CentralFlow")
        iters = default_iters(self.k, n) if self.iters is None else self.iters
        if not self.k <= iters <= n:
            raise ValueError(f"CentralFlow: `iters` must be between k={self.k} and n={n}, got {iters}.")
        return _Central(
            dynamics,
            jnp.asarray(lr),
            self.k,
            iters,
            float(self.stiffness),
            float(self.threshold),
            self.qp_iters,
            self.key,
        )

    def check(self, dynamics: AbstractDynamics) -> None:
        require(
            dynamics,
            AbstractLossDynamics,
            "CentralFlow",
            "the central flow needs the loss's Hessian (use a dynamics with a loss, such as Trained).",
        )
        if isinstance(dynamics, AbstractMapDynamics):
            raise TypeError(
                f"CentralFlow: {type(dynamics).__name__} has its own gradient-descent map; "
                "the central flow models plain gradient descent θ ← θ - η∇L."
            )

    @property
    def label(self) -> str:
        return f"CentralFlow(k={self.k})"

    def run(
        self,
        dynamics: AbstractDynamics,
        state0: PyTree,
        lr: ArrayLike,
        grid: SaveGrid,
        observe: Observer,
        divergence: Divergence,
        progress: bool,
    ) -> Trajectory:
        central = self.wrap(dynamics, lr, state0)
        observe_central = lambda s: {**observe(s), **central.central_observables(s)}
        return self.flow.run(central, state0, lr, grid, observe_central, divergence, progress)
