"""Input checks shared by the mean-field dynamics."""

from __future__ import annotations

import jax
import numpy as np

from .._data import Dataset


def check_gamma0(gamma0, who: str) -> None:
    """A concrete `gamma0` must be a finite scalar >= 0 (a traced one is left to the caller)."""
    if not isinstance(gamma0, jax.core.Tracer):
        g = np.asarray(gamma0, float)
        if g.shape != () or not np.isfinite(g) or g < 0:
            raise ValueError(f"{who}: `gamma0` must be a finite number >= 0, got {gamma0!r}.")


def whitened_linear_target(data, who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Check that `data` is a one-output `Dataset` with whitened training inputs
    ($X^\top X/P = I$) and return $X$, $\beta = \sqrt D X^\top y/P$ (the learnable part
    $y = X\beta/\sqrt D$) and the residual target $y - X\beta/\sqrt D$."""
    if not isinstance(data, Dataset):
        raise TypeError(f"{who}: `data` must be an lmech Dataset, got {type(data).__name__}.")
    tol = max(1e-8, 100 * float(np.finfo(np.asarray(data.x_train).dtype).eps))  # float32 data: 1e-5
    x, y = np.asarray(data.x_train, float), np.asarray(data.y_train, float)
    if y.shape[1] != 1:
        raise ValueError(f"{who}: one output only, got targets of shape {y.shape}.")
    P, D = x.shape
    gram = x.T @ x / P
    if P < D or not np.allclose(gram, np.eye(D), atol=tol):
        raise ValueError(
            f"{who}: the training inputs must be whitened (X^T X / P = I, needs P >= D); "
            f"max |X^T X/P - I| = {np.max(np.abs(gram - np.eye(D))):.2g}. Use "
            "lmech.models.whiten(x_train) (the same span with X^T X / P = I)."
        )
    beta = np.sqrt(D) * x.T @ y[:, 0] / P
    return x, beta, y[:, 0] - x @ beta / np.sqrt(D)
