r"""Experiment `deep-linear`: deep linear networks, theory against real gradient descent.

(a) Decoupled balanced init, depths 2–4: closed form / mode ODE / exact mode GD map
    against the full network trained by GD and by gradient flow, several learning rates;
    the flow–GD gap and its order in η.
(b) Small random init (two layers): per-mode half-rise times of real GD against the
    mode theory started from the effective initial strengths (naive projection, and
    the sequential orthogonalization of the hidden directions).
(c) Depth sweep (Saxe et al. 2014, Fig. 4 type): learning time and best learning rate
    against depth, from the exact mode map over a learning-rate grid, checked by real GD.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import diffrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import datasets
from .._compare import compare
from ..report import Report
from ._util import first_crossing, fmt, loglog_slope

NAME = "deep-linear"
DESCRIPTION = (
    "Deep linear networks: Saxe modes, mode ODE and exact GD map vs real GD; stepwise learning; depth sweep."
)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    # (a) decoupled init
    size: int = 8
    n_train: int = 32
    s: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5)
    depths: tuple[int, ...] = (2, 3, 4)
    u0: float = 0.05
    flow_time: float = 20.0
    lrs: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02, 0.05)
    n_points: int = 100
    # (b) small random init, two layers
    random_s: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
    random_stds: tuple[float, ...] = (1e-3, 1e-4, 1e-6)
    random_seeds: int = 5
    random_lr: float = 0.02
    # (c) depth sweep
    sweep_depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    sweep_u0: float = 1e-2
    sweep_n_lrs: int = 40
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
            sweep_n_lrs=24,
            sweep_max_steps=8_000,
        )


def run(config: Config, *, progress: bool = True) -> Report:
    key = jax.random.key(config.seed)
    k_a, k_b, k_c = jax.random.split(key, 3)
    metrics, figures, lines = {}, {}, []
    parts = [("decoupled", _part_a, k_a), ("random_init", _part_b, k_b), ("depth_sweep", _part_c, k_c)]
    for name, part, k in tqdm(parts, desc=NAME, disable=not progress):
        m, f, text = part(config, k, progress)
        metrics[name] = m
        figures.update(f)
        lines.append(text)
    summary = "\n\n".join(lines)
    return Report(name=NAME, config=asdict(config), metrics=metrics, summary=summary, figures=figures)


# ---------------------------------------------------------------------------------
# (a) decoupled balanced init
# ---------------------------------------------------------------------------------
def _tight() -> ls.GradientFlow:
    return ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14, max_steps=200_000)


def _linear_net(size: int, depth: int) -> lm.MLP:
    return lm.MLP(
        size, (size,) * (depth - 1), size, activation="linear", parameterization="standard", bias=False
    )


def _part_a(cfg: Config, key, progress):
    data = datasets.linear_teacher(cfg.s, cfg.size, cfg.size, cfg.n_train, 64, key=key)
    lrs = sorted(cfg.lrs)
    for lr in lrs:
        steps = cfg.flow_time / lr
        if abs(steps - round(steps)) > 1e-9 or round(steps) % cfg.n_points:
            raise ValueError(f"deep-linear: flow_time/lr = {steps} must be an integer multiple of n_points.")
    res: dict = {"depths": {}}
    fig_modes, axes = plt.subplots(1, len(cfg.depths), figsize=(4.2 * len(cfg.depths), 3.6), squeeze=False)
    fig_err, ax_err = plt.subplots(figsize=(5.5, 3.8))
    gaps_by_depth = {}
    for col, depth in enumerate(cfg.depths):
        modes = lm.SaxeModes.from_dataset(data, depth, u0=cfg.u0)
        net = _linear_net(cfg.size, depth)
        real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.fold_in(key, depth)))
        lr0 = lrs[0]
        steps0 = round(cfg.flow_time / lr0)
        every0 = steps0 // cfg.n_points
        flow_modes = ls.solve(modes, _tight(), lr=lr0, steps=steps0, save_every=every0, progress=False)
        flow_real = ls.solve(real, _tight(), lr=lr0, steps=steps0, save_every=every0, progress=False)
        d = {
            "mode_ode_vs_full_flow": compare(flow_modes, flow_real).summary(),
            "half_rise_time_balanced": [
                float(t) if np.isfinite(t) else "never (s = 0)"
                for t in np.asarray(modes.time_to_fraction(0.5))
            ],
        }
        if depth == 2:
            closed = ls.solve(modes, ls.ClosedForm(), lr=lr0, steps=steps0, save_every=every0)
            d["closed_form_vs_mode_ode"] = compare(
                closed, flow_modes, observables=("mode_strengths", "loss")
            ).summary()
        per_lr = {}
        for lr in tqdm(lrs, desc=f"depth {depth}", leave=False, disable=not progress):
            steps = round(cfg.flow_time / lr)
            every = steps // cfg.n_points
            gd_modes = ls.solve(
                modes, ls.GradientDescent(), lr=lr, steps=steps, save_every=every, progress=False
            )
            gd_real = ls.solve(
                real, ls.GradientDescent(), lr=lr, steps=steps, save_every=every, progress=False
            )
            map_vs_gd = compare(gd_modes, gd_real, observables=("end_to_end", "loss"))
            flow_vs_gd = compare(
                flow_real, gd_real, observables=("end_to_end", "loss"), labels=("flow", "GD")
            )
            per_lr[str(lr)] = {
                "mode_map_vs_real_gd": map_vs_gd.summary(),
                "flow_vs_real_gd": flow_vs_gd.summary(),
                "flow_gd_gap_per_eta_s1": float(flow_vs_gd.max_relative_error["end_to_end"])
                / (lr * cfg.s[0]),
            }
            if depth == cfg.depths[0]:
                ax_err.semilogy(
                    np.asarray(flow_vs_gd.times),
                    np.asarray(flow_vs_gd.errors["end_to_end"]),
                    label=f"flow vs GD, η={lr}",
                )
                ax_err.semilogy(
                    np.asarray(map_vs_gd.times),
                    np.maximum(np.asarray(map_vs_gd.errors["end_to_end"]), 1e-17),
                    ":",
                    label=f"mode map vs GD, η={lr}",
                )
            if lr == lrs[-1]:
                ax = axes[0, col]
                U, V = modes.U, modes.V
                real_u = np.asarray(jnp.einsum("km,tkd,dm->tm", U, gd_real["end_to_end"], V))
                t = np.asarray(gd_real.times)
                colors = plt.cm.viridis(np.linspace(0, 0.85, len(cfg.s)))
                for i in range(len(cfg.s)):
                    ax.plot(
                        t,
                        real_u[:, i],
                        "-",
                        lw=3,
                        alpha=0.4,
                        color=colors[i],
                        label="real GD" if i == 0 else None,
                    )
                    ax.plot(
                        t,
                        np.asarray(gd_modes["mode_strengths"])[:, i],
                        "--",
                        color=colors[i],
                        label="mode GD map" if i == 0 else None,
                    )
                    ax.plot(
                        np.asarray(flow_modes.times),
                        np.asarray(flow_modes["mode_strengths"])[:, i],
                        ":",
                        color="k",
                        lw=1,
                        label="mode flow" if i == 0 else None,
                    )
                ax.set_title(f"depth {depth}, η = {lr}")
                ax.set_xlabel("flow time t = η·k")
                ax.set_ylabel("mode strength u_i")
                ax.legend(fontsize=7)
        gaps = [per_lr[str(lr)]["flow_vs_real_gd"]["end_to_end"]["max"] for lr in lrs]
        d["per_lr"] = per_lr
        d["flow_gd_gap_order"] = loglog_slope(lrs, gaps)
        gaps_by_depth[depth] = gaps
        res["depths"][str(depth)] = d
    ax_err.set_xlabel("flow time t = η·k")
    ax_err.set_ylabel("relative error of W(t)")
    ax_err.set_title(f"depth {cfg.depths[0]}")
    ax_err.legend(fontsize=6)
    fig_gap, ax_gap = plt.subplots(figsize=(5, 3.6))
    for depth, gaps in gaps_by_depth.items():
        ax_gap.loglog(lrs, gaps, "o-", label=f"depth {depth} (order {loglog_slope(lrs, gaps):.2f})")
    ax_gap.set_xlabel("learning rate η")
    ax_gap.set_ylabel("max_t |W_flow - W_GD| / |W_GD|")
    ax_gap.legend(fontsize=8)
    fig_modes.tight_layout()

    worst = lambda key_path: max(  # noqa: E731
        _dig(res["depths"][str(dp)], key_path) for dp in cfg.depths
    )
    res["worst_mode_ode_vs_full_flow"] = worst(("mode_ode_vs_full_flow", "end_to_end", "max"))
    res["worst_mode_map_vs_real_gd"] = max(
        v["mode_map_vs_real_gd"]["end_to_end"]["max"]
        for dp in cfg.depths
        for v in res["depths"][str(dp)]["per_lr"].values()
    )
    res["flow_gd_gap_orders"] = {str(dp): res["depths"][str(dp)]["flow_gd_gap_order"] for dp in cfg.depths}
    text = (
        f"**(a) Decoupled balanced init** ({cfg.size}→…→{cfg.size}, s = {list(cfg.s)}, u₀ = {cfg.u0}, "
        f"depths {list(cfg.depths)}, η ∈ {lrs}, flow time {cfg.flow_time}).\n"
        f"- mode ODE vs full-parameter flow (end-to-end W): worst max relative error "
        f"{fmt(res['worst_mode_ode_vs_full_flow'])}\n"
        + (
            f"- closed form vs mode ODE (depth 2): {fmt(res['depths']['2']['closed_form_vs_mode_ode']['mode_strengths']['max'])}\n"
            if "2" in res["depths"]
            else ""
        )
        + f"- exact mode GD map vs real GD: worst {fmt(res['worst_mode_map_vs_real_gd'])}\n"
        + "- flow vs GD gap, fitted order in η: "
        + ", ".join(f"depth {k}: {v:.3f}" for k, v in res["flow_gd_gap_orders"].items())
    )
    return res, {"modes_over_time": fig_modes, "errors_over_time": fig_err, "flow_gd_gap": fig_gap}, text


def _dig(d, path):
    for p in path:
        d = d[p]
    return d


# ---------------------------------------------------------------------------------
# (b) small random init: stepwise learning
# ---------------------------------------------------------------------------------
def _part_b(cfg: Config, key, progress):
    m = len(cfg.random_s)
    k_data, k_init = jax.random.split(key)
    data = datasets.linear_teacher(cfg.random_s, m, m, 4 * m, 0, key=k_data)
    U, s, V, _ = lm.target_modes(data)
    net = _linear_net(m, 2)
    lr = cfg.random_lr
    res = {"stds": {}}
    rules = ("projected", "orthogonalized")
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    pairs = []  # (real, predicted) half-rise times, orthogonalized rule
    for si, std in enumerate(cfg.random_stds):
        errs = {r: [] for r in rules}
        for seed in tqdm(range(cfg.random_seeds), desc=f"std {std:g}", leave=False, disable=not progress):
            k = jax.random.fold_in(jax.random.fold_in(k_init, si), seed)
            k1, k2 = jax.random.split(k)
            W1 = std * jax.random.normal(k1, (m, m))
            W2 = std * jax.random.normal(k2, (m, m))
            # horizon: 1.5x the latest half-rise time that either rule predicts
            t_pred = max(
                float(
                    jnp.max(
                        lm.SaxeModes.balanced(
                            s, lm.effective_initial_strengths(W1, W2, U, V, rule=r), 2
                        ).time_to_fraction(0.5)
                    )
                )
                for r in rules
            )
            steps = int(math.ceil(1.5 * t_pred / lr / 100) * 100)
            real = lm.Trained(net, data, params=((W1, None), (W2, None)))
            gd = ls.solve(real, ls.GradientDescent(), lr=lr, steps=steps, save_every=1, progress=False)
            u_real = np.asarray(jnp.einsum("km,tkd,dm->tm", U, gd["end_to_end"], V))
            t_real = first_crossing(np.asarray(gd.times), u_real, np.asarray(s) / 2)
            for rule in rules:
                u0 = lm.effective_initial_strengths(W1, W2, U, V, rule=rule)
                theory = lm.SaxeModes.balanced(s, u0, 2)
                tr = ls.solve(theory, ls.GradientDescent(), lr=lr, steps=steps, save_every=1, progress=False)
                t_pred = first_crossing(
                    np.asarray(tr.times), np.asarray(tr["mode_strengths"]), np.asarray(s) / 2
                )
                errs[rule].append(np.abs(t_pred - t_real) / t_real)
                if rule == "orthogonalized":
                    pairs.append((t_real, t_pred, std))
                if seed == 0 and si == 0 and rule == "orthogonalized":
                    colors = plt.cm.viridis(np.linspace(0, 0.85, m))
                    for i in range(m):
                        axes[0].plot(
                            np.asarray(gd.times),
                            u_real[:, i] / float(s[i]),
                            "-",
                            lw=3,
                            alpha=0.4,
                            color=colors[i],
                            label="real GD" if i == 0 else None,
                        )
                        axes[0].plot(
                            np.asarray(tr.times),
                            np.asarray(tr["mode_strengths"])[:, i] / float(s[i]),
                            "--",
                            color=colors[i],
                            label="theory (orthogonalized u₀)" if i == 0 else None,
                        )
                    axes[0].set_xscale("log")
                    axes[0].set_xlabel("flow time t = η·k")
                    axes[0].set_ylabel("u_i / s_i")
                    axes[0].set_title(f"random init, std {std:g}, seed 0")
                    axes[0].legend(fontsize=7)
        d = {}
        for rule in rules:
            e = np.stack(errs[rule])  # seeds × modes
            finite = np.isfinite(e).all(axis=0)
            d[rule] = {
                "max_rel_error_per_mode": [
                    float(x) if f else "not reached" for x, f in zip(e.max(0), finite)
                ],
                "mean_rel_error_per_mode": [
                    float(x) if f else "not reached" for x, f in zip(e.mean(0), finite)
                ],
                "max_rel_error": float(np.max(e[:, finite])),
            }
            axes[1].semilogy(
                np.arange(1, m + 1),
                e.max(0),
                "o-" if rule == "orthogonalized" else "s:",
                label=f"{rule}, std {std:g}",
            )
        d["steps_last_seed"] = steps
        res["stds"][f"{std:g}"] = d
    axes[1].axhline(0.05, color="gray", lw=0.8, ls="--")
    axes[1].set_xlabel("mode i (s descending)")
    axes[1].set_ylabel("max over seeds of |T_pred − T_real| / T_real")
    axes[1].set_title("half-rise-time error")
    axes[1].legend(fontsize=7)
    for j, std in enumerate(cfg.random_stds):
        tr_, tp_ = [np.concatenate([p[i] for p in pairs if p[2] == std]) for i in (0, 1)]
        axes[2].loglog(tr_, tp_, "o", ms=4, color=f"C{j}", label=f"std {std:g}")
    lo = min(np.min(p[0]) for p in pairs)
    hi = max(np.max(p[0][np.isfinite(p[0])]) for p in pairs)
    axes[2].loglog([lo, hi], [lo, hi], "k--", lw=0.8)
    axes[2].set_xlabel("real GD half-rise time")
    axes[2].set_ylabel("predicted (orthogonalized u₀)")
    axes[2].set_title("plateau (half-rise) times")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    res["worst"] = {r: max(v[r]["max_rel_error"] for v in res["stds"].values()) for r in rules}
    text = (
        f"**(b) Small random init** (two layers {m}→{m}→{m}, s = {list(cfg.random_s)}, η = {lr}, "
        f"stds {list(cfg.random_stds)}, {cfg.random_seeds} seeds). Worst per-mode half-rise-time error: "
        f"naive projected u₀ {fmt(100 * res['worst']['projected'])}%, orthogonalized u₀ "
        f"{fmt(100 * res['worst']['orthogonalized'])}%."
    )
    return res, {"random_init": fig}, text


# ---------------------------------------------------------------------------------
# (c) depth sweep
# ---------------------------------------------------------------------------------
def _part_c(cfg: Config, key, progress):
    data = datasets.linear_teacher(cfg.s, cfg.size, cfg.size, cfg.n_train, 0, key=key)
    U, s_all, V, offset = lm.target_modes(data)
    r = len(cfg.s)  # modes with a target; the others (s = 0) only decay
    s, U_r, V_r = s_all[:r], U[:, :r], V[:, :r]
    s_max = float(s[0])
    rows = []
    for depth in tqdm(cfg.sweep_depths, desc="depth sweep", leave=False, disable=not progress):
        # the map is linearly unstable at the fixed point when η N s^{2-2/N} > 2
        lr_stable = 2.0 / (depth * s_max ** (2 - 2 / depth))
        lrs = jnp.geomspace(lr_stable / 200, 1.2 * lr_stable, cfg.sweep_n_lrs)
        modes = lm.SaxeModes.balanced(s, cfg.sweep_u0, depth)

        def steps_to_learn(lr):
            tr = ls.solve(
                modes,
                ls.GradientDescent(),
                lr=lr,
                steps=cfg.sweep_max_steps,
                save_every=1,
                progress=False,
                throw=False,
            )
            u = tr["mode_strengths"]
            ok = jnp.all(jnp.abs(u - s) <= cfg.sweep_tol * s, axis=1)
            # learned = within tolerance from then on (so overshooting oscillations do not count)
            settled = jnp.flip(jnp.cumprod(jnp.flip(ok)))
            return jnp.where(jnp.any(settled), jnp.argmax(settled), jnp.inf)

        k_steps = np.asarray(jax.vmap(steps_to_learn)(lrs))
        best = int(np.argmin(k_steps))
        rows.append(
            {
                "depth": depth,
                "best_lr": float(lrs[best]),
                "learning_steps": float(k_steps[best]),
                "stability_lr": lr_stable,
                "lrs": np.asarray(lrs),
                "steps": k_steps,
            }
        )
    # real GD at the best learning rate of each depth (decoupled init, full matrices)
    for row in rows:
        depth = row["depth"]
        if not np.isfinite(row["learning_steps"]):
            row["real_gd_steps"] = "not learned"
            continue
        modes = lm.SaxeModes.from_dataset(data, depth, u0=cfg.sweep_u0)
        net = _linear_net(cfg.size, depth)
        real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.fold_in(key, depth)))
        steps = int(row["learning_steps"]) + 50
        gd = ls.solve(
            real, ls.GradientDescent(), lr=row["best_lr"], steps=steps, save_every=1, progress=False
        )
        u = np.asarray(jnp.einsum("km,tkd,dm->tm", U_r, gd["end_to_end"], V_r))
        ok = np.all(np.abs(u - np.asarray(s)) <= cfg.sweep_tol * np.asarray(s), axis=1)
        settled = np.flip(np.cumprod(np.flip(ok))).astype(bool)
        row["real_gd_steps"] = int(np.argmax(settled)) if settled.any() else "not learned"
    deep = [r for r in rows if r["depth"] >= 2]
    slope_lr = loglog_slope([r["depth"] for r in deep], [r["best_lr"] for r in deep])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    depths = [r["depth"] for r in rows]
    axes[0].plot(depths, [r["learning_steps"] for r in rows], "o-", label="mode GD map (best η)")
    axes[0].plot(
        [r["depth"] for r in rows if isinstance(r["real_gd_steps"], int)],
        [r["real_gd_steps"] for r in rows if isinstance(r["real_gd_steps"], int)],
        "x",
        ms=9,
        color="k",
        label="real GD at that η",
    )
    axes[0].set_xlabel("depth N (weight layers)")
    axes[0].set_ylabel(f"GD steps until all modes within {cfg.sweep_tol:.0%}")
    axes[0].set_title(f"learning time, product u₀ = {cfg.sweep_u0}")
    axes[0].legend(fontsize=8)
    axes[1].loglog(
        [r["depth"] for r in deep], [r["best_lr"] for r in deep], "o-", label=f"best η (slope {slope_lr:.2f})"
    )
    axes[1].loglog(
        [r["depth"] for r in deep], [r["stability_lr"] for r in deep], ":", label="2/(N s₁^{2−2/N})"
    )
    axes[1].set_xlabel("depth N")
    axes[1].set_ylabel("learning rate")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    table = [
        {k: r[k] for k in ("depth", "best_lr", "learning_steps", "real_gd_steps", "stability_lr")}
        for r in rows
    ]
    for r in table:
        if not np.isfinite(r["learning_steps"]):
            r["learning_steps"] = "not learned"
    res = {"table": table, "best_lr_vs_depth_slope": slope_lr}
    text = (
        f"**(c) Depth sweep** (s = {list(cfg.s)}, balanced decoupled init with product u₀ = {cfg.sweep_u0}, "
        f"best of {cfg.sweep_n_lrs} learning rates): best η ∝ N^{slope_lr:.2f}; learning time in steps by depth: "
        + ", ".join(f"N={r['depth']}: {r['learning_steps']}" for r in table)
        + ". Real GD at the best η: "
        + ", ".join(f"N={r['depth']}: {r['real_gd_steps']}" for r in table)
        + "."
    )
    return res, {"depth_sweep": fig}, text


def headline(metrics: dict) -> dict[str, str]:
    """The numbers that go into validation/RESULTS.md."""
    a, b, c = metrics["decoupled"], metrics["random_init"], metrics["depth_sweep"]
    out = {
        "mode ODE vs full-parameter flow (max rel. err.)": fmt(a["worst_mode_ode_vs_full_flow"]),
        "exact mode GD map vs real GD (max rel. err.)": fmt(a["worst_mode_map_vs_real_gd"]),
        "flow–GD gap order in η": ", ".join(f"N={k}: {v:.3f}" for k, v in a["flow_gd_gap_orders"].items()),
        "random init half-rise error, naive u₀": f"{100 * b['worst']['projected']:.1f}%",
        "random init half-rise error, orthogonalized u₀": f"{100 * b['worst']['orthogonalized']:.2g}%",
        "best lr vs depth, fitted slope": f"{c['best_lr_vs_depth_slope']:.2f}",
    }
    if "2" in a["depths"]:
        out["closed form vs mode ODE (max rel. err.)"] = fmt(
            a["depths"]["2"]["closed_form_vs_mode_ode"]["mode_strengths"]["max"]
        )
    return out
