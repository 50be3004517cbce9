r"""Experiment `dmft`: the mean-field (muP) limit of two-layer and deep linear networks
against real GD.

Networks: `MLP(D, [N], 1, parameterization=Parameterization.mean_field(2, γ₀), bias=False)`
— $f = \sum_i a_i\phi(w_i\cdot x/\sqrt D)/(\gamma_0 N)$ trained by gradient flow with the
per-layer rate $\gamma_0^2 N$ (muP up to the abc symmetry) — on a synthetic task:
$x \sim \mathcal N(0, I_D)$, whitened ($X^\top X/P = I$, so the linear DMFT's closed ODE
applies), test points drawn the same way, target $y = y_0\,\beta\cdot x/\sqrt D$ (linear) or
$y_0\tanh(\beta\cdot x/\sqrt D)$ (tanh), $\beta \sim \mathcal N(0, I_D)$. The theories:
`TwoLayerLinearDMFT` (linear, an ODE in the order parameters) and `TwoLayerDMFT` (tanh,
`samples` Monte-Carlo sites with the exact initial kernels as control variate); and
`deep-linear`: linear networks with `deep_depth` weight layers (`[N] * (deep_depth - 1)`
hidden) against `DeepLinearDMFT`, solved on a time grid by `SelfConsistent` (its own
`deep_gamma0s`, `deep_widths`, `deep_seeds`: a width-4096 network of depth 3 costs ~35 s of
flow on 2 cores; no finite-width variance, which exists for two-layer networks only); and
`deep-tanh`: tanh networks of the same depth against `DeepDMFT` (Monte-Carlo sites and
response functions on a time grid), on `deep_tanh_train` raw Gaussian points (the grid
solve costs $(Pn)^3$ per site) with the tanh target, flow time `deep_tanh_time`; no
small-γ₀ NTK scan for it (a solve takes minutes).

- **Error against width** (`measure_widths`), for each $\gamma_0$: over `seeds` networks per
  width, a single network's error $\max_t \max_x |f_N - f_{\rm DMFT}| / \max|y_*|$ on the test
  points (mean over seeds) and the ensemble mean's (the same for the seed average), with
  log–log slopes against $N$ (expected $-1/2$ for single networks: the initial order
  parameters fluctuate by $N^{-1/2}$; faster for the mean), and the loss curves. The seeds
  come in antithetic pairs (a draw and the same draw with the readout negated; see
  `real_ensemble`), so the mean's error is its $O(1/N)$ bias plus the noise of the even part,
  which with a few seeds still falls as $N^{-1/2}$. For the linear model the mean is also
  measured with each network's own first-order deviation subtracted
  (`WidthFluctuations.first_order`, mean zero over initializations): what is left is the
  $O(1/N)$ bias and second-order noise, expected slope $-1$; for tanh likewise through the
  site population (`network_deviation`: the DMFT's derivative as its sites' measure moves to
  the network's neurons; `tanh_control_variate`). For deep-tanh, whose networks have no such
  control variate, the mean's $O(1/N)$ bias is resolved instead by many networks at small
  widths (`measure_ensemble`: `deep_tanh_ensemble_widths`, thousands of networks each, at
  `deep_tanh_ensemble_gamma0`) against a DMFT with `deep_tanh_ensemble_samples` sites, whose
  distance from the width scan's DMFT is reported as that solve's Monte-Carlo error.
- **NTK evolution**: $\lVert K(t) - K(0)\rVert_F / \lVert K(0)\rVert_F$ on the training points,
  DMFT against one real network of the largest width (its empirical NTK at the end), and, from
  the DMFT alone at `ntk_gamma0s`, its log–log slope against small $\gamma_0$ (expected 2: the
  first-order change averages to zero, THEORY.md §4).
- **Kernel limit**: the DMFT at $\gamma_0 = 0$ against the kernel-regime module
  (`Linearized.from_network` with the analytic NTK of the `"ntk"` network, $f_0 = 0$): the
  largest relative difference of the test outputs over time.
- **Finite-width variance** (`measure_fluctuations`): `width_fluctuations`' prediction of the
  test outputs' variance at width $N$ against the variance over `variance_seeds` real
  networks, as the ratio of the summed variances at each saved time.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from matplotlib.ticker import NullFormatter
from tqdm.auto import tqdm

import lmech.models as lm
import lmech.solvers as ls

from .. import plot
from ._util import loglog_slope

NAME = "dmft"
MODELS = ("linear", "tanh", "deep-linear", "deep-tanh")
DEEP = ("deep-linear", "deep-tanh")
DESCRIPTION = "Feature learning: mean-field DMFT (two-layer linear and tanh, deep linear and tanh) vs real muP networks across width and γ₀."

TIGHT = ls.GradientFlow(rtol=1e-9, atol=1e-11)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    dim: int = 16
    n_train: int = 64
    n_test: int = 32
    y0: float = 1.5
    time: float = 20.0
    saves: int = 20
    models: tuple = MODELS
    gamma0s: tuple = (0.1, 0.5, 1.0, 2.0)
    ntk_gamma0s: tuple = (0.025, 0.05, 0.1)
    widths: tuple = (128, 256, 512, 1024, 2048, 4096)
    seeds: int = 8
    samples: int = 32768
    variance_widths: tuple = (256, 1024)
    variance_gamma0: float = 1.0
    variance_seeds: int = 64
    variance_samples: int = 2048
    variance_saves: int = 4
    deep_depth: int = 3
    deep_gamma0s: tuple = (0.5, 1.0)
    deep_widths: tuple = (128, 256, 512, 1024, 2048, 4096)
    deep_seeds: int = 4
    deep_tanh_train: int = 8
    deep_tanh_test: int = 8
    deep_tanh_time: float = 10.0
    deep_tanh_saves: int = 10
    deep_tanh_samples: int = 8192
    # deep-tanh: the ensemble mean of many networks at small widths, where its O(1/N) bias is
    # above the noise of the mean (pairs of networks per width; ~11 min on 2 cores), at one γ₀,
    # against a DMFT with more sites (its error must sit below the mean's: 8192 sites leave
    # ~0.3% of max|y|, the bias at width 256 is ~0.2%; 65536 sites take ~20 min on 2 cores;
    # the whole deep-tanh part of the full run took 45–47 min)
    deep_tanh_ensemble_widths: tuple = (16, 32, 64, 128, 256)
    deep_tanh_ensemble_pairs: tuple = (2048, 2048, 1024, 1024, 512)
    deep_tanh_ensemble_gamma0: float = 1.0
    deep_tanh_ensemble_samples: int = 65536
    # tanh: subtract each network's first-order deviation (`network_deviation`, one forward-mode
    # solve of the DMFT with the network's neurons as extra sites per network)
    tanh_control_variate: bool = True

    def __post_init__(self):
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"dmft.Config: models are {MODELS}, got {m!r}.")
        if self.deep_depth < 3 or self.deep_seeds < 2 or self.deep_seeds % 2:
            raise ValueError("dmft.Config: `deep_depth` must be >= 3 and `deep_seeds` even >= 2.")
        if len(self.widths) < 2 or list(self.widths) != sorted(set(self.widths)) or min(self.widths) < 2:
            raise ValueError(f"dmft.Config: `widths` must be >= 2 increasing widths, got {self.widths}.")
        if not self.gamma0s or min(self.gamma0s) <= 0:
            raise ValueError(f"dmft.Config: `gamma0s` must be positive, got {self.gamma0s}.")
        if self.n_train < self.dim:
            raise ValueError(f"dmft.Config: whitening needs n_train >= dim, got {self.n_train} < {self.dim}.")
        if self.seeds < 2 or self.seeds % 2 or self.variance_seeds < 32:
            raise ValueError(
                "dmft.Config: need an even number of seeds >= 2 (antithetic pairs) and variance_seeds >= 32 "
                f"(a variance from fewer seeds is too noisy to check), got {self.seeds}, {self.variance_seeds}."
            )
        if len(self.deep_tanh_ensemble_widths) != len(self.deep_tanh_ensemble_pairs) or (
            self.deep_tanh_ensemble_widths and min(self.deep_tanh_ensemble_pairs) < 2
        ):
            raise ValueError(
                "dmft.Config: `deep_tanh_ensemble_widths` and `deep_tanh_ensemble_pairs` must have the same "
                "length, with >= 2 pairs per width (the mean's standard error needs two)."
            )
        if self.deep_tanh_ensemble_widths and "deep-tanh" in self.models:
            if self.deep_tanh_ensemble_gamma0 not in self.deep_gamma0s:
                raise ValueError(
                    f"dmft.Config: `deep_tanh_ensemble_gamma0` ({self.deep_tanh_ensemble_gamma0}) must be one of "
                    f"`deep_gamma0s` {self.deep_gamma0s}: the ensemble runs inside that width scan."
                )
            n = self.deep_tanh_ensemble_samples
            if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
                raise ValueError(
                    f"dmft.Config: `deep_tanh_ensemble_samples` must be an even int >= 2, got {n!r}."
                )
        if self.time <= 0 or self.saves < 1 or self.variance_saves < 1:
            raise ValueError("dmft.Config: `time`, `saves` and `variance_saves` must be positive.")

    @classmethod
    def quick(cls, seed: int = 0) -> Config:
        return cls(
            seed=seed,
            dim=8,
            n_train=32,
            n_test=16,
            time=12.0,
            saves=6,
            models=("linear", "tanh", "deep-linear", "deep-tanh"),
            gamma0s=(0.1, 1.0),
            widths=(128, 512, 2048),
            seeds=4,
            samples=8192,
            variance_widths=(256,),
            variance_seeds=128,
            variance_samples=1024,
            variance_saves=3,
            deep_gamma0s=(1.0,),
            deep_widths=(128, 512, 2048),
            deep_seeds=2,
            deep_tanh_train=6,
            deep_tanh_test=4,
            deep_tanh_time=6.0,
            deep_tanh_saves=6,
            deep_tanh_samples=2048,
            deep_tanh_ensemble_widths=(),  # thousands of networks: the full run only
            deep_tanh_ensemble_pairs=(),
        )


def make_data(cfg: Config, model: str, key) -> lm.Dataset:
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1])
    D = cfg.dim
    if model == "deep-tanh":  # the grid DMFT costs (P n)^3: a few raw Gaussian points
        x = rng.standard_normal((cfg.deep_tanh_train, D))
        xt = rng.standard_normal((cfg.deep_tanh_test, D))
    else:
        x = lm.whiten(rng.standard_normal((cfg.n_train, D)))
        xt = rng.standard_normal((cfg.n_test, D))
    beta = rng.standard_normal(D)
    if model in ("linear", "deep-linear"):
        target = lambda z: cfg.y0 * (z @ beta / np.sqrt(D))[:, None]  # noqa: E731
    else:
        target = lambda z: cfg.y0 * np.tanh(z @ beta / np.sqrt(D))[:, None]  # noqa: E731
    return lm.Dataset(x, target(x), xt, target(xt))


def _hidden(cfg: Config, model: str) -> int:
    return cfg.deep_depth - 1 if model in DEEP else 1


def _network(cfg: Config, model: str, gamma0: float, width: int) -> lm.MLP:
    H = _hidden(cfg, model)
    table = lm.Parameterization.mean_field(H + 1, gamma0)
    return lm.MLP(cfg.dim, [width] * H, 1, activation=_activation(model), parameterization=table, bias=False)


def _activation(model: str) -> str:
    return {"deep-linear": "linear", "deep-tanh": "tanh"}.get(model, model)


def dmft_dynamics(cfg: Config, model: str, data, gamma0: float, key, samples: int | None = None):
    if model == "linear":
        return lm.TwoLayerLinearDMFT(data, gamma0)
    if model == "deep-linear":
        return lm.DeepLinearDMFT(data, gamma0, cfg.deep_depth)
    if model == "deep-tanh":
        return lm.DeepDMFT(
            data, gamma0, cfg.deep_depth, "tanh", samples=samples or cfg.deep_tanh_samples, key=cfg.seed
        )
    return lm.TwoLayerDMFT(data, gamma0, model, samples=samples or cfg.samples, key=key)


def theory_method(model: str):
    """How each theory is solved: the closed ODEs by a tight adaptive flow, the deep linear
    DMFT on a time grid (8 intervals per saved interval, Richardson-extrapolated: O(h⁴)), the
    deep tanh DMFT on 1 and 2 intervals per saved interval, extrapolated (its Monte-Carlo
    sweeps converge to ~1e-8, hence the looser tolerance)."""
    if model == "deep-linear":
        return ls.SelfConsistent(points=8, extrapolate=True)
    if model == "deep-tanh":
        return ls.SelfConsistent(points=1, extrapolate=True, rtol=1e-6, atol=1e-6)
    return TIGHT


def _scan(cfg: Config, model: str) -> tuple[tuple, tuple, int]:
    """(γ₀s, widths, seeds) of the width scan."""
    if model in DEEP:
        return cfg.deep_gamma0s, cfg.deep_widths, cfg.deep_seeds
    return cfg.gamma0s, cfg.widths, cfg.seeds


def _schedule(cfg: Config, saves: int, model: str | None = None) -> dict:
    if model == "deep-tanh":
        return dict(lr=cfg.deep_tanh_time / cfg.deep_tanh_saves, steps=cfg.deep_tanh_saves, save_every=1)
    return dict(lr=cfg.time / saves, steps=saves, save_every=1)


def real_ensemble(
    net,
    data,
    keys,
    schedule,
    *,
    antithetic: bool = False,
    extra=None,
    serial: bool = False,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Real networks trained by gradient flow, one per key (vmapped): test outputs and loss.
    `antithetic`: each key gives two networks, its draw and the same draw with the readout
    negated (the init law is symmetric under $a \\to -a$: an unbiased ensemble whose odd
    part — the initial output, $O(1/(\\gamma_0\\sqrt N))$ — cancels in the mean).
    `extra(params)`: something of each initialization to return too (`"extra"`).
    `serial`: train one network at a time (`lax.map`, for networks too large to batch);
    `batch_size`: vmap over this many keys at a time (`lax.map` over the batches, one compile)."""

    def one(params):
        tr = ls.solve(lm.Trained(net, data, params=params), ls.GradientFlow(), **schedule)
        return tr["f_test"][..., 0], tr["loss"], (None if extra is None else extra(params))

    def pair(k):
        p = net.init(k)
        flipped = (*p[:-1], (-p[-1][0], p[-1][1]))
        if serial:
            return jax.lax.map(one, jax.tree.map(lambda a, b: jax.numpy.stack([a, b]), p, flipped))
        return jax.tree.map(lambda a, b: jax.numpy.stack([a, b]), one(p), one(flipped))

    if serial:
        batch = jax.lax.map
    elif batch_size is not None:
        batch = lambda f, xs: jax.lax.map(f, xs, batch_size=batch_size)  # noqa: E731
    else:
        batch = lambda f, xs: jax.vmap(f)(xs)  # noqa: E731
    if antithetic:
        out = jax.jit(lambda ks: batch(pair, ks))(keys)
        out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)
    else:
        out = jax.jit(lambda ks: batch(lambda k: one(net.init(k)), ks))(keys)
    f, loss, ext = out
    return {"f_test": np.asarray(f), "loss": np.asarray(loss), "extra": ext}


def measure_ensemble(cfg: Config, model: str, data, gamma0: float, f_th, key) -> dict:
    r"""The ensemble mean of many networks against the DMFT at small widths
    (`deep_tanh_ensemble_widths`, `deep_tanh_ensemble_pairs` antithetic pairs each): its error
    $\max_{t,x}|\bar f_N - f_{\rm DMFT}|/\max|y|$, the standard error of $\bar f_N$ there
    (from the spread of the pair means), and a single network's error, with their slopes.
    The mean's error is its $O(1/N)$ bias, the mean's noise and the DMFT's own error: it falls
    faster than a single network's only while the bias is above the other two. The maximum over
    $(t, x)$ also picks up the largest of many noisy points, so the bias is measured on its own
    too: `bias_rms` $= \big(\overline{(\bar f_N - f_{\rm DMFT})^2 - \widehat{\rm Var}\,\bar f_N}\big)^{1/2}/\max|y|$,
    the average over $(t, x)$ of the squared error less the mean's estimated variance (an
    unbiased estimate of the squared bias plus the DMFT's own squared error; expected slope
    $-1$ down to that floor), with `noise_rms` $= (\overline{\widehat{\rm Var}\,\bar f_N})^{1/2}/\max|y|$;
    `bias_rms_slope` and `single_slope_resolved` are fitted over the widths where the bias
    exceeds the noise (`bias_resolved_widths`; `None` if fewer than two)."""
    sched = _schedule(cfg, cfg.saves, model)
    scale = float(np.max(np.abs(data.y_test)))
    widths, pairs = cfg.deep_tanh_ensemble_widths, cfg.deep_tanh_ensemble_pairs
    single, mean, se, bias, noise = [], [], [], [], []
    for N, n_pairs in zip(widths, pairs):
        net = _network(cfg, model, gamma0, N)
        keys = jax.random.split(jax.random.fold_in(key, N), n_pairs)
        batch = max(1, min(n_pairs, 2**14 // N))  # a few GB of flow state per batch at N = 256
        f = real_ensemble(net, data, keys, sched, antithetic=True, batch_size=batch)["f_test"]
        pm = f.reshape(n_pairs, 2, *f.shape[1:]).mean(1)  # pair means: independent
        dev = np.abs(pm.mean(0) - f_th)
        at = np.unravel_index(np.argmax(dev), dev.shape)
        single.append(float(np.mean(np.max(np.abs(f - f_th), axis=(1, 2))) / scale))
        mean.append(float(dev[at] / scale))
        se.append(float(np.std(pm[(slice(None), *at)], ddof=1) / np.sqrt(n_pairs) / scale))
        # the squared bias, unbiased: (mean − f)² less the mean's variance, averaged over (t, x)
        var = np.var(pm, axis=0, ddof=1) / n_pairs
        bias.append(float(np.sqrt(max(np.mean(dev**2 - var), 0.0)) / scale))
        noise.append(float(np.sqrt(np.mean(var)) / scale))
    # the bias's slope where it stands above the mean's noise (there its estimate is resolved)
    resolved = [i for i, (b, n) in enumerate(zip(bias, noise)) if b > n]
    return {
        "widths": list(widths),
        "networks": [2 * p for p in pairs],
        "single": single,
        "mean": mean,
        "mean_se": se,
        "single_slope": loglog_slope(widths, single),
        "mean_slope": loglog_slope(widths, mean),
        "bias_rms": bias,
        "noise_rms": noise,
        "bias_resolved_widths": [widths[i] for i in resolved],
        "bias_rms_slope": (
            loglog_slope([widths[i] for i in resolved], [bias[i] for i in resolved])
            if len(resolved) >= 2
            else None
        ),
        "single_slope_resolved": (
            loglog_slope([widths[i] for i in resolved], [single[i] for i in resolved])
            if len(resolved) >= 2
            else None
        ),
    }


def _ensemble_against_finer_dmft(cfg: Config, model: str, data, gamma0: float, f_th, key) -> dict:
    """`measure_ensemble` against the DMFT with `deep_tanh_ensemble_samples` sites, and the
    distance of the width scan's DMFT (`f_th`, `deep_tanh_samples` sites, other draws) from it:
    a measurement of the coarser solve's Monte-Carlo error, `dmft_difference`."""
    n = cfg.deep_tanh_ensemble_samples
    if n == cfg.deep_tanh_samples:
        f_ref = f_th
    else:
        dyn = lm.DeepDMFT(data, gamma0, cfg.deep_depth, "tanh", samples=n, key=cfg.seed + 1)
        f_ref = np.asarray(
            ls.solve(dyn, theory_method(model), **_schedule(cfg, cfg.saves, model))["f_test"][..., 0]
        )
    scale = float(np.max(np.abs(data.y_test)))
    ens = measure_ensemble(cfg, model, data, gamma0, f_ref, key)
    ens["dmft_samples"] = n
    ens["dmft_difference"] = float(np.max(np.abs(f_ref - f_th)) / scale)
    return ens


def _rel_change(k):
    k = np.asarray(k)
    return np.linalg.norm(k - k[0], axis=(-2, -1)) / np.linalg.norm(k[0])


def measure_widths(cfg: Config, model: str, data, key, *, progress: bool = True):
    sched = _schedule(cfg, cfg.saves, model)
    scale = float(np.max(np.abs(data.y_test)))
    k_dmft, k_net = jax.random.split(key)
    gamma0s, widths, seeds = _scan(cfg, model)
    method = theory_method(model)
    out, curves = {}, {}
    bar = tqdm(gamma0s, desc=f"dmft {model}", disable=not progress, leave=False)
    for g in bar:
        dyn = dmft_dynamics(cfg, model, data, g, k_dmft)
        theory = ls.solve(dyn, method, **sched)
        f_th = np.asarray(theory["f_test"][..., 0])
        single, mean, mean_cv = [], [], []
        if model == "linear":  # each network's own first-order deviation: a control variate
            response = lm.width_fluctuations(dyn, cfg.widths[0], TIGHT, **sched)
            order = lambda p: dyn.order_parameters(p[-1][0][0], p[0][0])  # noqa: E731  (a, w)
            deviations = jax.vmap(response.first_order)
        elif model == "tanh" and cfg.tanh_control_variate:  # the same, through the site population
            order = lambda p: (p[-1][0][0], p[0][0])  # noqa: E731  (a, w)
            one_dev = lambda aw: lm.network_deviation(dyn, *aw, method, reference=f_th, **sched)  # noqa: E731
            deviations = jax.jit(lambda aw: jax.lax.map(one_dev, aw))
            response = True
        else:
            response, order = None, None
        for N in widths:
            bar.set_postfix(gamma0=g, width=N)
            net = _network(cfg, model, g, N)
            keys = jax.random.split(k_net, seeds // 2)
            # deep networks one at a time: a batch of four width-4096 depth-3 flows exceeds 24 GB
            real = real_ensemble(net, data, keys, sched, antithetic=True, extra=order, serial=model in DEEP)
            err = np.max(np.abs(real["f_test"] - f_th), axis=(1, 2)) / scale
            single.append(float(np.mean(err)))
            mean.append(float(np.max(np.abs(real["f_test"].mean(0) - f_th)) / scale))
            if response is not None:
                dev = np.asarray(deviations(real["extra"]))
                mean_cv.append(float(np.max(np.abs((real["f_test"] - dev).mean(0) - f_th)) / scale))
            curves[f"{model}.{g}.loss.N{N}"] = real["loss"].mean(0)
        # the NTK: DMFT's K(t) and one real network of the largest width at the end
        net = _network(cfg, model, g, widths[-1])
        tr = ls.solve(
            lm.Trained(net, data, key=jax.random.split(k_net, seeds)[0]), ls.GradientFlow(), **sched
        )
        p0 = net.init(jax.random.split(k_net, seeds)[0])
        # NTK-vector products for the deep nets: a dense Jacobian of a width-4096 depth-3 network on
        # 64 points is 8.6 GB
        how = "ntvp" if model in DEEP else "jacobian"
        k_real = [
            lm.empirical_ntk(net.apply, p, data.x_train, output="trace", method=how)
            for p in (p0, tr.final_state)
        ]
        ntk_th = np.asarray(theory["ntk"])
        if model in ("linear", "deep-linear"):  # the kernel Θ = x^T K x' from the D x D matrix K
            ntk_th = np.einsum("pd,tde,qe->tpq", data.x_train, ntk_th, data.x_train)
        change = _rel_change(ntk_th)
        out[str(g)] = {
            "single": single,
            "mean": mean,
            "single_slope": loglog_slope(widths, single),
            "mean_slope": loglog_slope(widths, mean),
            "mean_control_variate": mean_cv or None,
            "mean_control_variate_slope": loglog_slope(widths, mean_cv) if mean_cv else None,
            "ntk_change_dmft": float(change[-1]),
            "ntk_change_real": float(_rel_change(np.stack(k_real))[-1]),
            "final_loss_dmft": float(theory["loss"][-1]),
        }
        if model == "deep-tanh" and cfg.deep_tanh_ensemble_widths and g == cfg.deep_tanh_ensemble_gamma0:
            out[str(g)]["ensemble"] = _ensemble_against_finer_dmft(cfg, model, data, g, f_th, k_net)
        curves[f"{model}.{g}.loss.dmft"] = np.asarray(theory["loss"])
        curves[f"{model}.{g}.ntk_change"] = change
        curves[f"{model}.{g}.single"] = np.asarray(single)
        curves[f"{model}.{g}.mean"] = np.asarray(mean)
        if mean_cv:
            curves[f"{model}.{g}.mean_cv"] = np.asarray(mean_cv)
    curves[f"{model}.times"] = np.asarray(theory.times)
    if model == "deep-tanh":  # ~7 min per grid DMFT solve here: no small-γ₀ scan
        return {
            "by_gamma0": out,
            "ntk_change_small_gamma0": None,
            "ntk_change_slope_small_gamma0": None,
        }, curves
    # the NTK's relative change at small γ₀ (DMFT alone): expected ∝ γ₀²
    small = []
    for g in cfg.ntk_gamma0s:
        k = ls.solve(dmft_dynamics(cfg, model, data, g, k_dmft), method, **sched)["ntk"]
        if model != "tanh":
            k = np.einsum("pd,tde,qe->tpq", data.x_train, np.asarray(k), data.x_train)
        small.append(float(_rel_change(k)[-1]))
    curves[f"{model}.ntk_change_small"] = np.asarray(small)
    curves[f"{model}.ntk_gamma0s"] = np.asarray(cfg.ntk_gamma0s, float)
    ntk_slope = loglog_slope(cfg.ntk_gamma0s, small)
    return {
        "by_gamma0": out,
        "ntk_change_small_gamma0": small,
        "ntk_change_slope_small_gamma0": ntk_slope,
    }, curves


def kernel_limit(cfg: Config, model: str, data, key) -> float:
    """max_t ‖f_DMFT(γ₀ = 0) − f_kernel‖ / max_t ‖f_kernel‖ on the test points."""
    sched = _schedule(cfg, cfg.saves, model)
    # the deep tanh DMFT's sources carry its Cholesky jitter's noise, averaged down by the sites:
    # 9.9e-7 with 64 sites, 2.2e-7 with 1024 (quick run); the other theories are exact at γ₀ = 0
    samples = 1024 if model == "deep-tanh" else 64
    theory = ls.solve(
        dmft_dynamics(cfg, model, data, 0.0, key, samples=samples), theory_method(model), **sched
    )
    net = lm.MLP(
        cfg.dim,
        [1] * _hidden(cfg, model),
        1,
        activation=_activation(model),
        parameterization="ntk",
        sigma_w=1.0,
        bias=False,
    )
    kernel = ls.solve(lm.Linearized.from_network(net, data), TIGHT, **sched)
    diff = np.max(np.abs(np.asarray(theory["f_test"]) - np.asarray(kernel["f_test"])))
    return float(diff / np.max(np.abs(np.asarray(kernel["f_test"]))))


def measure_fluctuations(cfg: Config, model: str, data, key) -> tuple[dict, dict]:
    sched = _schedule(cfg, cfg.variance_saves)
    g = cfg.variance_gamma0
    k_dmft, k_net = jax.random.split(key)
    dmft = dmft_dynamics(cfg, model, data, g, k_dmft, samples=cfg.variance_samples)
    method = TIGHT if model == "linear" else ls.GradientFlow(rtol=1e-7, atol=1e-9)
    pred = lm.width_fluctuations(dmft, cfg.variance_widths[0], method, **sched)
    out, curves = {}, {}
    for N in cfg.variance_widths:
        real = real_ensemble(
            _network(cfg, model, g, N), data, jax.random.split(k_net, cfg.variance_seeds), sched
        )
        measured = real["f_test"].var(0, ddof=1).sum(1)
        predicted = np.asarray(pred.at(N).var_test).sum(1)
        ratio = measured / predicted
        out[str(N)] = {"ratio": ratio.tolist(), "max_rel_deviation": float(np.max(np.abs(ratio - 1)))}
        curves[f"{model}.variance.N{N}.measured"] = measured
        curves[f"{model}.variance.N{N}.predicted"] = predicted
    curves[f"{model}.variance.times"] = np.asarray(pred.times)
    return out, curves


def compute(config: Config, *, progress: bool = True) -> dict:
    """`metrics`: `setup`, and per model `widths`, `kernel_limit`, `fluctuations`."""
    metrics = {
        "setup": {
            k: getattr(config, k)
            for k in (
                "dim",
                "n_train",
                "n_test",
                "time",
                "seeds",
                "samples",
                "deep_depth",
                "deep_seeds",
                "deep_tanh_train",
                "deep_tanh_time",
                "deep_tanh_samples",
            )
        }
    }
    curves = {}
    for model in config.models:
        # keyed by the model's name, not its place in `models`: a run of some models draws the
        # same data and networks as the full run
        i = MODELS.index(model)
        k_data, k_w, k_f = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), i), 3)
        data = make_data(config, model, k_data)
        widths, c = measure_widths(config, model, data, k_w, progress=progress)
        curves.update(c)
        if model in DEEP:  # the finite-width fluctuations exist for two-layer networks only
            fl = None
        else:
            fl, c = measure_fluctuations(config, model, data, k_f)
            curves.update(c)
        metrics[model] = {
            "widths": widths,
            "kernel_limit": kernel_limit(config, model, data, k_w),
            "fluctuations": fl,
        }
    return {"metrics": metrics, "curves": curves}


# ---------------------------------------------------------------------------------------------
def figures(results: dict) -> dict:
    """`error_vs_width` (per model: single network and ensemble mean, every γ₀),
    `loss_curves` (DMFT vs the width-averaged real loss, largest width), `ntk_change`
    (DMFT vs γ₀ with the real networks' values) and `variance` (predicted vs measured)."""
    m, c = results["metrics"], results["curves"]
    models = _models(m)
    fig_err, axes = plot.panels(len(models), width=5.4, height=4.4)
    fig_loss, axes_l = plot.panels(len(models), width=5.4, height=4.4)
    fig_ntk, axes_n = plot.panels(len(models), width=5.4, height=4.4)
    fig_var, axes_v = plot.panels(len(models), width=5.4, height=4.4)
    for model, ax, axl, axn, axv in zip(models, axes, axes_l, axes_n, axes_v):
        widths = None
        series = {}
        gammas = list(m[model]["widths"]["by_gamma0"])
        for g in gammas:
            widths = np.asarray([int(k.split(".N")[1]) for k in c if k.startswith(f"{model}.{g}.loss.N")])
            series[f"single, γ₀={g}"] = (widths, c[f"{model}.{g}.single"])
            series[f"mean, γ₀={g}"] = (widths, c[f"{model}.{g}.mean"])
            if f"{model}.{g}.mean_cv" in c:
                series[f"mean − 1st order, γ₀={g}"] = (widths, c[f"{model}.{g}.mean_cv"])
            ens = m[model]["widths"]["by_gamma0"][g].get("ensemble")
            if ens:
                series[f"mean of {ens['networks'][-1]}+, γ₀={g}"] = (
                    np.asarray(ens["widths"]),
                    np.asarray(ens["mean"]),
                )
        plot.loglog_fits(series, ax=ax, xlabel="width N", ylabel="max_t |f_N − f_DMFT| / max|y|")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{model}: real muP networks vs DMFT")
        t = c[f"{model}.times"]
        for g in gammas:
            (line,) = axl.semilogy(t, c[f"{model}.{g}.loss.dmft"], label=f"DMFT γ₀={g}")
            axl.semilogy(t, c[f"{model}.{g}.loss.N{widths[-1]}"], "o", ms=3, color=line.get_color())
        axl.set(
            xlabel="flow time t",
            ylabel="training loss",
            title=f"{model}: DMFT (lines), N={widths[-1]} (dots)",
        )
        axl.legend(fontsize=7)
        gs = np.asarray([float(g) for g in gammas])
        by = m[model]["widths"]["by_gamma0"]
        axn.loglog(gs, [by[g]["ntk_change_dmft"] for g in gammas], "o-", label="DMFT")
        axn.loglog(gs, [by[g]["ntk_change_real"] for g in gammas], "s", label=f"real, N={widths[-1]}")
        if f"{model}.ntk_gamma0s" in c:
            g_small, small = c[f"{model}.ntk_gamma0s"], c[f"{model}.ntk_change_small"]
            axn.loglog(g_small, small, "^", label="DMFT, small γ₀")
            grid = np.geomspace(g_small[0], gs.max(), 20)
            axn.loglog(grid, small[0] * (grid / g_small[0]) ** 2, "k:", label="∝ γ₀²")
        axn.set(xlabel="γ₀", ylabel="‖K(T) − K(0)‖/‖K(0)‖", title=f"{model}: NTK change")
        axn.legend(fontsize=7)
        if not m[model]["fluctuations"]:
            axv.set_visible(False)
            continue
        tv = c[f"{model}.variance.times"]
        for key in m[model]["fluctuations"]:
            (line,) = axv.semilogy(
                tv, c[f"{model}.variance.N{key}.predicted"], "-", label=f"predicted N={key}"
            )
            axv.semilogy(
                tv,
                c[f"{model}.variance.N{key}.measured"],
                "o",
                color=line.get_color(),
                label=f"measured N={key}",
            )
        axv.set(xlabel="flow time t", ylabel="Σ_x Var f_N(x)", title=f"{model}: finite-width variance")
        axv.legend(fontsize=7)
    for f in (fig_err, fig_loss, fig_ntk, fig_var):
        f.tight_layout()
    return {"error_vs_width": fig_err, "loss_curves": fig_loss, "ntk_change": fig_ntk, "variance": fig_var}


def _models(metrics: dict) -> list[str]:
    """The models measured (the metrics also hold `setup` and the runner's wall time)."""
    return [k for k, v in metrics.items() if isinstance(v, dict) and "kernel_limit" in v]


def _f(x) -> str:
    return "—" if x is None else f"{x:.2g}"


def summary(results: dict) -> str:
    m = results["metrics"]
    s = m["setup"]
    lines = [
        f"Two-layer mean-field networks (D = {s['dim']}, {s['n_train']} whitened Gaussian training points, "
        f"{s['n_test']} test), gradient flow to t = {s['time']}; {s['seeds']} seeds per width; tanh DMFT with "
        f"{s['samples']} Monte-Carlo sites. Errors are max over time and test points of |f_N − f_DMFT| / max|y|."
        + (
            f" deep-linear and deep-tanh: {s['deep_depth']} weight layers, {s['deep_seeds']} seeds per width, DMFT on "
            "a time grid (SelfConsistent, Richardson-extrapolated); deep-tanh on its own small data set "
            f"({s.get('deep_tanh_train', '?')} points, {s.get('deep_tanh_samples', '?')} Monte-Carlo sites)."
            if "deep_depth" in s
            else ""
        )
    ]
    for model in _models(m):
        r = m[model]
        for g, row in r["widths"]["by_gamma0"].items():
            lines.append(
                f"- {model}, γ₀ = {g}: single network {', '.join(_f(e) for e in row['single'])} "
                f"(slope {_f(row['single_slope'])}); ensemble mean {', '.join(_f(e) for e in row['mean'])} "
                f"(slope {_f(row['mean_slope'])})"
                + (
                    f"; mean with each network's first-order deviation subtracted "
                    f"{', '.join(_f(e) for e in row['mean_control_variate'])} "
                    f"(slope {_f(row['mean_control_variate_slope'])})"
                    if row["mean_control_variate"]
                    else ""
                )
                + f"; NTK change DMFT {_f(row['ntk_change_dmft'])} vs real "
                f"{_f(row['ntk_change_real'])}."
            )
            ens = row.get("ensemble")
            if ens:
                lines.append(
                    f"- {model}, γ₀ = {g}, many networks at widths {', '.join(map(str, ens['widths']))} "
                    f"({', '.join(map(str, ens['networks']))} networks): single network "
                    f"{', '.join(_f(e) for e in ens['single'])} (slope {_f(ens['single_slope'])}); ensemble mean "
                    f"{', '.join(f'{_f(e)} ± {_f(d)}' for e, d in zip(ens['mean'], ens['mean_se']))} "
                    f"(slope {_f(ens['mean_slope'])}); its bias, root mean square over (t, x) with the "
                    f"noise subtracted, {', '.join(_f(e) for e in ens.get('bias_rms', []))} against the "
                    f"mean's noise {', '.join(_f(e) for e in ens.get('noise_rms', []))} (slope over widths "
                    f"{', '.join(map(str, ens.get('bias_resolved_widths', [])))}, where it is above the noise: "
                    f"{_f(ens.get('bias_rms_slope'))}; a single network's there {_f(ens.get('single_slope_resolved'))})"
                    + (
                        f", against a DMFT with {ens['dmft_samples']} sites (the width scan's DMFT is "
                        f"{_f(ens['dmft_difference'])} from it)."
                        if "dmft_samples" in ens
                        else "."
                    )
                )
        lines.append(
            f"- {model}: NTK-change slope vs small γ₀ {_f(r['widths']['ntk_change_slope_small_gamma0'])}; "
            f"γ₀ = 0 vs the kernel-regime module: {_f(r['kernel_limit'])} relative."
        )
        for N, fl in (r["fluctuations"] or {}).items():
            lines.append(
                f"- {model}, variance at N = {N} (measured / predicted over time): "
                f"{', '.join(f'{x:.2f}' for x in fl['ratio'])}."
            )
    return "\n".join(lines)


def headline(metrics: dict) -> dict[str, str]:
    out = {}
    for model in _models(metrics):
        r = metrics[model]
        by = r["widths"]["by_gamma0"]
        out[f"{model}: single-network error slope vs width, per γ₀"] = ", ".join(
            f"{g}: {_f(v['single_slope'])}" for g, v in by.items()
        )
        out[f"{model}: ensemble-mean error at the largest width, per γ₀"] = ", ".join(
            f"{g}: {_f(v['mean'][-1])}" for g, v in by.items()
        )
        if any(v.get("ensemble") for v in by.values()):
            out[
                f"{model}: many-network ensemble mean, error at the smallest → largest width (slope), per γ₀"
            ] = ", ".join(
                f"{g}: {_f(v['ensemble']['mean'][0])} → {_f(v['ensemble']['mean'][-1])} "
                f"({_f(v['ensemble']['mean_slope'])}; single {_f(v['ensemble']['single_slope'])}; "
                f"rms bias {_f(v['ensemble'].get('bias_rms_slope'))} at widths "
                f"{'/'.join(map(str, v['ensemble'].get('bias_resolved_widths', [])))})"
                for g, v in by.items()
                if v.get("ensemble")
            )
        if any(v["mean_control_variate"] for v in by.values()):
            out[f"{model}: ensemble mean minus first order — error slope vs width, per γ₀"] = ", ".join(
                f"{g}: {_f(v['mean_control_variate_slope'])}" for g, v in by.items()
            )
        out[f"{model}: γ₀ = 0 vs kernel regime"] = _f(r["kernel_limit"])
        if r["fluctuations"]:
            out[f"{model}: variance measured/predicted (range over time)"] = ", ".join(
                f"N={N}: {min(fl['ratio']):.2f}–{max(fl['ratio']):.2f}" for N, fl in r["fluctuations"].items()
            )
    return out
