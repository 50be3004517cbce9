"""Gradient descent: iterate the dynamics' map with `lax.scan`."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._methods import AbstractMethod
from ._misc import first_exceeding, observable_scales, tree_all_finite, tree_where
from ._trajectory import DIVERGED, NONFINITE, SUCCESSFUL, Trajectory, nan_after


class GradientDescent(AbstractMethod):
    r"""Iterate `dynamics.step(state, lr)` — gradient descent, or a theory's exact map.

    The steps run in a `lax.scan` of `save_every` steps nested in a scan over the saved
    points, so memory is independent of the number of steps (only the saved
    observables are kept). Each inner chunk is wrapped in `jax.checkpoint`, so reverse-
    mode differentiation stores one state per saved point, not one per step.

    After every step the state is checked for non-finite values; at every saved point
    each observable is checked against `divergence_threshold · (1 + max|o₀|)`. The
    first failure freezes the state, sets `Trajectory.result` (`"nonfinite"` or
    `"diverged"`) and records the step and the observable; saved points after it are
    NaN.

    **Arguments:**

    - `divergence_threshold`: the growth factor of an observable that counts as
      divergence (default `1e6`).
    - `checkpoint`: whether to rematerialize inner chunks under reverse-mode AD.
    """

    divergence_threshold: float = 1e6
    checkpoint: bool = True

    def run(
        self,
        dynamics: AbstractDynamics,
        state0: PyTree,
        lr: ArrayLike,
        steps: int,
        save_every: int,
        progress: bool,
    ) -> Trajectory:
        n_saves = steps // save_every
        obs0 = dynamics.observe(state0)
        names = tuple(sorted(obs0))
        bound = self.divergence_threshold * (1.0 + observable_scales(obs0, names))
        meter = _meter(progress, n_saves)

        def one_step(carry, _):
            state, k, code, fail_step = carry
            new = dynamics.step(state, lr)
            finite = tree_all_finite(new)
            ok = code == SUCCESSFUL
            state = tree_where(ok & finite, new, state)
            fail_step = jnp.where(ok & ~finite, k + 1, fail_step)
            code = jnp.where(ok & ~finite, NONFINITE, code)
            return (state, k + 1, code, fail_step), None

        def chunk(carry):
            return jax.lax.scan(one_step, carry, None, length=save_every)[0]

        if self.checkpoint:
            chunk = jax.checkpoint(chunk)

        def one_save(carry, j):
            state, k, code, fail_step, fail_obs, meter_state = carry
            ok_before = code == SUCCESSFUL
            state, k, code, fail_step = chunk((state, k, code, fail_step))
            obs = dynamics.observe(state)
            bad, which = first_exceeding(obs, names, bound)
            ok_now = code == SUCCESSFUL
            fail_obs = jnp.where(ok_before & ~ok_now, -1, fail_obs)
            diverged = ok_now & bad
            fail_obs = jnp.where(diverged, which, fail_obs)
            fail_step = jnp.where(diverged, k, fail_step)
            code = jnp.where(diverged, DIVERGED, code)
            keep = ok_now  # a diverged point is real data; a non-finite one is not
            obs = {n: nan_after(obs[n][None], keep[None])[0] for n in names}
            meter_state = meter.step(meter_state, (j + 1) / n_saves)
            return (state, k, code, fail_step, fail_obs, meter_state), obs

        int_ = jnp.asarray(0).dtype
        carry0 = (
            state0,
            jnp.asarray(0, int_),
            jnp.asarray(SUCCESSFUL, int_),
            jnp.asarray(-1, int_),
            jnp.asarray(-1, int_),
            meter.init(),
        )
        carry, saved = jax.lax.scan(one_save, carry0, jnp.arange(n_saves))
        state, k, code, fail_step, fail_obs, meter_state = carry
        meter.close(meter_state)
        observables = {n: jnp.concatenate([jnp.asarray(obs0[n])[None], saved[n]]) for n in names}
        step_idx = jnp.arange(n_saves + 1) * save_every
        completed = jnp.where(code == SUCCESSFUL, k, fail_step)
        return Trajectory(
            steps=step_idx,
            times=lr * step_idx,
            observables=observables,
            final_state=state,
            result=code,
            stats={
                "num_steps": completed,
                "fail_step": fail_step,
                "fail_observable": fail_obs,
            },
            method="GradientDescent",
            observable_names=names,
        )


def _meter(progress: bool, n: int) -> diffrax.AbstractProgressMeter:
    if progress and n > 1:
        return diffrax.TqdmProgressMeter(refresh_steps=max(1, n // 100))
    return diffrax.NoProgressMeter()
