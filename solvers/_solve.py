"""`solve`: the one entry point that advances any dynamics with any method."""

from __future__ import annotations

import numbers
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._methods import AbstractMethod
from ._trajectory import SUCCESSFUL, SolveError, Trajectory


def solve(
    dynamics: AbstractDynamics,
    method: AbstractMethod,
    *,
    lr: ArrayLike,
    steps: int,
    save_every: int = 1,
    state0: PyTree | None = None,
    key: Any = None,
    progress: bool | str = "auto",
    throw: bool = True,
) -> Trajectory:
    r"""Advance `dynamics` with `method` for `steps` steps of learning rate `lr`.

    Gradient-descent step $k$ sits at flow time $t = \eta k$; flows are integrated to
    $t_1 = \eta\cdot$`steps`, so trajectories of maps and flows share one time axis.

    **Arguments:**

    - `dynamics`: an `AbstractDynamics` (a theory, or `lmech.models.Trained`).
    - `method`: `GradientDescent()`, `GradientFlow()` or `ClosedForm()`.
    - `lr`: the learning rate $\eta > 0$ (may be traced: `solve` is differentiable
      and `vmap`-able in `lr`).
    - `steps`: the number of gradient-descent steps (static).
    - `save_every`: save the observables every this many steps (static; must divide
      `steps`). Step 0 is always saved.
    - `state0`: the initial state; default `dynamics.init(key=key)`.
    - `progress`: `True`/`False` to show/hide a progress bar (tqdm, through diffrax's
      progress meters); `"auto"` (default) shows it for solves of 2000 steps or more.
    - `throw`: raise `SolveError` if the solve does not succeed (divergence, non-finite
      state, max_steps). With `throw=False` the trajectory carries the result code.

    **Returns:** a `Trajectory`.
    """
    if not isinstance(dynamics, AbstractDynamics):
        raise TypeError(
            f"solve: `dynamics` must be an lmech AbstractDynamics, got {type(dynamics).__name__}."
        )
    if not isinstance(method, AbstractMethod):
        raise TypeError(
            "solve: `method` must be an lmech method such as GradientDescent(), "
            f"GradientFlow() or ClosedForm(); got {type(method).__name__}."
        )
    steps = _positive_int("steps", steps)
    save_every = _positive_int("save_every", save_every)
    if steps % save_every:
        raise ValueError(
            f"solve: `save_every` ({save_every}) must divide `steps` ({steps}); "
            f"e.g. steps={steps - steps % save_every or save_every}."
        )
    _check_lr(lr)
    if progress == "auto":
        progress = steps >= 2000
    elif not isinstance(progress, bool):
        raise ValueError(f"solve: `progress` must be True, False or 'auto', got {progress!r}.")
    if state0 is None:
        state0 = dynamics.init(key=key)
    traj = _solve_jit(dynamics, method, state0, jnp.asarray(lr), steps, save_every, progress)
    if throw:
        traj = _throw(traj)
    return traj


@eqx.filter_jit
def _solve_jit(dynamics, method, state0, lr, steps, save_every, progress):
    return method.run(dynamics, state0, lr, steps, save_every, progress)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"solve: `{name}` must be a Python int, got {value!r}.")
    if value < 1:
        raise ValueError(f"solve: `{name}` must be >= 1, got {value}.")
    return int(value)


def _check_lr(lr: ArrayLike) -> None:
    if isinstance(lr, jax.core.Tracer):
        return
    arr = np.asarray(lr)
    if arr.shape != ():
        raise ValueError(
            f"solve: `lr` must be a scalar, got shape {arr.shape}; use jax.vmap over "
            "solve for several learning rates."
        )
    if not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"solve: `lr` must be a finite positive number, got {arr}.")


def _throw(traj: Trajectory) -> Trajectory:
    if isinstance(traj.result, jax.core.Tracer):
        return eqx.error_if(
            traj,
            traj.result != SUCCESSFUL,
            "solve did not succeed (diverged, non-finite state or max_steps); call "
            "solve(..., throw=False) and read Trajectory.message() for details.",
        )
    if np.ndim(traj.result) == 0:
        if int(traj.result) != SUCCESSFUL:
            raise SolveError(traj.message())
    elif np.any(np.asarray(traj.result) != SUCCESSFUL):
        raise SolveError(
            "solve did not succeed for some batch members (result codes "
            f"{np.asarray(traj.result).tolist()}); rerun with throw=False to inspect."
        )
    return traj
