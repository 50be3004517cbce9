"""Datasets, all offline: sklearn's bundled digits, a whitened linear teacher, and a
teacher-student MLP. Every generator takes a keyword `key` and returns a
`lmech.models.Dataset`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmech.models import MLP, Dataset

__all__ = ["digits", "linear_teacher", "teacher_student"]

_DIGIT_TARGETS = ("one_hot", "parity", "label")


def digits(
    n_train: int = 256,
    n_test: int = 256,
    *,
    key: Any,
    target: str = "parity",
    standardize: bool = True,
    classes: tuple[int, ...] | None = None,
) -> Dataset:
    """sklearn's bundled 8×8 digits (1797 images, 64 features), split at random.

    **Arguments:**

    - `n_train`, `n_test`: sizes (together at most the number of available images).
    - `key`: the split.
    - `target`: `"parity"` (scalar ±1: even/odd), `"label"` (scalar, the digit value
      standardized over the training split), or `"one_hot"` (10 columns, for
      cross-entropy or multi-output MSE).
    - `standardize`: center and scale every pixel with the training split's mean and
      std (constant pixels are left at 0), so that ‖x‖²/d ≈ 1.
    - `classes`: keep only these digits (e.g. `(0, 1)`).
    """
    from sklearn.datasets import load_digits

    if target not in _DIGIT_TARGETS:
        raise ValueError(f"digits: unknown target {target!r}; choose one of {_DIGIT_TARGETS}.")
    x, labels = load_digits(return_X_y=True)
    x = x.astype(np.float64)
    if classes is not None:
        keep = np.isin(labels, classes)
        x, labels = x[keep], labels[keep]
    _check_sizes("digits", n_train, n_test, len(x))
    perm = np.asarray(jax.random.permutation(key, len(x)))
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    if standardize:
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        x = (x - mu) / sd
    if target == "one_hot":
        y = np.eye(10)[labels]
    elif target == "parity":
        y = np.where(labels % 2 == 0, 1.0, -1.0)[:, None]
    else:
        y = labels.astype(np.float64)[:, None]
        y = (y - y[tr].mean()) / y[tr].std()
    dtype = jnp.zeros(()).dtype  # follow the current float mode
    return Dataset(
        jnp.asarray(x[tr], dtype),
        jnp.asarray(y[tr], dtype),
        jnp.asarray(x[te], dtype),
        jnp.asarray(y[te], dtype),
    )


def linear_teacher(
    singular_values,
    in_size: int,
    out_size: int,
    n_train: int,
    n_test: int = 0,
    *,
    key: Any,
    noise: float = 0.0,
) -> Dataset:
    r"""Whitened inputs and a linear teacher with chosen singular values.

    Training inputs satisfy $X^\top X / P = I$ exactly (needs `n_train >= in_size`);
    test inputs are standard Gaussian. Targets $y = M x$ (+ Gaussian `noise`) with
    $M = U\,\mathrm{diag}(s)\,V^\top$ for Haar-random orthonormal $U, V$, so
    $\Sigma_{yx} = M$ and its SVD has exactly the given singular values (noise-free).
    """
    s = np.asarray(singular_values, dtype=np.float64)
    m = min(in_size, out_size)
    if s.ndim != 1 or len(s) > m:
        raise ValueError(
            f"linear_teacher: `singular_values` must be 1-D with at most min(in, out) = {m} entries."
        )
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("linear_teacher: singular values must be finite and >= 0.")
    if n_train < in_size:
        raise ValueError(f"linear_teacher: whitening needs n_train >= in_size, got {n_train} < {in_size}.")
    if noise < 0:
        raise ValueError("linear_teacher: `noise` must be >= 0.")
    k_x, k_u, k_v, k_t, k_n = jax.random.split(key, 5)
    q, _ = np.linalg.qr(np.asarray(jax.random.normal(k_x, (n_train, in_size), jnp.result_type(float))))
    x = np.sqrt(n_train) * q
    U = _haar(k_u, out_size)[:, : len(s)]
    V = _haar(k_v, in_size)[:, : len(s)]
    M = (U * s) @ V.T
    x_test = np.asarray(jax.random.normal(k_t, (n_test, in_size), jnp.result_type(float)))
    y = x @ M.T
    y_test = x_test @ M.T
    if noise > 0:
        eps = np.asarray(jax.random.normal(k_n, (n_train + n_test, out_size), jnp.result_type(float)))
        y = y + noise * eps[:n_train]
        y_test = y_test + noise * eps[n_train:]
    dtype = jnp.zeros(()).dtype
    return Dataset(*(jnp.asarray(a, dtype) for a in (x, y, x_test, y_test)))


def teacher_student(
    teacher: MLP,
    n_train: int,
    n_test: int = 0,
    *,
    key: Any,
    noise: float = 0.0,
) -> Dataset:
    """Gaussian inputs $x \\sim \\mathcal N(0, I)$ labelled by a random `teacher` MLP
    (drawn with `teacher.init`), plus Gaussian label `noise`."""
    if not isinstance(teacher, MLP):
        raise TypeError("teacher_student: `teacher` must be an lmech MLP spec.")
    if n_train < 1 or n_test < 0:
        raise ValueError("teacher_student: need n_train >= 1 and n_test >= 0.")
    if noise < 0:
        raise ValueError("teacher_student: `noise` must be >= 0.")
    k_p, k_x, k_n = jax.random.split(key, 3)
    params = teacher.init(k_p)
    x = jax.random.normal(k_x, (n_train + n_test, teacher.in_size))
    y = teacher.apply(params, x) + noise * jax.random.normal(k_n, (n_train + n_test, teacher.out_size))
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def _haar(key, n: int) -> np.ndarray:
    q, r = np.linalg.qr(np.asarray(jax.random.normal(key, (n, n), jnp.result_type(float))))
    return q * np.sign(np.diag(r))


def _check_sizes(name: str, n_train: int, n_test: int, available: int) -> None:
    if n_train < 1 or n_test < 0:
        raise ValueError(f"{name}: need n_train >= 1 and n_test >= 0, got {n_train}, {n_test}.")
    if n_train + n_test > available:
        raise ValueError(
            f"{name}: n_train + n_test = {n_train + n_test} exceeds the {available} available samples."
        )
