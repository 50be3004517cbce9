r"""Edge-of-stability analysis of trajectories: when the sharpness crosses $2/\eta$, when its
first overshoot ends, when gradient descent is back at the edge, how far it strays from it
afterwards, and time averages of oscillating observables.

The onset of the edge is located from the *shape* of the sharpness series, never from a
tolerance band around $2/\eta$: a band-defined onset ("from here on it stays within 10%")
would bound the deviation measured after it by the band itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EdgeOfStability", "edge_of_stability", "moving_average"]


@dataclass(frozen=True)
class EdgeOfStability:
    r"""Where a sharpness series $S(t)$ meets the stability threshold $2/\eta$.

    With $d(t) = |S(t)\,\eta/2 - 1|$, the relative deviation from the threshold:

    - `threshold`: $2/\eta$.
    - `crossing_time`: the first time with $S > 2/\eta$ (None if never).
    - `peak_time`, `overshoot`: where and by how much ($\max S\eta/2 - 1$) $S$ peaks between
      the crossing and its first return to $2/\eta$ (to the end if it never returns).
    - `return_time`: the first time after the crossing with $S \le 2/\eta$ — the end of the
      overshoot (the catapult), None if $S$ never comes back.
    - `onset_time`: the first time after `return_time` with $S \ge 2/\eta$ — gradient
      descent is back at the edge after the overshoot (None if it never is). It is defined by
      the crossings of $2/\eta$ alone; `band` plays no part in it.
    - `max_deviation_after_crossing`: $\max d$ from the crossing on.
    - `max_deviation_after_onset`, `median_deviation_after_onset`: $\max d$ and the median of
      $d$ from the onset on (a second catapult after the onset shows here, however large).
    - `fraction_within_band_after_onset`: the fraction of points from the onset on with
      $d \le$ `band` (the band is used for this statistic only).
    """

    threshold: float
    band: float
    crossing_time: float | None
    peak_time: float | None
    overshoot: float | None
    return_time: float | None
    onset_time: float | None
    max_deviation_after_crossing: float | None
    max_deviation_after_onset: float | None
    median_deviation_after_onset: float | None
    fraction_within_band_after_onset: float | None

    @property
    def crossed(self) -> bool:
        return self.crossing_time is not None

    @property
    def reached_edge(self) -> bool:
        """Whether the sharpness came back to $2/\\eta$ after its first overshoot."""
        return self.onset_time is not None


def edge_of_stability(times, sharpness, lr: float, *, band: float = 0.1, smooth: int = 1) -> EdgeOfStability:
    r"""Locate the crossing of $2/\eta$ by `sharpness` (sampled at flow `times`), the end of
    its first overshoot, and the onset of the edge of stability after it (see
    `EdgeOfStability`).

    **Arguments:**

    - `times`, `sharpness`: 1-D series of the same length (finite).
    - `lr`: the learning rate $\eta > 0$.
    - `band`: the relative band for `fraction_within_band_after_onset` (positive).
    - `smooth`: average the sharpness over this many consecutive points first (a centered
      `moving_average`; the points where the window does not fit are dropped). At the edge
      gradient descent oscillates with period 2 and so does $S$ at its iterates: on a
      series saved at every step, `smooth=2` measures the edge of the averaged iterate
      instead of the alternating phases. Default 1 (no smoothing); the deviations are of
      the smoothed series.

    Raises `ValueError` for a non-positive `lr` or `band`, a bad `smooth`, mismatched or
    non-1-D series, or non-finite data.
    """
    t = np.asarray(times, float)
    s = np.asarray(sharpness, float)
    if not lr > 0:
        raise ValueError(f"edge_of_stability: `lr` must be positive, got {lr}.")
    if not band > 0:
        raise ValueError(f"edge_of_stability: `band` must be positive, got {band}.")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"edge_of_stability: `smooth` must be a positive int, got {smooth!r}.")
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(
            f"edge_of_stability: `times` {t.shape} and `sharpness` {s.shape} must be 1-D and match."
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(s))):
        raise ValueError("edge_of_stability: the sharpness series has NaN/inf (a failed solve?).")
    if smooth > 1:
        avg = moving_average(s, smooth)
        keep = np.isfinite(avg)
        t, s = t[keep], avg[keep]
    thr = 2.0 / lr
    dev = np.abs(s / thr - 1.0)
    none = EdgeOfStability(thr, band, None, None, None, None, None, None, None, None, None)
    above = np.nonzero(s > thr)[0]
    if above.size == 0:
        return none
    c = int(above[0])
    back = np.nonzero(s[c:] <= thr)[0]
    r = c + int(back[0]) if back.size else None
    p = c + int(np.argmax(s[c:r]))
    again = np.nonzero(s[r:] >= thr)[0] if r is not None else np.array([], int)
    on = r + int(again[0]) if again.size else None
    after = dev[on:] if on is not None else None
    return EdgeOfStability(
        threshold=thr,
        band=band,
        crossing_time=float(t[c]),
        peak_time=float(t[p]),
        overshoot=float(s[p] / thr - 1.0),
        return_time=float(t[r]) if r is not None else None,
        onset_time=float(t[on]) if on is not None else None,
        max_deviation_after_crossing=float(dev[c:].max()),
        max_deviation_after_onset=float(after.max()) if after is not None else None,
        median_deviation_after_onset=float(np.median(after)) if after is not None else None,
        fraction_within_band_after_onset=float(np.mean(after <= band)) if after is not None else None,
    )


def moving_average(values, window: int) -> np.ndarray:
    """Centered moving average over `window` consecutive points along the first axis
    (the GD loss at the edge of stability oscillates from step to step; this is its
    time average). Points within half a window of either end, where the window does
    not fit, are NaN."""
    v = np.asarray(values, float)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"moving_average: `window` must be a positive int, got {window!r}.")
    if window > v.shape[0]:
        raise ValueError(f"moving_average: `window` ({window}) is longer than the series ({v.shape[0]}).")
    c = np.cumsum(np.concatenate([np.zeros((1,) + v.shape[1:]), v]), axis=0)
    avg = (c[window:] - c[:-window]) / window
    out = np.full(v.shape, np.nan)
    lo = (window - 1) // 2
    out[lo : lo + avg.shape[0]] = avg
    return out
