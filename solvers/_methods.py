"""How time advances: the base class of methods."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._outcome import Divergence, SaveGrid
from ._trajectory import Trajectory

__all__ = ["AbstractMethod", "Observer"]

#: `observe(state) -> dict of arrays`: what is saved at every saved point.
Observer = Callable[[PyTree], dict[str, Array]]


class AbstractMethod(eqx.Module):
    """How a dynamics is advanced in time: integrated as a flow, iterated as a map,
    or evaluated in closed form.

    Subclasses implement `run`, which `lmech.solvers.solve` calls inside `jit` after it
    has checked the inputs. Every method saves at the same grid (`SaveGrid`), judges
    failure by the same `Divergence`, and builds its `Trajectory` with the same
    `finish` — so "diverged" means the same thing everywhere.
    """

    @abc.abstractmethod
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
        """Advance `state0` to step `grid.steps` (flow time `lr * grid.steps`), saving
        `observe(state)` at every point of `grid`."""

    def check(self, dynamics: AbstractDynamics) -> None:
        """Raise `TypeError` if `dynamics` lacks a capability this method needs
        (called by `solve` before tracing)."""

    @property
    def label(self) -> str:
        """How trajectories name the method that produced them."""
        return type(self).__name__
