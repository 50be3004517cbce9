r"""Experiment `coordinate-check`: how every layer's pre-activations scale with width, at
init and after a few steps of real gradient descent, for the standard, NTK and muP
parameterizations (the "coordinate check" of Yang & Hu, Tensor Programs IV / V).

Setup: MLPs with `hidden_layers` hidden layers of width $n$ (default 3, tanh, no biases,
$\sigma_w = 1$) on digits (parity target, MSE, `n_train` points, full batch). Layer
$l = 1, \dots, L+1$ has pre-activations $z^l = W^l h^{l-1}$ with $h^0 = x$, $h^l = \phi(z^l)$
and $W^l = \mu_l w^l$ the effective matrix of `MLP.effective_weights`; the readout $z^{L+1}$
is checked against `MLP.apply` (`forward_check`, the largest absolute difference at init).
Training is the library's one path, `solve(Trained(net, data, params=...), GradientDescent())`,
so each layer trains at $\eta$ times its parameterization's learning-rate multiplier
(`MLP.lr_multipliers()`; all ones for `"standard"` and `"ntk"`).

- **Coordinate check** (`measure_coordinates`). For each parameterization and width, over
  `seeds` initializations: the mean over data points and coordinates of $|z^l_0|$ (init) and
  of $|z^l_t - z^l_0|$ after $t = 1, \dots,$ `steps` GD steps at one shared learning rate
  `lr`; then the log–log slope of the seed-averaged means against $n$, per layer (and per
  step). A run that diverges (the solve's shared divergence test) is counted per step and
  left out of the means from that step on; each step's slope is fitted over the widths at
  which no seed had diverged by then. Expected in this library's convention
  (`models/_parameterization.py`): muP changes width-independent (slope 0 in every layer);
  NTK hidden changes $\propto n^{-1/2}$ (features freeze), readout change $O(1)$; standard
  with the same learning rate ($c = 0$) blows up. The default `lr` is a tenth of muP's edge
  of stability, which is above the standard network's edge from $n \approx 128$ on, so its
  changes grow geometrically over the steps (slopes of several units at $t = 4$, runs
  diverging at the largest widths). Its first-step readout change grows like $n$ in linear
  response (hidden $\sqrt n$, input layer $n^{-1/2}$); at this `lr` the first step already
  saturates the tanh at the larger widths, so the measured $t = 1$ slopes are flatter.
- **Maximum stable learning rate** (`measure_max_lr`). A run at learning rate $\eta$ is
  *stable* if its training loss after `stability_steps` GD steps is finite and strictly below
  the loss at init (a run the solve flags as diverged before then has a NaN loss there:
  `solve(..., throw=False)`). For each parameterization and width (first
  seed's initialization) the largest stable $\eta$ is bisected on $\log\eta$ inside
  `lr_bounds` (`bisection_steps` halvings, after checking that the lower bound is stable and
  the upper one is not; otherwise the width's value is missing) and reported as the
  geometric mean of the final bracket; then its log–log slope against $n$. With constant
  learning-rate exponents the edge of stability sits at $\eta \sim 1/\lambda_{\max}$ of the
  (preconditioned) NTK: expected slope $\approx -1$ for standard, $\approx 0$ for NTK and
  muP. Stability is not guaranteed to be monotone in $\eta$ (a catapult can bring the loss
  back down within the window); the bisection reports the boundary it finds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import datasets, plot
from ._util import loglog_slope

NAME = "coordinate-check"
DESCRIPTION = (
    "Coordinate check: per-layer pre-activation size and change vs width after a few real GD steps "
    "(standard / NTK / muP), and the maximum stable learning rate vs width."
)

PARAMETERIZATIONS = ("standard", "ntk", "mup")
LABELS = {"standard": "standard (c = 0)", "ntk": "NTK", "mup": "muP"}


def _check_int(name: str, v, minimum: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"coordinate_check.Config: `{name}` must be an int >= {minimum}, got {v!r}.")


def _check_positive(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"coordinate_check.Config: `{name}` must be a real number, got {v!r}.")
    if not (math.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f"coordinate_check.Config: `{name}` must be finite and > 0, got {v!r}.")


@dataclass(frozen=True)
class Config:
    seed: int = 0
    n_train: int = 64
    activation: str = "tanh"
    hidden_layers: int = 3
    parameterizations: tuple = PARAMETERIZATIONS
    widths: tuple = (64, 128, 256, 512, 1024, 2048)
    # coordinate check
    lr: float = 0.5
    steps: int = 4
    seeds: int = 4
    # maximum stable learning rate
    stability_steps: int = 8
    bisection_steps: int = 10
    lr_bounds: tuple = (1e-4, 1e3)

    def __post_init__(self):
        _check_int("n_train", self.n_train, 1)
        _check_int("hidden_layers", self.hidden_layers, 1)
        _check_int("steps", self.steps, 1)
        _check_int("seeds", self.seeds, 1)
        _check_int("stability_steps", self.stability_steps, 1)
        _check_int("bisection_steps", self.bisection_steps, 1)
        _check_positive("lr", self.lr)
        if not isinstance(self.activation, str) or self.activation not in lm.ACTIVATIONS:
            raise ValueError(
                f"coordinate_check.Config: unknown activation {self.activation!r}; "
                f"choose one of {sorted(lm.ACTIVATIONS)}."
            )
        ps = self.parameterizations
        if not isinstance(ps, tuple) or not ps:
            raise ValueError(
                f"coordinate_check.Config: `parameterizations` must be a non-empty tuple drawn from "
                f"{PARAMETERIZATIONS}, got {ps!r}."
            )
        for p in ps:
            if p not in PARAMETERIZATIONS:
                raise ValueError(
                    f"coordinate_check.Config: unknown parameterization {p!r}; choose from {PARAMETERIZATIONS}."
                )
        if len(set(ps)) != len(ps):
            raise ValueError(f"coordinate_check.Config: `parameterizations` has duplicates: {ps!r}.")
        ws = self.widths
        if not isinstance(ws, tuple) or len(ws) < 2:
            raise ValueError(
                f"coordinate_check.Config: `widths` must be a tuple of at least two widths (a slope needs "
                f"two points), got {ws!r}."
            )
        for w in ws:
            if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
                raise ValueError(f"coordinate_check.Config: every width must be a positive int, got {ws!r}.")
        if any(b <= a for a, b in zip(ws[:-1], ws[1:])):
            raise ValueError(f"coordinate_check.Config: `widths` must be strictly increasing, got {ws!r}.")
        lb = self.lr_bounds
        if not isinstance(lb, tuple) or len(lb) != 2:
            raise ValueError(f"coordinate_check.Config: `lr_bounds` must be a pair (low, high), got {lb!r}.")
        _check_positive("lr_bounds[0]", lb[0])
        _check_positive("lr_bounds[1]", lb[1])
        if not lb[0] < lb[1]:
            raise ValueError(f"coordinate_check.Config: `lr_bounds` must satisfy low < high, got {lb!r}.")

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(seed=seed, widths=(64, 128, 256), seeds=3, bisection_steps=8)


# ---------------------------------------------------------------------------------------------
class PreActivations(eqx.Module):
    """Every layer's pre-activations $z^l = W^l h^{l-1}$ on the inputs `x`, from the
    effective matrices of `net` (an observer for `solve`: one entry `"z{l}"` per layer)."""

    net: lm.MLP = eqx.field(static=True)
    x: jax.Array

    def __call__(self, params) -> dict:
        phi = lm.get_activation(self.net.activation)
        h, out = self.x, {}
        ws = self.net.effective_weights(params)
        for l, w in enumerate(ws):
            z = h @ w.T
            out[f"z{l + 1}"] = z
            h = phi(z)
        return out


def _network(cfg: Config, p: str, width: int, data) -> lm.MLP:
    return lm.MLP(
        data.in_size,
        (width,) * cfg.hidden_layers,
        data.out_size,
        activation=cfg.activation,
        parameterization=p,
        bias=False,
    )


@eqx.filter_jit
def _init(net: lm.MLP, key):
    """`net.init(key)`, compiled once per network (not once per layer shape)."""
    return net.init(key)


def _run(net, data, params, lr, steps: int):
    """Real GD from `params`, observing every layer's pre-activations at every step."""
    return ls.solve(
        lm.Trained(net, data, params=params),
        ls.GradientDescent(),
        lr=jnp.asarray(lr, dtype=jnp.result_type(float)),
        steps=steps,
        observe=PreActivations(net, data.x_train),
        progress=False,
        throw=False,
    )


def _slope(widths, values) -> float | None:
    """Log–log slope over the finite positive values (None with fewer than two)."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    return loglog_slope(w[ok], v[ok]) if ok.sum() >= 2 else None


def _finite(v) -> float | None:
    return float(v) if np.isfinite(v) else None


def measure_coordinates(cfg: Config, data, key, *, progress: bool = True) -> tuple[dict, dict]:
    """Per parameterization: seed-averaged mean |z^l_0| and mean |z^l_t - z^l_0| per width,
    layer and step (a seed whose run has diverged by step t is counted in `diverged_seeds[t]`
    and left out of that step's mean; None where every seed diverged); their slopes against
    width, at each step fitted over the widths where no seed had diverged by then
    (`fitted_widths`: those of the last step); the readout's forward check."""
    depth = cfg.hidden_layers + 1
    steps = max(cfg.steps, cfg.stability_steps)  # one solve length: one compilation per network
    metrics, curves = {}, {}
    bar = tqdm(
        total=len(cfg.parameterizations) * len(cfg.widths) * cfg.seeds,
        desc="coordinate check",
        disable=not progress,
    )
    for p in cfg.parameterizations:
        init = np.full((len(cfg.widths), depth), np.nan)
        change = np.full((len(cfg.widths), depth, cfg.steps), np.nan)
        diverged = np.zeros((len(cfg.widths), cfg.steps), int)  # seeds diverged by step t
        forward = 0.0
        for i, width in enumerate(cfg.widths):
            net = _network(cfg, p, width, data)
            per_seed_init, per_seed_change = [], []
            for s in range(cfg.seeds):
                params = _init(net, jax.random.fold_in(key, 1000 * width + s))
                traj = _run(net, data, params, cfg.lr, steps)
                zs = [np.asarray(traj[f"z{l + 1}"]) for l in range(depth)]
                forward = max(
                    forward, float(np.max(np.abs(np.asarray(net.apply(params, data.x_train)) - zs[-1][0])))
                )
                per_seed_init.append([np.mean(np.abs(z[0])) for z in zs])
                # NaN from the step a run diverges on (solve(throw=False) saves NaN from there)
                per_seed_change.append(
                    [[np.mean(np.abs(z[t] - z[0])) for t in range(1, cfg.steps + 1)] for z in zs]
                )
                bar.update(1)
            init[i] = np.mean(per_seed_init, axis=0)
            ch = np.asarray(per_seed_change)  # (seeds, layers, steps)
            ok = np.all(np.isfinite(ch), axis=1)  # (seeds, steps)
            diverged[i] = cfg.seeds - ok.sum(axis=0)
            for t in range(cfg.steps):
                if ok[:, t].any():
                    change[i, :, t] = ch[ok[:, t], :, t].mean(axis=0)
        layers = [f"z{l + 1}" for l in range(depth)]
        widths = np.asarray(cfg.widths)

        def fit(l, t):  # over the widths at which no seed had diverged by step t
            clean = diverged[:, t] == 0
            return _slope(widths[clean], change[clean, l, t])

        metrics[p] = {
            "init_slopes": {name: _slope(widths, init[:, l]) for l, name in enumerate(layers)},
            "change_slopes": {name: fit(l, cfg.steps - 1) for l, name in enumerate(layers)},
            "change_slopes_by_step": {
                name: [fit(l, t) for t in range(cfg.steps)] for l, name in enumerate(layers)
            },
            "fitted_widths": [int(w) for w in widths[diverged[:, -1] == 0]],
            "rows": [
                {
                    "width": int(w),
                    "init": {name: _finite(init[i, l]) for l, name in enumerate(layers)},
                    "change": {name: [_finite(v) for v in change[i, l]] for l, name in enumerate(layers)},
                    "diverged_seeds": [int(v) for v in diverged[i]],
                }
                for i, w in enumerate(cfg.widths)
            ],
            "forward_check": forward,
        }
        curves[f"coord.{p}.widths"] = widths.astype(float)
        curves[f"coord.{p}.diverged_seeds"] = diverged.astype(float)
        for l, name in enumerate(layers):
            curves[f"coord.{p}.init.{name}"] = init[:, l]
            curves[f"coord.{p}.change.{name}"] = change[:, l, :]
    bar.close()
    return metrics, curves


def max_stable_lr(net, data, params, cfg: Config) -> float | None:
    """The bisected largest stable learning rate (see the module docstring), or None when
    `lr_bounds` does not bracket it."""
    steps = max(cfg.steps, cfg.stability_steps)

    def stable(lr):
        traj = _run(net, data, params, lr, steps)
        loss = np.asarray(traj["loss"])
        k = cfg.stability_steps
        return bool(np.isfinite(loss[k]) and loss[k] < loss[0])  # NaN from a failure on

    lo, hi = math.log(cfg.lr_bounds[0]), math.log(cfg.lr_bounds[1])
    if not stable(math.exp(lo)) or stable(math.exp(hi)):
        return None
    for _ in range(cfg.bisection_steps):
        mid = 0.5 * (lo + hi)
        if stable(math.exp(mid)):
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def measure_max_lr(cfg: Config, data, key, *, progress: bool = True) -> tuple[dict, dict]:
    """Per parameterization: the maximum stable learning rate per width and its slope."""
    metrics, curves = {}, {}
    bar = tqdm(total=len(cfg.parameterizations) * len(cfg.widths), desc="max stable lr", disable=not progress)
    for p in cfg.parameterizations:
        values = []
        for width in cfg.widths:
            net = _network(cfg, p, width, data)
            params = _init(net, jax.random.fold_in(key, 1000 * width))  # the first seed's init
            values.append(max_stable_lr(net, data, params, cfg))
            bar.update(1)
        arr = np.array([np.nan if v is None else v for v in values])
        metrics[p] = {
            "rows": [{"width": int(w), "max_lr": v} for w, v in zip(cfg.widths, values)],
            "slope": _slope(cfg.widths, arr),
        }
        curves[f"max_lr.{p}.widths"] = np.asarray(cfg.widths, float)
        curves[f"max_lr.{p}"] = arr
    bar.close()
    return metrics, curves


def compute(config: Config, *, progress: bool = True) -> dict:
    """`metrics`: `setup`, `coordinates` (per parameterization), `max_lr` (per
    parameterization); curve names prefixed `coord.` and `max_lr.`."""
    k_data, k_net = jax.random.split(jax.random.key(config.seed))
    data = datasets.digits(config.n_train, 0, key=k_data, target="parity")
    coords, curves = measure_coordinates(config, data, k_net, progress=progress)
    max_lr, c = measure_max_lr(config, data, k_net, progress=progress)
    curves.update(c)
    setup = {
        k: getattr(config, k)
        for k in ("n_train", "activation", "hidden_layers", "lr", "steps", "seeds", "stability_steps")
    }
    setup["widths"] = list(config.widths)
    setup["lr_bounds"] = list(config.lr_bounds)
    setup["bisection_steps"] = config.bisection_steps
    return {"metrics": {"setup": setup, "coordinates": coords, "max_lr": max_lr}, "curves": curves}


# ---------------------------------------------------------------------------------------------
def _layer_label(name: str, depth: int) -> str:
    return "readout" if int(name[1:]) == depth else name


def figures(results: dict) -> dict:
    """`coordinate_check` (one row per parameterization: |z_0| and |z_t - z_0| at the last
    step against width, per layer, log–log with fits) and `max_stable_lr` (against width)."""
    m, c = results["metrics"], results["curves"]
    s = m["setup"]
    depth = s["hidden_layers"] + 1
    ps = list(m["coordinates"])
    fig, axes = plt.subplots(len(ps), 2, figsize=(10.8, 4.2 * len(ps)), squeeze=False)
    for (ax_init, ax_change), p in zip(axes, ps):
        widths = c[f"coord.{p}.widths"]
        init, change = {}, {}
        for l in range(depth):
            name = f"z{l + 1}"
            label = _layer_label(name, depth)
            init[label] = (widths, c[f"coord.{p}.init.{name}"])
            y = c[f"coord.{p}.change.{name}"][:, -1]
            ok = np.isfinite(y) & (y > 0) & (c[f"coord.{p}.diverged_seeds"][:, -1] == 0)  # as the metrics
            change[label] = (widths[ok], y[ok])
        plot.loglog_fits(init, ax=ax_init, xlabel="width n", ylabel="mean |z^l| at init")
        plot.loglog_fits(
            change, ax=ax_change, xlabel="width n", ylabel=f"mean |z^l_t − z^l_0|, t = {s['steps']}"
        )
        ax_init.set_title(f"{LABELS[p]}: init")
        ax_change.set_title(f"{LABELS[p]}: after {s['steps']} GD steps at η = {s['lr']}")
    fig.tight_layout()
    series = {}
    for p in m["max_lr"]:
        y, w = c[f"max_lr.{p}"], c[f"max_lr.{p}.widths"]
        ok = np.isfinite(y)
        series[LABELS[p]] = (w[ok], y[ok])
    fig_lr, _ = plot.loglog_fits(series, xlabel="width n", ylabel="max stable η")
    fig_lr.axes[0].set_title(f"largest η with loss after {s['stability_steps']} steps < loss at init")
    return {"coordinate_check": fig, "max_stable_lr": fig_lr}


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def _fmt_lr(x) -> str:
    return "—" if x is None else f"{x:.3g}"


def summary(results: dict) -> str:
    m = results["metrics"]
    s = m["setup"]
    lines = [
        f"{s['hidden_layers']}-hidden-layer {s['activation']} MLPs without biases on digits (parity, "
        f"{s['n_train']} points), MSE, full-batch GD through `Trained` + `solve`; widths {s['widths']}. "
        f"Coordinate check: {s['steps']} steps at η = {s['lr']} (per-layer multipliers of each "
        f"parameterization), {s['seeds']} seed(s) averaged; slopes are log–log fits against width of "
        "mean |z^l_0| and mean |z^l_t − z^l_0| at the last step. Max stable η: bisection on log η in "
        f"{s['lr_bounds']} ({s['bisection_steps']} steps), stable = solve succeeds and the loss after "
        f"{s['stability_steps']} steps is finite and below the loss at init."
    ]
    for p, r in m["coordinates"].items():
        init = ", ".join(f"{k} {_fmt(v)}" for k, v in r["init_slopes"].items())
        change = ", ".join(f"{k} {_fmt(v)}" for k, v in r["change_slopes"].items())
        t1 = ", ".join(f"{k} {_fmt(v[0])}" for k, v in r["change_slopes_by_step"].items())
        bad = sum(row["diverged_seeds"][-1] for row in r["rows"])
        lines.append(
            f"- {LABELS[p]}: init slopes {init}; change slopes (t = {s['steps']}) {change}; at t = 1 {t1}"
            + (
                f"; {bad} run(s) diverged within the window (not averaged; change slopes fitted over "
                f"widths {r['fitted_widths']})"
                if bad
                else ""
            )
            + f"; forward check vs MLP.apply {r['forward_check']:.1e}."
        )
    for p, r in m["max_lr"].items():
        cells = ", ".join(f"{row['width']}: {_fmt_lr(row['max_lr'])}" for row in r["rows"])
        lines.append(f"- max stable η, {LABELS[p]}: {cells} (slope {_fmt(r['slope'])}).")
    return "\n".join(lines)


def headline(metrics: dict) -> dict[str, str]:
    out = {}
    for p, r in metrics["coordinates"].items():
        out[f"{LABELS[p]}: slope of |Δz^l| vs width, layers 1..L+1"] = " / ".join(
            _fmt(v) for v in r["change_slopes"].values()
        )
    out["max stable η slope vs width — " + " / ".join(LABELS[p] for p in metrics["max_lr"])] = " / ".join(
        _fmt(r["slope"]) for r in metrics["max_lr"].values()
    )
    return out
