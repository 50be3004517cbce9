"""Plots of trajectories and comparisons (matplotlib). Theory is dashed, real solid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from lmech.solvers import Trajectory

from ._compare import Comparison

__all__ = [
    "FLOW_TIME",
    "panels",
    "observable",
    "errors",
    "trajectories",
    "loglog_fit",
    "loglog_fits",
    "modes_over_time",
    "curves_over_time",
    "per_index",
    "parity",
    "xy",
    "aspect_ratio",
]

FLOW_TIME = "flow time t = η·k"
"""The one label of every flow-time axis: GD step k at learning rate η sits at t = η·k."""


def _components(values: np.ndarray, max_lines: int) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1)
    return flat[:, :max_lines]


def observable(cmp: Comparison, name: str, *, ax=None, max_lines: int = 8, logy: bool = False):
    """One observable over flow time: `cmp.b` (real) solid, `cmp.a` (theory) dashed;
    for array observables the first `max_lines` components."""
    fig, ax = _fig_ax(ax)
    t = np.asarray(cmp.times)
    a = _components(np.asarray(cmp.a[name]), max_lines)
    b = _components(np.asarray(cmp.b[name]), max_lines)
    colors = plt.cm.viridis(np.linspace(0, 0.9, a.shape[1]))
    for i in range(a.shape[1]):
        ax.plot(t, b[:, i], "-", color=colors[i], lw=2, alpha=0.6, label=cmp.labels[1] if i == 0 else None)
        ax.plot(
            t,
            a[:, i],
            "--",
            color="k" if a.shape[1] == 1 else colors[i],
            lw=1,
            label=cmp.labels[0] if i == 0 else None,
        )
    ax.set_xlabel(FLOW_TIME)
    ax.set_ylabel(name)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return fig


def errors(cmp: Comparison, names: Sequence[str] | None = None, *, ax=None):
    """Relative error of each observable over flow time (log scale)."""
    fig, ax = _fig_ax(ax)
    t = np.asarray(cmp.times)
    for n in names or cmp.errors:
        e = np.asarray(cmp.errors[n])
        ax.semilogy(t, np.maximum(e, 1e-17), label=n)
    ax.set_xlabel(FLOW_TIME)
    ax.set_ylabel(f"relative error ({cmp.labels[0]} vs {cmp.labels[1]})")
    ax.legend()
    return fig


def trajectories(trajs: dict[str, Trajectory], name: str, *, ax=None, styles: dict[str, str] | None = None):
    """The same observable from several trajectories on one flow-time axis."""
    fig, ax = _fig_ax(ax)
    for label, tr in trajs.items():
        v = _components(np.asarray(tr.observables[name]), 8)
        style = (styles or {}).get(label, "-")
        lines = ax.plot(np.asarray(tr.times), v, style)
        lines[0].set_label(label)
    ax.set_xlabel(FLOW_TIME)
    ax.set_ylabel(name)
    ax.legend()
    return fig


def loglog_fit(x, y, *, ax=None, label: str = "", xlabel: str = "", ylabel: str = ""):
    """Scatter `y` against `x` on log–log axes with the least-squares line; returns
    `(figure, slope)`."""
    fig, ax = _fig_ax(ax)
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, icpt = _fit_slope(x, y)
    ax.loglog(x, y, "o", label=label)
    xs = np.geomspace(x.min(), x.max(), 50)
    ax.loglog(xs, np.exp(icpt) * xs**slope, "--", color="gray", label=f"slope {slope:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig, float(slope)


def panels(n: int, *, width: float = 4.6, height: float = 3.8):
    """A figure with `n` side-by-side panels; returns `(figure, list of axes)`."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


_SERIES_STYLES = (
    {"ls": "-", "lw": 3, "alpha": 0.4},
    {"ls": "--", "lw": 1.2},
    {"ls": ":", "lw": 1, "color": "k"},
    {"ls": "-.", "lw": 1},
)


def modes_over_time(
    series: dict[str, tuple],
    *,
    ax=None,
    styles: dict[str, dict] | None = None,
    logx: bool = False,
    ylabel: str = "mode strength u_i",
    title: str | None = None,
):
    """Per-mode curves of several trajectories on one flow-time axis: one colour per mode, one
    line style per trajectory (real first: solid, thick, translucent; theories dashed/dotted).

    `series`: label → `(times, values)` with `values` of shape `(time, mode)`."""
    fig, ax = _fig_ax(ax)
    n_modes = max(np.asarray(v).reshape(len(v), -1).shape[1] for _, v in series.values())
    colors = plt.cm.viridis(np.linspace(0, 0.85, n_modes))
    for j, (label, (t, v)) in enumerate(series.items()):
        v = np.asarray(v).reshape(len(v), -1)
        style = dict((styles or {}).get(label, _SERIES_STYLES[j % len(_SERIES_STYLES)]))
        fixed_color = style.pop("color", None)
        for i in range(v.shape[1]):
            ax.plot(
                np.asarray(t),
                v[:, i],
                color=fixed_color or colors[i],
                label=label if i == 0 else None,
                **style,
            )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(FLOW_TIME)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def curves_over_time(
    series: dict[str, tuple],
    *,
    ax=None,
    ylabel: str = "",
    logy: bool = True,
    floor: float = 1e-17,
    styles: dict[str, str] | None = None,
    title: str | None = None,
):
    """Scalar curves (e.g. relative errors) of several runs over flow time; on a log axis
    values are clipped below at `floor` (an exact zero would vanish from the plot).

    `series`: label → `(times, values)`."""
    fig, ax = _fig_ax(ax)
    for label, (t, v) in series.items():
        v = np.asarray(v, float)
        ax.plot(
            np.asarray(t), np.maximum(v, floor) if logy else v, (styles or {}).get(label, "-"), label=label
        )
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(FLOW_TIME)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=6)
    return fig


def _fit_slope(x, y) -> tuple[float, float]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(icpt)


def loglog_fits(
    ys: dict[str, tuple],
    *,
    ax=None,
    xlabel: str = "",
    ylabel: str = "",
    styles: dict[str, str] | None = None,
):
    """Several `y(x)` on log–log axes, each with its least-squares power law (slope in the
    legend). `ys`: label → `(x, y)`. Returns `(figure, {label: slope})`; a series with fewer
    than two distinct x is drawn without a fit (slope `nan`)."""
    fig, ax = _fig_ax(ax)
    slopes = {}
    for j, (label, (x, y)) in enumerate(ys.items()):
        x, y = np.asarray(x, float), np.asarray(y, float)
        color, style = f"C{j}", (styles or {}).get(label, "o-")
        if len(np.unique(x)) < 2:  # nothing to fit
            slopes[label] = float("nan")
            ax.loglog(x, y, style, color=color, label=label)
            continue
        slope, icpt = _fit_slope(x, y)
        slopes[label] = slope
        ax.loglog(x, y, style, color=color, label=f"{label} (slope {slope:.2f})")
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.loglog(xs, np.exp(icpt) * xs**slope, ":", color=color, lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return fig, slopes


def per_index(
    values: dict[str, np.ndarray],
    *,
    ax=None,
    xlabel: str = "index",
    ylabel: str = "",
    logy: bool = True,
    threshold: float | None = None,
    title: str | None = None,
):
    """One value per index (e.g. per mode, 1-based) for several runs; an optional horizontal
    `threshold` line. `values`: label → 1-D array."""
    fig, ax = _fig_ax(ax)
    markers = ("o-", "s:", "^--", "v-.")
    for j, (label, v) in enumerate(values.items()):
        v = np.asarray(v, float)
        ax.plot(np.arange(1, len(v) + 1), v, markers[j % len(markers)], label=label)
    if threshold is not None:
        ax.axhline(threshold, color="gray", lw=0.8, ls="--")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def parity(
    points: dict[str, tuple],
    *,
    ax=None,
    xlabel: str = "measured",
    ylabel: str = "predicted",
    log: bool = True,
    title: str | None = None,
):
    """Predicted against measured values with the diagonal y = x; non-finite points are
    left out. `points`: label → `(measured, predicted)`."""
    fig, ax = _fig_ax(ax)
    lo, hi = np.inf, -np.inf
    for j, (label, (x, y)) in enumerate(points.items()):
        x, y = np.ravel(np.asarray(x, float)), np.ravel(np.asarray(y, float))
        keep = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[keep], y[keep], "o", ms=4, color=f"C{j}", label=label)
        if keep.any():
            lo, hi = min(lo, x[keep].min(), y[keep].min()), max(hi, x[keep].max(), y[keep].max())
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def xy(
    series: dict[str, tuple],
    *,
    ax=None,
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    logy: bool = False,
    styles: dict[str, str] | None = None,
    vlines: dict[str, float] | None = None,
    title: str | None = None,
):
    """Plain `y(x)` curves (non-finite y left out), with optional labelled vertical lines
    (e.g. a stability bound). `series`: label → `(x, y)`; `styles`: label → format string."""
    fig, ax = _fig_ax(ax)
    for j, (label, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, float), np.asarray(y, float)
        keep = np.isfinite(y)
        ax.plot(x[keep], y[keep], (styles or {}).get(label, "o-"), color=f"C{j % 10}", label=label, ms=4)
    for j, (label, x0) in enumerate((vlines or {}).items()):
        ax.axvline(x0, color=f"C{j % 10}", ls=":", lw=0.8, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=6)
    return fig


def _fig_ax(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        return fig, ax
    return ax.figure, ax


def aspect_ratio(scans: Mapping[str, Mapping[str, np.ndarray]], *, ax=None, logy: bool = False):
    r"""Plot $\operatorname{Var}\Theta/(\mathbb E\Theta)^2$ against $L/n$, one colour per entry of
    `scans` (label → the dict of `lmech.models.aspect_ratio_scan`): measured points with 2 s.e. error
    bars, the first-order prediction as a solid line and the exact one (where finite) as a
    dashed line. Returns the matplotlib `Figure` (that of `ax` if given)."""
    if not isinstance(scans, Mapping) or not scans:
        raise ValueError("aspect_ratio: `scans` must be a non-empty mapping label -> aspect_ratio_scan dict.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    else:
        fig = ax.figure
    for i, (label, s) in enumerate(scans.items()):
        missing = {"aspect", "measured", "measured_se", "first_order"} - set(s)
        if missing:
            raise ValueError(f"aspect_ratio: scan {label!r} lacks {sorted(missing)}.")
        c = f"C{i}"
        a = np.asarray(s["aspect"])
        order = np.argsort(a)
        ax.errorbar(
            a,
            s["measured"],
            yerr=2 * np.asarray(s["measured_se"]),
            fmt="o",
            color=c,
            ms=4,
            label=f"{label}: measured (±2 s.e.)",
        )
        ax.plot(
            a[order], np.asarray(s["first_order"])[order], "-", color=c, label=f"{label}: first order in 1/n"
        )
        exact = np.asarray(s.get("exact", np.full_like(a, np.nan)), dtype=float)
        if np.isfinite(exact).any():
            ax.plot(a[order], exact[order], "--", color=c, label=f"{label}: exact")
    ax.set_xlabel("depth / width  L/n")
    ax.set_ylabel(r"Var $\Theta(x,x)$ / (E $\Theta(x,x)$)$^2$")
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("NTK fluctuations at init")
    fig.tight_layout()
    return fig
