"""Compare two trajectories on the flow-time axis."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from lmech.solvers import Trajectory


class Comparison(eqx.Module):
    r"""Relative errors of trajectory `a` against the reference `b`, per observable.

    For each observable $o$ present in both, at every common flow time $t$:
    $e_o(t) = \lVert o_a(t) - o_b(t)\rVert / \lVert o_b(t)\rVert$ (Frobenius norms over
    the observable's own axes; where $\lVert o_b(t)\rVert = 0$ the absolute error is
    used).

    **Fields:** `times`, `errors` (name → array over `times`), `a`, `b` (the aligned
    observables), `labels` (names of the two trajectories).
    """

    times: Float[Array, " n"]
    errors: dict[str, Array]
    a: dict[str, Array]
    b: dict[str, Array]
    labels: tuple[str, str] = eqx.field(static=True)

    @property
    def max_relative_error(self) -> dict[str, Array]:
        """max over time of each observable's relative error."""
        return {k: jnp.max(v) for k, v in self.errors.items()}

    @property
    def final_relative_error(self) -> dict[str, Array]:
        """The relative error at the last common time."""
        return {k: v[-1] for k, v in self.errors.items()}

    def summary(self) -> dict[str, dict[str, float]]:
        """`{name: {"max": ..., "final": ...}}` as plain floats (for reports)."""
        return {
            k: {"max": float(self.max_relative_error[k]), "final": float(self.final_relative_error[k])}
            for k in self.errors
        }


def compare(
    a: Trajectory,
    b: Trajectory,
    *,
    observables: tuple[str, ...] | None = None,
    labels: tuple[str, str] = ("theory", "real"),
) -> Comparison:
    """Align `a` onto the flow times of the reference `b` and compute relative errors.

    If both were saved at the same times they are compared point by point; otherwise
    `a` is linearly interpolated onto the times of `b` that lie inside `a`'s range
    (save `a` densely enough for that to be accurate). Observables whose shapes differ
    are skipped unless named in `observables`, which raises then.
    """
    if not isinstance(a, Trajectory) or not isinstance(b, Trajectory):
        raise TypeError("compare: both arguments must be Trajectory objects (from lmech.solvers.solve).")
    for name, tr in zip(labels, (a, b)):
        code = tr.result._value
        if np.ndim(code) == 0 and not isinstance(code, jax.core.Tracer) and not tr.succeeded:
            warnings.warn(f"compare: trajectory {name!r} did not succeed: {tr.message()}", stacklevel=2)
    names = observables
    if names is None:
        names = tuple(
            n
            for n in a.observable_names
            if n in b.observables and a.observables[n].shape[1:] == b.observables[n].shape[1:]
        )
    if not names:
        raise ValueError(
            f"compare: no common observables (a has {a.observable_names}, b has {b.observable_names})."
        )
    ta, tb = a.times, b.times
    same = ta.shape == tb.shape and bool(jnp.allclose(ta, tb, rtol=1e-12, atol=0))
    if same:
        times, oa = tb, {n: a.observables[n] for n in names}
        ob = {n: b.observables[n] for n in names}
    else:
        inside = (tb >= ta[0] - 1e-12 * jnp.abs(ta[0])) & (tb <= ta[-1] * (1 + 1e-12))
        if not bool(jnp.any(inside)):
            raise ValueError("compare: the two trajectories share no flow-time interval.")
        idx = np.nonzero(np.asarray(inside))[0]
        times = tb[idx]
        oa = {n: _interp(times, ta, a.observables[n]) for n in names}
        ob = {n: b.observables[n][idx] for n in names}
    errors = {}
    for n in names:
        if oa[n].shape != ob[n].shape:
            raise ValueError(f"compare: observable {n!r} has shapes {oa[n].shape} and {ob[n].shape}.")
        axes = tuple(range(1, ob[n].ndim))
        diff = jnp.sqrt(jnp.sum((oa[n] - ob[n]) ** 2, axis=axes))
        ref = jnp.sqrt(jnp.sum(ob[n] ** 2, axis=axes))
        errors[n] = jnp.where(ref > 0, diff / jnp.where(ref > 0, ref, 1.0), diff)
    return Comparison(times=times, errors=errors, a=oa, b=ob, labels=tuple(labels))


def _interp(t_new, t, values):
    flat = values.reshape(values.shape[0], -1)
    out = jax.vmap(lambda col: jnp.interp(t_new, t, col), in_axes=1, out_axes=1)(flat)
    return out.reshape((t_new.shape[0],) + values.shape[1:])
