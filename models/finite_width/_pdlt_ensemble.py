r"""Ensembles of real networks at init: the measured counterpart of `_pdlt`'s statistics.

Each seed draws `net.init(key)`; its diagonal NTK $\Theta(x, x)$ (first output) comes from
`empirical_ntk` and its output $f(x)$ from `net.apply`. Standard errors are those of the
delta method: for a statistic $s$ of the sample moments with influence values $\psi_i$,
$\mathrm{se}(s) = \operatorname{std}(\psi)/\sqrt S$ ($S$ seeds) — e.g. for
$r = v/m^2$ ($v$ the variance, $m$ the mean), $\psi_i = ((x_i - m)^2 - v)/m^2 - 2v(x_i - m)/m^3$.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._empirical_ntk import empirical_ntk
from .._mlp import MLP

__all__ = ["EnsembleStatistics", "ensemble_samples", "ensemble_statistics"]


class EnsembleStatistics(NamedTuple):
    r"""Measured statistics per input (shape `(P,)`), each with its standard error `*_se`.
    Names as in `FiniteWidthStatistics`; `seeds` is the ensemble size. The NNGP statistics
    use the first output; with `out_size = k >= 2`, `nngp_relative_variance`
    $= \operatorname{Var}\hat G_L/(\mathbb E\hat G_L)^2$ is measured from the pairs of outputs
    ($\mathbb E[f_i^2 f_j^2] = \mathbb E\hat G_L^2$ for $i \ne j$: $k(k-1)$ pairs per network,
    far less noisy than the fourth cumulant of one output), otherwise None."""

    ntk_mean: np.ndarray
    ntk_mean_se: np.ndarray
    ntk_variance: np.ndarray
    ntk_variance_se: np.ndarray
    ntk_relative_variance: np.ndarray
    ntk_relative_variance_se: np.ndarray
    nngp_mean: np.ndarray
    nngp_mean_se: np.ndarray
    fourth_cumulant: np.ndarray
    fourth_cumulant_se: np.ndarray
    seeds: int
    nngp_relative_variance: np.ndarray | None = None
    nngp_relative_variance_se: np.ndarray | None = None

    def relative_error(self, name: str, predicted) -> tuple[np.ndarray, np.ndarray]:
        """`(measured − predicted)/predicted` of statistic `name` and its standard error."""
        p = np.asarray(predicted)
        return (getattr(self, name) - p) / p, getattr(self, name + "_se") / np.abs(p)


def ensemble_samples(
    net: MLP, x: Float[Array, "P d"], key, seeds: int, *, chunk: int = 256, full: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per seed the diagonal NTK `(S, P)` (first output, by `empirical_ntk`) and the
    outputs `(S, P, k)`, for `seeds` draws of `net.init` from `jax.random.split(key, seeds)`,
    `chunk` seeds at a time under `jax.vmap` (memory: `chunk` parameter sets). With
    `full=True` the whole NTK matrix `(S, P, P)` of the first output instead of its diagonal."""
    if not isinstance(net, MLP):
        raise TypeError(f"ensemble_samples: needs an lmech MLP spec, got {type(net).__name__}.")
    for name, v in (("seeds", seeds), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"ensemble_samples: `{name}` must be a positive int, got {v!r}.")
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != net.in_size:
        raise ValueError(f"ensemble_samples: `x` must have shape (P, {net.in_size}), got {x.shape}.")

    def first(params, x):  # the NTK of the first output only: its cost does not grow with k
        return net.apply(params, x)[:, :1]

    def one(k):
        params = net.init(k)
        theta = empirical_ntk(first, params, x)[:, 0, :, 0]
        return (theta if full else jnp.diagonal(theta)), net.apply(params, x)

    keys = jax.random.split(key, seeds)
    parts = [jax.vmap(one)(keys[i : i + chunk]) for i in range(0, seeds, chunk)]
    return tuple(np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(2))


def _se(psi):
    return psi.std(axis=0, ddof=1) / np.sqrt(psi.shape[0])


def summarize(ntk: np.ndarray, out: np.ndarray) -> EnsembleStatistics:
    """Sample statistics with delta-method standard errors from per-seed arrays: the
    diagonal NTK `(S, P)` and the outputs `(S, P)` or `(S, P, k)`."""
    ntk, out = np.asarray(ntk, dtype=np.float64), np.asarray(out, dtype=np.float64)
    if out.ndim == 2:
        out = out[..., None]
    rel = rel_se = None
    k = out.shape[-1]
    if k >= 2:
        sq = out**2
        g = sq.mean(-1)  # per network: an unbiased estimate of Ĝ_L
        q = (sq.sum(-1) ** 2 - (sq**2).sum(-1)) / (k * (k - 1))  # ... and of Ĝ_L²
        eg, eq = g.mean(0), q.mean(0)
        rel = eq / eg**2 - 1
        rel_se = _se((q - eq) / eg**2 - 2 * eq * (g - eg) / eg**3)
    out = out[..., 0]
    S = ntk.shape[0]
    if S < 2:
        raise ValueError("ensemble statistics need at least 2 seeds.")
    m = ntk.mean(0)
    dev = ntk - m
    v = (dev**2).mean(0)
    r = v / m**2
    f2, f4 = out**2, out**4
    m2, m4 = f2.mean(0), f4.mean(0)
    return EnsembleStatistics(
        ntk_mean=m,
        ntk_mean_se=_se(dev),
        ntk_variance=v * S / (S - 1),
        ntk_variance_se=_se(dev**2 - v),
        ntk_relative_variance=r,
        ntk_relative_variance_se=_se((dev**2 - v) / m**2 - 2 * v * dev / m**3),
        nngp_mean=m2,
        nngp_mean_se=_se(f2 - m2),
        fourth_cumulant=m4 - 3 * m2**2,
        fourth_cumulant_se=_se((f4 - m4) - 6 * m2 * (f2 - m2)),
        seeds=S,
        nngp_relative_variance=rel,
        nngp_relative_variance_se=rel_se,
    )


def ensemble_statistics(
    net: MLP, x: Float[Array, "P d"], key, seeds: int, *, chunk: int = 256
) -> EnsembleStatistics:
    """Measure the statistics of `FiniteWidthStatistics` on `seeds` real networks."""
    return summarize(*ensemble_samples(net, x, key, seeds, chunk=chunk))


def aspect_ratio_scan(
    activation: str,
    width: int,
    depths,
    key,
    seeds: int,
    *,
    in_size: int = 8,
    sigma_w: float | None = None,
    chunk: int = 256,
) -> dict[str, np.ndarray]:
    r"""$\operatorname{Var}\Theta/(\mathbb E\Theta)^2$ on the diagonal against $L/n$: for each depth
    $L$ (weight layers) an MLP of hidden width `width` at criticality (`sigma_w` default:
    the critical value of `criticality`), one input $x = (1, \dots, 1)$, measured on `seeds`
    networks and predicted to first order in $1/n$ (`finite_width_statistics`) and, for
    linear and relu, exactly (`exact_statistics`). Returns arrays keyed `depth`, `aspect`
    ($L/n$), `measured`, `measured_se`, `first_order`, `exact` (NaN where not available),
    `mean_correction` / `mean_correction_se` (measured $\mathbb E\Theta/\Theta_\infty - 1$) and
    `mean_correction_first_order`."""
    from ._pdlt import exact_statistics, finite_width_statistics

    crit = {"linear": 1.0, "relu": float(np.sqrt(2.0)), "erf": float(np.sqrt(np.pi) / 2), "tanh": 1.0}
    if sigma_w is None:
        if activation not in crit:
            raise ValueError(
                f"aspect_ratio_scan: no critical sigma_w known for {activation!r}; pass `sigma_w`."
            )
        sigma_w = crit[activation]
    x = jnp.ones((1, in_size))
    rows = {k: [] for k in ("depth", "aspect", "measured", "measured_se", "first_order", "exact")}
    rows.update({k: [] for k in ("mean_correction", "mean_correction_se", "mean_correction_first_order")})
    for i, L in enumerate(depths):
        net = MLP(in_size, (width,) * (int(L) - 1), 1, activation=activation, sigma_w=sigma_w)
        first = finite_width_statistics(net, x, warn_off_criticality=False)
        exact = exact_statistics(net, x) if activation in ("linear", "relu") else None
        meas = ensemble_statistics(net, x, jax.random.fold_in(key, i), seeds, chunk=chunk)
        inf = float(first.ntk_infinite[0])
        rows["depth"].append(int(L))
        rows["aspect"].append(int(L) / width)
        rows["measured"].append(meas.ntk_relative_variance[0])
        rows["measured_se"].append(meas.ntk_relative_variance_se[0])
        rows["first_order"].append(float(first.ntk_relative_variance[0]))
        rows["exact"].append(np.nan if exact is None else float(exact.ntk_relative_variance[0]))
        rows["mean_correction"].append(meas.ntk_mean[0] / inf - 1)
        rows["mean_correction_se"].append(meas.ntk_mean_se[0] / inf)
        rows["mean_correction_first_order"].append(float(first.ntk_mean_correction[0]))
    return {k: np.asarray(v) for k, v in rows.items()}
