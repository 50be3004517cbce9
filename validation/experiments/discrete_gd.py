r"""Experiment `discrete-gd`: gradient descent itself, beyond gradient flow.

(a) **Error orders.** A small tanh MLP on digits, trained by real GD over a fixed flow
time $T$ for a range of $\eta$, against gradient flow ($O(\eta)$) and the modified
flows of order 1 ($O(\eta^2)$) and 2 ($O(\eta^3)$): parameter distance at $T$, with
fitted log–log orders.

(b) **Edge of stability.** A tanh MLP with MSE on a digits subset at an $\eta$ where
progressive sharpening takes the sharpness $S$ to $2/\eta$. Real GD's sharpness over
time against $2/\eta$ (crossing, settling); then the central flow (Cohen et al. 2025)
against real GD and gradient flow: the predicted time-averaged loss
$L + \operatorname{tr}\Sigma/\eta$ against GD's loss averaged over a window of steps,
the sharpness, and the parameter distance to GD. The flows are run twice: from the
initialization, and from GD's state once it has settled at the edge (the average of two
consecutive iterates, which cancels the period-2 oscillation) — the central flow
describes GD *at* the edge, not the delayed onset of the instability before it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import diffrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import datasets
from .._eos import edge_of_stability, moving_average
from ..report import Report
from ._util import fmt, loglog_slope

NAME = "discrete-gd"
DESCRIPTION = "Discrete GD: modified-flow error orders; edge of stability and the central flow vs real GD."


@dataclass(frozen=True)
class Config:
    seed: int = 0
    # (a) error orders
    orders_n_train: int = 64
    orders_widths: tuple = (16,)
    orders_flow_time: float = 2.0
    orders_lrs: tuple = (0.16, 0.08, 0.04, 0.02, 0.01)
    # (b) edge of stability
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


def _tanh_net(widths, sigma_w=1.0):
    return lm.MLP(64, tuple(widths), 1, activation="tanh", parameterization="standard", sigma_w=sigma_w)


# -- (a) ---------------------------------------------------------------------------------
def _orders(cfg: Config, key, progress: bool):
    data = datasets.digits(cfg.orders_n_train, 16, key=jax.random.fold_in(key, 1))
    real = lm.Trained(_tanh_net(cfg.orders_widths), data, key=jax.random.fold_in(key, 2))
    rec = ls.Recorded(real, sharpness=False, params=True)
    tight = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)
    methods = {
        "gradient flow": tight,
        "modified flow, order 1": ls.ModifiedFlow(1, tight),
        "modified flow, order 2": ls.ModifiedFlow(2, tight),
    }
    lrs = np.asarray(cfg.orders_lrs, float)
    errors = {m: [] for m in methods}
    s0 = float(ls.sharpness(real.loss, real.init()))
    for lr in tqdm(lrs, desc=f"{NAME} orders", disable=not progress):
        steps = int(round(cfg.orders_flow_time / lr))
        gd = ls.solve(rec, ls.GradientDescent(), lr=float(lr), steps=steps, save_every=steps)["params"][-1]
        for m, method in methods.items():
            th = ls.solve(rec, method, lr=float(lr), steps=steps, save_every=steps)["params"][-1]
            errors[m].append(float(jnp.linalg.norm(th - gd) / jnp.linalg.norm(gd)))
    orders = {m: loglog_slope(lrs, e) for m, e in errors.items()}
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (m, e), style in zip(errors.items(), ("o-", "s-", "^-")):
        ax.loglog(lrs, e, style, label=f"{m} (order {orders[m]:.2f})")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel(f"‖θ_flow(T) − θ_GD(T)‖ / ‖θ_GD(T)‖, T = {cfg.orders_flow_time}")
    ax.legend(fontsize=8)
    m = {
        "lrs": lrs.tolist(),
        "eta_times_sharpness": (lrs * s0).tolist(),
        "errors": errors,
        "orders": orders,
        "n_params": int(ravel_pytree(real.init())[0].size),
    }
    return m, fig


# -- (b) ---------------------------------------------------------------------------------
def _eos(cfg: Config, key, progress: bool):
    lr, T, every = cfg.eos_lr, cfg.eos_flow_time, cfg.eos_save_every
    steps = int(round(T / lr))
    steps -= steps % every
    data = datasets.digits(cfg.eos_n_train, 64, key=jax.random.fold_in(key, 3))
    real = lm.Trained(_tanh_net(cfg.eos_widths, cfg.eos_sigma_w), data, key=jax.random.fold_in(key, 4))
    unravel = ravel_pytree(real.init())[1]
    rec = ls.Recorded(real, sharpness=False, params=True)
    bar = tqdm(total=6, desc=f"{NAME} edge of stability", disable=not progress)

    gd = ls.solve(rec, ls.GradientDescent(), lr=lr, steps=steps, save_every=1)
    bar.update(1)
    gd_params = gd["params"]
    idx = np.arange(0, steps + 1, every)
    top = jax.lax.map(
        lambda p: ls.hessian_eigenpairs(real.loss, unravel(p), cfg.eos_k)[0], gd_params[idx], batch_size=32
    )
    gd_eigs = np.asarray(top)
    bar.update(1)
    t_gd = np.asarray(gd.times)
    loss_gd = np.asarray(gd["loss"])
    loss_gd_avg = moving_average(loss_gd, cfg.eos_window)
    eos = edge_of_stability(t_gd[idx], gd_eigs[:, 0], lr, band=cfg.eos_band)
    if not eos.crossed:
        raise RuntimeError(
            f"{NAME}: GD's sharpness never reached 2/η = {2 / lr:.3g}; raise eos_lr or eos_flow_time."
        )

    central = ls.CentralFlow(k=cfg.eos_k)
    flow = ls.GradientFlow(rtol=1e-6, atol=1e-9)
    rec_s = ls.Recorded(real, sharpness=True, k=cfg.eos_k, params=True)
    runs = {}
    starts = {"init": 0}
    if eos.onset_time is not None:
        k_on = int(round(eos.onset_time / lr))
        if steps - k_on >= 2 * every:
            starts["onset"] = k_on
    for label, k0 in starts.items():
        theta0 = real.init() if k0 == 0 else unravel(0.5 * (gd_params[k0] + gd_params[k0 + 1]))
        n = steps - k0
        n -= n % every
        cf = ls.solve(rec, central, lr=lr, steps=n, save_every=every, state0=theta0, throw=False)
        bar.update(1)
        gf = ls.solve(rec_s, flow, lr=lr, steps=n, save_every=every, state0=theta0, throw=False)
        bar.update(1)
        runs[label] = (k0, cf, gf)
    bar.close()

    metrics = {
        "lr": lr,
        "threshold_2_over_lr": 2 / lr,
        "n_params": int(ravel_pytree(real.init())[0].size),
        "gd": {
            "crossing_time": eos.crossing_time,
            "onset_time": eos.onset_time,
            "max_sharpness_deviation_after_crossing": eos.max_deviation_after_crossing,
            "max_sharpness_deviation_after_onset": eos.max_deviation_after_onset,
            "fraction_within_band_after_crossing": eos.fraction_within_band,
            "band": cfg.eos_band,
            "final_loss": float(loss_gd[-1]),
        },
    }
    for label, (k0, cf, gf) in runs.items():
        metrics[f"from_{label}"] = _flow_metrics(label, k0, cf, gf, gd_params, loss_gd_avg, lr, every, cfg)
    figs = {
        "edge_of_stability": _plot_eos(cfg, t_gd, idx, gd_eigs, loss_gd, loss_gd_avg, runs, eos, gd_params)
    }
    return metrics, figs


def _flow_metrics(label, k0, cf, gf, gd_params, loss_gd_avg, lr, every, cfg):
    out = {"start_time": k0 * lr}
    for name, tr in (("central_flow", cf), ("gradient_flow", gf)):
        if not tr.succeeded:
            out[name] = {"result": tr.message()}
            continue
        k = k0 + np.asarray(tr.steps)
        pred = np.asarray(tr["loss_averaged"] if "loss_averaged" in tr.observables else tr["loss"])
        ref = loss_gd_avg[k]
        ok = np.isfinite(ref)
        rel = np.abs(pred[ok] - ref[ok]) / ref[ok]
        dist = np.asarray(jnp.linalg.norm(tr["params"] - gd_params[k], axis=1))
        S = np.asarray(tr["sharpness"]) * lr / 2
        extra = {}
        if "next_eigenvalue" in tr.observables:
            extra["max_uncaptured_eigenvalue_over_threshold"] = float(
                np.max(np.asarray(tr["next_eigenvalue"])) * lr / 2
            )
        out[name] = {
            "result": tr.result_name,
            "loss_rel_error_max": float(rel.max()),
            "loss_rel_error_median": float(np.median(rel)),
            "loss_rel_error_final": float(rel[-1]),
            "loss_within_band_fraction": float(np.mean(rel <= cfg.eos_band)),
            "param_distance_final": float(dist[-1]),
            "param_distance_max": float(dist.max()),
            "sharpness_over_threshold_final": float(S[-1]),
            "solver_steps": int(tr.stats["num_steps"]),
            **extra,
        }
    if cf.succeeded and gf.succeeded:
        out["distance_ratio_final"] = (
            out["central_flow"]["param_distance_final"] / out["gradient_flow"]["param_distance_final"]
        )
    return out


def _plot_eos(cfg, t_gd, idx, gd_eigs, loss_gd, loss_gd_avg, runs, eos, gd_params):
    lr = cfg.eos_lr
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    ax = axes[0]
    ax.plot(t_gd[idx], gd_eigs[:, 0], "-", color="C0", lw=2, alpha=0.6, label="real GD: sharpness")
    if gd_eigs.shape[1] > 1:
        ax.plot(t_gd[idx], gd_eigs[:, 1], "-", color="C0", lw=1, alpha=0.4, label="real GD: 2nd eigenvalue")
    styles = {"init": ("--", ":"), "onset": ("-.", (0, (1, 3)))}
    for label, (k0, cf, gf) in runs.items():
        cs, gs = styles[label]
        ax.plot(
            np.asarray(cf.times) + k0 * lr,
            np.asarray(cf["sharpness"]),
            linestyle=cs,
            color="C3",
            label=f"central flow (from {label})",
        )
        ax.plot(
            np.asarray(gf.times) + k0 * lr,
            np.asarray(gf["sharpness"]),
            linestyle=gs,
            color="C2",
            label=f"gradient flow (from {label})",
        )
    ax.axhline(2 / lr, color="k", lw=0.8, label="2/η")
    if eos.onset_time is not None:
        ax.axvline(eos.onset_time, color="gray", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("flow time t = η·k")
    ax.set_ylabel("top Hessian eigenvalue")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.semilogy(t_gd, loss_gd, color="C0", lw=0.5, alpha=0.4, label="real GD")
    ax.semilogy(t_gd, loss_gd_avg, color="C0", lw=2, label=f"real GD, {cfg.eos_window}-step average")
    for label, (k0, cf, gf) in runs.items():
        cs, gs = styles[label]
        ax.semilogy(
            np.asarray(cf.times) + k0 * lr,
            np.asarray(cf["loss_averaged"]),
            linestyle=cs,
            color="C3",
            label=f"central flow L + trΣ/η (from {label})",
        )
        ax.semilogy(
            np.asarray(gf.times) + k0 * lr,
            np.asarray(gf["loss"]),
            linestyle=gs,
            color="C2",
            label=f"gradient flow (from {label})",
        )
    ax.set_xlabel("flow time t = η·k")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    ax = axes[2]
    for label, (k0, cf, gf) in runs.items():
        cs, gs = styles[label]
        k = k0 + np.asarray(cf.steps)
        ax.plot(
            np.asarray(cf.times) + k0 * lr,
            np.asarray(jnp.linalg.norm(cf["params"] - gd_params[k], axis=1)),
            linestyle=cs,
            color="C3",
            label=f"central flow (from {label})",
        )
        ax.plot(
            np.asarray(gf.times) + k0 * lr,
            np.asarray(jnp.linalg.norm(gf["params"] - gd_params[k], axis=1)),
            linestyle=gs,
            color="C2",
            label=f"gradient flow (from {label})",
        )
    ax.set_xlabel("flow time t = η·k")
    ax.set_ylabel("‖θ_flow − θ_GD‖")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run(config: Config, *, progress: bool = True) -> Report:
    cfg = config
    key = jax.random.key(cfg.seed)
    m_orders, fig_orders = _orders(cfg, key, progress)
    m_eos, figs = _eos(cfg, key, progress)
    figs = {"error_orders": fig_orders, **figs}
    metrics = {"orders": m_orders, "eos": m_eos}
    summary = _summary(cfg, metrics)
    return Report(NAME, asdict(cfg), metrics, summary, figs)


def _pct(x):
    return f"{100 * x:.3g}%"


def _summary(cfg, m):
    o = m["orders"]
    lines = [
        f"**(a) Error orders** (tanh MLP {o['n_params']} parameters, {cfg.orders_n_train} digits, flow time "
        f"{cfg.orders_flow_time}, η = {', '.join(fmt(x) for x in o['lrs'])}; ηS₀ up to {fmt(max(o['eta_times_sharpness']))}): "
        + "; ".join(f"{k}: order {v:.3f}" for k, v in o["orders"].items())
        + ".",
    ]
    e = m["eos"]
    g = e["gd"]
    lines.append(
        f"**(b) Edge of stability** (tanh MLP {e['n_params']} parameters, {cfg.eos_n_train} digits, η = {e['lr']}, "
        f"2/η = {fmt(e['threshold_2_over_lr'])}): GD's sharpness crosses 2/η at t = {fmt(g['crossing_time'])}; "
        f"it stays within ±{_pct(g['band'])} of 2/η from t = "
        + (fmt(g["onset_time"]) if g["onset_time"] is not None else "— (never settles)")
        + f" on (max deviation after the crossing {_pct(g['max_sharpness_deviation_after_crossing'])}, "
        f"{_pct(g['fraction_within_band_after_crossing'])} of the time within the band)."
    )
    for label in ("init", "onset"):
        r = e.get(f"from_{label}")
        if r is None:
            continue
        cf, gf = r["central_flow"], r["gradient_flow"]
        if "loss_rel_error_max" not in cf or "loss_rel_error_max" not in gf:
            lines.append(f"- from {label}: central flow {cf['result']}; gradient flow {gf['result']}.")
            continue
        lines.append(
            f"- Flows started at t = {fmt(r['start_time'])} ({label}): predicted vs {cfg.eos_window}-step-averaged GD loss, "
            f"max / median relative error: central flow {_pct(cf['loss_rel_error_max'])} / {_pct(cf['loss_rel_error_median'])}, "
            f"gradient flow {_pct(gf['loss_rel_error_max'])} / {_pct(gf['loss_rel_error_median'])} (within ±{_pct(cfg.eos_band)} "
            f"{_pct(cf['loss_within_band_fraction'])} vs {_pct(gf['loss_within_band_fraction'])} of the time); final parameter distance "
            f"to GD: {fmt(cf['param_distance_final'])} vs {fmt(gf['param_distance_final'])} (ratio {r['distance_ratio_final']:.2f}); "
            f"final sharpness·η/2: {cf['sharpness_over_threshold_final']:.3f} vs {gf['sharpness_over_threshold_final']:.3f}."
        )
    return "\n\n".join(lines)


def headline(metrics: dict) -> dict[str, str]:
    o, e = metrics["orders"], metrics["eos"]
    out = {
        "fitted error orders vs η (flow / modified 1 / modified 2)": " / ".join(
            f"{v:.3f}" for v in o["orders"].values()
        ),
    }
    g = e["gd"]
    out["GD sharpness: max deviation from 2/η after crossing / after settling"] = (
        f"{_pct(g['max_sharpness_deviation_after_crossing'])} / "
        + (
            _pct(g["max_sharpness_deviation_after_onset"])
            if g["max_sharpness_deviation_after_onset"] is not None
            else "never settles"
        )
    )
    for label in ("init", "onset"):
        r = e.get(f"from_{label}")
        if r is None or "distance_ratio_final" not in r:
            continue
        cf, gf = r["central_flow"], r["gradient_flow"]
        out[
            f"EoS from {label} (t={fmt(r['start_time'])}): loss error max / median / time within 10%, central vs gradient flow"
        ] = (
            f"{_pct(cf['loss_rel_error_max'])} / {_pct(cf['loss_rel_error_median'])} / {_pct(cf['loss_within_band_fraction'])} vs "
            f"{_pct(gf['loss_rel_error_max'])} / {_pct(gf['loss_rel_error_median'])} / {_pct(gf['loss_within_band_fraction'])}"
        )
        out[f"EoS from {label}: final distance to GD, central / gradient flow"] = (
            f"{r['distance_ratio_final']:.2f}"
        )
    return out
