r"""Experiment `finite-width`: the corrections beyond the kernel regime against real GD.

For 2-layer MLPs (NTK parameterization, $\sigma_w = 1$) with smooth activations on digits
(parity target, MSE, full-batch GD at $\eta$), one realization per seed and width:

- **Output error against width** (`measure_errors`): the maximum over the saved times of
  $\lVert f_{\text{model}}(x_*) - f_{\text{GD}}(x_*)\rVert / \lVert f_{\text{GD}}(x_*)\rVert$ on
  the test points for the linearized model, the tangent hierarchy with $O_3$ frozen and with
  $O_4$ frozen (`TangentHierarchy`, frozen = 2, 3, 4) and the order-2 and order-3 Taylor
  models (`TaylorModel`) — the mean over seeds at each width, with a fitted log–log slope
  (the linearized error falls as $n^{-1}$; truncations that keep everything to $O(1/n)$ as
  $n^{-2}$, THEORY.md §3). A run that ends in divergence (the O3-frozen system at small
  width) is counted, not averaged.
- **Ensemble means** (`measure_ensemble_means`): the per-realization O(1/n) closed form
  (`CorrectedKernel`) averaged over the networks' own initializations, and
  (`measure_analytic_mean`) the analytic average over init (`ensemble_mean`, no width-n network
  sampled) against the mean of many antithetic pairs of real networks, with slopes against width.
- **The issue's prototype** (`prototype_*`): 2-layer tanh on 256 parity digits (256 test
  points), 1000 GD steps at $\eta = 0.5$, four seeds, widths 64 … 4096 — the linearized and
  the order-2/3 Taylor models only (at this $P$ the hierarchies' $O_4$ products over all index
  pairs are the wall); the same data and init keys as `benchmarks/finite_width_errors.py`.
- **NTK fluctuations at init against $L/n$** (`measure_fluctuations`): the measured relative
  variance $\operatorname{Var}\Theta(x,x)/(\mathbb E\Theta(x,x))^2$ over an ensemble of real
  networks at criticality against the first-order prediction (and the exact one for ReLU),
  via `lmech.models.aspect_ratio_scan`.
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
from ._util import loglog_slope

NAME = "finite-width"
DESCRIPTION = (
    "Finite width: tangent hierarchy and Taylor models vs real GD against width; NTK fluctuations vs L/n."
)

MODELS = ("linearized", "o3_frozen", "o4_frozen", "taylor2", "taylor3")
PROTOTYPE_MODELS = ("linearized", "taylor2", "taylor3")
LABELS = {
    "linearized": "linearized",
    "o3_frozen": "hierarchy, O3 frozen",
    "o4_frozen": "hierarchy, O4 frozen",
    "taylor2": "Taylor, order 2",
    "taylor3": "Taylor, order 3",
}


@dataclass(frozen=True)
class Config:
    seed: int = 0
    n_train: int = 64
    n_test: int = 64
    lr: float = 0.5
    steps: int = 1000
    save_every: int = 20
    seeds: int = 2
    activations: tuple = ("tanh", "erf")
    widths: tuple = (64, 256, 1024, 4096)
    # deeper networks: (number of weight layers, widths); the 2-layer runs use `widths`. One
    # 4-layer realization through the five truncations (1000 steps) costs ~2.5 min at width 512 on
    # 2 cores and ~4x that at 1024, where the full run no longer fit in an hour.
    deep: tuple = ((4, (64, 256, 512)),)
    # NTK fluctuations at init: (activation, hidden width, depths), ensemble size
    fluctuations: tuple = (
        ("linear", 32, (2, 3, 4, 8, 12, 16)),
        ("relu", 32, (2, 3, 4, 8, 12, 16)),
        ("tanh", 32, (2, 3, 4, 8, 12, 16)),
    )
    fluctuation_seeds: int = 4000
    # ensemble means: O(1/n) closed form vs the mean of real networks (2-layer tanh, GD)
    ensemble_widths: tuple = (256, 1024, 4096)
    ensemble_points: int = 4
    ensemble_seeds: int = 64
    ensemble_steps: int = 20
    ensemble_lr: float = 1.0
    # the prototype: 2-layer tanh on P = 256 parity digits (256 test), 1000 GD steps at
    # eta = 0.5, the linearized model and the Taylor models only (the hierarchies' O4 products
    # over all index pairs are the wall at this P), data key(seed) and init keys key(0..seeds-1)
    # as in `benchmarks/finite_width_errors.py`
    # the analytic ensemble mean (`ensemble_mean`: E over init to O(1/n), no width-n network
    # sampled) against the mean of many antithetic pairs of real networks with each network's
    # first-order NTK deviation subtracted (mean zero), on the ensemble-mean task above
    analytic_widths: tuple = (8, 16, 32, 64)
    analytic_pairs: int = 65536
    analytic_points: int = 2**18
    prototype_points: int = 256
    prototype_widths: tuple = (64, 256, 1024, 4096)
    prototype_seeds: int = 4
    prototype_steps: int = 1000

    def __post_init__(self):
        if self.steps % self.save_every:
            raise ValueError(
                f"finite_width.Config: save_every ({self.save_every}) must divide steps ({self.steps})."
            )
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"finite_width.Config: give at least two positive widths, got {self.widths}.")
        for a in self.activations:
            if a == "relu":
                raise ValueError(
                    "finite_width.Config: the output corrections need a smooth activation (relu's second "
                    "derivative misses its kink); use tanh, erf, gelu, ..."
                )

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(
            seed=seed,
            steps=300,
            save_every=10,
            seeds=1,
            activations=("tanh",),
            widths=(64, 256, 1024),
            deep=((4, (64, 256)),),
            fluctuations=(
                ("linear", 32, (2, 3, 8, 16)),
                ("relu", 32, (2, 3, 8, 16)),
                ("tanh", 32, (2, 3, 8, 16)),
            ),
            fluctuation_seeds=1000,
            ensemble_widths=(256, 1024),
            ensemble_seeds=32,
            prototype_widths=(64, 256, 1024),
            prototype_seeds=2,
            analytic_widths=(8, 16, 32),
            analytic_pairs=32768,
            analytic_points=2**16,
        )


def _dynamics(model: str, net, data, params):
    if model.startswith("taylor"):
        return lm.TaylorModel(net, params, order=int(model[-1])).trained(data)
    frozen = {"linearized": 2, "o3_frozen": 3, "o4_frozen": 4}[model]
    return lm.TangentHierarchy(net, data, params=params, frozen=frozen, observe_ntk=False)


def one_realization(net, data, params, cfg: Config, models=MODELS, steps=None, save_every=None) -> dict:
    """Each model's max-over-time relative test-output error against real GD from `params`
    (None where the model's solve did not succeed), and the test outputs over time."""
    kw = dict(
        lr=cfg.lr,
        steps=steps or cfg.steps,
        save_every=save_every or cfg.save_every,
        progress=False,
        throw=False,
    )
    real = ls.solve(lm.Trained(net, data, params=params), ls.GradientDescent(), **kw)
    out = {
        "errors": {},
        "results": {},
        "times": np.asarray(real.times),
        "real": np.asarray(real["f_test"][:, :6, 0]),
    }
    for m in models:
        traj = ls.solve(_dynamics(m, net, data, params), ls.GradientDescent(), **kw)
        out["results"][m] = traj.result_name
        out["errors"][m] = float(compare(traj, real).max_relative_error["f_test"]) if traj.succeeded else None
        if traj.succeeded:
            out[m] = np.asarray(traj["f_test"][:, :6, 0])
    return out


def _error_table(realizations, widths, seeds, models, curves, name, bar) -> dict:
    """Rows (width, mean error per model over the seeds that succeeded, number diverged) and
    slopes (all widths; widths >= 256) from `realizations(width, seed)`."""
    rows = []
    for width in widths:
        per_seed = []
        for s in range(seeds):
            per_seed.append(realizations(width, s))
            bar.update(1)
        row = {"width": width}
        for m in models:
            good = [r["errors"][m] for r in per_seed if r["errors"][m] is not None]
            row[m] = float(np.mean(good)) if good else None
            row[f"{m}_failed"] = seeds - len(good)
        rows.append(row)
        if width == widths[0]:  # outputs over time at the smallest width, first seed
            r0 = per_seed[0]
            curves[f"{name}.times"] = r0["times"]
            curves[f"{name}.real"] = r0["real"]
            curves.update({f"{name}.{m}": r0[m] for m in models if m in r0})
    slopes, slopes_large = {}, {}
    for m in models:
        pts = [(r["width"], r[m]) for r in rows if r[m] is not None and r[f"{m}_failed"] == 0]
        big = [(w, e) for w, e in pts if w >= 256]
        slopes[m] = loglog_slope(*zip(*pts)) if len(pts) >= 2 else None
        slopes_large[m] = loglog_slope(*zip(*big)) if len(big) >= 2 else None
    for m in models:
        curves[f"errors.{name}.{m}"] = np.array([np.nan if r[m] is None else r[m] for r in rows])
    curves[f"errors.{name}.widths"] = np.array([r["width"] for r in rows])
    return {"rows": rows, "slopes": slopes, "slopes_n_ge_256": slopes_large}


def prototype_name(cfg: Config) -> str:
    return f"tanh, P = {cfg.prototype_points}"


def measure_errors(cfg: Config, data, key, *, progress: bool = True) -> tuple[dict, dict]:
    """Per activation (and depth): `_error_table` of every truncation; then the prototype
    (`prototype_*`: 2-layer tanh, P = 256, the linearized and Taylor models)."""
    metrics, curves = {}, {}
    bar = tqdm(total=0, desc="finite-width errors", disable=not progress)
    runs = [(act, 2, cfg.widths) for act in cfg.activations]
    runs += [(act, L, ws) for L, ws in cfg.deep for act in cfg.activations]
    bar.total = sum(len(ws) for _, _, ws in runs) * cfg.seeds
    bar.total += len(cfg.prototype_widths) * cfg.prototype_seeds
    for a_i, (act, layers, widths) in enumerate(runs):
        name = act if layers == 2 else f"{act}, {layers} layers"

        def realization(width, s, act=act, layers=layers, a_i=a_i):
            net = lm.MLP(64, (width,) * (layers - 1), 1, activation=act, sigma_w=1.0)
            params = net.init(jax.random.fold_in(jax.random.fold_in(key, a_i), 1000 * width + s))
            return one_realization(net, data, params, cfg)

        metrics[name] = _error_table(realization, widths, cfg.seeds, MODELS, curves, name, bar)
    if cfg.prototype_widths:
        P = cfg.prototype_points
        proto = datasets.digits(P, P, key=jax.random.key(cfg.seed), target="parity")

        def realization(width, s):
            net = lm.MLP(64, (width,), 1, activation="tanh", sigma_w=1.0)
            steps = cfg.prototype_steps
            return one_realization(
                net, proto, net.init(jax.random.key(s)), cfg, PROTOTYPE_MODELS, steps, max(1, steps // 50)
            )

        name = prototype_name(cfg)
        metrics[name] = _error_table(
            realization, cfg.prototype_widths, cfg.prototype_seeds, PROTOTYPE_MODELS, curves, name, bar
        )
        metrics[name]["setup"] = {"points": P, "steps": cfg.prototype_steps, "seeds": cfg.prototype_seeds}
    bar.close()
    return metrics, curves


def measure_ensemble_means(cfg: Config, key) -> tuple[dict, dict]:
    """The ensemble-mean outputs (train and test, max over time of the relative error) of
    the kernel model (`TangentHierarchy(frozen=2)`, the first-order-free linearization) and the
    O(1/n) closed form (`CorrectedKernel`) against the mean of `ensemble_seeds` real networks
    (2-layer tanh, `ensemble_points` digits each for training and test, GD), per width, with
    slopes (theory: n^-1 and n^-2)."""
    data = datasets.digits(
        cfg.ensemble_points, cfg.ensemble_points, key=jax.random.fold_in(key, 7), target="parity"
    )
    kw = dict(lr=cfg.ensemble_lr, steps=cfg.ensemble_steps, save_every=max(1, cfg.ensemble_steps // 4))
    res = {"kernel": [], "corrected": []}
    for width in cfg.ensemble_widths:
        net = lm.MLP(64, (width,), 1, activation="tanh", sigma_w=1.0)

        def one(k, net=net):
            p0 = net.init(k)
            outs = []
            for dyn in (
                lm.Trained(net, data, params=p0),
                lm.CorrectedKernel.from_network(net, data, params=p0),
                lm.TangentHierarchy(net, data, params=p0, frozen=2, observe_ntk=False),
            ):
                tr = ls.solve(dyn, ls.GradientDescent(), progress=False, **kw)
                outs.append(jnp.concatenate([tr["f_train"], tr["f_test"]], 1)[..., 0])
            return outs

        real, corr, kern = (
            np.asarray(a).mean(0)
            for a in jax.lax.map(one, jax.random.split(jax.random.fold_in(key, width), cfg.ensemble_seeds))
        )
        rel = lambda a, real=real: float(
            np.max(np.linalg.norm(a - real, axis=1) / np.linalg.norm(real, axis=1))
        )  # noqa: E731
        res["kernel"].append(rel(kern))
        res["corrected"].append(rel(corr))
    slopes = {k: loglog_slope(cfg.ensemble_widths, v) for k, v in res.items()}
    metrics = {"widths": list(cfg.ensemble_widths), **res, "slopes": slopes, "seeds": cfg.ensemble_seeds}
    curves = {f"ensemble.{k}": np.asarray(v) for k, v in res.items()}
    curves["ensemble.widths"] = np.asarray(cfg.ensemble_widths)
    return metrics, curves


def measure_analytic_mean(cfg: Config, key, *, progress: bool = True) -> tuple[dict, dict]:
    r"""The analytic ensemble mean (`lm.ensemble_mean`, $f^\infty + c/n$) and the kernel regime
    ($f^\infty$) against the mean of `analytic_pairs` antithetic pairs ($a \to -a$) of real
    networks per width, on the ensemble-mean task. Each network's first-order deviation in its
    own initial NTK, $\partial_\Theta f_{\rm kernel}(\Theta_\infty, f_0)[\hat\Theta_0 - \Theta_\infty]$,
    is subtracted: its mean over init is exactly zero (the empirical NTK of a two-layer network
    is unbiased and even in the readout, $f_0$ odd), and it removes the $O(n^{-1/2})$ scatter,
    so the mean resolves the $O(n^{-2})$ residual. Residual = max over time of
    $\lVert \text{prediction} - \text{mean}\rVert / \lVert\text{mean}\rVert$ (training and test points)."""
    P = cfg.ensemble_points
    data = datasets.digits(P, P, key=jax.random.fold_in(key, 7), target="parity")
    kw = dict(lr=cfg.ensemble_lr, steps=cfg.ensemble_steps, save_every=1)
    unit = lm.MLP(64, (1,), 1, activation="tanh", sigma_w=1.0)
    theory = lm.ensemble_mean(unit, data, **kw, points=cfg.analytic_points, seed=cfg.seed, progress=progress)
    x_all = jnp.concatenate([jnp.asarray(data.x_train), jnp.asarray(data.x_test)])
    k_inf = lm.analytic_kernels(unit, x_all, data.x_train)["ntk"]

    def kernel_outputs(k, f0):
        lin = lm.Linearized(k[:P], k[P:], f0[:P, None], f0[P:, None], data.y_train, data.y_test)
        tr = ls.solve(lin, ls.GradientDescent(), progress=False, **kw)
        return jnp.concatenate([tr["f_train"], tr["f_test"]], 1)[..., 0]

    res = {"kernel": [], "analytic": [], "standard_error": []}
    for width in cfg.analytic_widths:
        net = lm.MLP(64, (width,), 1, activation="tanh", sigma_w=1.0)
        f_all = lambda q, net=net: net.apply(q, x_all)[:, 0]  # noqa: E731

        def one(p, net=net, f_all=f_all):
            tr = ls.solve(lm.Trained(net, data, params=p), ls.GradientDescent(), progress=False, **kw)
            f = jnp.concatenate([tr["f_train"], tr["f_test"]], 1)[..., 0]
            jac = jnp.concatenate([j.reshape(2 * P, -1) for j in jax.tree.leaves(jax.jacrev(f_all)(p))], 1)
            cv = jax.jvp(lambda k: kernel_outputs(k, f_all(p)), (k_inf,), (jac @ jac[:P].T - k_inf,))[1]
            return f - cv

        def pair(k, net=net, one=one):
            p = net.init(k)
            return 0.5 * (one(p) + one((p[0], (-p[1][0], p[1][1]))))

        batch = jax.jit(jax.vmap(pair))
        chunk = min(1024, max(1, 2**16 // width), cfg.analytic_pairs)
        total = total2 = 0.0
        keys = jax.random.split(jax.random.fold_in(key, 10_000 + width), cfg.analytic_pairs)
        for i in range(0, cfg.analytic_pairs, chunk):
            est = np.asarray(batch(keys[i : i + chunk]))
            total, total2 = total + est.sum(0), total2 + (est**2).sum(0)
        # from step 1: at step 0 every pair's mean output is exactly zero, as is the prediction
        mean = total[1:] / cfg.analytic_pairs
        se = np.sqrt(np.maximum(total2[1:] / cfg.analytic_pairs - mean**2, 0.0) / cfg.analytic_pairs)
        norm = np.linalg.norm(mean, axis=1)
        rel = lambda a, mean=mean, norm=norm: float(
            np.max(np.linalg.norm(np.asarray(a) - mean, axis=1) / norm)
        )  # noqa: E731
        res["kernel"].append(rel(theory.limit[1:]))
        res["analytic"].append(rel(theory.outputs(width)[1:]))
        res["standard_error"].append(float(np.max(np.linalg.norm(se, axis=1) / norm)))
    slopes = {k: loglog_slope(cfg.analytic_widths, res[k]) for k in ("kernel", "analytic")}
    metrics = {
        "widths": list(cfg.analytic_widths),
        **res,
        "slopes": slopes,
        "pairs": cfg.analytic_pairs,
        "points": cfg.analytic_points,
    }
    curves = {f"analytic.{k}": np.asarray(v) for k, v in res.items()}
    curves["analytic.widths"] = np.asarray(cfg.analytic_widths)
    return metrics, curves


def measure_fluctuations(cfg: Config, key) -> tuple[dict, dict]:
    """`aspect_ratio_scan` for each entry of `cfg.fluctuations`: measured vs predicted
    relative NTK variance at init, and the largest relative deviation for L/n <= 0.1."""
    metrics, curves = {}, {}
    for i, (act, width, depths) in enumerate(cfg.fluctuations):
        scan = lm.aspect_ratio_scan(act, width, depths, jax.random.fold_in(key, i), cfg.fluctuation_seeds)
        best = np.where(np.isfinite(scan["exact"]), scan["exact"], scan["first_order"])
        dev = np.abs(scan["measured"] / best - 1)
        small = scan["aspect"] <= 0.1 + 1e-12
        metrics[f"{act}, width {width}"] = {
            "aspect": scan["aspect"].tolist(),
            "measured": scan["measured"].tolist(),
            "measured_se": scan["measured_se"].tolist(),
            "predicted": best.tolist(),
            "prediction": "exact" if np.isfinite(scan["exact"]).all() else "first order in 1/n",
            "max_rel_deviation_L_over_n_le_0.1": float(dev[small].max()) if small.any() else None,
            "max_rel_deviation": float(dev.max()),
        }
        curves.update({f"fluctuations.{act}.{k}": np.asarray(v) for k, v in scan.items()})
    return metrics, curves


def compute(config: Config, *, progress: bool = True) -> dict:
    """`metrics`: `setup`, `errors` (per activation), `fluctuations`; curve names prefixed
    by the activation, `errors.` and `fluctuations.`."""
    k_data, k_net, k_fl = jax.random.split(jax.random.key(config.seed), 3)
    data = datasets.digits(config.n_train, config.n_test, key=k_data, target="parity")
    errors, curves = measure_errors(config, data, k_net, progress=progress)
    fluct, c = measure_fluctuations(config, k_fl)
    curves.update(c)
    ensemble, c = measure_ensemble_means(config, k_fl) if config.ensemble_widths else ({}, {})
    curves.update(c)
    if config.analytic_widths:
        analytic, c = measure_analytic_mean(config, k_fl, progress=progress)
        curves.update(c)
    else:
        analytic = {}
    setup = {
        k: getattr(config, k) for k in ("n_train", "n_test", "lr", "steps", "seeds", "fluctuation_seeds")
    }
    return {
        "metrics": {
            "setup": setup,
            "errors": errors,
            "fluctuations": fluct,
            "ensemble_means": ensemble,
            "analytic_mean": analytic,
        },
        "curves": curves,
    }


# ---------------------------------------------------------------------------------------------
def figures(results: dict) -> dict:
    """`errors_vs_width` (one log–log panel per activation) and `ntk_fluctuations` (vs L/n)."""
    m, c = results["metrics"], results["curves"]
    acts = list(m["errors"])
    fig, axes = plot.panels(len(acts), width=5.4, height=4.4)
    for ax, act in zip(axes, acts):
        widths = c[f"errors.{act}.widths"]
        series = {}
        for model in _models(m["errors"][act]):
            y = c[f"errors.{act}.{model}"]
            ok = np.isfinite(y)
            if ok.sum() >= 1:
                series[LABELS[model]] = (widths[ok], y[ok])
        plot.loglog_fits(series, ax=ax, xlabel="width n", ylabel="max_t ‖f − f_GD‖/‖f_GD‖ (test)")
        ax.set_title(f"{act if 'layers' in act else act + ', 2 layers'}, η = {m['setup']['lr']}")
    fig.tight_layout()
    scans = {}
    for key in m["fluctuations"]:
        act = key.split(",")[0]
        scans[key] = {k.split(".", 2)[2]: v for k, v in c.items() if k.startswith(f"fluctuations.{act}.")}
    out = {"errors_vs_width": fig, "ntk_fluctuations": plot.aspect_ratio(scans, logy=True)}
    if m.get("ensemble_means"):
        e = m["ensemble_means"]
        out["ensemble_means"] = _width_figure(
            c,
            "ensemble",
            {"kernel (linearized)": "kernel", "O(1/n) closed form": "corrected"},
            "max_t ‖E f − E f_GD‖/‖E f_GD‖",
            f"ensemble means, {e['seeds']} networks per width (2-layer tanh)",
        )
    if m.get("analytic_mean"):
        a = m["analytic_mean"]
        out["analytic_mean"] = _width_figure(
            c,
            "analytic",
            {"kernel regime f∞": "kernel", "analytic mean f∞ + c/n": "analytic"},
            "max_t ‖prediction − E f_GD‖/‖E f_GD‖",
            f"analytic ensemble mean vs {a['pairs']} network pairs per width",
            floor="standard_error",
        )
    return out


def _width_figure(c: dict, prefix: str, labels: dict, ylabel: str, title: str, floor: str | None = None):
    """One log–log panel of residuals against width (fitted slopes), optionally with the
    standard error of the measured mean as a dotted line."""
    widths = c[f"{prefix}.widths"]
    series = {label: (widths, c[f"{prefix}.{name}"]) for label, name in labels.items()}
    fig, ax = plot.panels(1, width=5.4, height=4.4)
    plot.loglog_fits(series, ax=ax[0], xlabel="width n", ylabel=ylabel)
    if floor is not None:
        ax[0].plot(widths, c[f"{prefix}.{floor}"], "k:", label="standard error of the mean")
        ax[0].legend(fontsize=8)
    ax[0].set_title(title)
    fig.tight_layout()
    return fig


SHORT = {
    "linearized": "linearized",
    "o3_frozen": "O3-frozen",
    "o4_frozen": "O4-frozen",
    "taylor2": "Taylor 2",
    "taylor3": "Taylor 3",
}


def _models(table: dict) -> list[str]:
    """The models an error table has (the prototype's are a subset)."""
    return [m for m in MODELS if m in table["slopes"]]


def _fmt(e) -> str:
    return "—" if e is None else f"{e:.2g}"


def summary(results: dict) -> str:
    m = results["metrics"]
    s = m["setup"]
    lines = [
        f"2-layer MLPs (NTK parameterization, σ_w = 1) on digits (parity, {s['n_train']} train / {s['n_test']} test), "
        f"MSE, GD at η = {s['lr']} for {s['steps']} steps; {s['seeds']} seed(s) per width (means). Error = max over "
        "time of the relative test-output error against the same network trained by GD."
    ]
    for act, r in m["errors"].items():
        if "setup" in r:
            p = r["setup"]
            lines.append(
                f"- {act} (the issue's prototype: {p['points']} train / {p['points']} test digits, "
                f"{p['steps']} steps, {p['seeds']} seed(s), init keys 0..{p['seeds'] - 1}):"
            )
        for model in _models(r):
            cells = ", ".join(
                f"{row['width']}: {_fmt(row[model])}"
                + (f" ({row[model + '_failed']} diverged)" if row[model + "_failed"] else "")
                for row in r["rows"]
            )
            sl, sb = r["slopes"][model], r["slopes_n_ge_256"][model]
            lines.append(f"- {act}, {LABELS[model]}: {cells} (slope {_fmt(sl)}; over n ≥ 256 {_fmt(sb)})")
    if m.get("ensemble_means"):
        e = m["ensemble_means"]
        lines.append(
            f"- Ensemble means ({e['seeds']} real networks per width, 2-layer tanh, GD): kernel "
            + ", ".join(f"{w}: {_fmt(v)}" for w, v in zip(e["widths"], e["kernel"]))
            + f" (slope {_fmt(e['slopes']['kernel'])}); O(1/n) closed form "
            + ", ".join(f"{w}: {_fmt(v)}" for w, v in zip(e["widths"], e["corrected"]))
            + f" (slope {_fmt(e['slopes']['corrected'])})."
        )
    if m.get("analytic_mean"):
        a = m["analytic_mean"]
        lines.append(
            f"- Analytic ensemble mean (E over init to O(1/n) from single-neuron expectations, {a['points']} "
            f"Sobol points; 2-layer tanh, GD) vs the mean of {a['pairs']} antithetic pairs of real networks per "
            "width (first-order NTK deviation subtracted): kernel regime "
            + ", ".join(f"{w}: {_fmt(v)}" for w, v in zip(a["widths"], a["kernel"]))
            + f" (slope {_fmt(a['slopes']['kernel'])}); f∞ + c/n "
            + ", ".join(f"{w}: {_fmt(v)}" for w, v in zip(a["widths"], a["analytic"]))
            + f" (slope {_fmt(a['slopes']['analytic'])}); standard error of the mean "
            + ", ".join(f"{w}: {_fmt(v)}" for w, v in zip(a["widths"], a["standard_error"]))
            + "."
        )
    for key, f in m["fluctuations"].items():
        pts = ", ".join(
            f"L/n {a:.3g}: {mm:.3g} ± {se:.2g} vs {p:.3g}"
            for a, mm, se, p in zip(f["aspect"], f["measured"], f["measured_se"], f["predicted"])
        )
        lines.append(
            f"- NTK fluctuations at init, {key} ({s['fluctuation_seeds']} networks; measured Var Θ/(EΘ)² vs "
            f"{f['prediction']}): {pts}; largest deviation for L/n ≤ 0.1: {_fmt(f['max_rel_deviation_L_over_n_le_0.1'])}."
        )
    return "\n".join(lines)


def headline(metrics: dict) -> dict[str, str]:
    out = {}
    for act, r in metrics["errors"].items():
        models = _models(r)
        names = " / ".join(SHORT[m] for m in models)
        out[f"{act}: error slope vs width — {names}"] = " / ".join(_fmt(r["slopes"][m]) for m in models)
        widest = r["rows"][-1]
        shown = [m for m in ("linearized", "o4_frozen", "taylor2", "taylor3") if m in models]
        if "o4_frozen" in shown:
            shown.remove("taylor2")
        out[f"{act}: error at width {widest['width']} — {' / '.join(SHORT[m] for m in shown)}"] = " / ".join(
            _fmt(widest[m]) for m in shown
        )
    if metrics.get("ensemble_means"):
        sl = metrics["ensemble_means"]["slopes"]
        out["ensemble-mean error slope vs width — kernel / O(1/n) closed form"] = (
            f"{_fmt(sl['kernel'])} / {_fmt(sl['corrected'])}"
        )
    if metrics.get("analytic_mean"):
        a = metrics["analytic_mean"]
        out["analytic ensemble mean: residual slope vs width — kernel regime / f∞ + c/n"] = (
            f"{_fmt(a['slopes']['kernel'])} / {_fmt(a['slopes']['analytic'])}"
        )
        out[
            f"analytic ensemble mean at width {a['widths'][-1]}: residual kernel / f∞ + c/n (standard error)"
        ] = f"{_fmt(a['kernel'][-1])} / {_fmt(a['analytic'][-1])} ({_fmt(a['standard_error'][-1])})"
    for key, f in metrics["fluctuations"].items():
        out[f"NTK Var/mean² at init, {key}: max deviation from {f['prediction']} for L/n ≤ 0.1"] = _fmt(
            f["max_rel_deviation_L_over_n_le_0.1"]
        )
    return out
