r"""What a dynamics is, and what it can do, as types.

Every dynamics — a theory of training, or the training itself — is an
`AbstractDynamics`: an initial state, a vector field (gradient flow in flow time) and
observables. What it can do *beyond* that is said by the abstract bases it inherits
(equinox's abstract/final pattern), and methods check with `isinstance`:

| base | what it adds | needed by |
|---|---|---|
| `AbstractLossDynamics` | `loss(state)` | `CentralFlow`, sharpness (`Recorded`) |
| `AbstractClosedFormFlow` | `closed_form(t, state0)` | `ClosedForm()` |
| `AbstractClosedFormMap` | `closed_form_steps(k, lr, state0)` | `ClosedForm(discrete=True)` |
| `AbstractMapDynamics` | its own gradient-descent map `step(state, lr)` | `GradientDescent` uses it |
| `AbstractSelfConsistent` | two-time equations on a grid, no vector field | `SelfConsistent()` |

Without `AbstractMapDynamics`, gradient descent is the explicit Euler step of the flow,
$s \mapsto s + \eta F(s)$ — which *is* gradient descent whenever $F = -\nabla L$.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, PyTree, Scalar

__all__ = [
    "AbstractClosedFormFlow",
    "AbstractClosedFormMap",
    "AbstractDynamics",
    "AbstractLossDynamics",
    "AbstractMapDynamics",
    "AbstractSelfConsistent",
    "euler_step",
    "gd_step",
    "require",
]


class AbstractDynamics(eqx.Module):
    r"""A learning dynamics: gradient flow in flow time $t$, observed.

    - `init(*, key=None)`: the initial state (a pytree: parameters, function values,
      kernels, mode strengths ...).
    - `vector_field(t, state, args)`: $\dot s = F(s)$ (for a parameter-space dynamics
      $F = -\nabla L$).
    - `observe(state)`: the observables compared across dynamics, a dict of arrays with
      the shared names (`"loss"`, `"f_train"`, `"f_test"`, `"end_to_end"`,
      `"singular_values"` ...; the list is in the README).

    Gradient-descent step $k$ at learning rate $\eta$ sits at flow time $t = \eta k$.
    """

    @abc.abstractmethod
    def init(self, *, key: Any = None) -> PyTree:
        """The initial state. Dynamics that hold their initial condition ignore `key`."""

    @abc.abstractmethod
    def vector_field(self, t: Scalar, state: PyTree, args: Any) -> PyTree:
        """$F(s)$: the time derivative of the state under gradient flow."""

    @abc.abstractmethod
    def observe(self, state: PyTree) -> dict[str, Array]:
        """The observables of a state, as a dict of arrays."""


class AbstractLossDynamics(AbstractDynamics):
    """A dynamics with a training loss $L(s)$ (sharpness and central flows need it)."""

    @abc.abstractmethod
    def loss(self, state: PyTree) -> Scalar:
        """The training loss of a state."""


class AbstractClosedFormFlow(AbstractDynamics):
    """A dynamics whose gradient flow has a closed-form solution."""

    @abc.abstractmethod
    def closed_form(self, t: Scalar, state0: PyTree) -> PyTree:
        """The exact gradient-flow state at flow time `t`, started from `state0`."""


class AbstractSelfConsistent(AbstractDynamics):
    r"""A theory whose order parameters are functions of two times, closed self-consistently
    on a time grid (solved by `SelfConsistent`). It has no vector field.

    - `grid_init(times)`: the starting guess of the grid unknowns (a pytree).
    - `grid_map(q, times, horizon)`: one sweep of the self-consistent equations on the grid
      `times` (uniform flow times from 0), with the drive switched off after `horizon`.
    - `grid_states(q, times)`: the state at every grid time (leading axis `len(times)`),
      what `observe` takes.
    - `grid_bytes(n)`: the memory one sweep needs on a grid of `n` times.
    """

    def vector_field(self, t: Scalar, state: PyTree, args: Any) -> PyTree:
        raise TypeError(
            f"{type(self).__name__} is a two-time theory closed on a time grid: it has no vector field. "
            "Solve it with lmech.solvers.SelfConsistent()."
        )

    @abc.abstractmethod
    def grid_init(self, times: Array) -> PyTree:
        """The starting guess of the grid unknowns."""

    @abc.abstractmethod
    def grid_map(self, q: PyTree, times: Array, horizon: ArrayLike) -> PyTree:
        """One sweep of the self-consistent equations."""

    @abc.abstractmethod
    def grid_states(self, q: PyTree, times: Array) -> PyTree:
        """The state at every grid time."""

    @abc.abstractmethod
    def grid_bytes(self, n: int) -> int:
        """Memory (bytes) of one sweep on a grid of `n` times."""


class AbstractClosedFormMap(AbstractDynamics):
    """A dynamics whose gradient-descent iterates have a closed form."""

    @abc.abstractmethod
    def closed_form_steps(self, k: ArrayLike, lr: ArrayLike, state0: PyTree) -> PyTree:
        """The exact gradient-descent state after `k` steps at learning rate `lr`."""


class AbstractMapDynamics(AbstractDynamics):
    """A dynamics with its own gradient-descent map, which is *not* the Euler step of
    its flow (so the modified equations of Euler do not describe it)."""

    @abc.abstractmethod
    def step(self, state: PyTree, lr: ArrayLike) -> PyTree:
        """One gradient-descent step at learning rate `lr`."""


def euler_step(dynamics: AbstractDynamics, state: PyTree, lr: ArrayLike) -> PyTree:
    r"""$s + \eta F(s)$."""
    dstate = dynamics.vector_field(0.0, state, None)
    return jax.tree.map(lambda s, d: s + lr * d, state, dstate)


def gd_step(dynamics: AbstractDynamics, state: PyTree, lr: ArrayLike) -> PyTree:
    """One gradient-descent step: the dynamics' own map if it has one, else Euler."""
    if isinstance(dynamics, AbstractMapDynamics):
        return dynamics.step(state, lr)
    return euler_step(dynamics, state, lr)


def require(dynamics: AbstractDynamics, capability: type, who: str, why: str) -> None:
    """Raise `TypeError` saying what `who` needs if `dynamics` lacks `capability`."""
    if not isinstance(dynamics, capability):
        raise TypeError(f"{who}: {type(dynamics).__name__} is not an {capability.__name__}; {why}")
