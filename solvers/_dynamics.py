"""The protocol every dynamics implements: a theory of training, or the training itself."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree, Scalar


class AbstractDynamics(eqx.Module):
    r"""A learning dynamics: gradient flow in flow time, and its gradient-descent map.

    A dynamics owns a state (a pytree: parameters, function values, kernels, mode
    strengths ...) and says how it moves:

    - `vector_field(t, state, args)` is $\dot s = F(s)$, the gradient flow in flow time
      $t$ (for a parameter-space dynamics, $F = -\nabla L$);
    - `step(state, lr)` is one step of gradient descent with learning rate $\eta$. The
      default is the explicit Euler step $s \mapsto s + \eta F(s)$, which *is* gradient
      descent whenever $F = -\nabla L$. Override it only where the exact map of the
      theory differs from an Euler step of its flow.
    - `observe(state)` returns the observables that are compared across dynamics. The
      names are shared by every dynamics, theory or real: `"loss"`, `"f_train"`,
      `"f_test"`, `"end_to_end"`, `"singular_values"`, ... with the same shapes and
      the same meaning everywhere.

    Gradient-descent step $k$ at learning rate $\eta$ sits at flow time $t = \eta k$.

    Optional:

    - `loss(state)`: the training loss, for methods that need it.
    - `closed_form(t)`: the exact flow solution at flow time `t`, where one exists.
    - `closed_form_steps(k, lr)`: the exact gradient-descent iterate after `k` steps.
    """

    @abc.abstractmethod
    def init(self, *, key: Any = None) -> PyTree:
        """The initial state (a pytree). Dynamics that hold their initial condition
        ignore `key`."""

    @abc.abstractmethod
    def vector_field(self, t: Scalar, state: PyTree, args: Any) -> PyTree:
        """$F(s)$: the time derivative of the state under gradient flow."""

    @abc.abstractmethod
    def observe(self, state: PyTree) -> dict[str, Array]:
        """The observables of a state, as a dict of arrays."""

    def step(self, state: PyTree, lr: ArrayLike) -> PyTree:
        r"""One gradient-descent step: by default $s + \eta F(s)$ (explicit Euler)."""
        dstate = self.vector_field(jnp.zeros(()), state, None)
        return jax.tree.map(lambda s, d: s + lr * d, state, dstate)

    def loss(self, state: PyTree) -> Scalar:
        """The training loss of a state."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no loss; methods that need one (sharpness, "
            "central flows) cannot be used with it."
        )

    @property
    def has_loss(self) -> bool:
        """Whether this dynamics defines `loss` (needed by sharpness and central flows)."""
        return has_override(self, "loss")

    @property
    def gd_is_euler(self) -> bool:
        """Whether `step` is the explicit Euler step of the flow (the default), so that
        backward error analysis of Euler (`ModifiedFlow`) describes its GD map."""
        return not has_override(self, "step")

    def closed_form(self, t: Scalar) -> PyTree:
        """The exact gradient-flow state at flow time `t`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form flow solution; use GradientFlow() to integrate it."
        )

    def closed_form_steps(self, k: ArrayLike, lr: ArrayLike) -> PyTree:
        """The exact gradient-descent state after `k` steps at learning rate `lr`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form gradient-descent map; use "
            "GradientDescent() to iterate it."
        )


def has_override(dynamics: AbstractDynamics, name: str) -> bool:
    """Whether `type(dynamics)` overrides the `AbstractDynamics` method `name`."""
    return getattr(type(dynamics), name) is not getattr(AbstractDynamics, name)
