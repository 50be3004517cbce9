"""Gradient flow: integrate the dynamics' vector field with diffrax."""

from __future__ import annotations

import math

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid, finish, tree_all_finite, tree_max_abs
from ._trajectory import RESULTS, Trajectory

__all__ = ["GradientFlow", "default_tolerances"]

#: (rtol, atol) by floating-point width when none are given: float64 reaches 1e-8,
#: float32 (eps 1.2e-7) only about 1e-5.
_DEFAULT_TOL = {8: (1e-8, 1e-10), 4: (1e-5, 1e-6), 2: (1e-2, 1e-3)}


def default_tolerances(state: PyTree) -> tuple[float, float]:
    """The default `(rtol, atol)` for a state of this floating-point dtype."""
    leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    itemsize = max((jnp.asarray(x).dtype.itemsize for x in leaves), default=jnp.zeros(()).dtype.itemsize)
    return _DEFAULT_TOL.get(min(itemsize, 8), _DEFAULT_TOL[8])


def _positive(name, v):
    if v is not None and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0)
    ):
        raise ValueError(f"GradientFlow: `{name}` must be a positive finite number or None, got {v!r}.")


class GradientFlow(AbstractMethod):
    r"""Integrate $\dot s = F(s)$ from $t=0$ to $t = \eta\,\cdot$`steps` with
    `diffrax.diffeqsolve`, saving the observables at the flow times $\eta k$ of the
    saved steps $k$.

    **Arguments:**

    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances of the adaptive step-size controller. Default `None`:
      chosen from the state's dtype (`1e-8`, `1e-10` in float64; `1e-5`, `1e-6` in
      float32). Ignored when `stepsize_controller` is given.
    - `dt0`: the initial step; `None` lets diffrax choose (adaptive only).
    - `max_steps`: the most solver steps (default `100_000`; must be finite for
      reverse-mode differentiation with the default adjoint).
    - `adjoint`: a diffrax adjoint (default `diffrax.RecursiveCheckpointAdjoint()`;
      `diffrax.ForwardMode()` for `jax.jacfwd` over few hyperparameters).
    - `stepsize_controller`: overrides the PID controller built from `rtol`/`atol`
      (e.g. `diffrax.ConstantStepSize()` with a `dt0`).

    The integration stops at the first state that fails the shared `Divergence` test
    (a diffrax event), with the corresponding result.
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    rtol: float | None = None
    atol: float | None = None
    dt0: float | None = None
    max_steps: int = 100_000
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint()
    stepsize_controller: diffrax.AbstractStepSizeController | None = None

    def __check_init__(self):
        _positive("rtol", self.rtol)
        _positive("atol", self.atol)
        _positive("dt0", self.dt0)
        m = self.max_steps
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"GradientFlow: `max_steps` must be a positive int, got {m!r}.")
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise TypeError(
                f"GradientFlow: `solver` must be a diffrax solver, got {type(self.solver).__name__}."
            )

    def controller(self, state0: PyTree) -> diffrax.AbstractStepSizeController:
        """The step-size controller used for a start state of this dtype."""
        if self.stepsize_controller is not None:
            return self.stepsize_controller
        rtol, atol = default_tolerances(state0)
        return diffrax.PIDController(
            rtol=rtol if self.rtol is None else self.rtol, atol=atol if self.atol is None else self.atol
        )

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
        ts = grid.times(lr)
        bound = divergence.bound(state0)

        def margin(t, y, args, **kwargs):
            # > 0 while the state is healthy; its zero is located by the root finder, so a
            # flow fails at the same flow time as the closed form of the same dynamics
            return jnp.where(tree_all_finite(y), bound - tree_max_abs(y), -jnp.ones_like(bound))

        root_tol = default_tolerances(state0)[0]
        meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
        saveat = diffrax.SaveAt(
            subs=[
                diffrax.SubSaveAt(ts=ts, fn=lambda t, y, args: observe(y)),
                diffrax.SubSaveAt(t1=True),
            ]
        )
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(dynamics.vector_field),
            self.solver,
            t0=ts[0],
            t1=ts[-1],
            dt0=self.dt0,
            y0=state0,
            saveat=saveat,
            stepsize_controller=self.controller(state0),
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            event=diffrax.Event(margin, root_finder=optx.Newton(rtol=root_tol, atol=root_tol * bound)),
            progress_meter=meter,
            throw=False,
        )
        saved, final = sol.ys
        final_state = jax.tree.map(lambda x: x[-1], final)
        t_end = sol.ts[1][-1]
        r = sol.result
        result = RESULTS.where(r == diffrax.RESULTS.successful, RESULTS.successful, RESULTS.flow_failed)
        blew_up = RESULTS.where(tree_all_finite(final_state), RESULTS.diverged, RESULTS.nonfinite)
        result = RESULTS.where(r == diffrax.RESULTS.event_occurred, blew_up, result)
        result = RESULTS.where(r == diffrax.RESULTS.max_steps_reached, RESULTS.max_steps_reached, result)
        ok = result == RESULTS.successful
        step_idx = grid.step_indices()
        # saved points at or after the failure time are not data (diffrax fills them with inf)
        reached = jnp.where(ok, True, ts < t_end)
        fail_step = jnp.where(ok, -1, jnp.ceil(t_end / lr).astype(step_idx.dtype))
        stats = {
            "num_steps": sol.stats["num_steps"],
            "num_accepted_steps": sol.stats["num_accepted_steps"],
            "num_rejected_steps": sol.stats["num_rejected_steps"],
        }
        return finish(grid, lr, saved, reached, result, fail_step, final_state, stats)
