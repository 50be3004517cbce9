"""Closed forms: evaluate the exact solution at the saved times."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics, has_override
from ._methods import AbstractMethod
from ._misc import first_exceeding, observable_scales
from ._trajectory import DIVERGED, NONFINITE, SUCCESSFUL, Trajectory, nan_after


class ClosedForm(AbstractMethod):
    r"""Evaluate the dynamics' exact solution at every saved point.

    With `discrete=False` (default) this is the exact gradient *flow*,
    `dynamics.closed_form(t)` at $t = \eta k$; with `discrete=True` the exact
    gradient-*descent* iterate, `dynamics.closed_form_steps(k, lr)`. Every saved point
    is computed independently (vectorized with `vmap`), so the cost does not grow with
    the number of steps.

    A saved point that is non-finite, or whose observables exceed
    `divergence_threshold · (1 + max|o₀|)`, ends the trajectory with result
    `"nonfinite"` or `"diverged"`.
    """

    discrete: bool = False
    divergence_threshold: float = 1e6

    def run(
        self,
        dynamics: AbstractDynamics,
        state0: PyTree,
        lr: ArrayLike,
        steps: int,
        save_every: int,
        progress: bool,
    ) -> Trajectory:
        name = "closed_form_steps" if self.discrete else "closed_form"
        if not has_override(dynamics, name):
            kind = "gradient-descent map" if self.discrete else "flow solution"
            alt = "GradientDescent()" if self.discrete else "GradientFlow()"
            raise ValueError(
                f"ClosedForm(discrete={self.discrete}): {type(dynamics).__name__} has "
                f"no closed-form {kind}; use {alt} instead."
            )
        step_idx = jnp.arange(steps // save_every + 1) * save_every
        ts = lr * step_idx

        def state_at(k):
            if self.discrete:
                return dynamics.closed_form_steps(k, lr)
            return dynamics.closed_form(lr * k)

        obs = jax.vmap(lambda k: dynamics.observe(state_at(k)))(step_idx)
        names = tuple(sorted(obs))
        obs0 = {n: obs[n][0] for n in names}
        bound = self.divergence_threshold * (1.0 + observable_scales(obs0, names))
        bad_nonfinite = jax.vmap(lambda i: first_exceeding({n: obs[n][i] for n in names}, names, jnp.inf))(
            jnp.arange(step_idx.size)
        )
        bad_big = jax.vmap(lambda i: first_exceeding({n: obs[n][i] for n in names}, names, bound))(
            jnp.arange(step_idx.size)
        )
        any_nonfinite, which_nf = bad_nonfinite
        any_big, which_big = bad_big
        first_nf = jnp.argmax(any_nonfinite)
        first_big = jnp.argmax(any_big)
        has_nf = jnp.any(any_nonfinite)
        has_big = jnp.any(any_big & ~any_nonfinite)
        # whichever failure comes first decides the result
        nf_first = has_nf & (~has_big | (first_nf <= first_big))
        code = jnp.where(nf_first, NONFINITE, jnp.where(has_big, DIVERGED, SUCCESSFUL))
        fail_idx = jnp.where(nf_first, first_nf, jnp.where(has_big, first_big, -1))
        fail_obs = jnp.where(nf_first, which_nf[first_nf], jnp.where(has_big, which_big[first_big], -1))
        keep_upto = jnp.where(
            code == NONFINITE, fail_idx - 1, jnp.where(code == DIVERGED, fail_idx, step_idx.size)
        )
        keep = jnp.arange(step_idx.size) <= keep_upto
        observables = {n: nan_after(obs[n], keep) for n in names}
        final_state = state_at(jnp.asarray(steps))
        return Trajectory(
            steps=step_idx,
            times=ts,
            observables=observables,
            final_state=final_state,
            result=code,
            stats={
                "num_steps": jnp.asarray(steps),
                "fail_step": jnp.where(fail_idx >= 0, step_idx[jnp.maximum(fail_idx, 0)], -1),
                "fail_observable": fail_obs,
            },
            method="ClosedForm",
            observable_names=names,
        )
