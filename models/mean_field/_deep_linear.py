r"""Deep linear networks with whitened data: the DMFT as linear-algebraic equations on a time
grid, closed self-consistently (THEORY.md §4; Bordelon & Pehlevan 2022, deep linear case).

**Network** (our normalization; depth $L = H + 1$ weight layers, $H$ hidden layers of width
$N$): $h^1 = W^0 x/\sqrt D$, $h^{l+1} = W^l h^l/\sqrt N$, $f = a\cdot h^H/(\gamma_0 N)$, all
weights $\mathcal N(0, 1)$, $L = \frac1{2P}\sum_\mu (f_\mu - y_\mu)^2$, flow
$\dot\theta = -\gamma_0^2 N\nabla_\theta L$ — `MLP(D, [N]*H, 1, activation="linear",
parameterization=Parameterization.mean_field(H + 1, γ₀), bias=False)`. Whitened data
($X^\top X/P = I_D$), learnable target $y = X\beta/\sqrt D$.

**Reduction (derived here).** Then $L = \lvert v - \beta\rvert^2/(2D)$ for the end-to-end
vector $v$, and at $N \to \infty$ (where $v(0) = 0$) $v$ stays along $\hat\beta$: with
$F = v\cdot\hat\beta$, $F_* = \lvert\beta\rvert$ and $\tau = t/D$ the network is a
one-input deep linear network (input field $h^1 = W^0\hat\beta \sim \mathcal N(0, 1)$) on the
loss $(F - F_*)^2/2$, driven by $e(\tau) = F_* - F(\tau)$. Per neuron, with order parameters
$\Phi^l(\tau,\sigma) = \langle h^l(\tau) h^l(\sigma)\rangle$, $G^l = \langle g^l g^l\rangle$
($g^H = a$, $g^l = W^{l\top} g^{l+1}/\sqrt N$; $\Phi^0 = G^{H+1} = 1$), the single-site
processes are linear in their Gaussian sources $u^l \sim \mathcal{GP}(0, \Phi^{l-1})$,
$r^l \sim \mathcal{GP}(0, G^{l+1})$:

$$h^l = u^l + \gamma_0 C_h^l\, g^l,\quad C_h^l = \hat A^{l-1} + \Phi^{l-1}\circ E,\qquad
  g^l = r^l + \gamma_0 C_g^l\, h^l,\quad C_g^l = \hat B^{l+1} + G^{l+1}\circ E,$$

as causal integral operators on $[0, \tau]$, $E(\tau, \sigma) = e(\sigma)\,\Theta(\tau - \sigma)$
(the weight updates $\gamma_0\int e\, g^{l+1} h^{l\top}/\sqrt N$), and $\gamma_0\hat A^l$,
$\gamma_0\hat B^l$ the response functions $\langle\delta h^l/\delta r^l\rangle$,
$\langle\delta g^l/\delta u^l\rangle$ (the reaction terms of the random matrices $W^l(0)$).
With $M = (I - \gamma_0^2 C_h C_g)^{-1}$:

$$\Phi^l = M(\Phi^{l-1} + \gamma_0^2 C_h G^{l+1} C_h^\top)M^\top,\quad \hat A^l = M C_h,\quad
  \hat B^l = C_g M,$$
$$G^l = \gamma_0^2 C_g M\Phi^{l-1}M^\top C_g^\top + R\,G^{l+1}R^\top,\quad
  R = I + \gamma_0^2 C_g M C_h,$$

and $\dot F = K e$ with the NTK $K(\tau) = \sum_{l=0}^{H} G^{l+1}(\tau,\tau)\Phi^l(\tau,\tau)$,
integrated exactly for given $K$: $F = F_*(1 - e^{-\int_0^\tau K})$ — so $\gamma_0 = 0$
($K = H + 1$) is the kernel regime exactly, on any grid, and the iteration is not stiff in
$F$. For $H = 1$ this reproduces `TwoLayerLinearDMFT`'s closed ODE. The grid equations
(trapezoid quadrature, $O(h^2)$; lower-triangular solves by lineax) are solved by
`lmech.solvers.SelfConsistent`.

**Observables** (at each saved time): `"loss"`, `"f_train"`, `"f_test"`
($f(x) = F\,\hat\beta\cdot x/\sqrt D$), `"ntk"` (the $D\times D$ matrix $K_D$ with
$\Theta(x, x') = x^\top K_D x'$: $K_\parallel = \sum_l G^{l+1}\Phi^l$ along $\hat\beta$,
$K_\perp = \sum_l G^{l+1}$ across, over $D$ — the fields of inputs orthogonal to $\hat\beta$
keep their initial variance), `"phi"` and `"g"` (the equal-time $\Phi^l(t,t)$, $G^l(t,t)$ of
layers $1..H$ along $\hat\beta$), `"F"`. The two-time kernels: `SelfConsistent().fixed_point`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Scalar

from lmech.solvers import AbstractLossDynamics, AbstractSelfConsistent

from .._data import Dataset
from ._checks import check_gamma0, whitened_linear_target

__all__ = ["DeepLinearDMFT"]


def _trapezoid(n: int, h: Array) -> Float[Array, "n n"]:
    """Weights of $\\int_0^{t_i} k(t_i, s)\\,ds \\approx \\sum_j W_{ij} k(t_i, t_j)$ (trapezoid)."""
    i = jnp.arange(n)[:, None]
    j = jnp.arange(n)[None, :]
    w = jnp.where(j < i, 1.0, 0.0)
    w = jnp.where(((j == 0) | (j == i)) & (i > 0), 0.5, w)
    return w * h


def _lower_solve(mat: Float[Array, "n n"], rhs: Float[Array, "n m"]) -> Float[Array, "n m"]:
    """$M^{-1}$ `rhs` for a lower-triangular $M$ (lineax)."""
    import lineax as lx  # loaded on first use, like the flows

    op = lx.MatrixLinearOperator(mat, lx.lower_triangular_tag)
    solve = lambda b: lx.linear_solve(op, b, lx.Triangular(), throw=False).value  # noqa: E731
    return jax.vmap(solve, in_axes=1, out_axes=1)(rhs)


class DeepLinearDMFT(AbstractSelfConsistent, AbstractLossDynamics):
    r"""The mean-field dynamics of a deep linear network on whitened data (see the module
    docs), solved with `lmech.solvers.SelfConsistent()`.

    **Arguments:**

    - `data`: a `Dataset` with whitened training inputs ($X^\top X/P = I$; `whiten` makes
      them) and one output.
    - `gamma0`: the feature-learning strength $\gamma_0 \geq 0$ (may be traced: derivatives
      go through the fixed point by implicit differentiation).
    - `depth`: the number of weight layers $L \geq 2$ ($L - 1$ hidden layers).
    """

    x_train: Float[Array, "P D"]
    x_test: Float[Array, "Q D"]
    direction: Float[Array, " D"]
    target: Scalar
    gamma0: Array
    loss_offset: Scalar
    depth: int = eqx.field(static=True)

    def __init__(self, data: Dataset, gamma0: ArrayLike, depth: int):
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 2:
            raise ValueError(
                f"DeepLinearDMFT: `depth` (weight layers) must be an int >= 2, got {depth!r}; "
                "depth 2 is the two-layer network (also TwoLayerLinearDMFT)."
            )
        x, beta, resid = whitened_linear_target(data, "DeepLinearDMFT")
        check_gamma0(gamma0, "DeepLinearDMFT")
        norm = float(np.linalg.norm(beta))
        if norm < 1e-12 * (1 + float(np.max(np.abs(data.y_train)))):
            raise ValueError("DeepLinearDMFT: the target has no linear part (X^T y = 0): nothing to learn.")
        self.x_train, self.x_test = jnp.asarray(x), jnp.asarray(data.x_test)
        self.direction = jnp.asarray(beta / norm)
        self.target = jnp.asarray(norm)
        self.gamma0 = jnp.asarray(gamma0, dtype=self.x_train.dtype)
        self.loss_offset = jnp.asarray(0.5 * np.mean(resid**2))
        self.depth = int(depth)

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def hidden(self) -> int:
        """The number of hidden layers $H = L - 1$."""
        return self.depth - 1

    # -- the state at one time -----------------------------------------------------------
    def init(self, *, key: Any = None) -> dict[str, Array]:
        """The DMFT start: $F = 0$, $\\Phi^l = G^l = 1$."""
        H = self.hidden
        return {"F": jnp.zeros(()), "phi": jnp.ones(H), "g": jnp.ones(H)}

    def loss(self, s) -> Scalar:
        return 0.5 * (s["F"] - self.target) ** 2 / self.dim + self.loss_offset

    def _kernel(self, s) -> tuple[Scalar, Scalar]:
        phi = jnp.concatenate([jnp.ones(1), s["phi"]])
        g = jnp.concatenate([s["g"], jnp.ones(1)])
        return jnp.sum(g * phi), jnp.sum(g)

    def observe(self, s) -> dict[str, Array]:
        root = jnp.sqrt(self.dim)
        k_par, k_perp = self._kernel(s)
        proj = jnp.outer(self.direction, self.direction)
        ntk = (k_par * proj + k_perp * (jnp.eye(self.dim) - proj)) / self.dim
        return {
            "loss": self.loss(s),
            "f_train": (s["F"] * (self.x_train @ self.direction) / root)[:, None],
            "f_test": (s["F"] * (self.x_test @ self.direction) / root)[:, None],
            "ntk": ntk,
            "phi": s["phi"],
            "g": s["g"],
            "F": s["F"],
        }

    # -- the grid equations --------------------------------------------------------------
    def grid_bytes(self, n: int) -> int:
        return int((12 * self.hidden + 16) * n * n * 8)

    def grid_init(self, times: Array) -> PyTree:
        n, H = times.shape[0], self.hidden
        ones, zeros = jnp.ones((H, n, n)), jnp.zeros((H, n, n))
        return {"phi": ones, "G": ones, "A": zeros, "B": zeros, "F": jnp.zeros(n)}

    def grid_map(self, q: PyTree, times: Array, horizon: ArrayLike) -> PyTree:
        n, H = times.shape[0], self.hidden
        h = (times[1] - times[0]) / self.dim
        eye, ones, zeros = jnp.eye(n), jnp.ones((n, n)), jnp.zeros((n, n))
        g2 = self.gamma0**2
        on = (times <= horizon * (1 + 1e-12)).astype(times.dtype)
        drive = (self.target - q["F"]) * on
        E = _trapezoid(n, h) * drive[None, :]
        phi, G, A, B = (list(q[k]) for k in ("phi", "G", "A", "B"))

        def operators(l):
            phi_below = ones if l == 0 else phi[l - 1]
            A_below = zeros if l == 0 else A[l - 1]
            G_above = ones if l == H - 1 else G[l + 1]
            B_above = zeros if l == H - 1 else B[l + 1]
            Ch = A_below + phi_below * E
            Cg = B_above + G_above * E
            return phi_below, G_above, Ch, Cg, eye - g2 * Ch @ Cg

        for l in range(H):  # upward sweep: forward kernels and responses
            phi_below, G_above, Ch, Cg, Minv = operators(l)
            A[l] = _lower_solve(Minv, Ch)
            inner = phi_below + g2 * Ch @ G_above @ Ch.T
            phi[l] = _lower_solve(Minv, _lower_solve(Minv, inner).T).T
        for l in reversed(range(H)):  # downward sweep: backward kernels and responses
            phi_below, G_above, Ch, Cg, Minv = operators(l)
            M = _lower_solve(Minv, eye)
            MCh = M @ Ch
            R = eye + g2 * Cg @ MCh
            G[l] = g2 * Cg @ (M @ phi_below @ M.T) @ Cg.T + R @ G_above @ R.T
            B[l] = Cg @ M
        phi, G = jnp.stack(phi), jnp.stack(G)
        s = self._equal_time(phi, G)
        k_par = jax.vmap(lambda si: self._kernel(si)[0])(s)
        cum = jnp.concatenate([jnp.zeros(1), jnp.cumsum((k_par[1:] + k_par[:-1]) * (h / 2) * on[1:])])
        F = self.target * (1 - jnp.exp(-cum))
        return {"phi": phi, "G": G, "A": jnp.stack(A), "B": jnp.stack(B), "F": F}

    @staticmethod
    def _equal_time(phi, G) -> dict[str, Array]:
        return {"phi": jnp.diagonal(phi, axis1=1, axis2=2).T, "g": jnp.diagonal(G, axis1=1, axis2=2).T}

    def grid_states(self, q: PyTree, times: Array) -> PyTree:
        return {"F": q["F"], **self._equal_time(q["phi"], q["G"])}
