"""The blocked pairwise loop shared by the analytic and the empirical kernels."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree


def check_block_size(block_size, who: str) -> int | None:
    """`None`, or a positive int (numpy ints accepted); anything else is a `ValueError`."""
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(
            f"{who}: `block_size` must be a positive int (samples of x1 and of x2 per block) or None "
            f"for one block, got {block_size!r}."
        )
    return int(block_size)


def blockwise(
    fn: Callable[[Array, Array], PyTree],
    x1: Array,
    x2: Array,
    block_size: int | None,
    *,
    col_axis: int = 1,
) -> PyTree:
    """`fn(x1, x2)` computed on blocks of `block_size` rows of `x1` and of `x2` and
    reassembled: every leaf of `fn`'s output has the rows of `x1` on axis 0 and those of
    `x2` on `col_axis`. Memory is that of one block. A side longer than one block is
    padded (by repeating its first row) to whole blocks, so `fn` sees a single shape and
    compiles once; the padding is cut from the result. When `x2` is `x1`, the diagonal
    blocks are called with the same object twice (`fn` may test `b is a`).
    Runs under `jax.jit` too (the loop unrolls over the static block grid)."""
    if block_size is None or (x1.shape[0] <= block_size and x2.shape[0] <= block_size):
        return fn(x1, x2)
    n1, n2 = x1.shape[0], x2.shape[0]
    same = x2 is x1
    x1 = _pad_to_blocks(x1, block_size)
    x2 = x1 if same else _pad_to_blocks(x2, block_size)
    rows = []
    for i in range(0, n1, block_size):
        a = x1[i : i + block_size]
        cols = [fn(a, a if (same and j == i) else x2[j : j + block_size]) for j in range(0, n2, block_size)]
        rows.append(jax.tree.map(lambda *c: jnp.concatenate(c, axis=col_axis), *cols))
    out = jax.tree.map(lambda *r: jnp.concatenate(r, axis=0), *rows)
    return jax.tree.map(lambda leaf: jax.lax.slice_in_dim(leaf[:n1], 0, n2, axis=col_axis), out)


def _pad_to_blocks(x: Array, block_size: int) -> Array:
    n = x.shape[0]
    if n <= block_size or n % block_size == 0:
        return x
    extra = block_size - n % block_size
    return jnp.concatenate([x, jnp.broadcast_to(x[:1], (extra, *x.shape[1:]))])
