r"""The three measurements of the `deep-linear` experiment (see `deep_linear.py`).

Each `measure_*(cfg, key, num, *, progress)` returns `(metrics, curves)`: a JSON-able dict of
the measured numbers (with the `setup` they were measured in) and flat name → array curves
for the figures. `num` holds the dtype's tolerances (`deep_linear.numerics()`).
"""

from __future__ import annotations

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import datasets
from .._compare import compare
from ._best_lr import minimize_over_log_lr, steps_until_settled
from ._util import first_crossing, loglog_slope

__all__ = ["RULES", "measure_best_lr_vs_depth", "measure_decoupled_init", "measure_plateau_times"]

RULES = ("projected", "orthogonalized")
"""Rules for the effective initial mode strengths of a random init (`lm.effective_initial_strengths`)."""


def _tight_flow(num: dict) -> ls.GradientFlow:
    return ls.GradientFlow(
        solver=diffrax.Dopri8(), rtol=num["flow_rtol"], atol=num["flow_atol"], max_steps=200_000
    )


def _linear_net(size: int, depth: int) -> lm.MLP:
    return lm.MLP(
        size, (size,) * (depth - 1), size, activation="linear", parameterization="standard", bias=False
    )


def _gd(dynamics, lr, steps, every):
    return ls.solve(dynamics, ls.GradientDescent(), lr=lr, steps=steps, save_every=every, progress=False)


# ---------------------------------------------------------------------------------------------
def measure_decoupled_init(cfg, key, num: dict, *, progress: bool = False):
    """Mode ODE / closed form / mode GD map vs the full network's flow and GD."""
    data = datasets.linear_teacher(cfg.s, cfg.size, cfg.size, cfg.n_train, 64, key=key)
    lrs = sorted(cfg.lrs)
    flow = _tight_flow(num)
    setup = {"size": cfg.size, "s": list(cfg.s), "u0": cfg.u0, "depths": list(cfg.depths), "lrs": lrs}
    res: dict = {"setup": setup | {"flow_time": cfg.flow_time}, "depths": {}}
    curves = {"lrs": np.asarray(lrs), "depths": np.asarray(cfg.depths)}
    for depth in cfg.depths:
        modes = lm.SaxeModes.from_dataset(data, depth, u0=cfg.u0)
        net = _linear_net(cfg.size, depth)
        real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.fold_in(key, depth)))
        steps0 = round(cfg.flow_time / lrs[0])
        every0 = steps0 // cfg.n_points
        flow_modes = ls.solve(modes, flow, lr=lrs[0], steps=steps0, save_every=every0, progress=False)
        flow_real = ls.solve(real, flow, lr=lrs[0], steps=steps0, save_every=every0, progress=False)
        d = {
            "mode_ode_vs_full_flow": compare(flow_modes, flow_real).summary(),
            "half_rise_time_balanced": [
                float(t) if np.isfinite(t) else "never (s = 0)"
                for t in np.asarray(modes.time_to_fraction(0.5))
            ],
        }
        if depth == 2:
            closed = ls.solve(modes, ls.ClosedForm(), lr=lrs[0], steps=steps0, save_every=every0)
            d["closed_form_vs_mode_ode"] = compare(
                closed, flow_modes, observables=("mode_strengths", "loss")
            ).summary()
        p = f"d{depth}"
        curves[f"{p}.flow_times"] = flow_modes.times
        curves[f"{p}.mode_flow"] = flow_modes["mode_strengths"]
        per_lr, gaps = {}, []
        for i, lr in enumerate(tqdm(lrs, desc=f"depth {depth}", leave=False, disable=not progress)):
            steps = round(cfg.flow_time / lr)
            gd_modes = _gd(modes, lr, steps, steps // cfg.n_points)
            gd_real = _gd(real, lr, steps, steps // cfg.n_points)
            map_vs_gd = compare(gd_modes, gd_real, observables=("end_to_end", "loss"))
            flow_vs_gd = compare(
                flow_real, gd_real, observables=("end_to_end", "loss"), labels=("flow", "GD")
            )
            gap = float(flow_vs_gd.max_relative_error["end_to_end"])
            per_lr[str(lr)] = {
                "mode_map_vs_real_gd": map_vs_gd.summary(),
                "flow_vs_real_gd": flow_vs_gd.summary(),
                "flow_gd_gap_per_eta_s1": gap / (lr * cfg.s[0]),
            }
            gaps.append(gap)
            curves[f"{p}.lr{i}.times"] = flow_vs_gd.times
            curves[f"{p}.lr{i}.flow_vs_gd"] = flow_vs_gd.errors["end_to_end"]
            curves[f"{p}.lr{i}.map_vs_gd"] = map_vs_gd.errors["end_to_end"]
            if i == len(lrs) - 1:
                curves[f"{p}.gd_times"] = gd_real.times
                curves[f"{p}.real_gd"] = modes.project(gd_real["end_to_end"])
                curves[f"{p}.mode_map"] = gd_modes["mode_strengths"]
        d["per_lr"] = per_lr
        d["flow_gd_gap_order"] = loglog_slope(lrs, gaps)
        curves[f"{p}.flow_gd_gap"] = np.asarray(gaps)
        res["depths"][str(depth)] = d
    depths = res["depths"].values()
    res["worst_mode_ode_vs_full_flow"] = max(d["mode_ode_vs_full_flow"]["end_to_end"]["max"] for d in depths)
    res["worst_mode_map_vs_real_gd"] = max(
        v["mode_map_vs_real_gd"]["end_to_end"]["max"] for d in depths for v in d["per_lr"].values()
    )
    res["flow_gd_gap_orders"] = {k: d["flow_gd_gap_order"] for k, d in res["depths"].items()}
    return res, curves


# ---------------------------------------------------------------------------------------------
def measure_plateau_times(cfg, key, num: dict, *, progress: bool = False):
    """Per-mode half-rise times of real GD from small random init vs the mode theory."""
    m = len(cfg.random_s)
    k_data, k_init = jax.random.split(key)
    data = datasets.linear_teacher(cfg.random_s, m, m, 4 * m, 0, key=k_data)
    U, s, V, _ = lm.target_modes(data)
    net = _linear_net(m, 2)
    lr = cfg.random_lr
    setup = {"s": list(cfg.random_s), "lr": lr, "stds": list(cfg.random_stds), "seeds": cfg.random_seeds}
    res: dict = {"setup": setup, "stds": {}}
    curves = {"stds": np.asarray(cfg.random_stds), "s": np.asarray(s)}
    for si, std in enumerate(cfg.random_stds):
        errs = {r: [] for r in RULES}
        t_real_all, t_pred_all = [], []
        inits = []
        for seed in range(cfg.random_seeds):
            k1, k2 = jax.random.split(jax.random.fold_in(jax.random.fold_in(k_init, si), seed))
            W1 = std * jax.random.normal(k1, (m, m))
            W2 = std * jax.random.normal(k2, (m, m))
            theories = {
                r: lm.SaxeModes.balanced(s, lm.effective_initial_strengths(W1, W2, U, V, rule=r), 2, U=U, V=V)
                for r in RULES
            }
            inits.append((W1, W2, theories))
        # one horizon for all seeds (one compile per dynamics): 1.5x the latest half-rise
        # time that either rule predicts
        t_latest = max(float(jnp.max(th.time_to_fraction(0.5))) for *_, ths in inits for th in ths.values())
        steps = int(math.ceil(1.5 * t_latest / lr / 100) * 100)
        for seed in tqdm(range(cfg.random_seeds), desc=f"std {std:g}", leave=False, disable=not progress):
            W1, W2, theories = inits[seed]
            gd = _gd(lm.Trained(net, data, params=((W1, None), (W2, None))), lr, steps, 1)
            u_real = np.asarray(theories[RULES[0]].project(gd["end_to_end"]))
            t_real = first_crossing(np.asarray(gd.times), u_real, np.asarray(s) / 2)
            for rule, theory in theories.items():
                tr = _gd(theory, lr, steps, 1)
                u_pred = np.asarray(tr["mode_strengths"])
                t_pred = first_crossing(np.asarray(tr.times), u_pred, np.asarray(s) / 2)
                errs[rule].append(np.abs(t_pred - t_real) / t_real)
                if rule == "orthogonalized":
                    t_real_all.append(t_real)
                    t_pred_all.append(t_pred)
                    if seed == 0 and si == 0:
                        curves["example.times"] = gd.times
                        curves["example.real_gd"] = u_real / np.asarray(s)
                        curves["example.theory"] = u_pred / np.asarray(s)
        d = {}
        for rule in RULES:
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
            curves[f"std{si}.{rule}.max_rel_error"] = e.max(0)
        curves[f"std{si}.half_rise_real"] = np.stack(t_real_all)
        curves[f"std{si}.half_rise_predicted"] = np.stack(t_pred_all)
        d["steps"] = steps
        res["stds"][f"{std:g}"] = d
    res["worst"] = {r: max(v[r]["max_rel_error"] for v in res["stds"].values()) for r in RULES}
    return res, curves


# ---------------------------------------------------------------------------------------------
def measure_best_lr_vs_depth(cfg, key, num: dict, *, progress: bool = False):
    """Best learning rate and learning time per depth (mode GD map), checked by real GD."""
    data = datasets.linear_teacher(cfg.s, cfg.size, cfg.size, cfg.n_train, 0, key=key)
    s = lm.target_modes(data)[1][: len(cfg.s)]  # modes with a target; the others (s = 0) only decay
    s1 = float(s[0])
    rows, curves = [], {"depths": np.asarray(cfg.sweep_depths)}
    for depth in tqdm(cfg.sweep_depths, desc="best lr vs depth", leave=False, disable=not progress):
        search = minimize_over_log_lr(
            _learning_time_of_mode_map(
                s, cfg.sweep_u0, depth, cfg.sweep_max_steps, cfg.sweep_tol, cfg.sweep_zoom_points
            ),
            *cfg.sweep_lr_range,
            n_grid=cfg.sweep_n_lrs,
            n_zoom=cfg.sweep_zoom_points,
            rounds=cfg.sweep_zoom_rounds,
        )
        # the mode map is linearly unstable at its fixed point when η N s1^{2-2/N} > 2
        stable = 2.0 / (depth * s1 ** (2 - 2 / depth))
        row = {"depth": depth, "stability_lr": stable}
        if np.isfinite(search.value):
            lo, hi = search.interval
            row |= {
                "best_lr": search.best,
                "best_lr_interval": [lo, hi],
                "best_over_stability": search.best / stable,
                "best_over_stability_interval": [lo / stable, hi / stable],
                "learning_steps": int(search.value),
                "resolution": search.resolution,
                # the evaluated neighbours of the set of minimizers: how sharp the optimum is
                "steps_just_below": _neighbour_value(search, below=True),
                "steps_just_above": _neighbour_value(search, below=False),
                "minimum_at_lr_range_edge": search.at_range_edge,
                "real_gd_steps": _real_gd_learning_steps(cfg, data, key, depth, search, s),
            }
        else:
            row |= {"best_lr": "not learned", "learning_steps": "not learned", "real_gd_steps": "not learned"}
        rows.append(row)
        curves[f"d{depth}.lrs"] = search.lrs
        curves[f"d{depth}.learning_steps"] = search.values
    learned = [row for row in rows if isinstance(row["learning_steps"], int)]
    fitted = [row for row in learned if row["depth"] >= 2]
    setup = {
        "s": list(cfg.s),
        "u0": cfg.sweep_u0,
        "tol": cfg.sweep_tol,
        "lr_range": list(cfg.sweep_lr_range),
        "n_lrs": cfg.sweep_n_lrs,
        "zoom_points": cfg.sweep_zoom_points,
        "zoom_rounds": cfg.sweep_zoom_rounds,
        "max_steps": cfg.sweep_max_steps,
    }
    res: dict = {"setup": setup, "table": rows}
    if len(fitted) >= 2:
        ds = [row["depth"] for row in fitted]
        res["best_lr_vs_depth_slope"] = loglog_slope(ds, [row["best_lr"] for row in fitted])
        res["stability_lr_vs_depth_slope"] = loglog_slope(ds, [row["stability_lr"] for row in fitted])
        ratios = [row["best_over_stability"] for row in fitted]
        res["best_over_stability_range"] = [min(ratios), max(ratios)]
    for name, key_ in [
        ("best_lr", "best_lr"),
        ("stability_lr", "stability_lr"),
        ("learning_steps", "learning_steps"),
    ]:
        curves[name] = np.asarray(
            [row[key_] if not isinstance(row[key_], str) else np.inf for row in rows], float
        )
    curves["real_gd_steps"] = np.asarray(
        [row["real_gd_steps"] if isinstance(row["real_gd_steps"], int) else np.inf for row in rows], float
    )
    return res, curves


def _neighbour_value(search, *, below: bool):
    lo, hi = search.interval
    side = search.values[search.lrs < lo] if below else search.values[search.lrs > hi]
    if side.size == 0:
        return "none evaluated"
    v = side[-1] if below else side[0]
    return int(v) if np.isfinite(v) else "not learned"


def _learning_time_of_mode_map(s, u0: float, depth: int, max_steps: int, tol: float, chunk: int):
    """η ↦ GD steps until all balanced modes stay within `tol` of `s`; evaluated `chunk`
    learning rates at a time (padded), so one depth compiles once."""
    modes = lm.SaxeModes.balanced(s, u0, depth)

    def one(lr):
        tr = ls.solve(
            modes, ls.GradientDescent(), lr=lr, steps=max_steps, save_every=1, progress=False, throw=False
        )
        return steps_until_settled(tr["mode_strengths"], s, tol, xp=jnp)

    batched = jax.jit(jax.vmap(one))

    def learning_time(lrs):
        lrs = np.asarray(lrs, float)
        padded = np.concatenate([lrs, np.full(-len(lrs) % chunk, lrs[-1])])
        out = [np.asarray(batched(jnp.asarray(part))) for part in padded.reshape(-1, chunk)]
        return np.concatenate(out)[: len(lrs)]

    return learning_time


def _real_gd_learning_steps(cfg, data, key, depth, search, s):
    """The full network (decoupled init) trained by GD at the best η: steps to learn."""
    modes = lm.SaxeModes.from_dataset(data, depth, u0=cfg.sweep_u0)
    net = _linear_net(cfg.size, depth)
    real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.fold_in(key, depth)))
    gd = _gd(real, search.best, int(search.value) + 50, 1)
    u = np.asarray(modes.project(gd["end_to_end"]))[:, : len(s)]
    k = steps_until_settled(u, np.asarray(s), cfg.sweep_tol)
    return int(k) if np.isfinite(k) else "not learned"
