"""A figure of measured against predicted NTK fluctuations at init, against L/n."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["plot_aspect_ratio"]


def plot_aspect_ratio(scans: Mapping[str, Mapping[str, np.ndarray]], *, ax=None, logy: bool = False):
    r"""Plot $\operatorname{Var}\Theta/(\mathbb E\Theta)^2$ against $L/n$, one colour per entry of
    `scans` (label → the dict of `aspect_ratio_scan`): measured points with 2 s.e. error
    bars, the first-order prediction as a solid line and the exact one (where finite) as a
    dashed line. Returns the matplotlib `Figure` (that of `ax` if given)."""
    import matplotlib.pyplot as plt

    if not isinstance(scans, Mapping) or not scans:
        raise ValueError(
            "plot_aspect_ratio: `scans` must be a non-empty mapping label -> aspect_ratio_scan dict."
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    else:
        fig = ax.figure
    for i, (label, s) in enumerate(scans.items()):
        missing = {"aspect", "measured", "measured_se", "first_order"} - set(s)
        if missing:
            raise ValueError(f"plot_aspect_ratio: scan {label!r} lacks {sorted(missing)}.")
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
