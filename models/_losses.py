r"""Losses as objects, in the project's normalization.

A loss is an `AbstractLoss`: the per-sample loss $\ell(f, y)$ as a method; the
training loss $L = \frac1P \sum_\mu \ell(f_\mu, y_\mu)$ is `loss(f, y)`, and its
gradient in the outputs, $\nabla_f \ell$, comes from `jax.grad` of the same function —
so a loss is written once and every consumer (real training, the linearized flow, the
end-to-end flow) reads it from here. Strings are aliases resolved in one place
(`get_loss`).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

__all__ = ["LOSSES", "AbstractLoss", "CrossEntropy", "MSE", "cross_entropy", "get_loss", "mse"]


class AbstractLoss(eqx.Module):
    r"""A loss $L = \frac1P\sum_\mu \ell(f_\mu, y_\mu)$ over `(P, k)` outputs and targets."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def per_sample(self, f: Float[Array, " k"], y: Float[Array, " k"]) -> Scalar:
        r"""$\ell(f, y)$ for one sample."""

    def __call__(self, f: Float[Array, "P k"], y: Float[Array, "P k"]) -> Scalar:
        """The training loss: the mean of `per_sample` over the rows."""
        return jnp.mean(jax.vmap(self.per_sample)(f, y))

    def grad_f(self, f: Float[Array, "P k"], y: Float[Array, "P k"]) -> Float[Array, "P k"]:
        r"""$\nabla_f \ell(f_\mu, y_\mu)$ per sample (rows), by `jax.grad`."""
        return jax.vmap(jax.grad(self.per_sample))(f, y)

    def check_targets(self, y: Array, who: str) -> None:
        """Raise `ValueError` if the targets `(P, k)` cannot be used with this loss."""


class MSE(AbstractLoss):
    r"""$\ell(f, y) = \frac12\lVert f - y\rVert^2$, so $L = \frac{1}{2P}\sum_\mu \lVert f_\mu - y_\mu\rVert^2$
    and $\nabla_f\ell = f - y$."""

    name: ClassVar[str] = "mse"

    def per_sample(self, f, y):
        return 0.5 * jnp.sum((f - y) ** 2)


class CrossEntropy(AbstractLoss):
    r"""$\ell(f, y) = -\sum_c y_c \log\mathrm{softmax}(f)_c$ (one-hot or soft targets: rows
    of non-negative numbers summing to 1), the mean over samples. Needs at least two
    outputs: with one logit the softmax is constant and nothing trains."""

    name: ClassVar[str] = "cross_entropy"

    def per_sample(self, f, y):
        return -jnp.sum(y * jax.nn.log_softmax(f))

    def check_targets(self, y, who):
        if y.ndim != 2 or y.shape[1] < 2:
            raise ValueError(
                f"{who}: cross-entropy needs at least 2 outputs (one column per class); the targets have "
                f"shape {tuple(y.shape)}. With one output the softmax is constant and nothing trains: use "
                "one-hot targets with 2 columns, or loss='mse'."
            )
        if isinstance(y, jax.core.Tracer):
            return
        a = np.asarray(y)
        if a.size and (np.any(a < -1e-12) or not np.allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-6)):
            raise ValueError(
                f"{who}: cross-entropy targets must be probabilities (non-negative rows summing to 1, e.g. "
                "one-hot); these are real-valued. Use loss='mse' for regression targets."
            )


mse = MSE()
cross_entropy = CrossEntropy()

#: The one table of loss names and aliases.
_ALIASES: dict[str, AbstractLoss] = {
    "mse": mse,
    "squared": mse,
    "cross_entropy": cross_entropy,
    "ce": cross_entropy,
    "xent": cross_entropy,
}
LOSSES = tuple(sorted(_ALIASES))


def get_loss(loss: str | AbstractLoss) -> AbstractLoss:
    """Resolve a loss name (or alias) to its object; a loss object passes through."""
    if isinstance(loss, AbstractLoss):
        return loss
    if isinstance(loss, str) and loss in _ALIASES:
        return _ALIASES[loss]
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES} or pass an AbstractLoss.")
