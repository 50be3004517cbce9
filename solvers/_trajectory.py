"""What a solve returns: saved observables on the flow-time axis, and how it ended."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

__all__ = ["RESULTS", "SolveError", "Trajectory"]


class RESULTS(eqx.Enumeration):
    """How a solve ended. Every method uses the same codes and the same divergence
    definition (`lmech.solvers.Divergence`)."""

    successful = ""
    diverged = (
        "the state grew beyond the divergence threshold (max|state| > threshold·(1 + max|state₀|)). "
        "The learning rate is probably above the stability threshold (for MSE, 2/sharpness); lower `lr`."
    )
    nonfinite = (
        "the state or an observable became NaN/inf. Lower `lr`, check the data and the "
        "observables, or use float64."
    )
    max_steps_reached = (
        "the ODE solver reached max_steps before the final flow time; raise `max_steps` "
        "or loosen rtol/atol (or the dynamics is too stiff for an explicit solver)."
    )
    flow_failed = "the ODE solver failed (step size collapsed or a solver error)."
    fixed_point_failed = (
        "the self-consistent (fixed-point) iteration did not converge within max_steps; raise "
        "SelfConsistent(max_steps=...), use more `stages` or `damp`, or refine the grid (`points`)."
    )


class SolveError(RuntimeError):
    """A solve ended without success (divergence, non-finite state, max_steps ...)."""


_NAMES = {int(item._value): name for name, item in RESULTS._name_to_item.items()}


class Trajectory(eqx.Module):
    r"""The record of one solve.

    **Fields:**

    - `steps`: the saved gradient-descent step indices $k$ (for flows, the step
      indices whose flow times $\eta k$ were saved).
    - `times`: flow times $t = \eta k$ of the saved points.
    - `observables`: dict of arrays, each with a leading time axis of length
      `len(times)`. Points saved after a failure are NaN (and so are their
      derivatives); `result` says why.
    - `final_state`: the state at the last step reached.
    - `result`: a `RESULTS` item (`RESULTS.successful`, `.diverged`, `.nonfinite`,
      `.max_steps_reached`, `.flow_failed`, `.fixed_point_failed`); compare with `==`.
    - `stats`: counters (`num_steps`; for flows `num_accepted_steps`,
      `num_rejected_steps`) and `fail_step`, the first step at which the failure was
      seen (-1 on success).
    - `method`: the method that produced it, as `repr`-like text (set by `solve`).
    """

    steps: Int[Array, " n"]
    times: Float[Array, " n"]
    observables: dict[str, Array]
    final_state: PyTree
    result: RESULTS
    stats: dict[str, Array]
    method: str = eqx.field(static=True, default="")

    @property
    def observable_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.observables))

    @property
    def result_name(self) -> str:
        """The result as a word (needs a concrete, unbatched trajectory)."""
        return _NAMES[int(self.result._value)]

    @property
    def succeeded(self) -> bool:
        return bool(self.result == RESULTS.successful)

    def message(self) -> str:
        """A sentence that says how the solve ended (concrete trajectories only)."""
        name = self.result_name
        if name == "successful":
            return f"{self.method}: successful ({int(self.stats['num_steps'])} steps)"
        step = int(self.stats["fail_step"])
        where = ""
        if step >= 0:
            where = f" at step {step} (flow time {_time_at(self, step):.6g})"
        return f"{self.method}: {name}{where}: {RESULTS[self.result]}"

    def __getitem__(self, name: str) -> Array:
        """`traj["loss"]` is `traj.observables["loss"]`."""
        try:
            return self.observables[name]
        except KeyError:
            raise KeyError(f"no observable {name!r}; this trajectory has {self.observable_names}.") from None

    def to_numpy(self) -> dict[str, Any]:
        """Steps, times and observables as numpy arrays (for reports and plots)."""
        out = {"steps": np.asarray(self.steps), "times": np.asarray(self.times)}
        out.update({k: np.asarray(v) for k, v in self.observables.items()})
        return out


def _time_at(traj: Trajectory, step: int) -> float:
    steps = np.asarray(traj.steps)
    times = np.asarray(traj.times)
    if steps.size > 1 and steps[1] != steps[0]:
        lr = (times[1] - times[0]) / (steps[1] - steps[0])
        return float(lr * step)
    return float("nan")


def is_traced(x: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))
