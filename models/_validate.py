"""Argument checks shared by several models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_apply_on_data", "check_depth", "check_inputs"]


def check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"`depth` must be an int >= 1 (number of weight layers), got {depth!r}.")
    return int(depth)


def check_apply_on_data(apply_fn: Callable, params: Any, data: Any, who: str) -> None:
    """`apply_fn(params, data.x_train)` runs (abstractly) and has the targets' shape."""
    try:
        out = jax.eval_shape(apply_fn, params, data.x_train)
    except Exception as err:  # noqa: BLE001 - report any failure of the model on the data clearly
        raise ValueError(
            f"{who}: apply_fn(params, x_train) fails on these parameters and data: {err}"
        ) from err
    if out.shape != data.y_train.shape:
        raise ValueError(
            f"{who}: apply_fn(params, x_train) has shape {out.shape}, the targets have shape {data.y_train.shape}."
        )


def check_inputs(x: Any, in_size: int, who: str, name: str = "x", *, allow_vector: bool = False):
    """`x` as a floating `(P, in_size)` array (one `(in_size,)` vector too if `allow_vector`),
    finite where it is concrete."""
    x = jnp.asarray(x)
    if allow_vector and x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != in_size:
        shapes = f"(P, {in_size})" + (f" or ({in_size},)" if allow_vector else "")
        raise ValueError(f"{who}: `{name}` must have shape {shapes}, got {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
        raise ValueError(f"{who}: `{name}` contains NaN or inf.")
    return x
