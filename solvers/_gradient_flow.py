"""Gradient flow: integrate the dynamics' vector field with diffrax."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._methods import AbstractMethod
from ._misc import first_exceeding, tree_all_finite, tree_max_abs
from ._trajectory import (
    DIVERGED,
    FLOW_FAILED,
    MAX_STEPS_REACHED,
    NONFINITE,
    SUCCESSFUL,
    Trajectory,
    nan_after,
)


class GradientFlow(AbstractMethod):
    r"""Integrate $\dot s = F(s)$ from $t=0$ to $t = \eta\,\cdot$`steps` with
    `diffrax.diffeqsolve`, saving the observables at the flow times $\eta k$ of the
    saved steps $k$.

    **Arguments:**

    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances of the adaptive step-size controller (default
      `1e-8`, `1e-10`). Ignored when `stepsize_controller` is given.
    - `dt0`: the initial step; `None` lets diffrax choose (adaptive only).
    - `max_steps`: the most solver steps (default `100_000`; must be finite for
      reverse-mode differentiation with the default adjoint).
    - `adjoint`: a diffrax adjoint (default `diffrax.RecursiveCheckpointAdjoint()`;
      `diffrax.ForwardMode()` for `jax.jacfwd` over few hyperparameters).
    - `stepsize_controller`: overrides the PID controller built from `rtol`/`atol`
      (e.g. `diffrax.ConstantStepSize()` with a `dt0`).
    - `divergence_threshold`: the integration stops, with result `"diverged"`, once
      max|state| exceeds `divergence_threshold · (1 + max|state₀|)`.
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    rtol: float = 1e-8
    atol: float = 1e-10
    dt0: float | None = None
    max_steps: int = 100_000
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint()
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    divergence_threshold: float = 1e6

    def __check_init__(self):
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError("GradientFlow: `rtol` and `atol` must be positive.")
        if self.max_steps is None or self.max_steps < 1:
            raise ValueError("GradientFlow: `max_steps` must be a positive integer.")

    def run(
        self,
        dynamics: AbstractDynamics,
        state0: PyTree,
        lr: ArrayLike,
        steps: int,
        save_every: int,
        progress: bool,
    ) -> Trajectory:
        step_idx = jnp.arange(steps // save_every + 1) * save_every
        ts = lr * step_idx
        obs0 = dynamics.observe(state0)
        names = tuple(sorted(obs0))
        bound = self.divergence_threshold * (1.0 + tree_max_abs(state0))

        def blew_up(t, y, args, **kwargs):
            return ~tree_all_finite(y) | (tree_max_abs(y) > bound)

        controller = self.stepsize_controller
        if controller is None:
            controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
        meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
        saveat = diffrax.SaveAt(
            subs=[
                diffrax.SubSaveAt(ts=ts, fn=lambda t, y, args: dynamics.observe(y)),
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
            stepsize_controller=controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            event=diffrax.Event(blew_up),
            progress_meter=meter,
            throw=False,
        )
        saved, final = sol.ys
        final_state = jax.tree.map(lambda x: x[-1], final)
        t_end = sol.ts[1][-1]
        reached = ts <= t_end
        observables = {n: nan_after(saved[n], reached) for n in names}

        r = sol.result
        event = r == diffrax.RESULTS.event_occurred
        finite = tree_all_finite(final_state)
        code = jnp.where(r == diffrax.RESULTS.successful, SUCCESSFUL, FLOW_FAILED)
        code = jnp.where(event & finite, DIVERGED, code)
        code = jnp.where(event & ~finite, NONFINITE, code)
        code = jnp.where(r == diffrax.RESULTS.max_steps_reached, MAX_STEPS_REACHED, code)
        # The first saved point that is past the failure, and which observable misbehaves.
        fail_step = jnp.where(code == SUCCESSFUL, -1, jnp.ceil(t_end / lr).astype(step_idx.dtype))
        last = jnp.maximum(jnp.sum(reached) - 1, 0)
        bad, which = first_exceeding({n: observables[n][last] for n in names}, names, jnp.inf)
        fail_obs = jnp.where((code == NONFINITE) & bad, which, -1)
        stats = {
            "num_steps": sol.stats["num_steps"],
            "num_accepted_steps": sol.stats["num_accepted_steps"],
            "num_rejected_steps": sol.stats["num_rejected_steps"],
            "fail_step": fail_step,
            "fail_observable": fail_obs,
        }
        return Trajectory(
            steps=step_idx,
            times=ts,
            observables=observables,
            final_state=final_state,
            result=code,
            stats=stats,
            method="GradientFlow",
            observable_names=names,
        )
