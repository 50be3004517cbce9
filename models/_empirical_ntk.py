r"""Empirical NTK of any `(apply_fn, params)`:
$\Theta_{ab}(x, x') = \sum_\theta \partial_\theta f_a(x)\,\partial_\theta f_b(x')$ for the network
as parameterized (no 1/P).

`apply_fn(params, x)` maps a batch `(P, d)` to `(P, k)`. For an equinox model `m`
(one sample at a time), use `params, static = eqx.partition(m, eqx.is_inexact_array)`
and `apply_fn = lambda p, x: jax.vmap(eqx.combine(p, static))(x)`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from ._blocks import blockwise, check_block_size

_OUTPUTS = ("full", "trace", "diagonal")
_METHODS = ("jacobian", "ntvp")


def _jac_block(apply_fn, params, x1, x2):
    j1 = jax.jacrev(lambda p: apply_fn(p, x1))(params)
    j2 = j1 if x2 is None else jax.jacrev(lambda p: apply_fn(p, x2))(params)
    terms = [
        jnp.einsum("ak...,bl...->akbl", a.reshape(a.shape[:2] + (-1,)), b.reshape(b.shape[:2] + (-1,)))
        for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2))
    ]
    return sum(terms)


@eqx.filter_jit
def ntk_vector_product(
    apply_fn: Callable, params: PyTree, x1: Array, v: Array, x2: Array | None = None
) -> Array:
    r"""$\Theta(x_1, x_2)\,v$ without forming Θ: one vjp at `x2` ($J_2^\top v$) and one jvp
    at `x1`. `v` has the shape of `apply_fn(params, x2)`; `x2` defaults to `x1`. Compiled
    once per `apply_fn` and shapes (pass the same `apply_fn` object to reuse it)."""
    x2 = x1 if x2 is None else x2
    _, vjp = jax.vjp(lambda p: apply_fn(p, x2), params)
    (g,) = vjp(v)
    return jax.jvp(lambda p: apply_fn(p, x1), (params,), (g,))[1]


def _ntvp_block(apply_fn, params, x1, x2):
    x2_ = x1 if x2 is None else x2
    out = jax.eval_shape(lambda: apply_fn(params, x2_))
    n2, k = out.shape
    basis = jnp.eye(n2 * k, dtype=out.dtype).reshape(n2 * k, n2, k)
    cols = jax.lax.map(lambda e: ntk_vector_product(apply_fn, params, x1, e, x2_), basis, batch_size=64)
    return jnp.transpose(cols.reshape(n2, k, -1, k), (2, 3, 0, 1))  # (P1, k, P2, k)


def empirical_ntk(
    apply_fn: Callable,
    params: PyTree,
    x1: Array,
    x2: Array | None = None,
    *,
    method: str = "jacobian",
    output: str = "full",
    block_size: int | None = None,
) -> Array:
    """The empirical NTK between `x1` and `x2` (default `x1`).

    - `method="jacobian"`: contract per-block Jacobians; `"ntvp"`: NTK-vector products
      (a vjp and a jvp per column), for models with many parameters and few outputs.
    - `output="full"`: shape `(P1, k, P2, k)`; `"trace"`: `(P1, P2)`, the average of the
      k per-logit kernels Θ_cc (neural-tangents' `trace_axes` convention); `"diagonal"`:
      `(P1, P2, k)`, the per-logit kernels.
    - `block_size`: compute blocks of this many samples of `x1` and `x2` at a time
      (memory: one block's Jacobian).
    """
    if method not in _METHODS:
        raise ValueError(f"empirical_ntk: unknown method {method!r}; use one of {_METHODS}.")
    if output not in _OUTPUTS:
        raise ValueError(f"empirical_ntk: unknown output {output!r}; use one of {_OUTPUTS}.")
    x1 = jnp.asarray(x1)
    sym = x2 is None
    x2 = x1 if sym else jnp.asarray(x2)
    if x1.ndim < 2 or x2.ndim < 2 or x1.shape[1:] != x2.shape[1:]:
        raise ValueError(
            f"empirical_ntk: x1 {x1.shape} and x2 {x2.shape} must be batches with the same feature shape."
        )
    for name, x in (("x1", x1), ("x2", x2)):
        # numpy: a concrete array closed over inside a jit/lax.map is checked without a trace
        if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
            raise ValueError(f"empirical_ntk: `{name}` contains NaN or inf.")
    block_size = check_block_size(block_size, "empirical_ntk")
    # a block against itself (x2 omitted, diagonal blocks) takes one Jacobian, not two
    fn = lambda a, b: _kernel_block(apply_fn, params, a, None if b is a else b, method, output)  # noqa: E731
    return blockwise(fn, x1, x2, block_size, col_axis=2 if output == "full" else 1)


@eqx.filter_jit
def _kernel_block(apply_fn, params, x1, x2, method, output):
    block = _jac_block if method == "jacobian" else _ntvp_block
    return _reduce(block(apply_fn, params, x1, x2), output)


def _reduce(full, output):
    if output == "full":
        return full
    diag = jnp.einsum("akbk->abk", full)
    return diag if output == "diagonal" else jnp.mean(diag, axis=-1)
