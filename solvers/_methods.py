"""How time advances: the base class of methods."""

from __future__ import annotations

import abc

import equinox as eqx
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._trajectory import Trajectory


class AbstractMethod(eqx.Module):
    """How a dynamics is advanced in time: integrated as a flow, iterated as a map,
    or evaluated in closed form.

    Subclasses implement `run`, which `lmech.solvers.solve` calls inside `jit`.
    """

    @abc.abstractmethod
    def run(
        self,
        dynamics: AbstractDynamics,
        state0: PyTree,
        lr: ArrayLike,
        steps: int,
        save_every: int,
        progress: bool,
    ) -> Trajectory:
        """Advance `state0` to step `steps` (flow time `lr * steps`), saving the
        observables every `save_every` steps including step 0."""
