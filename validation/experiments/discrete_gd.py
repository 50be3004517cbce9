r"""Experiment `discrete-gd`: gradient descent itself, beyond gradient flow.

- **Error orders** (`measure_error_orders`). A small tanh MLP on digits, trained by real GD
  over a fixed flow time $T$ for a range of $\eta$, against gradient flow ($O(\eta)$) and the
  modified flows of order 1 ($O(\eta^2)$) and 2 ($O(\eta^3)$): parameter distance at $T$,
  with fitted log–log orders.
- **Edge of stability** (`measure_edge_of_stability`). A tanh MLP with MSE on a digits
  subset at an $\eta$ where progressive sharpening takes the sharpness $S$ to $2/\eta$. Real
  GD's sharpness against $2/\eta$: the crossing, the overshoot and its end (the catapult),
  and the onset of the edge — the first time after the overshoot at which $S$ is back at
  $2/\eta$, a definition that uses no tolerance band — with the max and median deviation of
  $S$ from $2/\eta$ after it. Then the central flow (Cohen et al. 2025) against real GD and
  gradient flow: the predicted time-averaged loss $L + \operatorname{tr}\Sigma/\eta$ against
  GD's loss averaged over a window of steps, the sharpness, and the parameter distance to GD;
  the flows are run from the initialization and from GD's state at the onset (the central
  flow describes GD *at* the edge, not the delayed onset of the instability before it).

The measurements are in `_discrete_gd_measurements.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from .. import plot
from ._discrete_gd_measurements import FLOWS, measure_edge_of_stability, measure_error_orders
from ._util import fmt

NAME = "discrete-gd"
DESCRIPTION = "Discrete GD: modified-flow error orders; edge of stability and the central flow vs real GD."


@dataclass(frozen=True)
class Config:
    seed: int = 0
    # error orders
    orders_n_train: int = 64
    orders_widths: tuple = (16,)
    orders_flow_time: float = 2.0
    orders_lrs: tuple = (0.16, 0.08, 0.04, 0.02, 0.01)
    # edge of stability
    eos_n_train: int = 256
    eos_widths: tuple = (64, 64)
    eos_sigma_w: float = 0.5
    eos_lr: float = 0.5
    eos_flow_time: float = 200.0
    eos_k: int = 3
    eos_save_every: int = 4
    eos_window: int = 10
    eos_band: float = 0.1

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(seed=seed, orders_lrs=(0.16, 0.08, 0.04, 0.02), eos_flow_time=100.0)


def compute(config: Config, *, progress: bool = True) -> dict:
    """Both measurements: `metrics` keys `orders`, `eos`; curve names prefixed `orders.` and
    `eos.`."""
    key = jax.random.key(config.seed)
    metrics, curves = {}, {}
    for name, measure in (("orders", measure_error_orders), ("eos", measure_edge_of_stability)):
        m, c = measure(config, key, progress=progress)
        metrics[name] = m
        curves.update({f"{name}.{k}": np.asarray(v) for k, v in c.items()})
    return {"metrics": metrics, "curves": curves}


# ---------------------------------------------------------------------------------------------
def figures(results: dict) -> dict:
    """`error_orders` and `edge_of_stability` (sharpness, loss, distance to GD), drawn from
    `results` alone."""
    m, c = results["metrics"], results["curves"]
    lrs = c["orders.lrs"]
    fig_orders, _ = plot.loglog_fits(
        {FLOWS[k]: (lrs, c[f"orders.{k}"]) for k in FLOWS},
        styles={FLOWS["modified_1"]: "s-", FLOWS["modified_2"]: "^-"},
        xlabel="learning rate η",
        ylabel=f"‖θ_flow(T) − θ_GD(T)‖ / ‖θ_GD(T)‖, T = {m['orders']['setup']['flow_time']}",
    )
    e = m["eos"]
    lr, thr = e["lr"], e["threshold_2_over_lr"]
    t_eig, eigs = c["eos.gd.eigenvalue_times"], c["eos.gd.eigenvalues"]
    starts = [s[len("from_") :] for s in e if s.startswith("from_")]
    fig, axes = plot.panels(3, width=5.3, height=4.2)
    sharp = {"real GD: sharpness": (t_eig, eigs[:, 0])}
    styles = {"real GD: sharpness": "-", "2/η": "k-"}
    if eigs.shape[1] > 1:
        sharp["real GD: 2nd eigenvalue"] = (t_eig, eigs[:, 1])
        styles["real GD: 2nd eigenvalue"] = "-"
    loss = {
        "real GD": (c["eos.gd.times"], c["eos.gd.loss"]),
        f"real GD, {e['setup']['window']}-step average": (c["eos.gd.times"], c["eos.gd.loss_average"]),
    }
    loss_styles = {"real GD": ","}
    dist, dist_styles = {}, {}
    for label, (cs, gs) in zip(starts, (("--", ":"), ("-.", "-."))):
        for name, style, what in (
            ("central_flow", cs, "central flow L + trΣ/η"),
            ("gradient_flow", gs, "gradient flow L"),
        ):
            p = f"eos.from_{label}.{name}"
            if f"{p}.times" not in c:
                continue
            short = what.split(" L")[0]
            sharp[f"{short} (from {label})"] = (c[f"{p}.times"], c[f"{p}.sharpness"])
            styles[f"{short} (from {label})"] = style
            loss[f"{what} (from {label})"] = (c[f"{p}.times"], c[f"{p}.predicted_average_loss"])
            loss_styles[f"{what} (from {label})"] = style
            dist[f"{short} (from {label})"] = (c[f"{p}.times"], c[f"{p}.distance_to_gd"])
            dist_styles[f"{short} (from {label})"] = style
    sharp["2/η"] = (c["eos.gd.times"][[0, -1]], np.full(2, thr))
    onset = e["gd"]["onset_time"]
    plot.curves_over_time(
        sharp,
        ax=axes[0],
        styles=styles,
        ylabel="top Hessian eigenvalue",
        title=f"η = {lr:g}; onset of the edge t = " + (fmt(onset) if onset is not None else "—"),
    )
    plot.curves_over_time(loss, ax=axes[1], styles=loss_styles, ylabel="training loss")
    plot.curves_over_time(dist, ax=axes[2], styles=dist_styles, logy=False, ylabel="‖θ_flow − θ_GD‖")
    fig.tight_layout()
    return {"error_orders": fig_orders, "edge_of_stability": fig}


def _pct(x):
    return f"{100 * x:.3g}%"


def summary(results: dict) -> str:
    """Markdown: the fitted orders, GD's edge-of-stability landmarks, the flows against GD."""
    m = results["metrics"]
    o, e = m["orders"], m["eos"]
    so, se, g = o["setup"], e["setup"], e["gd"]
    lines = [
        f"**Error orders** (tanh MLP {o['n_params']} parameters, {so['n_train']} digits, flow time "
        f"{so['flow_time']}, η = {', '.join(fmt(x) for x in o['lrs'])}; ηS₀ up to {fmt(max(o['eta_times_sharpness']))}; "
        f"rtol {so['rtol']:.0e}): " + "; ".join(f"{k}: order {v:.3f}" for k, v in o["orders"].items()) + ".",
        f"**Edge of stability** (tanh MLP {e['n_params']} parameters, {se['n_train']} digits, η = {e['lr']}, "
        f"2/η = {fmt(e['threshold_2_over_lr'])}): GD's sharpness crosses 2/η at t = {fmt(g['crossing_time'])}, "
        f"overshoots by {_pct(g['overshoot'])} (t = {fmt(g['peak_time'])}) and "
        + (
            f"falls back below 2/η at t = {fmt(g['return_time'])}; "
            if g["return_time"] is not None
            else "never falls back below 2/η; "
        )
        + _onset_text(g, se["band"]),
    ]
    for label in ("init", "onset"):
        r = e.get(f"from_{label}")
        if r is None:
            continue
        cf, gf = r["central_flow"], r["gradient_flow"]
        if "loss_rel_error_max" not in cf or "loss_rel_error_max" not in gf:
            lines.append(f"- from {label}: central flow {cf['result']}; gradient flow {gf['result']}.")
            continue
        at_start = ""
        if cf["loss_rel_error_at_start"] is not None:
            at_start = (
                f" (at the start point itself {_pct(cf['loss_rel_error_at_start'])} vs "
                f"{_pct(gf['loss_rel_error_at_start'])}, the central flow's Σ there including the pull of S back to 2/η)"
            )
        lines.append(
            f"- Flows started at t = {fmt(r['start_time'])} ({label}): predicted vs {se['window']}-step-averaged GD loss "
            f"after the start{at_start}, max / median relative error: central flow {_pct(cf['loss_rel_error_max'])} / {_pct(cf['loss_rel_error_median'])}, "
            f"gradient flow {_pct(gf['loss_rel_error_max'])} / {_pct(gf['loss_rel_error_median'])} (within ±{_pct(se['band'])} "
            f"{_pct(cf['loss_within_band_fraction'])} vs {_pct(gf['loss_within_band_fraction'])} of the time); final parameter distance "
            f"to GD: {fmt(cf['param_distance_final'])} vs {fmt(gf['param_distance_final'])} (ratio {r['distance_ratio_final']:.2f}); "
            f"final sharpness·η/2: {cf['sharpness_over_threshold_final']:.3f} vs {gf['sharpness_over_threshold_final']:.3f}."
        )
    return "\n\n".join(lines)


def _onset_text(g: dict, band: float) -> str:
    if g["onset_time"] is None:
        return "it does not come back to 2/η within the run (no onset of the edge)."
    return (
        f"it is back at 2/η (the onset of the edge) at t = {fmt(g['onset_time'])}. After the onset its deviation "
        f"from 2/η is {_pct(g['max_sharpness_deviation_after_onset'])} at most, {_pct(g['median_sharpness_deviation_after_onset'])} "
        f"median ({_pct(g['fraction_within_band_after_onset'])} of the time within ±{_pct(band)}); "
        f"after the first crossing, {_pct(g['max_sharpness_deviation_after_crossing'])} at most."
    )


def headline(metrics: dict) -> dict[str, str]:
    """The numbers that go into validation/RESULTS.md."""
    o, e = metrics["orders"], metrics["eos"]
    g = e["gd"]
    out = {
        "fitted error orders vs η (flow / modified 1 / modified 2)": " / ".join(
            f"{v:.3f}" for v in o["orders"].values()
        ),
        "GD sharpness: crossing of 2/η, overshoot / onset of the edge (back at 2/η after the overshoot)": (
            f"t = {fmt(g['crossing_time'])}, +{_pct(g['overshoot'])} / "
            + (f"t = {fmt(g['onset_time'])}" if g["onset_time"] is not None else "never back at 2/η")
        ),
    }
    if g["onset_time"] is not None:
        out["GD sharpness after the onset: max / median deviation from 2/η"] = (
            f"{_pct(g['max_sharpness_deviation_after_onset'])} / {_pct(g['median_sharpness_deviation_after_onset'])}"
        )
    for label in ("init", "onset"):
        r = e.get(f"from_{label}")
        if r is None or "distance_ratio_final" not in r:
            continue
        cf, gf = r["central_flow"], r["gradient_flow"]
        band = _pct(e["setup"]["band"])
        out[
            f"EoS from {label} (t={fmt(r['start_time'])}): loss error after the start, max / median / time within {band}, "
            "central vs gradient flow"
        ] = (
            f"{_pct(cf['loss_rel_error_max'])} / {_pct(cf['loss_rel_error_median'])} / {_pct(cf['loss_within_band_fraction'])} vs "
            f"{_pct(gf['loss_rel_error_max'])} / {_pct(gf['loss_rel_error_median'])} / {_pct(gf['loss_within_band_fraction'])}"
        )
        out[f"EoS from {label}: final distance to GD, central / gradient flow"] = (
            f"{r['distance_ratio_final']:.2f}"
        )
    return out
