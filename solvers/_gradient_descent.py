"""Gradient descent: iterate the dynamics' map with `lax.scan`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics, gd_step
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid, finish
from ._trajectory import RESULTS, Trajectory

__all__ = ["GradientDescent"]


class GradientDescent(AbstractMethod):
    r"""Iterate gradient descent: the Euler step $s + \eta F(s)$ of the flow (which is
    $\theta - \eta\nabla L$ for a parameter-space dynamics), or the dynamics' own exact
    map where it is an `AbstractMapDynamics`.

    The steps run in a `lax.scan` of `save_every` steps nested in a scan over the saved
    points, so memory is independent of the number of steps. Each inner chunk is
    wrapped in `jax.checkpoint`, so reverse-mode differentiation stores one state per
    saved point, not one per step.

    Every step is checked by the shared `Divergence` test; the first failure freezes
    the state at the last good step and sets the result; saved points from the failing
    step on are NaN.

    **Arguments:**

    - `checkpoint`: whether to rematerialize inner chunks under reverse-mode AD.
    """

    checkpoint: bool = True

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
        bound = divergence.bound(state0)
        meter = _meter(progress, grid.n_saves)
        int_ = jnp.asarray(0).dtype

        def one_step(carry, _):
            state, k, result, fail_step = carry
            new = gd_step(dynamics, state, lr)
            ok_before = result == RESULTS.successful
            now = divergence.check(new, bound)
            failed = ok_before & (now != RESULTS.successful)
            state = jax.tree.map(lambda a, b: jnp.where(ok_before & ~failed, a, b), new, state)
            result = RESULTS.where(failed, now, result)
            fail_step = jnp.where(failed, k + 1, fail_step)
            return (state, k + 1, result, fail_step), None

        def chunk(carry):
            return jax.lax.scan(one_step, carry, None, length=grid.save_every)[0]

        if self.checkpoint:
            chunk = jax.checkpoint(chunk)

        def one_save(carry, j):
            inner, meter_state = carry
            inner = chunk(inner)
            meter_state = meter.step(meter_state, (j + 1) / grid.n_saves)
            return (inner, meter_state), observe(inner[0])

        inner0 = (state0, jnp.asarray(0, int_), RESULTS.successful, jnp.asarray(-1, int_))
        (inner, meter_state), saved = jax.lax.scan(one_save, (inner0, meter.init()), jnp.arange(grid.n_saves))
        meter.close(meter_state)
        state, k, result, fail_step = inner
        obs0 = observe(state0)
        observables = {n: jnp.concatenate([jnp.asarray(obs0[n])[None], saved[n]]) for n in obs0}
        step_idx = grid.step_indices()
        reached = jnp.where(result == RESULTS.successful, True, step_idx < fail_step)
        completed = jnp.where(result == RESULTS.successful, k, fail_step - 1)
        return finish(grid, lr, observables, reached, result, fail_step, state, {"num_steps": completed})


def _meter(progress: bool, n: int):
    """diffrax's tqdm meter (diffrax is imported here: a closed-form job does not need it)."""
    import diffrax

    if progress and n > 1:
        return diffrax.TqdmProgressMeter(refresh_steps=max(1, n // 100))
    return diffrax.NoProgressMeter()
