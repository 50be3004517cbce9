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

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree, Scalar

from ._dynamics import AbstractDynamics, AbstractLossDynamics, AbstractMapDynamics, require
from ._gradient_flow import GradientFlow, default_tolerances
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
    ritz_vectors: Float[Array, "m n"]


def third_derivatives(
    loss: Callable,
    flat: Float[Array, " n"],
    U: Float[Array, "k n"],
    needed: Bool[Array, " k"] | None = None,
) -> Float[Array, "k k n"]:
    r"""$G_{ij} = \nabla_\theta (u_i^\top \nabla^2 L(\theta)\, u_j)$ for all pairs, $u$ held fixed:
    one reverse pass over a Hessian-vector product per pair $i \le j$ ($G$ is symmetric),
    run one after another (`lax.map`; on CPU a `vmap` over the pairs is slower). With
    `needed`, only the pairs with both indices needed are computed (`lax.cond`); the
    others are zero."""
    k = U.shape[0]

    def g(pair):
        ui, uj, need = pair
        d2 = lambda x: jnp.vdot(ui, jax.jvp(jax.grad(loss), (x,), (uj,))[1])
        return jax.lax.cond(need, lambda: jax.grad(d2)(flat), lambda: jnp.zeros_like(flat))

    ii, jj = jnp.triu_indices(k)
    need = jnp.ones(ii.shape, bool) if needed is None else needed[ii] & needed[jj]
    upper = jax.lax.map(g, (U[ii], U[jj], need))  # (k(k+1)/2, n)
    G = jnp.zeros((k, k, flat.shape[0]), flat.dtype)
    return G.at[ii, jj].set(upper).at[jj, ii].set(upper)


class _Central(AbstractLossDynamics):
    r"""`dynamics` moved by its central flow at learning rate `lr`.

    Cold (`warm=False`): the state is the dynamics' own, and every evaluation runs a
    Lanczos process of `iters` products from a fixed random start. Warm (`warm=True`):
    the state is `{"theta": θ, "basis": U}`, where the `m` rows of `U` track the top
    Hessian eigenvectors — each evaluation runs a block Krylov process of `iters`
    products started from `U`, and `U` relaxes towards the span of the top-`m` Ritz
    vectors at rate `relax`: $\dot U = \kappa_U\,(T - Q)$, with $Q$ the orthonormalized
    $U$ and $T$ the orthonormal basis of the Ritz span closest to $Q$.
    """

    dynamics: AbstractLossDynamics
    lr: Array
    k: int = eqx.field(static=True)
    iters: int = eqx.field(static=True)
    stiffness: float = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    qp_iters: int = eqx.field(static=True)
    warm: bool = eqx.field(static=True, default=False)
    block: int = eqx.field(static=True, default=1)
    key: Any = None

    def init(self, *, key: Any = None) -> PyTree:
        return self.dynamics.init(key=key)

    def theta(self, state: PyTree) -> PyTree:
        return state["theta"] if self.warm else state

    def loss(self, state) -> Scalar:
        return self.dynamics.loss(self.theta(state))

    def start_basis(self, theta: PyTree) -> Float[Array, "m n"]:
        """The top-`block` Ritz vectors of a cold Lanczos process at `theta`."""
        flat, unravel = ravel_pytree(theta)
        loss = lambda x: self.dynamics.loss(unravel(x))
        iters = default_iters(self.block, flat.shape[0])
        return flat_hessian_ritz(loss, flat, iters, key=self.key)[1][: self.block]

    def pieces(self, state: PyTree) -> CentralFlowState:
        theta = self.theta(state)
        flat, unravel = ravel_pytree(theta)
        loss = lambda x: self.dynamics.loss(unravel(x))
        grad = jax.grad(loss)(flat)
        start = state["basis"] if self.warm else None
        vals, vecs = flat_hessian_ritz(loss, flat, self.iters, start=start, key=self.key)
        lam, U = vals[: self.k], vecs[: self.k]
        next_lam = vals[self.k] if self.k < vals.shape[0] else jnp.full((), -jnp.inf, vals.dtype)
        critical = lam >= self.threshold * 2.0 / self.lr
        kappa = self.stiffness / self.lr

        def oscillation(_):
            # X is supported on the critical eigenvalues: only their G_ij enter A(X), B on
            # that support and the field (exact: the other pairs are not computed)
            G = third_derivatives(loss, flat, U, critical)
            B = jnp.einsum("ijn,n->ij", G, -grad) + kappa * jnp.diag(lam - 2.0 / self.lr)
            if self.k == 1:
                gg = jnp.vdot(G[0, 0], G[0, 0])
                X = jnp.maximum(0.0, 2.0 * B / jnp.where(gg > 0, gg, 1.0))
                X = jnp.where((gg > 0) & critical[0], X, 0.0)
            else:
                Gf = G.reshape(self.k * self.k, -1)
                X = psd_complementarity(Gf @ Gf.T, B, iters=self.qp_iters, support=critical)
            return X, G

        def none(_):
            return jnp.zeros((self.k, self.k), flat.dtype), jnp.zeros(
                (self.k, self.k, flat.shape[0]), flat.dtype
            )

        # below the edge (no critical eigenvalue) Σ = 0: skip the third derivatives and the QP
        X, G = jax.lax.cond(jnp.any(critical), oscillation, none, None)
        return CentralFlowState(
            grad=grad, eigenvalues=lam, next_eigenvalue=next_lam, X=X, G=G, ritz_vectors=vecs[: self.block]
        )

    def vector_field(self, t, state, args):
        p = self.pieces(state)
        _, unravel = ravel_pytree(self.theta(state))
        dtheta = unravel(-p.grad - 0.5 * jnp.einsum("ij,ijn->n", p.X, p.G))
        if not self.warm:
            return dtheta
        relax = self.stiffness / self.lr
        Q = _orthonormal_rows(state["basis"])
        return {"theta": dtheta, "basis": relax * (_closest_basis(p.ritz_vectors, Q) - Q)}

    def observe(self, state) -> dict[str, Array]:
        return {**self.dynamics.observe(self.theta(state)), **self.central_observables(state)}

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
        obs["loss_averaged"] = self.loss(state) + trace / self.lr
        return obs


def _orthonormal_rows(U: Float[Array, "m n"]) -> Float[Array, "m n"]:
    """Gram–Schmidt of the rows (QR with a positive diagonal, so it is continuous in U)."""
    q, r = jnp.linalg.qr(U.T)
    return (q * jnp.where(jnp.diag(r) < 0, -1.0, 1.0)).T


def _closest_basis(R: Float[Array, "m n"], Q: Float[Array, "m n"], iters: int = 12) -> Float[Array, "m n"]:
    r"""The orthonormal basis of span(R) closest to the orthonormal rows Q:
    $(CC^\top)^{-1/2} C R$ with $C = QR^\top$ (Procrustes), the inverse square root by
    Newton–Schulz iterations (smooth and differentiable, also at repeated singular
    values, where an SVD's derivative is not)."""
    C = Q @ R.T
    S = C @ C.T
    eye = jnp.eye(S.shape[0], dtype=S.dtype)
    scale = jnp.trace(S) / S.shape[0]
    S = S / scale
    Y, Z = S, eye
    for _ in range(iters):  # coupled Newton–Schulz: Y → S^{1/2}, Z → S^{-1/2}
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y, Z = Y @ T, T @ Z
    return (Z / jnp.sqrt(scale)) @ C @ R


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

    Cost. Warm (default): the ODE state carries `block` vectors that track the top
    Hessian eigenvectors (relaxing towards the current Ritz vectors at rate
    $\kappa = $ `stiffness`$/\eta$), and each vector-field evaluation runs a block
    Krylov process of `iters` (default `2·block`) Hessian-vector products started from
    them. Cold (`warm=False`, the first implementation): a fresh Lanczos process of
    `iters` (default `min(n, 2k + 40)`) products from a fixed random start at every
    evaluation. Both then take the $k(k+1)/2$ third-derivative gradients $G_{ij}$ and
    solve the $k\times k$ problem.

    **Arguments:**

    - `k`: how many top eigenvalues may sit at $2/\eta$ (default 1).
    - `warm`: carry the eigenvectors between evaluations (default True).
    - `block`: how many eigenvectors are carried (warm only; default `k + 1`: the k
      that may be critical and the next one, whose Ritz value is `"next_eigenvalue"`).
    - `iters`: Krylov dimension per evaluation (default `2·block` warm,
      `min(n, 2k + 40)` cold).
    - `stiffness`: $\kappa\eta$, the rate (per GD step) at which a constrained
      eigenvalue is pulled back to $2/\eta$ (default 2).
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
    stiffness: float = eqx.field(static=True, default=2.0)
    threshold: float = eqx.field(static=True, default=0.95)
    qp_iters: int = eqx.field(static=True, default=500)
    flow: GradientFlow = GradientFlow(rtol=1e-6, atol=1e-9)
    warm: bool = eqx.field(static=True, default=True)
    block: int | None = eqx.field(static=True, default=None)
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
        if not isinstance(self.warm, bool):
            raise TypeError(f"CentralFlow: `warm` must be True or False, got {self.warm!r}.")
        if self.block is not None and (
            isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < self.k
        ):
            raise ValueError(f"CentralFlow: `block` must be an int >= k = {self.k}, got {self.block!r}.")

    def wrap(self, dynamics: AbstractDynamics, lr: ArrayLike, state: PyTree) -> _Central:
        """The central-flow dynamics of `dynamics` at learning rate `lr` (checks the inputs)."""
        self.check(dynamics)
        n = ravel_pytree(state)[0].shape[0]
        check_k(self.k, n, "CentralFlow")
        block = min(n, self.k + 1 if self.block is None else self.block) if self.warm else 1
        if self.iters is not None:
            iters = self.iters
        else:
            iters = min(n, 2 * block) if self.warm else default_iters(self.k, n)
        lo = max(self.k + 1, block) if n > self.k else self.k
        if not lo <= iters <= n:
            raise ValueError(f"CentralFlow: `iters` must be between {lo} and n={n}, got {iters}.")
        return _Central(
            dynamics,
            jnp.asarray(lr),
            self.k,
            iters,
            float(self.stiffness),
            float(self.threshold),
            self.qp_iters,
            self.warm,
            block,
            self.key,
        )

    def check(self, dynamics: AbstractDynamics) -> None:
        require(
            dynamics,
            AbstractLossDynamics,
            "CentralFlow",
            "the central flow needs the loss's Hessian (use a dynamics with a loss, such as Trained).",
        )
        if getattr(dynamics, "lr_multipliers", None) is not None:
            raise TypeError(
                "CentralFlow: this dynamics trains its layers at different learning rates (a "
                "preconditioned gradient); the central flow models plain gradient descent θ ← θ - η∇L."
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
        if not self.warm:
            observe_central = lambda s: {**observe(s), **central.central_observables(s)}
            return self.flow.run(central, state0, lr, grid, observe_central, divergence, progress)
        start = {"theta": state0, "basis": central.start_basis(state0)}
        observe_central = lambda s: {**observe(s["theta"]), **central.central_observables(s)}
        flow = self.flow
        if flow.stepsize_controller is None:
            # the carried eigenvectors only seed the Krylov process: step sizes are
            # controlled by the error in θ alone
            rtol, atol = default_tolerances(state0)
            controller = diffrax.PIDController(
                rtol=rtol if flow.rtol is None else flow.rtol,
                atol=atol if flow.atol is None else flow.atol,
                norm=lambda err: optx.rms_norm(err["theta"]),
            )
            flow = dataclasses.replace(flow, stepsize_controller=controller)
        traj = flow.run(central, start, lr, grid, observe_central, divergence, progress)
        return dataclasses.replace(traj, final_state=traj.final_state["theta"])
