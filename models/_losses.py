"""Losses, in the project's normalization."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

LOSSES = ("mse", "cross_entropy")


def mse(f: Float[Array, "P k"], y: Float[Array, "P k"]) -> Scalar:
    r"""$L = \frac{1}{2P}\sum_\mu \lVert f_\mu - y_\mu\rVert^2$."""
    return 0.5 * jnp.sum((f - y) ** 2) / f.shape[0]


def cross_entropy(f: Float[Array, "P k"], y: Float[Array, "P k"]) -> Scalar:
    r"""$L = -\frac{1}{P}\sum_\mu \sum_c y_{\mu c}\log\mathrm{softmax}(f_\mu)_c$ (one-hot or
    soft targets)."""
    return -jnp.sum(y * jax.nn.log_softmax(f, axis=-1)) / f.shape[0]


def get_loss(name: str):
    if name == "mse":
        return mse
    if name in ("cross_entropy", "ce", "xent"):
        return cross_entropy
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}.")
