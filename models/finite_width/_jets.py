"""Taylor coefficients of a function of one scalar by nested forward-mode derivatives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["jet"]


def jet(fn: Callable[[Any], Any], order: int, dtype) -> list:
    """$[g(0), g'(0), \\dots, g^{(\\text{order})}(0)]$ of `fn` (a function of a scalar of
    `dtype`), by `order` nested `jax.jvp`s: no Jacobian or Hessian is formed."""

    def deeper(f):
        def nxt(s):
            primal, tangent = jax.jvp(f, (s,), (jnp.ones_like(s),))
            return (*primal, tangent[-1])

        return nxt

    f = lambda s: (fn(s),)  # noqa: E731
    for _ in range(order):
        f = deeper(f)
    return list(f(jnp.zeros((), dtype)))
