r"""The two measurements of the `discrete-gd` experiment, each returning `(metrics, curves)`.

- `measure_error_orders`: the global error of gradient flow and of the modified flows of
  orders 1 and 2 against real GD after a fixed flow time, over a range of learning rates,
  with the fitted orders in $\eta$.
- `measure_edge_of_stability`: real GD at a learning rate where progressive sharpening takes
  the sharpness to $2/\eta$ — its crossing, overshoot, return and the onset of the edge
  (`lmech.validation.edge_of_stability`, defined without a tolerance band) — and the central
  flow and gradient flow against it, started at the initialization and at the onset.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import datasets
from .._eos import edge_of_stability, moving_average
from ._util import loglog_slope

FLOWS = {
    "gradient_flow": "gradient flow",
    "modified_1": "modified flow, order 1",
    "modified_2": "modified flow, order 2",
}


def tight_tolerances() -> tuple[float, float]:
    """`(rtol, atol)` of the error-order solves: 1e-12 / 1e-14 in float64, what the dtype can
    reach otherwise (`100 eps`, `eps`)."""
    eps = float(jnp.finfo(jnp.result_type(float)).eps)
    return max(1e-12, 100 * eps), max(1e-14, eps)


def tanh_net(widths, sigma_w: float = 1.0) -> lm.MLP:
    return lm.MLP(64, tuple(widths), 1, activation="tanh", parameterization="standard", sigma_w=sigma_w)


def measure_error_orders(cfg, key, *, progress: bool = True) -> tuple[dict, dict]:
    """Parameter distance $\\|\\theta_{\\rm flow}(T) - \\theta_{\\rm GD}(T)\\| / \\|\\theta_{\\rm GD}(T)\\|$
    for each flow and learning rate, and its fitted log–log slope (the global order)."""
    data = datasets.digits(cfg.orders_n_train, 16, key=jax.random.fold_in(key, 1))
    real = lm.Trained(tanh_net(cfg.orders_widths), data, key=jax.random.fold_in(key, 2))
    rec = ls.Recorded(real, sharpness=False, params=True)
    rtol, atol = tight_tolerances()
    tight = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=rtol, atol=atol)
    methods = {
        "gradient_flow": tight,
        "modified_1": ls.ModifiedFlow(1, tight),
        "modified_2": ls.ModifiedFlow(2, tight),
    }
    lrs = np.asarray(cfg.orders_lrs, float)
    errors = {m: [] for m in methods}
    s0 = float(ls.sharpness(real.loss, real.init()))
    for lr in tqdm(lrs, desc="discrete-gd error orders", disable=not progress):
        steps = int(round(cfg.orders_flow_time / lr))
        gd = ls.solve(rec, ls.GradientDescent(), lr=float(lr), steps=steps, save_every=steps)["params"][-1]
        for m, method in methods.items():
            th = ls.solve(rec, method, lr=float(lr), steps=steps, save_every=steps)["params"][-1]
            errors[m].append(float(jnp.linalg.norm(th - gd) / jnp.linalg.norm(gd)))
    metrics = {
        "setup": {
            "n_train": cfg.orders_n_train,
            "widths": list(cfg.orders_widths),
            "flow_time": cfg.orders_flow_time,
            "rtol": rtol,
            "atol": atol,
        },
        "lrs": lrs.tolist(),
        "eta_times_sharpness": (lrs * s0).tolist(),
        "errors": {FLOWS[m]: e for m, e in errors.items()},
        "orders": {FLOWS[m]: loglog_slope(lrs, e) for m, e in errors.items()},
        "n_params": int(ravel_pytree(real.init())[0].size),
    }
    curves = {"lrs": lrs, **{m: np.asarray(e) for m, e in errors.items()}}
    return metrics, curves


def measure_edge_of_stability(cfg, key, *, progress: bool = True) -> tuple[dict, dict]:
    """Real GD's top Hessian eigenvalues over time and its edge-of-stability landmarks; the
    central flow ($k$ = `cfg.eos_k`) and gradient flow from the initialization and from GD's
    state at the onset of the edge (the average of two consecutive iterates, which cancels
    the period-2 oscillation), against GD's `eos_window`-step averaged loss."""
    lr, every = cfg.eos_lr, cfg.eos_save_every
    steps = int(round(cfg.eos_flow_time / lr))
    steps -= steps % every
    data = datasets.digits(cfg.eos_n_train, 64, key=jax.random.fold_in(key, 3))
    real = lm.Trained(tanh_net(cfg.eos_widths, cfg.eos_sigma_w), data, key=jax.random.fold_in(key, 4))
    unravel = ravel_pytree(real.init())[1]
    rec = ls.Recorded(real, sharpness=False, params=True)
    bar = tqdm(total=6, desc="discrete-gd edge of stability", disable=not progress)

    gd = ls.solve(rec, ls.GradientDescent(), lr=lr, steps=steps, save_every=1)
    gd_params = gd["params"]
    bar.update(1)
    idx = np.arange(0, steps + 1, every)
    gd_eigs = np.asarray(
        jax.lax.map(
            lambda p: ls.hessian_eigenpairs(real.loss, unravel(p), cfg.eos_k)[0],
            gd_params[idx],
            batch_size=32,
        )
    )
    bar.update(1)
    t_gd = np.asarray(gd.times)
    loss_gd = np.asarray(gd["loss"])
    loss_avg = moving_average(loss_gd, cfg.eos_window)
    eos = edge_of_stability(t_gd[idx], gd_eigs[:, 0], lr, band=cfg.eos_band)
    if not eos.crossed:
        raise RuntimeError(
            f"discrete-gd: GD's sharpness never reached 2/η = {2 / lr:.3g}; raise eos_lr or eos_flow_time."
        )

    starts = {"init": 0}
    if eos.onset_time is not None:
        k_on = int(round(eos.onset_time / lr))
        if steps - k_on >= 2 * every:
            starts["onset"] = k_on
    central = ls.CentralFlow(k=cfg.eos_k)
    flow = ls.GradientFlow(rtol=1e-6, atol=1e-9)
    rec_s = ls.Recorded(real, sharpness=True, k=cfg.eos_k, params=True)
    metrics = {
        "setup": {
            "n_train": cfg.eos_n_train,
            "widths": list(cfg.eos_widths),
            "sigma_w": cfg.eos_sigma_w,
            "k": cfg.eos_k,
            "window": cfg.eos_window,
            "band": cfg.eos_band,
        },
        "lr": lr,
        "threshold_2_over_lr": 2 / lr,
        "n_params": int(ravel_pytree(real.init())[0].size),
        "gd": {
            "crossing_time": eos.crossing_time,
            "peak_time": eos.peak_time,
            "overshoot": eos.overshoot,
            "return_time": eos.return_time,
            "onset_time": eos.onset_time,
            "max_sharpness_deviation_after_crossing": eos.max_deviation_after_crossing,
            "max_sharpness_deviation_after_onset": eos.max_deviation_after_onset,
            "median_sharpness_deviation_after_onset": eos.median_deviation_after_onset,
            "fraction_within_band_after_onset": eos.fraction_within_band_after_onset,
            "final_loss": float(loss_gd[-1]),
        },
    }
    curves = {
        "gd.times": t_gd,
        "gd.loss": loss_gd,
        "gd.loss_average": loss_avg,
        "gd.eigenvalue_times": t_gd[idx],
        "gd.eigenvalues": gd_eigs,
    }
    for label, k0 in starts.items():
        theta0 = real.init() if k0 == 0 else unravel(0.5 * (gd_params[k0] + gd_params[k0 + 1]))
        n = steps - k0
        n -= n % every
        cf = ls.solve(rec, central, lr=lr, steps=n, save_every=every, state0=theta0, throw=False)
        bar.update(1)
        gf = ls.solve(rec_s, flow, lr=lr, steps=n, save_every=every, state0=theta0, throw=False)
        bar.update(1)
        m, c = _against_gd(
            k0, {"central_flow": cf, "gradient_flow": gf}, gd_params, loss_avg, lr, cfg.eos_band
        )
        metrics[f"from_{label}"] = m
        curves.update({f"from_{label}.{name}": v for name, v in c.items()})
    bar.close()
    return metrics, curves


def _against_gd(k0, flows: dict, gd_params, loss_avg, lr, band) -> tuple[dict, dict]:
    """Each flow (started at GD step `k0`) against GD: the relative error of its predicted
    averaged loss (central flow: $L + \\operatorname{tr}\\Sigma/\\eta$; gradient flow: $L$)
    against GD's averaged loss, its parameter distance to GD and its sharpness.

    The loss errors (max, median, final, fraction within `band`) are over the saved points
    after the start; the start point is reported apart (`loss_rel_error_at_start`): a start
    with $S$ above $2/\\eta$ is off the central flow's constraint, and there its $\\Sigma$
    includes the stabilizing pull of $S$ back to $2/\\eta$ (gone after a fraction of a time
    unit, at the rate `stiffness`$/\\eta$)."""
    out, curves = {"start_time": k0 * lr}, {}
    for name, tr in flows.items():
        if not tr.succeeded:
            out[name] = {"result": tr.message()}
            continue
        k = k0 + np.asarray(tr.steps)
        pred = np.asarray(tr["loss_averaged"] if "loss_averaged" in tr.observables else tr["loss"])
        ref = loss_avg[k]
        err = np.abs(pred - ref) / ref  # NaN where GD's window does not fit
        rel = err[1:][np.isfinite(err[1:])]
        dist = np.asarray(jnp.linalg.norm(tr["params"] - gd_params[k], axis=1))
        S = np.asarray(tr["sharpness"])
        extra = {}
        if "next_eigenvalue" in tr.observables:
            extra["max_uncaptured_eigenvalue_over_threshold"] = float(
                np.max(np.asarray(tr["next_eigenvalue"])) * lr / 2
            )
        out[name] = {
            "result": tr.result_name,
            "loss_rel_error_at_start": float(err[0]) if np.isfinite(err[0]) else None,
            "loss_rel_error_max": float(rel.max()),
            "loss_rel_error_median": float(np.median(rel)),
            "loss_rel_error_final": float(rel[-1]),
            "loss_within_band_fraction": float(np.mean(rel <= band)),
            "param_distance_final": float(dist[-1]),
            "param_distance_max": float(dist.max()),
            "sharpness_over_threshold_final": float(S[-1] * lr / 2),
            "solver_steps": int(tr.stats["num_steps"]),
            **extra,
        }
        curves[f"{name}.times"] = np.asarray(tr.times) + k0 * lr
        curves[f"{name}.sharpness"] = S
        curves[f"{name}.predicted_average_loss"] = pred
        curves[f"{name}.distance_to_gd"] = dist
    if all("param_distance_final" in out[n] for n in flows):
        out["distance_ratio_final"] = (
            out["central_flow"]["param_distance_final"] / out["gradient_flow"]["param_distance_final"]
        )
    return out, curves
