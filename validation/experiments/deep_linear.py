r"""Experiment `deep-linear`: deep linear networks, theory against real gradient descent.

- **Decoupled init** (`measure_decoupled_init`): balanced decoupled init, depths 2–4. The mode
  ODE, its closed form (depth 2) and the exact mode GD map against the full network trained by
  gradient flow and by GD at several learning rates; the flow–GD gap and its order in η.
- **Plateau times from small random init** (`measure_plateau_times`): two layers; per-mode
  half-rise times of real GD against the mode theory started from the effective initial
  strengths (naive projection, and the sequential orthogonalization of the hidden directions).
- **Best learning rate vs depth** (`measure_best_lr_vs_depth`, Saxe et al. 2014 Fig. 4 type):
  the learning time of the exact mode GD map (steps until every mode stays within `sweep_tol`
  of its target), minimized over η on an absolute log grid shared by all depths, both ends of
  the set of minimizers refined (`_best_lr.py`), next to the linear stability bound $\eta_{\rm stab} = 2/(N
  s_1^{2-2/N})$ of the top mode; real GD checked at each optimum.

The measurements are in `_deep_linear_measurements.py`; the tolerances of the tight ODE solves
follow the dtype of the run (`numerics()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import plot
from ._deep_linear_measurements import (
    RULES,
    measure_best_lr_vs_depth,
    measure_decoupled_init,
    measure_plateau_times,
)
from ._util import fmt

NAME = "deep-linear"
DESCRIPTION = (
    "Deep linear networks: Saxe modes, mode ODE and exact GD map vs real GD; stepwise learning; "
    "best learning rate vs depth."
)


@dataclass(frozen=True)
class Config:
    """Sizes of the three measurements (field groups in order); `Config.quick()` is the
    minute-scale version the validation table is built from."""

    seed: int = 0
    # decoupled init
    size: int = 8
    n_train: int = 32
    s: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5)
    depths: tuple[int, ...] = (2, 3, 4)
    u0: float = 0.05
    flow_time: float = 20.0
    lrs: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02, 0.05)
    n_points: int = 100
    # plateau times from small random init, two layers
    random_s: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
    random_stds: tuple[float, ...] = (1e-3, 1e-4, 1e-6)
    random_seeds: int = 5
    random_lr: float = 0.02
    # best learning rate vs depth
    sweep_depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    sweep_u0: float = 1e-2
    sweep_lr_range: tuple[float, float] = (1e-3, 4.0)
    sweep_n_lrs: int = 37
    sweep_zoom_points: int = 17
    sweep_zoom_rounds: int = 3
    sweep_max_steps: int = 20_000
    sweep_tol: float = 0.01

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(
            seed=seed,
            depths=(2, 3, 4),
            lrs=(0.01, 0.02, 0.05),
            random_stds=(1e-3,),
            random_seeds=3,
            sweep_depths=(1, 2, 3, 4, 6, 8),
            sweep_n_lrs=25,
            sweep_max_steps=8_000,
        )


def numerics() -> dict:
    """Tolerances the dtype of the run can reach: the tight ODE solves use
    `rtol = max(1e-12, 100 eps)`, `atol = max(1e-14, eps)` (float64: 1e-12 / 1e-14)."""
    dtype = jnp.dtype(jnp.result_type(float))
    eps = float(jnp.finfo(dtype).eps)
    return {"dtype": dtype.name, "eps": eps, "flow_rtol": max(1e-12, 100 * eps), "flow_atol": max(1e-14, eps)}


def compute(config: Config, *, progress: bool = True) -> dict:
    """All three measurements; `metrics` keys `decoupled`, `random_init`, `depth_sweep`,
    `numerics`; curve names prefixed by the measurement."""
    _check(config)
    num = numerics()
    k_dec, k_rand, k_depth = jax.random.split(jax.random.key(config.seed), 3)
    measurements = [
        ("decoupled", measure_decoupled_init, k_dec),
        ("random_init", measure_plateau_times, k_rand),
        ("depth_sweep", measure_best_lr_vs_depth, k_depth),
    ]
    metrics, curves = {"numerics": num}, {}
    for name, measure, key in tqdm(measurements, desc=NAME, disable=not progress):
        m, c = measure(config, key, num, progress=progress)
        metrics[name] = m
        curves.update({f"{name}.{k}": np.asarray(v) for k, v in c.items()})
    return {"metrics": metrics, "curves": curves}


def _check(cfg: Config) -> None:
    for lr in cfg.lrs:
        steps = cfg.flow_time / lr
        if abs(steps - round(steps)) > 1e-9 or round(steps) % cfg.n_points:
            raise ValueError(
                f"deep-linear: Config.flow_time/lr = {steps} (lr = {lr}) must be an integer multiple "
                f"of Config.n_points = {cfg.n_points}."
            )


# ---------------------------------------------------------------------------------------------
def figures(results: dict) -> dict:
    """Figures drawn from `results` alone (also from a written report's curves)."""
    m, c = results["metrics"], results["curves"]
    figs = {}
    depths = [int(d) for d in c["decoupled.depths"]]
    lrs = [float(x) for x in c["decoupled.lrs"]]
    figs["modes_over_time"], axes = plot.panels(len(depths), width=4.2, height=3.6)
    for ax, depth in zip(axes, depths):
        p = f"decoupled.d{depth}"
        series = {
            "real GD": (c[f"{p}.gd_times"], c[f"{p}.real_gd"]),
            "mode GD map": (c[f"{p}.gd_times"], c[f"{p}.mode_map"]),
            "mode flow": (c[f"{p}.flow_times"], c[f"{p}.mode_flow"]),
        }
        plot.modes_over_time(series, ax=ax, title=f"depth {depth}, η = {lrs[-1]:g}")
    p = f"decoupled.d{depths[0]}"
    errors, styles = {}, {}
    for i, lr in enumerate(lrs):
        errors[f"flow vs GD, η={lr:g}"] = (c[f"{p}.lr{i}.times"], c[f"{p}.lr{i}.flow_vs_gd"])
        errors[f"mode map vs GD, η={lr:g}"] = (c[f"{p}.lr{i}.times"], c[f"{p}.lr{i}.map_vs_gd"])
        styles[f"mode map vs GD, η={lr:g}"] = ":"
    figs["errors_over_time"] = plot.curves_over_time(
        errors, styles=styles, ylabel="relative error of W(t)", title=f"depth {depths[0]}"
    )
    figs["flow_gd_gap"], _ = plot.loglog_fits(
        {f"depth {d}": (lrs, c[f"decoupled.d{d}.flow_gd_gap"]) for d in depths},
        xlabel="learning rate η",
        ylabel="max_t |W_flow − W_GD| / |W_GD|",
    )

    stds = [float(x) for x in c["random_init.stds"]]
    figs["random_init"], axes = plot.panels(3, width=5.0)
    example = {
        "real GD": (c["random_init.example.times"], c["random_init.example.real_gd"]),
        "theory (orthogonalized u₀)": (c["random_init.example.times"], c["random_init.example.theory"]),
    }
    plot.modes_over_time(
        example, ax=axes[0], logx=True, ylabel="u_i / s_i", title=f"random init, std {stds[0]:g}, seed 0"
    )
    plot.per_index(
        {
            f"{r}, std {std:g}": c[f"random_init.std{j}.{r}.max_rel_error"]
            for j, std in enumerate(stds)
            for r in RULES
        },
        ax=axes[1],
        threshold=0.05,
        xlabel="mode i (s descending)",
        ylabel="max over seeds of |T_pred − T_real| / T_real",
        title="half-rise-time error",
    )
    plot.parity(
        {
            f"std {std:g}": (
                c[f"random_init.std{j}.half_rise_real"],
                c[f"random_init.std{j}.half_rise_predicted"],
            )
            for j, std in enumerate(stds)
        },
        ax=axes[2],
        xlabel="real GD half-rise time",
        ylabel="predicted (orthogonalized u₀)",
        title="plateau (half-rise) times",
    )

    sweep = m["depth_sweep"]
    setup = sweep["setup"]
    d_all = c["depth_sweep.depths"]
    figs["depth_sweep"], axes = plot.panels(2, width=5.0)
    plot.xy(
        {
            "mode GD map (best η)": (d_all, c["depth_sweep.learning_steps"]),
            "real GD at that η": (d_all, c["depth_sweep.real_gd_steps"]),
        },
        styles={"real GD at that η": "x"},
        ax=axes[0],
        xlabel="depth N (weight layers)",
        ylabel=f"GD steps until all modes within {setup['tol']:.0%}",
        title=f"learning time, product u₀ = {setup['u0']:g}",
    )
    deep = (d_all >= 2) & np.isfinite(c["depth_sweep.best_lr"])
    plot.loglog_fits(
        {
            "best η (measured)": (d_all[deep], c["depth_sweep.best_lr"][deep]),
            "stability bound 2/(N s₁^{2−2/N})": (d_all[deep], c["depth_sweep.stability_lr"][deep]),
        },
        styles={"stability bound 2/(N s₁^{2−2/N})": "s--"},
        ax=axes[1],
        xlabel="depth N",
        ylabel="learning rate",
    )
    figs["learning_time_vs_lr"] = plot.xy(
        {
            f"N = {int(d)}": (c[f"depth_sweep.d{int(d)}.lrs"], c[f"depth_sweep.d{int(d)}.learning_steps"])
            for d in d_all
        },
        styles={f"N = {int(d)}": ".-" for d in d_all},
        vlines={f"η_stab, N = {int(d)}": s for d, s in zip(d_all, c["depth_sweep.stability_lr"])},
        logx=True,
        logy=True,
        xlabel="learning rate η",
        ylabel="learning time (GD steps)",
        title="mode GD map: every evaluated η (absolute grid + zooms)",
    )
    return figs


def summary(results: dict) -> str:
    """Markdown: one paragraph per measurement."""
    m = results["metrics"]
    num, a, b, c = m["numerics"], m["decoupled"], m["random_init"], m["depth_sweep"]
    sa, sb, sc = a["setup"], b["setup"], c["setup"]
    lines = [
        f"Run in {num['dtype']}; tight ODE solves with rtol {num['flow_rtol']:.3g}, atol {num['flow_atol']:.3g}.",
        f"**Decoupled balanced init** ({sa['size']}→…→{sa['size']}, s = {sa['s']}, u₀ = {sa['u0']}, "
        f"depths {sa['depths']}, η ∈ {sa['lrs']}, flow time {sa['flow_time']}).\n"
        f"- mode ODE vs full-parameter flow (end-to-end W): worst max relative error "
        f"{fmt(a['worst_mode_ode_vs_full_flow'])}\n"
        + (
            f"- closed form vs mode ODE (depth 2): {fmt(a['depths']['2']['closed_form_vs_mode_ode']['mode_strengths']['max'])}\n"
            if "2" in a["depths"]
            else ""
        )
        + f"- exact mode GD map vs real GD: worst {fmt(a['worst_mode_map_vs_real_gd'])}\n"
        + "- flow vs GD gap, fitted order in η: "
        + ", ".join(f"depth {k}: {v:.3f}" for k, v in a["flow_gd_gap_orders"].items()),
        f"**Plateau times from small random init** (two layers {len(sb['s'])}→{len(sb['s'])}→{len(sb['s'])}, "
        f"s = {sb['s']}, η = {sb['lr']}, stds {sb['stds']}, {sb['seeds']} seeds). Worst per-mode "
        f"half-rise-time error: naive projected u₀ {fmt(100 * b['worst']['projected'])}%, orthogonalized u₀ "
        f"{fmt(100 * b['worst']['orthogonalized'])}%.",
        _sweep_summary(c, sc),
    ]
    return "\n\n".join(lines)


def _sweep_summary(c: dict, sc: dict) -> str:
    head = (
        f"**Best learning rate vs depth** (s = {sc['s']}, balanced decoupled init with product u₀ = {sc['u0']}; "
        f"learning time = GD steps of the exact mode map until every mode stays within {sc['tol']:.0%} of its "
        f"target; η minimized on {sc['n_lrs']} log-spaced points over {sc['lr_range']} shared by all depths, "
        f"then {sc['zoom_rounds']} rounds of {sc['zoom_points'] - 1} points refining both ends of the set of "
        f"minimizers, located to {_worst_resolution(c):.1e} relative; real GD of the full network at the "
        "optimum).\n\n| N | best η | η_stab = 2/(N s₁^{2−2/N}) | best / stab | steps (mode map) | steps (real GD) |\n"
        "|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in c["table"]:
        if isinstance(r["learning_steps"], str):
            rows.append(f"| {r['depth']} | not learned | {r['stability_lr']:.4g} | – | – | – |")
            continue
        lo, hi = r["best_over_stability_interval"]
        rows.append(
            f"| {r['depth']} | {r['best_lr']:.5g} | {r['stability_lr']:.5g} | {r['best_over_stability']:.4f} "
            f"(minimal for {lo:.4f}–{hi:.4f}) | {r['learning_steps']} | {r['real_gd_steps']} |"
        )
    tail = ""
    if "best_lr_vs_depth_slope" in c:
        lo, hi = c["best_over_stability_range"]
        edges = ", ".join(
            f"N={r['depth']}: {r['steps_just_below']} / {r['steps_just_above']}"
            for r in c["table"]
            if "steps_just_above" in r and r["depth"] >= 2
        )
        tail = (
            f"\n\nFitted over N ≥ 2: best η ∝ N^{c['best_lr_vs_depth_slope']:.3f}, η_stab ∝ "
            f"N^{c['stability_lr_vs_depth_slope']:.3f}; best/stab from {lo:.3f} to {hi:.3f}, so the gap to "
            f"the bound, 1 − best/stab, goes from {1 - lo:.2%} to {1 - hi:.2%}. Learning time just "
            f"below / just above the set of minimizers (evaluated neighbours): {edges}."
        )
    return head + "\n".join(rows) + tail


def _worst_resolution(c: dict) -> float:
    return max((r["resolution"] for r in c["table"] if "resolution" in r), default=float("nan"))


def headline(metrics: dict) -> dict[str, str]:
    """The numbers that go into validation/RESULTS.md."""
    a, b, c = metrics["decoupled"], metrics["random_init"], metrics["depth_sweep"]
    out = {
        "mode ODE vs full-parameter flow (max rel. err.)": fmt(a["worst_mode_ode_vs_full_flow"]),
        "exact mode GD map vs real GD (max rel. err.)": fmt(a["worst_mode_map_vs_real_gd"]),
        "flow–GD gap order in η": ", ".join(f"N={k}: {v:.3f}" for k, v in a["flow_gd_gap_orders"].items()),
        "random init half-rise error, naive u₀": f"{100 * b['worst']['projected']:.1f}%",
        "random init half-rise error, orthogonalized u₀": f"{100 * b['worst']['orthogonalized']:.2g}%",
        "best lr / stability lr by depth (lr grid not tied to the bound)": ", ".join(
            f"N={r['depth']}: {r['best_over_stability']:.3f}"
            for r in c["table"]
            if "best_over_stability" in r
        ),
    }
    if "best_lr_vs_depth_slope" in c:
        out["best lr vs depth, fitted slope (stability bound's slope)"] = (
            f"{c['best_lr_vs_depth_slope']:.3f} ({c['stability_lr_vs_depth_slope']:.3f})"
        )
    if "2" in a["depths"]:
        out["closed form vs mode ODE (max rel. err.)"] = fmt(
            a["depths"]["2"]["closed_form_vs_mode_ode"]["mode_strengths"]["max"]
        )
    if "numerics" in metrics and metrics["numerics"]["dtype"] != "float64":
        n = metrics["numerics"]
        out["dtype, ODE tolerances"] = f"{n['dtype']}, rtol {n['flow_rtol']:.2g}, atol {n['flow_atol']:.2g}"
    return out
