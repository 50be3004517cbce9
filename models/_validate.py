"""Argument checks shared by several models."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_depth"]


def check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"`depth` must be an int >= 1 (number of weight layers), got {depth!r}.")
    return int(depth)
