"""Closed forms: evaluate the exact solution at the saved times."""

from __future__ import annotations

import jax
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractClosedFormFlow, AbstractClosedFormMap, AbstractDynamics, require
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid, finish, judge_saved
from ._trajectory import Trajectory

__all__ = ["ClosedForm"]


class ClosedForm(AbstractMethod):
    r"""Evaluate the dynamics' exact solution at every saved point.

    With `discrete=False` (default) this is the exact gradient *flow*,
    `dynamics.closed_form(t, state0)` at $t = \eta k$ (needs an
    `AbstractClosedFormFlow`); with `discrete=True` the exact gradient-*descent*
    iterate, `dynamics.closed_form_steps(k, lr, state0)` (needs an
    `AbstractClosedFormMap`). Every saved point is computed independently (`vmap`), so
    the cost does not grow with the number of steps. The start state is honoured:
    `solve(..., state0=s)` starts the closed form from `s`.

    Each saved state is judged by the shared `Divergence` test; the first failing
    point ends the trajectory.
    """

    discrete: bool = False

    def __check_init__(self):
        if not isinstance(self.discrete, bool):
            raise TypeError(f"ClosedForm: `discrete` must be True or False, got {self.discrete!r}.")

    def check(self, dynamics: AbstractDynamics) -> None:
        if self.discrete:
            require(
                dynamics,
                AbstractClosedFormMap,
                "ClosedForm(discrete=True)",
                "it has no closed-form gradient-descent map; use GradientDescent() to iterate it.",
            )
        else:
            require(
                dynamics,
                AbstractClosedFormFlow,
                "ClosedForm()",
                "it has no closed-form flow solution; use GradientFlow() to integrate it.",
            )

    @property
    def label(self) -> str:
        return f"ClosedForm(discrete={self.discrete})"

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
        step_idx = grid.step_indices()
        bound = divergence.bound(state0)

        def state_at(k):
            if self.discrete:
                return dynamics.closed_form_steps(k, lr, state0)
            return dynamics.closed_form(lr * k, state0)

        def point(k):
            s = state_at(k)
            return s, observe(s), divergence.check(s, bound)

        # the states are kept (not recomputed for the final one): one copy of the closed
        # form in the compiled program
        states, observables, codes = jax.vmap(point)(step_idx)
        result, reached, fail_step, final_state, num_steps = judge_saved(states, codes, step_idx)
        return finish(
            grid, lr, observables, reached, result, fail_step, final_state, {"num_steps": num_steps}
        )
