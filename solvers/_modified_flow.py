r"""Modified flows: the flows whose time-$\eta$ map is gradient descent to higher order.

Gradient descent on any dynamics whose map is an explicit Euler step of its flow,
$s_{k+1} = s_k + \eta F(s_k)$, is followed to higher order in $\eta$ by the *modified
equation* of backward error analysis (Hairer, Lubich & Wanner, *Geometric Numerical
Integration*, §IX.1):

$$\dot s = \tilde F(s) = F - \frac{\eta}{2} F'F
  + \eta^2\Big[\frac13 F'F'F + \frac1{12} F''(F, F)\Big] + O(\eta^3).$$

Truncating after the $\eta^r$ term, the flow stays within $O(\eta^{r+1})$ of the GD
iterates over a fixed flow time (plain gradient flow is $r = 0$: error $O(\eta)$).
With $F = -\nabla L$ the first correction is $-\frac\eta2 \nabla^2 L\,\nabla L$, i.e.
the flow of $L + \frac\eta4\lVert\nabla L\rVert^2$ (Barrett & Dherin 2021). All terms
are Jacobian-vector products of $F$: no loss, Hessian or third derivative is formed.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, PyTree

from ._dynamics import AbstractDynamics, AbstractMapDynamics
from ._gradient_flow import GradientFlow
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid
from ._trajectory import Trajectory

__all__ = ["ModifiedFlow", "modified_vector_field"]

ORDERS = (1, 2)


def _axpy(a, x: PyTree, y: PyTree) -> PyTree:
    return jax.tree.map(lambda xi, yi: a * xi + yi, x, y)


def modified_vector_field(
    dynamics: AbstractDynamics, lr: ArrayLike, order: int, t, state: PyTree, args: Any
) -> PyTree:
    r"""$\tilde F(s)$ of `ModifiedFlow` truncated after the $\eta^{\rm order}$ term."""
    f = lambda s: dynamics.vector_field(t, s, args)
    F = f(state)
    if order == 1:
        FpF = jax.jvp(f, (state,), (F,))[1]
        return _axpy(-0.5 * lr, FpF, F)
    # F'F and F''(F, F) in one nested jvp; then F'F'F.
    FpF, FppFF = jax.jvp(lambda s: jax.jvp(f, (s,), (F,))[1], (state,), (F,))
    FpFpF = jax.jvp(f, (state,), (FpF,))[1]
    second = _axpy(1.0 / 3.0, FpFpF, jax.tree.map(lambda x: x / 12.0, FppFF))
    return _axpy(lr**2, second, _axpy(-0.5 * lr, FpF, F))


class _Modified(AbstractDynamics):
    """`dynamics` with its vector field replaced by the modified one at learning rate `lr`."""

    dynamics: AbstractDynamics
    lr: Array
    order: int = eqx.field(static=True)

    def init(self, *, key: Any = None) -> PyTree:
        return self.dynamics.init(key=key)

    def vector_field(self, t, state, args):
        return modified_vector_field(self.dynamics, self.lr, self.order, t, state, args)

    def observe(self, state) -> dict[str, Array]:
        return self.dynamics.observe(state)


class ModifiedFlow(AbstractMethod):
    r"""Integrate the modified equation of gradient descent (backward error analysis
    of explicit Euler), truncated at `order` 1 or 2, from $t = 0$ to $\eta\cdot$`steps`.

    `solve(dynamics, ModifiedFlow(order=r), lr=η, ...)` follows
    `solve(dynamics, GradientDescent(), lr=η, ...)` with global error $O(\eta^{r+1})$
    over a fixed flow time, where `GradientFlow()` has $O(\eta)$. It applies to any
    dynamics whose gradient-descent map is the Euler step of its flow (parameter,
    function or mode space alike); a dynamics with its own `step` raises `ValueError`.

    **Arguments:**

    - `order`: 1 ($F - \frac\eta2 F'F$) or 2 (adds $\eta^2[\frac13 F'F'F +
      \frac1{12}F''(F,F)]$).
    - `flow`: the `GradientFlow` that integrates it (solver, tolerances, adjoint,
      max_steps); default `GradientFlow()`. Tighten its tolerances when measuring
      errors of order $\eta^3$.
    """

    order: int = eqx.field(static=True, default=1)
    flow: GradientFlow = GradientFlow()

    def __check_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"ModifiedFlow: `order` must be one of {ORDERS}, got {self.order!r}.")
        if not isinstance(self.flow, GradientFlow):
            raise TypeError(
                "ModifiedFlow: `flow` must be a GradientFlow (it sets the solver and tolerances)."
            )

    def check(self, dynamics: AbstractDynamics) -> None:
        if isinstance(dynamics, AbstractMapDynamics):
            raise TypeError(
                f"ModifiedFlow: {type(dynamics).__name__} defines its own gradient-descent "
                "map (`step`), which is not an Euler step of its flow, so the modified "
                "equation of Euler does not describe it. Use GradientDescent() for the map, "
                "or GradientFlow() for the flow."
            )

    @property
    def label(self) -> str:
        return f"ModifiedFlow(order={self.order})"

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
        self.check(dynamics)
        wrapped = _Modified(dynamics, lr, self.order)
        return self.flow.run(wrapped, state0, lr, grid, observe, divergence, progress)
