"""Small pytree helpers shared by the methods."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, PyTree


def tree_all_finite(tree: PyTree) -> Bool[Array, ""]:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def tree_max_abs(tree: PyTree) -> Array:
    leaves = [jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree) if jnp.size(x) > 0]
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.zeros(())


def tree_where(pred: Bool[Array, ""], a: PyTree, b: PyTree) -> PyTree:
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def observable_scales(obs: dict[str, Array], names: tuple[str, ...]) -> Array:
    """max |o| per observable, in the order of `names`."""
    return jnp.stack([jnp.max(jnp.abs(obs[n])) if jnp.size(obs[n]) else jnp.zeros(()) for n in names])


def first_exceeding(
    obs: dict[str, Array], names: tuple[str, ...], bound: Array
) -> tuple[Bool[Array, ""], Array]:
    """Whether any observable exceeds its bound (or is non-finite), and the first such."""
    scales = observable_scales(obs, names)
    bad = ~(scales <= bound) | ~jnp.isfinite(scales)  # NaN and inf count as bad
    return jnp.any(bad), jnp.argmax(bad)
