"""Plots of trajectories and comparisons (matplotlib). Theory is dashed, real solid."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from lmech.solvers import Trajectory

from ._compare import Comparison

__all__ = ["observable", "errors", "trajectories", "loglog_fit"]


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
    ax.set_xlabel("flow time t = η·k")
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
    ax.set_xlabel("flow time t = η·k")
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
    ax.set_xlabel("flow time t = η·k")
    ax.set_ylabel(name)
    ax.legend()
    return fig


def loglog_fit(x, y, *, ax=None, label: str = "", xlabel: str = "", ylabel: str = ""):
    """Scatter `y` against `x` on log–log axes with the least-squares line; returns
    `(figure, slope)`."""
    fig, ax = _fig_ax(ax)
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    ax.loglog(x, y, "o", label=label)
    xs = np.geomspace(x.min(), x.max(), 50)
    ax.loglog(xs, np.exp(icpt) * xs**slope, "--", color="gray", label=f"slope {slope:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig, float(slope)


def _fig_ax(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        return fig, ax
    return ax.figure, ax
