r"""The one failure path shared by every method: the grid of saved steps, the
divergence test, the NaN masking of points after a failure, and the result code."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ._trajectory import RESULTS, Trajectory

__all__ = ["Divergence", "SaveGrid", "finish", "mask_after", "tree_all_finite", "tree_max_abs"]


def tree_all_finite(tree: PyTree) -> Bool[Array, ""]:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def tree_max_abs(tree: PyTree) -> Array:
    leaves = [jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree) if jnp.size(x) > 0]
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.zeros(())


class SaveGrid(eqx.Module):
    """Gradient-descent steps `0, save_every, ..., steps` and their flow times $\\eta k$."""

    steps: int = eqx.field(static=True)
    save_every: int = eqx.field(static=True)

    @property
    def n_saves(self) -> int:
        """The number of saved points after step 0."""
        return self.steps // self.save_every

    def step_indices(self) -> Int[Array, " n"]:
        return jnp.arange(self.n_saves + 1) * self.save_every

    def times(self, lr: ArrayLike) -> Float[Array, " n"]:
        return lr * self.step_indices()


class Divergence(eqx.Module):
    r"""The one definition of failure, used by every method.

    A state is *non-finite* if any entry is NaN/inf, and *diverged* if
    $\max|s| > \tau\,(1 + \max|s_0|)$ with $\tau$ = `threshold` (default $10^6$). Saved
    observables that are NaN/inf also count as non-finite.
    """

    threshold: float = eqx.field(static=True, default=1e6)

    def __check_init__(self):
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 1:
            raise ValueError(
                f"divergence_threshold must be a finite number > 1 (the growth factor of max|state| "
                f"that counts as divergence, default 1e6), got {t!r}."
            )

    def bound(self, state0: PyTree) -> Array:
        return self.threshold * (1.0 + tree_max_abs(state0))

    def check(self, state: PyTree, bound: Array) -> RESULTS:
        """`RESULTS.successful`, `.nonfinite` or `.diverged` for one state."""
        # one reduction per leaf: max|s| is NaN or inf exactly when an entry is
        size = tree_max_abs(state)
        code = RESULTS.where(size > bound, RESULTS.diverged, RESULTS.successful)
        return RESULTS.where(jnp.isfinite(size), code, RESULTS.nonfinite)


def mask_after(values: Array, ok: Bool[Array, " n"], lr: ArrayLike) -> Array:
    """Rows of `values` where `ok` is False become NaN, and so does their derivative
    with respect to `lr` (never a silent zero for a NaN value): the multiplier is 1 on
    good rows and NaN on the others, and a NaN multiple of `lr` is added to the failed
    rows. Good rows are unchanged. (Reverse mode then also makes the derivative of a
    *valid* point of a failed solve NaN — it multiplies the failed points' zero
    cotangents by NaN; solve up to the failure for derivatives.)"""
    dtype = values.dtype if jnp.issubdtype(values.dtype, jnp.inexact) else jnp.result_type(float)
    shape = ok.shape + (1,) * (values.ndim - 1)
    mult = jnp.where(ok, 1.0, jnp.nan).astype(dtype).reshape(shape)
    poison = jnp.where(ok, 0.0, jnp.nan).astype(dtype).reshape(shape)
    return values * mult + poison * lr


def finish(
    grid: SaveGrid,
    lr: ArrayLike,
    observables: dict[str, Array],
    reached: Bool[Array, " n"],
    result: RESULTS,
    fail_step: Int[Array, ""],
    final_state: PyTree,
    stats: dict[str, Array],
) -> Trajectory:
    """Assemble the `Trajectory` of any method.

    `observables` are the saved values (leading time axis), `reached` says which saved
    points are valid data, `result`/`fail_step` how the method's own run ended. Saved
    observables that are non-finite at a reached point end the run there as
    `RESULTS.nonfinite`. Points not reached become NaN.
    """
    step_idx = grid.step_indices()
    names = sorted(observables)
    finite_rows = jnp.stack(
        [jnp.all(jnp.isfinite(observables[n].reshape(step_idx.shape[0], -1)), axis=1) for n in names]
    )
    obs_ok = jnp.all(finite_rows, axis=0)
    bad_obs = reached & ~obs_ok
    first_bad = jnp.argmax(bad_obs)
    obs_failed = jnp.any(bad_obs) & (result == RESULTS.successful)
    result = RESULTS.where(obs_failed, RESULTS.nonfinite, result)
    fail_step = jnp.where(obs_failed, step_idx[first_bad], fail_step)
    keep = reached & (
        jnp.arange(step_idx.shape[0]) < jnp.where(jnp.any(bad_obs), first_bad, step_idx.shape[0])
    )
    stats = dict(stats)
    stats["fail_step"] = jnp.where(result == RESULTS.successful, -1, fail_step).astype(step_idx.dtype)
    return Trajectory(
        steps=step_idx,
        times=lr * step_idx,
        observables={n: mask_after(jnp.asarray(observables[n]), keep, lr) for n in names},
        final_state=final_state,
        result=result,
        stats=stats,
    )


def judge_saved(
    states: PyTree, codes: RESULTS, step_idx: Int[Array, " n"]
) -> tuple[RESULTS, Bool[Array, " n"], Int[Array, ""], PyTree, Int[Array, ""]]:
    """For methods that compute every saved state at once: the run ends at the first saved
    state whose `Divergence` code (`codes`, one per state) is a failure. Returns the result,
    which points were reached, the failing step (-1 if none), the last good state and its step."""
    bad = codes != RESULTS.successful
    first = jnp.argmax(bad)
    failed = jnp.any(bad)
    n = step_idx.shape[0]
    result = RESULTS.where(failed, jax.tree.map(lambda v: v[first], codes), RESULTS.successful)
    reached = jnp.arange(n) < jnp.where(failed, first, n)
    fail_step = jnp.where(failed, step_idx[first], -1)
    last = jnp.maximum(jnp.where(failed, first - 1, n - 1), 0)
    return result, reached, fail_step, jax.tree.map(lambda v: v[last], states), step_idx[last]
