r"""The learning rate that minimizes a learning time, measured on a grid not tied to any bound.

`minimize_over_log_lr` evaluates a (vectorized) learning time $T(\eta)$ on a fixed absolute
log-spaced grid and then refines the *edges* of the set of minimizers: each round lays
$k = \lfloor (n-1)/2 \rfloor$ log-spaced points inside the bracket left of the leftmost minimizer
and $k$ inside the bracket right of the rightmost one (among all points evaluated so far), so
each bracket shrinks by $k+1$ per round. $T$ counts GD steps and is piecewise constant: the
result is the interval of learning rates that attain the minimum (`interval`, each end known to
`resolution`) and its geometric middle (`best`); a smooth minimum gives a one-point interval.
Nothing here knows where the stability bound is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LogLrSearch", "minimize_over_log_lr", "steps_until_settled"]


@dataclass(frozen=True)
class LogLrSearch:
    r"""Outcome of `minimize_over_log_lr`.

    - `best`: geometric middle of `interval` (`nan` if `T` was infinite everywhere).
    - `value`: the minimal learning time found (`inf` if never learned).
    - `interval`: smallest and largest evaluated learning rates with `T = value`.
    - `resolution`: how well the ends of `interval` are located: the relative width
      $\eta_{\rm out}/\eta_{\rm in} - 1$ of the wider of the two edge brackets.
    - `at_range_edge`: the minimum touches an end of the searched range (widen it).
    - `lrs`, `values`: every evaluation, sorted by learning rate.
    """

    best: float
    value: float
    interval: tuple[float, float]
    resolution: float
    at_range_edge: bool
    lrs: np.ndarray
    values: np.ndarray


def minimize_over_log_lr(
    learning_time: Callable[[np.ndarray], np.ndarray],
    lr_min: float,
    lr_max: float,
    *,
    n_grid: int,
    n_zoom: int,
    rounds: int,
) -> LogLrSearch:
    r"""Minimize `learning_time` (maps a 1-D array of learning rates to their learning times;
    `inf` = not learned) over $[\eta_{\min}, \eta_{\max}]$: a log grid of `n_grid` points, then
    `rounds` refinements of `n_zoom - 1` points (half at each edge of the set of minimizers)."""
    if not (0 < lr_min < lr_max and np.isfinite(lr_max)):
        raise ValueError(f"minimize_over_log_lr: need 0 < lr_min < lr_max, got {lr_min}, {lr_max}.")
    if n_grid < 3 or n_zoom < 3 or rounds < 0:
        raise ValueError(
            f"minimize_over_log_lr: need n_grid >= 3, n_zoom >= 3 and rounds >= 0, got {n_grid}, {n_zoom}, {rounds}."
        )
    lrs = np.geomspace(lr_min, lr_max, n_grid)
    values = np.asarray(learning_time(lrs), dtype=float)
    k = (n_zoom - 1) // 2
    for _ in range(rounds):
        if not np.isfinite(values.min()):
            break
        new = [np.geomspace(a, b, k + 2)[1:-1] for a, b in _edge_brackets(lrs, values)]
        if not new:
            break
        new = np.concatenate(new)
        lrs = np.concatenate([lrs, new])
        values = np.concatenate([values, np.asarray(learning_time(new), dtype=float)])
        order = np.argsort(lrs, kind="stable")
        lrs, values = lrs[order], values[order]
    best_t = float(values.min())
    if not np.isfinite(best_t):
        nan = float("nan")
        return LogLrSearch(nan, float("inf"), (nan, nan), nan, False, lrs, values)
    idx = np.nonzero(values == best_t)[0]
    brackets = _edge_brackets(lrs, values)
    return LogLrSearch(
        best=float(np.sqrt(lrs[idx[0]] * lrs[idx[-1]])),
        value=best_t,
        interval=(float(lrs[idx[0]]), float(lrs[idx[-1]])),
        resolution=max((b / a - 1 for a, b in brackets), default=0.0),
        at_range_edge=bool(idx[0] == 0 or idx[-1] == len(lrs) - 1),
        lrs=lrs,
        values=values,
    )


def _edge_brackets(lrs: np.ndarray, values: np.ndarray) -> list[tuple[float, float]]:
    """(outside, inside) neighbours at the left and right edges of the set of minimizers."""
    idx = np.nonzero(values == values.min())[0]
    out = []
    if idx[0] > 0:
        out.append((float(lrs[idx[0] - 1]), float(lrs[idx[0]])))
    if idx[-1] < len(lrs) - 1:
        out.append((float(lrs[idx[-1]]), float(lrs[idx[-1] + 1])))
    return out


def steps_until_settled(values, target, tol, xp=np):
    """First saved index from which every column of `values` (time × modes) stays within
    `tol·|target|` of `target` until the end; `inf` if it never settles. `xp`: `numpy` or
    `jax.numpy` (for use under `vmap`)."""
    ok = xp.all(xp.abs(values - target) <= tol * xp.abs(target), axis=-1)
    settled = xp.flip(xp.cumprod(xp.flip(ok, axis=-1), axis=-1), axis=-1).astype(bool)
    return xp.where(xp.any(settled, axis=-1), xp.argmax(settled, axis=-1), xp.inf)
