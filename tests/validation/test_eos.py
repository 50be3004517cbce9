"""Edge-of-stability detection on synthetic sharpness series with known answers.

The onset of the edge must not be defined by the tolerance band: the series below have a
second catapult after the onset, larger than any band one would choose, and the deviation
after the onset must report it."""

import dataclasses

import numpy as np
import pytest

import lmech.validation as lv

LR = 0.5  # 2/η = 4
# crossing at t=3, overshoot peak 5.0 at t=4, back below 4 at t=6 (the catapult), at the edge
# again at t=9, then a second catapult of +40% / -30% at t=12, 13
CATAPULTS = np.array([1, 2, 3, 4.5, 5.0, 4.6, 3.2, 3.6, 3.9, 4.1, 3.95, 4.05, 5.6, 2.8, 4.0, 4.02])


def test_onset_is_where_the_sharpness_regains_the_edge_after_its_overshoot():
    t = np.arange(CATAPULTS.size, dtype=float)
    e = lv.edge_of_stability(t, CATAPULTS, LR)
    assert e.threshold == 4.0 and e.crossed and e.reached_edge
    assert (e.crossing_time, e.peak_time, e.return_time, e.onset_time) == (3.0, 4.0, 6.0, 9.0)
    assert e.overshoot == pytest.approx(0.25)
    dev = np.abs(CATAPULTS[9:] / 4 - 1)  # [0.025, 0.0125, 0.0125, 0.4, 0.3, 0, 0.005]
    assert e.max_deviation_after_onset == pytest.approx(0.4)
    assert e.median_deviation_after_onset == pytest.approx(np.median(dev))
    assert e.fraction_within_band_after_onset == pytest.approx(5 / 7)
    assert e.max_deviation_after_crossing == pytest.approx(0.4)


@pytest.mark.parametrize("band", [0.01, 0.1, 0.5])
def test_onset_and_deviations_do_not_depend_on_the_band(band):
    """A band-defined onset would move with the band and bound the deviation after it by the
    band; here the onset stays at t = 9 and the deviation after it is the second catapult's."""
    t = np.arange(CATAPULTS.size, dtype=float)
    e = lv.edge_of_stability(t, CATAPULTS, LR, band=band)
    ref = lv.edge_of_stability(t, CATAPULTS, LR)
    skip = {"band", "fraction_within_band_after_onset"}
    assert {k: v for k, v in dataclasses.asdict(e).items() if k not in skip} == {
        k: v for k, v in dataclasses.asdict(ref).items() if k not in skip
    }
    assert e.max_deviation_after_onset == pytest.approx(0.4)
    assert e.fraction_within_band_after_onset == pytest.approx(np.mean(np.abs(CATAPULTS[9:] / 4 - 1) <= band))


def test_series_that_never_cross_never_return_or_never_regain_the_edge():
    t = np.arange(6.0)
    never = lv.edge_of_stability(t, np.ones(6), LR)
    assert not never.crossed and never.onset_time is None and never.max_deviation_after_onset is None
    runaway = lv.edge_of_stability(t, [3, 4.5, 5, 6, 7, 8], LR)  # GD diverging: never comes back
    assert runaway.crossing_time == 1.0 and runaway.return_time is None and not runaway.reached_edge
    assert runaway.peak_time == 5.0 and runaway.overshoot == pytest.approx(1.0)
    below = lv.edge_of_stability(t, [3, 4.5, 3.5, 3.8, 3.9, 3.95], LR)  # settles below 2/η
    assert below.return_time == 2.0 and below.onset_time is None
    assert below.median_deviation_after_onset is None


def test_smoothing_removes_the_period_two_oscillation():
    """GD's sharpness at the edge alternates from step to step: on the raw series the
    deviation after the onset measures that alternation, on the 2-point average the edge."""
    base = np.array([2, 2.5, 3, 3.5, 4.4, 4.8, 4.9, 4.8, 4.6, 3.6, 3.8, 4.0, 4.1, 4.0, 4.05, 4.0, 4.02])
    s = base + 0.6 * (-1.0) ** np.arange(base.size)
    t = 0.5 * np.arange(base.size)
    raw = lv.edge_of_stability(t, s, LR)
    smoothed = lv.edge_of_stability(t, s, LR, smooth=2)
    explicit = lv.edge_of_stability(t[:-1], 0.5 * (s[:-1] + s[1:]), LR)
    for name, value in dataclasses.asdict(explicit).items():
        assert getattr(smoothed, name) == pytest.approx(value, abs=1e-14), name
    assert (smoothed.return_time, smoothed.onset_time) == (t[9], t[11])
    assert smoothed.max_deviation_after_onset == pytest.approx(0.0125)
    assert raw.median_deviation_after_onset == pytest.approx(0.15)


def test_bad_input_is_refused():
    t = np.arange(10.0)
    s = np.linspace(1, 5, 10)
    with pytest.raises(ValueError, match="lr"):
        lv.edge_of_stability(t, s, 0.0)
    with pytest.raises(ValueError, match="band"):
        lv.edge_of_stability(t, s, LR, band=0.0)
    with pytest.raises(ValueError, match="smooth"):
        lv.edge_of_stability(t, s, LR, smooth=0)
    with pytest.raises(ValueError, match="match"):
        lv.edge_of_stability(t[:5], s, LR)
    with pytest.raises(ValueError, match="NaN"):
        lv.edge_of_stability(t, np.full(10, np.nan), LR)


def test_moving_average_is_a_centered_window_mean():
    v = np.random.default_rng(0).normal(size=(50, 2))
    avg = lv.moving_average(v, 5)
    np.testing.assert_allclose(
        avg[2:-2], np.stack([np.convolve(v[:, i], np.ones(5) / 5, "valid") for i in range(2)], 1)
    )
    assert np.all(np.isnan(avg[:2])) and np.all(np.isnan(avg[-2:]))
    with pytest.raises(ValueError, match="window"):
        lv.moving_average(v, 0)
