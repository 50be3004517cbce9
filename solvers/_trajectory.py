"""What a solve returns: saved observables on the flow-time axis, and how it ended."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

#: Result codes of a solve, indexed by `Trajectory.result`.
RESULTS: tuple[str, ...] = (
    "successful",
    "diverged",
    "nonfinite",
    "max_steps_reached",
    "flow_failed",
)
SUCCESSFUL, DIVERGED, NONFINITE, MAX_STEPS_REACHED, FLOW_FAILED = range(len(RESULTS))


class SolveError(RuntimeError):
    """A solve ended without success (divergence, non-finite state, max_steps ...)."""


class Trajectory(eqx.Module):
    """The record of one solve.

    **Fields:**

    - `steps`: the saved gradient-descent step indices $k$ (for flows, the step
      indices whose flow times $\\eta k$ were saved).
    - `times`: flow times $t = \\eta k$ of the saved points.
    - `observables`: dict of arrays, each with a leading time axis of length
      `len(times)`. Points saved after a failure are NaN (the `result` says why).
    - `final_state`: the state at the last step reached.
    - `result`: an integer code, index into `RESULTS`.
    - `stats`: counters (`num_steps`, and for flows `num_accepted_steps`,
      `num_rejected_steps`), and for failures `fail_step` (the first failing step)
      and `fail_observable` (index into `observable_names`, or -1 for the state).
    - `method`: the name of the method that produced it.
    """

    steps: Int[Array, " n"]
    times: Float[Array, " n"]
    observables: dict[str, Array]
    final_state: PyTree
    result: Int[Array, ""]
    stats: dict[str, Array]
    method: str = eqx.field(static=True)
    observable_names: tuple[str, ...] = eqx.field(static=True)

    @property
    def result_name(self) -> str:
        """The result as a word (needs a concrete, unbatched trajectory)."""
        return RESULTS[int(self.result)]

    @property
    def succeeded(self) -> bool:
        return int(self.result) == SUCCESSFUL

    def message(self) -> str:
        """A sentence that says how the solve ended (concrete trajectories only)."""
        code = int(self.result)
        if code == SUCCESSFUL:
            return f"{self.method}: successful ({int(self.stats['num_steps'])} steps)"
        step = int(self.stats["fail_step"])
        idx = int(self.stats["fail_observable"])
        what = "the state" if idx < 0 else f"observable {self.observable_names[idx]!r}"
        if code == DIVERGED:
            return (
                f"{self.method}: diverged at step {step} (flow time "
                f"{_time_at(self, step):.6g}): {what} grew beyond the divergence "
                "threshold. The learning rate is probably above the stability "
                "threshold (for MSE, 2/sharpness); lower `lr`."
            )
        if code == NONFINITE:
            return (
                f"{self.method}: the state became non-finite at step {step} (flow time "
                f"{_time_at(self, step):.6g}); {what} is NaN/inf from there on. Lower "
                "`lr`, check the data, or use float64."
            )
        if code == MAX_STEPS_REACHED:
            return (
                f"{self.method}: the solver reached max_steps before flow time "
                f"{float(self.times[-1]):.6g}; raise `max_steps` or loosen rtol/atol."
            )
        return f"{self.method}: the flow solver failed near step {step}."

    def __getitem__(self, name: str) -> Array:
        """`traj["loss"]` is `traj.observables["loss"]`."""
        return self.observables[name]

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


def nan_after(values: Array, ok: Array) -> Array:
    """Replace rows of `values` where `ok` is False by NaN."""
    mask = ok.reshape(ok.shape + (1,) * (values.ndim - 1))
    return jnp.where(mask, values, jnp.nan)
