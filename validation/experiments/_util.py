"""Helpers shared by experiments."""

from __future__ import annotations

import numpy as np


def first_crossing(times: np.ndarray, values: np.ndarray, level: np.ndarray) -> np.ndarray:
    """First time each column of `values` (time × modes) reaches `level` (per column),
    by linear interpolation between saved points; `inf` where it never does."""
    times = np.asarray(times)
    values = np.asarray(values)
    out = np.full(values.shape[1], np.inf)
    for i in range(values.shape[1]):
        above = np.nonzero(values[:, i] >= level[i])[0]
        if above.size == 0:
            continue
        j = above[0]
        if j == 0:
            out[i] = times[0]
            continue
        v0, v1 = values[j - 1, i], values[j, i]
        out[i] = times[j - 1] + (level[i] - v0) / (v1 - v0) * (times[j] - times[j - 1])
    return out


def loglog_slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"
