"""`solve`: the one entry point that advances any dynamics with any method."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, PyTree

from ._dynamics import AbstractDynamics
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid
from ._recorded import Recorded
from ._trajectory import RESULTS, SolveError, Trajectory, is_traced

__all__ = ["solve"]


def solve(
    dynamics: AbstractDynamics | Recorded,
    method: AbstractMethod,
    *,
    lr: ArrayLike,
    steps: int,
    save_every: int = 1,
    state0: PyTree | None = None,
    key: Any = None,
    observe: Observer | None = None,
    divergence_threshold: float = 1e6,
    progress: bool | str = "auto",
    throw: bool = True,
) -> Trajectory:
    r"""Advance `dynamics` with `method` for `steps` steps of learning rate `lr`.

    Gradient-descent step $k$ sits at flow time $t = \eta k$; flows are integrated to
    $t_1 = \eta\cdot$`steps`, so trajectories of maps and flows share one time axis.

    **Arguments:**

    - `dynamics`: an `AbstractDynamics` (a theory, or `lmech.models.Trained`), or a
      `Recorded(dynamics, ...)` to save extra observables (sharpness, parameters).
    - `method`: `GradientDescent()`, `GradientFlow()`, `ClosedForm()`,
      `ModifiedFlow()`, `CentralFlow()`.
    - `lr`: the learning rate $\eta > 0$, a real scalar (may be traced: `solve` is
      differentiable and `vmap`-able in `lr`).
    - `steps`: the number of gradient-descent steps (static).
    - `save_every`: save the observables every this many steps (static; must divide
      `steps`). Step 0 is always saved.
    - `state0`: the initial state; default `dynamics.init(key=key)`. Must have the
      structure, shapes and dtypes of `dynamics.init()`.
    - `observe`: extra observables, `observe(state) -> dict`, saved beside the
      dynamics' own (like diffrax's `SaveAt(fn=...)`).
    - `divergence_threshold`: a state with $\max|s| > $ threshold$\cdot(1 + \max|s_0|)$
      has diverged (the one definition every method uses; must be > 1).
    - `progress`: `True`/`False` to show/hide a progress bar (tqdm, through diffrax's
      progress meters); `"auto"` (default) shows it for solves of 2000 steps or more.
    - `throw`: raise `SolveError` if the solve does not succeed (divergence, non-finite
      state, max_steps); under `jit`/`grad`, a runtime error with the same message.
      With `throw=False` the trajectory carries the result code, the saved points after
      the failure are NaN, and so are derivatives taken through them.

    **Returns:** a `Trajectory`.
    """
    observers = []
    while isinstance(dynamics, Recorded):
        observers.append(dynamics.extra_observables)
        dynamics = dynamics.dynamics
    if observe is not None:
        if not callable(observe):
            raise TypeError(
                f"solve: `observe` must be a function state -> dict, got {type(observe).__name__}."
            )
        observers.append(observe)
    if not isinstance(dynamics, AbstractDynamics):
        raise TypeError(
            f"solve: `dynamics` must be an lmech AbstractDynamics, got {type(dynamics).__name__}."
        )
    if not isinstance(method, AbstractMethod):
        raise TypeError(
            "solve: `method` must be an lmech method such as GradientDescent(), "
            f"GradientFlow() or ClosedForm(); got {type(method).__name__}."
        )
    method.check(dynamics)
    steps = _positive_int("steps", steps)
    save_every = _positive_int("save_every", save_every)
    if steps % save_every:
        raise ValueError(
            f"solve: `save_every` ({save_every}) must divide `steps` ({steps}); "
            f"e.g. steps={steps - steps % save_every or save_every}."
        )
    if not isinstance(throw, bool):
        raise TypeError(f"solve: `throw` must be True or False, got {throw!r}.")
    lr = _check_lr(lr)
    divergence = Divergence(divergence_threshold)
    if progress == "auto":
        progress = steps >= 2000
    elif not isinstance(progress, bool):
        raise ValueError(f"solve: `progress` must be True, False or 'auto', got {progress!r}.")
    if state0 is None:
        state0 = dynamics.init(key=key)
    else:
        _check_state0(dynamics, state0, key)
    if not is_traced(state0) and not bool(
        jax.tree.reduce(
            lambda a, b: a and b,
            jax.tree.map(lambda x: bool(np.all(np.isfinite(np.asarray(x)))), state0),
            True,
        )
    ):
        raise ValueError("solve: the initial state contains NaN or inf.")
    traj = _solve_jit(
        dynamics, method, state0, lr, SaveGrid(steps, save_every), tuple(observers), divergence, progress
    )
    traj = dataclasses.replace(traj, method=method.label)
    if throw:
        traj = _throw(traj)
    return traj


@eqx.filter_jit
def _solve_jit(dynamics, method, state0, lr, grid, observers, divergence, progress):
    if isinstance(lr, jax.core.Tracer):
        lr = eqx.error_if(lr, ~(jnp.isfinite(lr) & (lr > 0)), "solve: `lr` must be a finite positive number.")

    def observe(state):
        obs = dict(dynamics.observe(state))
        for fn in observers:
            extra = fn(state)
            clash = set(extra) & set(obs)
            if clash:
                raise ValueError(f"solve: extra observables {sorted(clash)} clash with the dynamics' own.")
            obs.update(extra)
        return obs

    return method.run(dynamics, state0, lr, grid, observe, divergence, progress)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"solve: `{name}` must be a Python int, got {value!r}.")
    if value < 1:
        raise ValueError(f"solve: `{name}` must be >= 1, got {value}.")
    return int(value)


def _check_lr(lr: ArrayLike):
    if isinstance(lr, (str, bytes)) or isinstance(lr, bool):
        raise TypeError(f"solve: `lr` must be a real number, got {lr!r}.")
    if isinstance(lr, jax.core.Tracer):
        if lr.shape != () or not jnp.issubdtype(lr.dtype, jnp.floating):
            raise TypeError(f"solve: `lr` must be a real floating scalar, got {lr.dtype}{list(lr.shape)}.")
        return lr
    try:
        arr = np.asarray(lr)
    except Exception as err:  # noqa: BLE001 - anything that is not a number
        raise TypeError(f"solve: `lr` must be a real number, got {type(lr).__name__}.") from err
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"solve: `lr` must be a real number, got {lr!r} (dtype {arr.dtype}).")
    if arr.shape != ():
        raise ValueError(
            f"solve: `lr` must be a scalar, got shape {arr.shape}; use jax.vmap over solve for several learning rates."
        )
    if not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"solve: `lr` must be a finite positive number, got {arr}.")
    return jnp.asarray(lr, dtype=jnp.result_type(float))


def _check_state0(dynamics: AbstractDynamics, state0: PyTree, key: Any) -> None:
    try:
        want = jax.eval_shape(lambda: dynamics.init(key=key))
    except Exception:  # noqa: BLE001 - an init that needs a key we do not have: nothing to check against
        return
    got_struct, want_struct = jax.tree.structure(state0), jax.tree.structure(want)
    if got_struct != want_struct:
        raise ValueError(
            f"solve: `state0` has the structure {got_struct}, but {type(dynamics).__name__}.init() gives "
            f"{want_struct}; pass a state like dynamics.init()."
        )
    for i, (g, w) in enumerate(zip(jax.tree.leaves(state0), jax.tree.leaves(want))):
        shape = jnp.shape(g)
        if shape != w.shape:
            raise ValueError(
                f"solve: leaf {i} of `state0` has shape {shape}, {type(dynamics).__name__}.init() gives "
                f"{w.shape}; pass a state like dynamics.init()."
            )


def _throw(traj: Trajectory) -> Trajectory:
    if is_traced(traj):  # under jit/grad/vmap: a runtime error carrying the code's message
        return traj.result.error_if(traj, traj.result != RESULTS.successful)
    if np.ndim(traj.result._value) == 0:
        if not traj.succeeded:
            raise SolveError(traj.message())
    elif np.any(np.asarray(traj.result._value) != RESULTS.successful._value):
        raise SolveError(
            "solve did not succeed for some batch members (result codes "
            f"{np.asarray(traj.result._value).tolist()}); rerun with throw=False to inspect."
        )
    return traj
