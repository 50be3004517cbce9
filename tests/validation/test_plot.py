"""The plot functions draw what they are given: lines, fitted slopes, one flow-time label."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lmech.validation import plot


def test_one_flow_time_label_and_modes_over_time():
    t = np.linspace(0, 1, 20)
    u = np.stack([np.tanh(t), 0.5 * np.tanh(t), 0.1 * t], axis=1)
    fig = plot.modes_over_time({"real GD": (t, u), "theory": (t, u), "flow": (t, u)}, logx=False)
    ax = fig.axes[0]
    assert ax.get_xlabel() == plot.FLOW_TIME == "flow time t = η·k"
    assert len(ax.lines) == 9  # 3 series x 3 modes
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), u[:, 1])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["real GD", "theory", "flow"]
    fig2 = plot.curves_over_time({"err": (t, np.zeros_like(t))}, floor=1e-17)
    assert fig2.axes[0].get_xlabel() == plot.FLOW_TIME
    assert np.all(fig2.axes[0].lines[0].get_ydata() == 1e-17)  # zeros clipped on a log axis
    plt.close("all")


def test_loglog_fits_report_the_slopes_they_draw():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    fig, slopes = plot.loglog_fits({"a": (x, 3 * x**-1.5), "b": (x, x**2)})
    assert slopes["a"] == pytest.approx(-1.5, rel=1e-12) and slopes["b"] == pytest.approx(2.0, rel=1e-12)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["a (slope -1.50)", "b (slope 2.00)"]
    _, one = plot.loglog_fits({"single": ([2.0], [0.3])})
    assert np.isnan(one["single"])
    plt.close("all")


def test_parity_xy_per_index_and_panels():
    fig, axes = plot.panels(3)
    assert len(axes) == 3 and fig is axes[0].figure
    plot.parity({"run": ([1.0, 2.0, np.inf], [1.1, 2.1, 3.0])}, ax=axes[0])
    assert len(axes[0].lines[0].get_xdata()) == 2  # the non-finite point is left out
    plot.xy({"T(η)": ([1, 2, 3], [5.0, np.inf, 4.0])}, vlines={"bound": 2.5}, ax=axes[1], logx=True)
    assert len(axes[1].lines[0].get_xdata()) == 2 and axes[1].lines[1].get_xdata()[0] == 2.5
    plot.per_index({"err": [0.1, 0.01]}, threshold=0.05, ax=axes[2])
    np.testing.assert_array_equal(axes[2].lines[0].get_xdata(), [1, 2])
    plt.close("all")
