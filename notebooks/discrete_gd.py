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
# # Discrete gradient descent beyond gradient flow
#
# Gradient flow is the $\eta \to 0$ limit of gradient descent. lmech models finite steps in
# two ways:
#
# - **modified flows** (backward error analysis of the Euler step): flows whose time-$\eta$
#   map is GD up to $O(\eta^{r+1})$, for any dynamics whose GD map is an Euler step;
# - the **central flow** (Cohen et al. 2025): at the *edge of stability*, where the
#   sharpness $S = \lambda_{\max}(\nabla^2 L)$ has reached $2/\eta$, GD oscillates and its
#   time average follows a flow that holds $S$ at $2/\eta$.
#
# `SIZE` keeps the first part small in CI; raise it for real runs. The measured numbers are
# collected in `results` and printed as one JSON line at the end (the tests read it).

# %%
import json
import os

import diffrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.flatten_util import ravel_pytree

jax.config.update("jax_enable_x64", True)
import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402
import lmech.validation as lv  # noqa: E402

SIZE = int(os.environ.get("LMECH_NOTEBOOK_SIZE", "128"))  # training points of the first part
results = {}

# %% [markdown]
# ## Global error orders of the flows against real GD
# Parameter distance to GD after a fixed flow time $T = 1$, for several learning rates.
# `Recorded(..., params=True)` adds the flattened parameters to the observables.

# %%
data = lv.datasets.digits(SIZE, 16, key=jax.random.key(0))
net = lm.MLP(64, (8,), 1, activation="tanh", parameterization="standard")
small = lm.Trained(net, data, key=jax.random.key(1))
real = ls.Recorded(small, sharpness=False, params=True)
tight = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)
methods = {
    "gradient flow": tight,
    "modified, order 1": ls.ModifiedFlow(1, tight),
    "modified, order 2": ls.ModifiedFlow(2, tight),
}
lrs = np.array([0.2, 0.1, 0.05, 0.025])
errors = {m: [] for m in methods}
for lr in lrs:
    steps = int(round(1.0 / lr))
    gd = ls.solve(real, ls.GradientDescent(), lr=lr, steps=steps, save_every=steps)["params"][-1]
    for m, method in methods.items():
        flow = ls.solve(real, method, lr=lr, steps=steps, save_every=steps)["params"][-1]
        errors[m].append(float(jnp.linalg.norm(flow - gd)))
fig, slopes = lv.plot.loglog_fits(
    {m: (lrs, e) for m, e in errors.items()}, xlabel="learning rate η", ylabel="‖θ_flow(1) − θ_GD(1)‖"
)
for m, slope in slopes.items():
    print(f"{m}: fitted slope {slope:.2f}")
results["error_orders"] = slopes

# %% [markdown]
# ## Sharpness from Hessian-vector products
# Lanczos on $v \mapsto \nabla^2 L\, v$ gives the top eigenvalues without forming the Hessian.

# %%
p0 = small.init()
flat, unravel = ravel_pytree(p0)
dense = jnp.linalg.eigvalsh(jax.hessian(lambda x: small.loss(unravel(x)))(flat))[::-1][:3]
vals, vecs = ls.hessian_eigenpairs(small.loss, p0, 3)
print("Lanczos", np.asarray(vals), "dense", np.asarray(dense))
results["lanczos_vs_dense"] = float(jnp.max(jnp.abs(vals - dense) / jnp.abs(dense)))

# %% [markdown]
# ## The edge of stability and the central flow
# A small tanh network (128 digits, widths 16-16, $\sigma_w = 0.5$) whose sharpness rises
# under training (progressive sharpening) past $2/\eta = 4$ at $\eta = 0.5$. GD's sharpness
# overshoots, GD catapults, and from about step 40 on it holds $S$ at $2/\eta$, oscillating
# with period 2 (`edge_of_stability` with `smooth=2` reads the sharpness of the averaged
# iterate; its onset is where $S$ is back at $2/\eta$ after the overshoot).
#
# The central flow describes GD *at* the edge, not the catapult before it: started from
# GD's state at step 60 (the average of two consecutive iterates, which cancels the
# oscillation), it holds $S = 2/\eta$ and predicts GD's time-averaged loss
# $L + \mathrm{tr}\,\Sigma/\eta$. Gradient flow from the same state lets $S$ rise and
# misses the loss that the oscillation carries.

# %%
eos_data = lv.datasets.digits(128, 16, key=jax.random.key(0), target="label")
eos_net = lm.MLP(64, (16, 16), 1, activation="tanh", parameterization="standard", sigma_w=0.5)
trained = lm.Trained(eos_net, eos_data, key=jax.random.key(1))
lr, start, horizon, window = 0.5, 60, 30, 10
gd = ls.solve(ls.Recorded(trained, params=True), ls.GradientDescent(), lr=lr, steps=start + horizon + window)
eos = lv.edge_of_stability(gd.times, gd["sharpness"], lr, smooth=2)
print(
    f"GD: S crosses 2/η at t = {eos.crossing_time:g}, overshoots by {eos.overshoot:.0%}, "
    f"is back at 2/η at t = {eos.onset_time:g}; deviation after that: max {eos.max_deviation_after_onset:.1%}, "
    f"median {eos.median_deviation_after_onset:.1%}"
)

unravel = ravel_pytree(trained.init())[1]
theta = unravel(0.5 * (gd["params"][start] + gd["params"][start + 1]))  # GD at the edge, t = 30
cf = ls.solve(
    ls.Recorded(trained, sharpness=False, params=True),
    ls.CentralFlow(k=1),
    lr=lr,
    steps=horizon,
    save_every=2,
    state0=theta,
)
gf = ls.solve(
    ls.Recorded(trained, params=True),
    ls.GradientFlow(rtol=1e-6, atol=1e-9),
    lr=lr,
    steps=horizon,
    save_every=2,
    state0=theta,
)
avg = lv.moving_average(gd["loss"], window)[start + np.asarray(cf.steps)]  # GD's loss, 10-step average
end = start + horizon
eos_numbers = {}
for name, tr, predicted in (("central flow", cf, cf["loss_averaged"]), ("gradient flow", gf, gf["loss"])):
    err = np.abs(np.asarray(predicted) / avg - 1)
    dist = float(jnp.linalg.norm(tr["params"][-1] - gd["params"][end]))
    print(
        f"{name:13s}: averaged-loss error median {np.median(err):.1%}, last {err[-1]:.1%}; "
        f"final S·η/2 = {float(tr['sharpness'][-1]) * lr / 2:.3f}; distance to GD {dist:.3f}"
    )
    eos_numbers[name] = {
        "median_error": float(np.median(err)),
        "final_error": float(err[-1]),
        "distance": dist,
    }
results["central_vs_gradient_flow"] = eos_numbers

t0 = start * lr
fig, axes = lv.plot.panels(2, width=5.5)
lv.plot.curves_over_time(
    {
        "GD": (gd.times, gd["sharpness"]),
        "central flow": (t0 + cf.times, cf["sharpness"]),
        "gradient flow": (t0 + gf.times, gf["sharpness"]),
        "2/η": (np.asarray(gd.times)[[0, -1]], [2 / lr, 2 / lr]),
    },
    ax=axes[0],
    styles={"central flow": "--", "gradient flow": ":", "2/η": "k-"},
    ylabel="sharpness",
)
lv.plot.curves_over_time(
    {
        "GD": (gd.times, gd["loss"]),
        f"GD, {window}-step average": (gd.times, lv.moving_average(gd["loss"], window)),
        "central flow: L + trΣ/η": (t0 + cf.times, cf["loss_averaged"]),
        "gradient flow": (t0 + gf.times, gf["loss"]),
    },
    ax=axes[1],
    styles={"GD": ",", "central flow: L + trΣ/η": "--", "gradient flow": ":"},
    ylabel="training loss",
)
plt.show()

# %% [markdown]
# ## Differentiating through the central flow
# The final loss of the central flow as a function of $\eta$: reverse-mode through diffrax,
# Lanczos and the constrained vector field, against central finite differences.

# %%
short = lambda lr: ls.solve(  # noqa: E731
    trained, ls.CentralFlow(flow=ls.GradientFlow(rtol=1e-9, atol=1e-11)), lr=lr, steps=20, state0=theta
)["loss"][-1]
g = jax.grad(short)(0.5)
h = 1e-4
fd = (short(0.5 + h) - short(0.5 - h)) / (2 * h)
print(f"d loss / d lr = {float(g):.6e} (finite differences {float(fd):.6e})")
results["dloss_dlr"] = {"gradient": float(g), "finite_differences": float(fd)}

# %% [markdown]
# The measured numbers, as one JSON line:

# %%
print(json.dumps(results))
