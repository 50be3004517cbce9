"""The data a dynamics trains on."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


class Dataset(eqx.Module):
    """Training and test data: inputs `(P, d)`, targets `(P, k)`.

    Targets are always 2-D (a scalar target has `k = 1`). For cross-entropy the targets
    are one-hot rows. The constructor checks shapes and finiteness and raises
    `ValueError` saying what to change.
    """

    x_train: Float[Array, "P d"]
    y_train: Float[Array, "P k"]
    x_test: Float[Array, "Q d"]
    y_test: Float[Array, "Q k"]

    def __init__(self, x_train, y_train, x_test=None, y_test=None):
        x_train = jnp.asarray(x_train)
        y_train = jnp.asarray(y_train)
        if (x_test is None) != (y_test is None):
            raise ValueError("Dataset: give both `x_test` and `y_test`, or neither.")
        if x_test is None:
            x_test = x_train[:0]
            y_test = y_train[:0] if y_train.ndim == 2 else y_train[:0, None]
        x_test = jnp.asarray(x_test)
        y_test = jnp.asarray(y_test)
        for name, a in (("y_train", y_train), ("y_test", y_test)):
            if a.ndim not in (1, 2):
                raise ValueError(
                    f"Dataset: `{name}` must be 1-D (one target per sample) or 2-D (samples, outputs), "
                    f"got shape {a.shape}; reshape it, e.g. y.reshape(len(y), -1)."
                )
        for name, a in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
            if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
                raise TypeError(f"Dataset: `{name}` must hold real numbers, got dtype {a.dtype}.")
        if y_train.ndim == 1:
            y_train = y_train[:, None]
        if y_test.ndim == 1:
            y_test = y_test[:, None]
        for name, a in (("x_train", x_train), ("x_test", x_test)):
            if a.ndim != 2:
                raise ValueError(f"Dataset: `{name}` must be 2-D (samples, features), got shape {a.shape}.")
        x_train, x_test = _as_float(x_train), _as_float(x_test)
        y_train, y_test = _as_float(y_train), _as_float(y_test)
        if x_train.shape[0] == 0:
            raise ValueError("Dataset: `x_train` has no samples.")
        if x_train.shape[0] != y_train.shape[0]:
            raise ValueError(
                f"Dataset: `x_train` has {x_train.shape[0]} samples but `y_train` has "
                f"{y_train.shape[0]}; they must match."
            )
        if x_test.shape[0] != y_test.shape[0]:
            raise ValueError(
                f"Dataset: `x_test` has {x_test.shape[0]} samples but `y_test` has "
                f"{y_test.shape[0]}; they must match."
            )
        if x_test.shape[1] != x_train.shape[1]:
            raise ValueError(
                f"Dataset: `x_test` has {x_test.shape[1]} features but `x_train` has "
                f"{x_train.shape[1]}; they must match."
            )
        if y_test.shape[1] != y_train.shape[1]:
            raise ValueError(
                f"Dataset: `y_test` has {y_test.shape[1]} outputs but `y_train` has "
                f"{y_train.shape[1]}; they must match."
            )
        for name, a in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
            if isinstance(a, jax.core.Tracer):
                continue
            if not bool(np.all(np.isfinite(np.asarray(a)))):
                raise ValueError(f"Dataset: `{name}` contains NaN or inf; clean the data first.")
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def in_size(self) -> int:
        return self.x_train.shape[1]

    @property
    def out_size(self) -> int:
        return self.y_train.shape[1]

    def input_covariance(self) -> Float[Array, "d d"]:
        r"""$\Sigma_{xx} = X^\top X / P$."""
        return self.x_train.T @ self.x_train / self.n_train

    def input_output_covariance(self) -> Float[Array, "k d"]:
        r"""$\Sigma_{yx} = Y^\top X / P$."""
        return self.y_train.T @ self.x_train / self.n_train


def _as_float(a: Array) -> Array:
    """Integer data (labels, pixel counts) become the default float dtype."""
    return a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(jnp.result_type(float))
