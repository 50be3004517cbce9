r"""Edge-of-stability analysis of trajectories: when the sharpness crosses $2/\eta$, when
gradient descent settles there, and time averages of oscillating observables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EdgeOfStability", "edge_of_stability", "moving_average"]


@dataclass(frozen=True)
class EdgeOfStability:
    """Where a sharpness series meets the stability threshold $2/\\eta$.

    - `threshold`: $2/\\eta$.
    - `crossing_time`: the first flow time with $S > 2/\\eta$ (None if never).
    - `onset_time`: the first flow time from which $S$ stays within `band` of $2/\\eta$
      to the end (None if it never settles) — GD is "at the edge of stability" from here.
    - `max_deviation_after_crossing`: $\\max |S\\eta/2 - 1|$ from the crossing on.
    - `max_deviation_after_onset`: the same from the onset on.
    - `fraction_within_band`: the fraction of saved points after the crossing with
      $|S\\eta/2 - 1| \\le$ `band`.
    """

    threshold: float
    band: float
    crossing_time: float | None
    onset_time: float | None
    max_deviation_after_crossing: float | None
    max_deviation_after_onset: float | None
    fraction_within_band: float | None

    @property
    def crossed(self) -> bool:
        return self.crossing_time is not None


def edge_of_stability(times, sharpness, lr: float, *, band: float = 0.1) -> EdgeOfStability:
    """Detect the crossing $S > 2/\\eta$ and the settling of `sharpness` (sampled at
    flow `times`) at $2/\\eta$ within a relative `band`.

    Raises `ValueError` for a non-positive `lr`, mismatched lengths or non-finite data.
    """
    t = np.asarray(times, float)
    s = np.asarray(sharpness, float)
    if not lr > 0:
        raise ValueError(f"edge_of_stability: `lr` must be positive, got {lr}.")
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(
            f"edge_of_stability: `times` {t.shape} and `sharpness` {s.shape} must be 1-D and match."
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(s))):
        raise ValueError("edge_of_stability: the sharpness series has NaN/inf (a failed solve?).")
    thr = 2.0 / lr
    dev = np.abs(s / thr - 1.0)
    above = np.nonzero(s > thr)[0]
    if above.size == 0:
        return EdgeOfStability(thr, band, None, None, None, None, None)
    c = int(above[0])
    outside = np.nonzero(dev[c:] > band)[0]
    on = c if outside.size == 0 else c + int(outside[-1]) + 1
    onset = float(t[on]) if on < t.size else None
    return EdgeOfStability(
        threshold=thr,
        band=band,
        crossing_time=float(t[c]),
        onset_time=onset,
        max_deviation_after_crossing=float(dev[c:].max()),
        max_deviation_after_onset=float(dev[on:].max()) if onset is not None else None,
        fraction_within_band=float(np.mean(dev[c:] <= band)),
    )


def moving_average(values, window: int) -> np.ndarray:
    """Centered moving average over `window` consecutive points along the first axis
    (the GD loss at the edge of stability oscillates from step to step; this is its
    time average). Points within half a window of either end, where the window does
    not fit, are NaN."""
    v = np.asarray(values, float)
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"moving_average: `window` must be a positive int, got {window!r}.")
    if window > v.shape[0]:
        raise ValueError(f"moving_average: `window` ({window}) is longer than the series ({v.shape[0]}).")
    c = np.cumsum(np.concatenate([np.zeros((1,) + v.shape[1:]), v]), axis=0)
    avg = (c[window:] - c[:-window]) / window
    out = np.full(v.shape, np.nan)
    lo = (window - 1) // 2
    out[lo : lo + avg.shape[0]] = avg
    return out
