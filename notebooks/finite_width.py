# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Finite width in lmech: beyond the kernel regime
#
# A network of width $n$ is not its kernel limit. At initialization its NTK fluctuates (the
# relative variance grows with depth over width, $L/n$); in training the NTK moves. lmech
# gives both: the first-order $1/n$ statistics at init (exact for linear and ReLU nets), and
# for one realization the tangent hierarchy with $O_3$ or $O_4$ frozen at init and the
# order-2/3 Taylor models in the parameters — each a dynamics solved by the same `solve` as
# the network itself. `SIZE` keeps the notebook small in CI (the widths scale with it);
# the measured numbers are printed as one JSON line at the end (the tests read it).

# %%
import json
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

jax.config.update("jax_enable_x64", True)
import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402
import lmech.validation as lv  # noqa: E402

SIZE = int(os.environ.get("LMECH_NOTEBOOK_SIZE", "64"))
results = {}

# %% [markdown]
# ## NTK fluctuations at init against $L/n$
# Critical tanh ($\sigma_w = 1$, no bias) and ReLU ($\sigma_w^2 = 2$) networks of hidden width
# 32: the measured $\operatorname{Var}\Theta(x,x)/(\mathbb E\Theta)^2$ over an ensemble against
# the first-order prediction (tanh) and the exact one (ReLU).

# %%
depths = (2, 3, 6, 12)
scans = {
    act: lm.aspect_ratio_scan(act, 32, depths, jax.random.key(i), seeds=25 * SIZE)
    for i, act in enumerate(("tanh", "relu"))
}
fig = lv.plot.aspect_ratio(scans, logy=True)
for act, s in scans.items():
    best = np.where(np.isfinite(s["exact"]), s["exact"], s["first_order"])
    for a, m, se, p in zip(s["aspect"], s["measured"], s["measured_se"], best):
        print(f"{act:5s} L/n = {a:.3f}: measured {m:.4f} ± {se:.4f}, predicted {p:.4f}")
small = {act: s["aspect"] <= 0.1 for act, s in scans.items()}
results["fluctuations"] = {
    act: {
        "aspect": s["aspect"][small[act]].tolist(),
        "measured": s["measured"][small[act]].tolist(),
        "measured_se": s["measured_se"][small[act]].tolist(),
        "predicted": np.where(np.isfinite(s["exact"]), s["exact"], s["first_order"])[small[act]].tolist(),
    }
    for act, s in scans.items()
}

# %% [markdown]
# ## One realization in training: the truncations against real GD
# A 2-layer tanh network (NTK parameterization) on digits, GD at $\eta = 0.5$. The linearized
# model errs at $O(1/n)$; the O4-frozen hierarchy and the cubic Taylor model keep every
# $O(1/n)$ term and err at $O(n^{-2})$.

# %%
data = lv.datasets.digits(64, 64, key=jax.random.key(0))
kw = dict(lr=0.5, steps=200, save_every=20, progress=False)
widths = [4 * SIZE, 16 * SIZE]
errors = {"linearized": [], "O4-frozen": [], "Taylor, order 3": []}
for width in widths:
    net = lm.MLP(64, (width,), 1, activation="tanh")
    params = net.init(jax.random.key(1))
    real = ls.solve(lm.Trained(net, data, params=params), ls.GradientDescent(), **kw)
    models = {
        "linearized": lm.TangentHierarchy(net, data, params=params, frozen=2, observe_ntk=False),
        "O4-frozen": lm.TangentHierarchy(net, data, params=params, frozen=4, observe_ntk=False),
        "Taylor, order 3": lm.TaylorModel(net, params, order=3).trained(data),
    }
    for name, dyn in models.items():
        traj = ls.solve(dyn, ls.GradientDescent(), **kw)
        errors[name].append(float(lv.compare(traj, real).max_relative_error["f_test"]))
fig, slopes = lv.plot.loglog_fits(
    {k: (widths, v) for k, v in errors.items()}, xlabel="width n", ylabel="max_t relative test-output error"
)
for name, v in errors.items():
    print(
        f"{name:16s} "
        + ", ".join(f"n={w}: {e:.2e}" for w, e in zip(widths, v))
        + f"  (slope {slopes[name]:.2f})"
    )
results["errors"] = {"widths": widths, **errors}
results["slopes"] = slopes
plt.show()

# %% [markdown]
# ## The ensemble mean over initializations, without sampling networks
# For two-layer networks under GD, `ensemble_mean` expands each neuron's GD run in the shared
# residual and averages over a single neuron: $\mathbb E f_t = f^\infty_t + c_t/n$ for every
# width at once (`.at(n)` is a `Trajectory`). The experiment's measurement compares it, and the
# kernel regime $f^\infty$, with the mean of many antithetic pairs of real networks per width
# (each network's first-order NTK deviation subtracted: it has mean zero and removes the
# $n^{-1/2}$ scatter): the kernel's residual falls as $1/n$, the $O(1/n)$ mean's about as $n^{-2}$.

# %%
from lmech.validation.experiments import finite_width  # noqa: E402

cfg = finite_width.Config(
    analytic_widths=(16, 32, 64) if SIZE >= 64 else (16, 32),
    analytic_pairs=64 * SIZE,
    analytic_points=2**14 if SIZE >= 64 else 2**12,
)
mean = finite_width.measure_analytic_mean(cfg, jax.random.key(0), progress=False)[0]
fig, mean_slopes = lv.plot.loglog_fits(
    {
        "kernel regime f∞": (mean["widths"], mean["kernel"]),
        "f∞ + c/n (ensemble_mean)": (mean["widths"], mean["analytic"]),
    },
    xlabel="width n",
    ylabel="max_t ‖prediction − mean of networks‖ / ‖mean‖",
)
print(
    {k: [f"{v:.2e}" for v in mean[k]] for k in ("kernel", "analytic", "standard_error")},
    {k: round(v, 2) for k, v in mean_slopes.items()},
)
results["analytic_mean"] = {k: mean[k] for k in ("widths", "kernel", "analytic", "standard_error")}
plt.show()

# %% [markdown]
# The measured numbers, as one JSON line:

# %%
print(json.dumps(results))
