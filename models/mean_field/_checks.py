"""Input checks shared by the mean-field dynamics."""

from __future__ import annotations

import jax
import numpy as np


def check_gamma0(gamma0, who: str) -> None:
    """A concrete `gamma0` must be a finite scalar >= 0 (a traced one is left to the caller)."""
    if not isinstance(gamma0, jax.core.Tracer):
        g = np.asarray(gamma0, float)
        if g.shape != () or not np.isfinite(g) or g < 0:
            raise ValueError(f"{who}: `gamma0` must be a finite number >= 0, got {gamma0!r}.")
