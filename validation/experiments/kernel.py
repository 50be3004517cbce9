r"""Experiment `kernel`: the kernel regime, linearized theory against real wide networks.

For MLPs in NTK parameterization on digits (parity target, MSE, full-batch GD):

- **Width scaling** (`measure_width_scaling`): the linearization of each network (its
  empirical NTK at init, exact GD map $(I - \eta\Theta/P)^k$) against the same network
  trained by GD — relative output error on train and test points (max over time, and
  final); the relative change of the empirical NTK over training; the empirical NTK at init
  against the analytic infinite-width NTK — each against width with a fitted log–log slope.
  At a fixed $\eta$ the linearization error depends on how far along the kernel's spectrum
  training goes, which is set by $\eta\lambda_{\max}(\Theta)/P$ (and so by $\sigma_w$: with
  $\sigma_w^2 = 2$ a ReLU network's NTK without bias is $2^L$ times larger, $L$ its number
  of weight layers). Every row carries $\sigma_w$ and
  $\eta\lambda_{\max}(\Theta_0)/P$ measured from the network's own kernel, and the ReLU
  network is run at $\sigma_w = 1$ and $\sqrt 2$.
- **Large learning rate** (`measure_large_lr`): $\eta$ near $2P/\lambda_{\max}$, where the
  exact GD map tracks real GD and the gradient flow does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import datasets, plot
from .._compare import compare
from ._util import fmt, loglog_slope

NAME = "kernel"
DESCRIPTION = "Kernel regime: linearized (NTK) dynamics vs wide networks trained by GD; width scaling."

SQRT2 = 2**0.5


@dataclass(frozen=True)
class Config:
    seed: int = 0
    n_train: int = 256
    n_test: int = 256
    lr: float = 0.5
    steps: int = 1000
    save_every: int = 50
    seeds: int = 3
    # (activation, number of weight layers, widths, σ_w); no bias
    runs: tuple = (
        ("relu", 2, (64, 256, 1024, 4096, 16384), 1.0),
        ("relu", 2, (64, 256, 1024, 4096, 16384), SQRT2),
        ("erf", 2, (64, 256, 1024, 4096, 16384), 1.0),
        ("relu", 3, (64, 256, 1024, 2048), 1.0),
        ("relu", 3, (64, 256, 1024, 2048), SQRT2),
        ("erf", 3, (64, 256, 1024, 2048), 1.0),
    )
    large_lr_width: int = 2048
    large_lr_fraction: float = 0.9
    large_lr_sigma_w: float = 1.0
    block_size: int = 128

    def __post_init__(self):
        for run in self.runs:
            if not (isinstance(run, tuple) and len(run) == 4 and isinstance(run[2], tuple) and run[3] > 0):
                raise ValueError(
                    f"kernel.Config: each entry of `runs` must be (activation, depth, widths tuple, sigma_w > 0), "
                    f"got {run!r}."
                )

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(
            seed=seed,
            seeds=2,
            runs=(
                ("relu", 2, (64, 256, 1024, 4096), 1.0),
                ("relu", 2, (64, 256, 1024), SQRT2),  # width 4096 would add ~30 s
                ("erf", 2, (64, 256, 1024, 4096), 1.0),
                ("relu", 3, (64, 128, 256, 512), 1.0),
                ("erf", 3, (64, 128, 256, 512), 1.0),
            ),
            large_lr_width=1024,
        )


def run_name(activation: str, depth: int, sigma_w: float) -> str:
    """The key of one (activation, depth, σ_w) group in `metrics["width_scaling"]`."""
    return f"{activation}_L{depth}_sw{sigma_w:.3g}"


def _net(activation: str, depth: int, width: int, sigma_w: float) -> lm.MLP:
    return lm.MLP(
        64, (width,) * (depth - 1), 1, activation=activation, parameterization="ntk", sigma_w=sigma_w
    )


def _rel(a, b) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _eta_lambda_max_over_p(theta, lr: float) -> float:
    r"""$\eta\,\lambda_{\max}(\Theta)/P$ of a train-train kernel (GD on the linearization is
    stable below 2)."""
    return float(lr * np.linalg.eigvalsh(np.asarray(theta))[-1] / theta.shape[0])


def _one(net, data, key, cfg: Config):
    """One network: linearized (exact GD map) vs real GD, and its kernels."""
    params = net.init(key)
    real = lm.Trained(net, data, params=params)
    ntk = lambda p, *xs: lm.empirical_ntk(net.apply, p, *xs, output="trace", block_size=cfg.block_size)  # noqa: E731
    theta0 = ntk(params, data.x_train)
    lin = lm.Linearized(
        theta0,
        ntk(params, data.x_test, data.x_train),
        net.apply(params, data.x_train),
        net.apply(params, data.x_test),
        data.y_train,
        data.y_test,
    )
    gd = ls.solve(real, ls.GradientDescent(), lr=cfg.lr, steps=cfg.steps, save_every=cfg.save_every)
    th = ls.solve(lin, ls.ClosedForm(discrete=True), lr=cfg.lr, steps=cfg.steps, save_every=cfg.save_every)
    cmp = compare(th, gd, observables=("f_train", "f_test", "loss"), labels=("linearized", "real GD"))
    return {
        "f_train_max": float(cmp.max_relative_error["f_train"]),
        "f_train_final": float(cmp.final_relative_error["f_train"]),
        "f_test_max": float(cmp.max_relative_error["f_test"]),
        "f_test_final": float(cmp.final_relative_error["f_test"]),
        "ntk_change": _rel(ntk(gd.final_state, data.x_train), theta0),
        "eta_lambda_max_over_P": _eta_lambda_max_over_p(theta0, cfg.lr),
        "final_loss": float(gd["loss"][-1]),
    }, (theta0, cmp)


def measure_width_scaling(cfg: Config, data, key, *, progress: bool = True) -> tuple[dict, dict]:
    """Per (activation, depth, σ_w): rows per width (means over seeds) and fitted slopes;
    curves: the test outputs over time of the first group's widest network (seed 0)."""
    metrics, curves = {}, {}
    total = sum(len(w) for _, _, w, _ in cfg.runs) * cfg.seeds
    bar = tqdm(total=total, desc=f"{NAME} width scaling", disable=not progress)
    for g, (act, depth, widths, sigma_w) in enumerate(cfg.runs):
        theta_inf = lm.analytic_ntk(
            _net(act, depth, widths[0], sigma_w), data.x_train, block_size=cfg.block_size
        )
        rows = []
        for width in widths:
            net = _net(act, depth, width, sigma_w)
            per_seed = []
            for seed in range(cfg.seeds):
                r, (theta0, cmp) = _one(
                    net, data, jax.random.fold_in(jax.random.fold_in(key, width), seed), cfg
                )
                r["ntk_init_vs_analytic"] = _rel(theta0, theta_inf)
                if g == 0 and seed == 0 and width == widths[-1]:
                    curves["outputs.times"] = np.asarray(cmp.times)
                    curves["outputs.linearized"] = np.asarray(cmp.a["f_test"])[:, :6, 0]
                    curves["outputs.real"] = np.asarray(cmp.b["f_test"])[:, :6, 0]
                per_seed.append(r)
                bar.update(1)
            row = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
            rows.append({"width": width, "sigma_w": sigma_w, **row})
        w = [r["width"] for r in rows]
        metrics[run_name(act, depth, sigma_w)] = {
            "activation": act,
            "depth": depth,
            "sigma_w": sigma_w,
            "eta_lambda_max_over_P_infinite_width": _eta_lambda_max_over_p(theta_inf, cfg.lr),
            "rows": rows,
            "slopes": {
                q: loglog_slope(w, [r[q] for r in rows])
                for q in ("f_train_max", "f_test_max", "f_test_final", "ntk_change", "ntk_init_vs_analytic")
            },
        }
    bar.close()
    return metrics, curves


def measure_large_lr(cfg: Config, data, key) -> tuple[dict, dict]:
    r"""At $\eta$ = `large_lr_fraction`$\cdot 2P/\lambda_{\max}$ of the empirical kernel:
    the exact GD map and the gradient flow of the linearization against real GD."""
    sigma_w = cfg.large_lr_sigma_w
    net = _net("relu", 2, cfg.large_lr_width, sigma_w)
    params = net.init(jax.random.fold_in(key, 10_000))
    lin = lm.Linearized.from_network(net, data, kernel="empirical", params=params, block_size=cfg.block_size)
    lr = cfg.large_lr_fraction * float(lin.max_stable_lr)
    steps, every = 200, 2
    real = ls.solve(
        lm.Trained(net, data, params=params), ls.GradientDescent(), lr=lr, steps=steps, save_every=every
    )
    gd_map = ls.solve(lin, ls.ClosedForm(discrete=True), lr=lr, steps=steps, save_every=every)
    flow = ls.solve(lin, ls.ClosedForm(), lr=lr, steps=steps, save_every=every)
    c_map = compare(gd_map, real, observables=("f_test", "f_train", "loss"))
    c_flow = compare(flow, real, observables=("f_test", "f_train", "loss"))
    metrics = {
        "width": cfg.large_lr_width,
        "sigma_w": sigma_w,
        "lr": lr,
        "max_stable_lr": float(lin.max_stable_lr),
        "eta_lambda_max_over_P": 2 * lr / float(lin.max_stable_lr),
        "gd_map_vs_real": float(c_map.max_relative_error["f_test"]),
        "flow_vs_real": float(c_flow.max_relative_error["f_test"]),
    }
    curves = {
        "times": np.asarray(real.times),
        "loss_real": np.asarray(real["loss"]),
        "loss_gd_map": np.asarray(gd_map["loss"]),
        "loss_flow": np.asarray(flow["loss"]),
        "error_times": np.asarray(c_map.times),
        "error_gd_map": np.asarray(c_map.errors["f_test"]),
        "error_flow": np.asarray(c_flow.errors["f_test"]),
    }
    return metrics, curves


def compute(config: Config, *, progress: bool = True) -> dict:
    """Both measurements: `metrics` keys `setup`, `width_scaling`, `large_lr`; curve names
    prefixed `outputs.` and `large_lr.`."""
    k_data, k_net = jax.random.split(jax.random.key(config.seed))
    data = datasets.digits(config.n_train, config.n_test, key=k_data, target="parity")
    scaling, curves = measure_width_scaling(config, data, k_net, progress=progress)
    large, c = measure_large_lr(config, data, k_net)
    curves.update({f"large_lr.{k}": v for k, v in c.items()})
    setup = {k: getattr(config, k) for k in ("n_train", "n_test", "lr", "steps", "seeds")}
    return {"metrics": {"setup": setup, "width_scaling": scaling, "large_lr": large}, "curves": curves}


# ---------------------------------------------------------------------------------------------
def _label(r: dict) -> str:
    return f"{r['activation']}, {r['depth']} layers, σ_w = {r['sigma_w']:.3g}"


def figures(results: dict) -> dict:
    """`width_scaling` (three log–log panels), `outputs_over_time`, `large_lr`."""
    m, c = results["metrics"], results["curves"]
    runs = m["width_scaling"].values()
    fig_w, axes = plot.panels(3, width=5.2, height=4.2)
    for ax, q, ylabel in zip(
        axes,
        ("f_test_max", "ntk_change", "ntk_init_vs_analytic"),
        ("max_t ‖f_lin − f‖/‖f‖ (test)", "‖Θ_T − Θ_0‖/‖Θ_0‖", "‖Θ_0 − Θ_∞‖/‖Θ_∞‖"),
    ):
        plot.loglog_fits(
            {_label(r): ([x["width"] for x in r["rows"]], [x[q] for x in r["rows"]]) for r in runs},
            ax=ax,
            xlabel="width n",
            ylabel=ylabel,
        )
    fig_w.tight_layout()
    figs = {"width_scaling": fig_w}
    if "outputs.times" in c:
        figs["outputs_over_time"] = plot.modes_over_time(
            {
                "real GD": (c["outputs.times"], c["outputs.real"]),
                "linearized (exact GD map)": (c["outputs.times"], c["outputs.linearized"]),
            },
            ylabel="f(x_test) (6 test points)",
            title=_label(next(iter(runs))) + ", widest",
        )
    ll = m["large_lr"]
    fig_l, axes = plot.panels(2, width=5.2)
    plot.curves_over_time(
        {
            "real GD": (c["large_lr.times"], c["large_lr.loss_real"]),
            "linearized, exact GD map": (c["large_lr.times"], c["large_lr.loss_gd_map"]),
            "linearized, gradient flow": (c["large_lr.times"], c["large_lr.loss_flow"]),
        },
        ax=axes[0],
        styles={"linearized, exact GD map": "--", "linearized, gradient flow": ":"},
        ylabel="training loss",
        title=f"η = {ll['lr']:.3g} (ηλ_max/P = {ll['eta_lambda_max_over_P']:.2f})",
    )
    plot.curves_over_time(
        {
            "GD map vs real": (c["large_lr.error_times"], c["large_lr.error_gd_map"]),
            "flow vs real": (c["large_lr.error_times"], c["large_lr.error_flow"]),
        },
        ax=axes[1],
        styles={"GD map vs real": "--", "flow vs real": ":"},
        ylabel="relative test-output error",
    )
    fig_l.tight_layout()
    figs["large_lr"] = fig_l
    return figs


def _row_text(r: dict) -> str:
    return f"{r['width']}: {100 * r['f_test_max']:.2g}% (ηλ_max/P {r['eta_lambda_max_over_P']:.2f})"


def summary(results: dict) -> str:
    """Markdown: one line per (activation, depth, σ_w) with σ_w and ηλ_max/P, then the
    large-learning-rate comparison."""
    m = results["metrics"]
    s, ll = m["setup"], m["large_lr"]
    lines = []
    for r in m["width_scaling"].values():
        sl = r["slopes"]
        lines.append(
            f"- {_label(r)}: test-output error (and ηλ_max(Θ_0)/P) by width "
            + ", ".join(_row_text(x) for x in r["rows"])
            + f" (slope {sl['f_test_max']:.2f}; infinite width ηλ_max/P {r['eta_lambda_max_over_P_infinite_width']:.2f}); "
            f"NTK change slope {sl['ntk_change']:.2f}; NTK(init) vs analytic slope {sl['ntk_init_vs_analytic']:.2f}."
        )
    return (
        f"MLPs in NTK parameterization on digits (parity, {s['n_train']} train / {s['n_test']} test), no bias, "
        f"MSE, GD with η = {s['lr']} for {s['steps']} steps, {s['seeds']} seeds (means); linearized = the network's "
        "empirical NTK at init with the exact GD map. ηλ_max/P is measured from each network's kernel at init "
        "(GD on the linearization is stable below 2); it sets how far along the spectrum training goes, and with it "
        "the linearization error at a given width.\n"
        + "\n".join(lines)
        + f"\n- Large learning rate (relu, 2 layers, σ_w = {ll['sigma_w']:.3g}, width {ll['width']}, η = {fmt(ll['lr'])}, "
        f"ηλ_max/P = {ll['eta_lambda_max_over_P']:.2f}): test-output error of the exact GD map "
        f"{fmt(100 * ll['gd_map_vs_real'], 2)}% vs gradient flow {fmt(100 * ll['flow_vs_real'], 2)}%."
    )


def headline(metrics: dict) -> dict[str, str]:
    """The numbers that go into validation/RESULTS.md: every row with σ_w and ηλ_max/P."""
    out = {}
    for r in metrics["width_scaling"].values():
        sl = r["slopes"]
        out[f"{_label(r)}: linearized vs real test error by width (ηλ_max/P)"] = (
            ", ".join(_row_text(x) for x in r["rows"]) + f" (slope {sl['f_test_max']:.2f})"
        )
        out[f"{_label(r)}: NTK change slope / NTK(init) vs analytic slope"] = (
            f"{sl['ntk_change']:.2f} / {sl['ntk_init_vs_analytic']:.2f}"
        )
    ll = metrics["large_lr"]
    out[
        f"large lr (σ_w = {ll['sigma_w']:.3g}, ηλ_max/P = {ll['eta_lambda_max_over_P']:.2f}): GD map vs flow test error"
    ] = f"{100 * ll['gd_map_vs_real']:.2g}% vs {100 * ll['flow_vs_real']:.2g}%"
    return out
