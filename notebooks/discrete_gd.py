# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# `SIZE` keeps the notebook small in CI; raise it for real runs.

# %%
import os

import diffrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

jax.config.update("jax_enable_x64", True)
import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402
import lmech.validation as lv  # noqa: E402

SIZE = int(os.environ.get("LMECH_NOTEBOOK_SIZE", "128"))  # training points

# %% [markdown]
# ## Global error orders of the flows against real GD
# Parameter distance to GD after a fixed flow time $T$, for several learning rates.
# `Recorded(..., params=True)` adds the flattened parameters to the observables.

# %%
data = lv.datasets.digits(SIZE, 16, key=jax.random.key(0))
net = lm.MLP(64, (8,), 1, activation="tanh", parameterization="standard")
real = ls.Recorded(lm.Trained(net, data, key=jax.random.key(1)), sharpness=False, params=True)
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
        errors[m].append(
            float(
                jnp.linalg.norm(
                    ls.solve(real, method, lr=lr, steps=steps, save_every=steps)["params"][-1] - gd
                )
            )
        )
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for m, e in errors.items():
    _, slope = lv.plot.loglog_fit(lrs, e, ax=ax, label=m)
    print(f"{m}: fitted slope {slope:.2f}")

# %% [markdown]
# ## Sharpness from Hessian-vector products
# Lanczos on $v \mapsto \nabla^2 L\, v$ gives the top eigenvalues without forming the Hessian.

# %%
from jax.flatten_util import ravel_pytree  # noqa: E402

p0 = real.init()
flat, unravel = ravel_pytree(p0)
dense = jnp.linalg.eigvalsh(jax.hessian(lambda x: real.loss(unravel(x)))(flat))[::-1][:3]
vals, vecs = ls.hessian_eigenpairs(real.loss, p0, 3)
print("Lanczos", np.asarray(vals), "dense", np.asarray(dense))

# %% [markdown]
# ## The edge of stability and the central flow
# A small tanh network whose sharpness rises under training (progressive sharpening). At
# $\eta = 0.4$ it reaches $2/\eta = 5$: GD's sharpness then hovers near $2/\eta$ while
# gradient flow's keeps rising. The central flow holds its sharpness at $2/\eta$ and
# predicts GD's time-averaged loss $L + \mathrm{tr}\,\Sigma/\eta$. (The experiment
# `lmech run discrete-gd` does this at a larger size and measures the agreement.)

# %%
eos_data = lv.datasets.digits(32, 16, key=jax.random.key(0), target="parity")
eos_net = lm.MLP(64, (8, 8), 1, activation="tanh", parameterization="standard", sigma_w=0.5)
trained = lm.Trained(eos_net, eos_data, key=jax.random.key(1))
lr, steps = 0.4, 100
gd = ls.solve(ls.Recorded(trained, params=True), ls.GradientDescent(), lr=lr, steps=steps, save_every=1)
cf = ls.solve(
    ls.Recorded(trained, sharpness=False, params=True), ls.CentralFlow(k=2), lr=lr, steps=steps, save_every=4
)
gf = ls.solve(
    ls.Recorded(trained, params=True), ls.GradientFlow(rtol=1e-6, atol=1e-9), lr=lr, steps=steps, save_every=4
)
eos = lv.edge_of_stability(gd.times, gd["sharpness"], lr)
print("GD crosses 2/η at t =", eos.crossing_time)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(gd.times, gd["sharpness"], label="GD")
axes[0].plot(cf.times, cf["sharpness"], "--", label="central flow")
axes[0].plot(gf.times, gf["sharpness"], ":", label="gradient flow")
axes[0].axhline(2 / lr, color="k", lw=0.8, label="2/η")
axes[0].set_xlabel("flow time t = η·k")
axes[0].set_ylabel("sharpness")
axes[0].legend()
axes[1].semilogy(gd.times, gd["loss"], lw=0.5, alpha=0.5, label="GD")
axes[1].semilogy(gd.times, lv.moving_average(gd["loss"], 10), label="GD, 10-step average")
axes[1].semilogy(cf.times, cf["loss_averaged"], "--", label="central flow: L + trΣ/η")
axes[1].semilogy(gf.times, gf["loss"], ":", label="gradient flow")
axes[1].set_xlabel("flow time t = η·k")
axes[1].legend()
for name, tr in (("central flow", cf), ("gradient flow", gf)):
    print(f"{name}: final distance to GD {float(jnp.linalg.norm(tr['params'][-1] - gd['params'][-1])):.3f}")

# %% [markdown]
# ## Differentiating through the central flow
# The final loss of the central flow as a function of $\eta$: reverse-mode through diffrax,
# Lanczos and the complementarity problem, against central finite differences.

# %%
short = lambda lr: ls.solve(
    trained, ls.CentralFlow(flow=ls.GradientFlow(rtol=1e-9, atol=1e-11)), lr=lr, steps=20
)["loss"][-1]
g = jax.grad(short)(0.4)
h = 1e-4
fd = (short(0.4 + h) - short(0.4 - h)) / (2 * h)
print(f"d loss / d lr = {float(g):.6e} (finite differences {float(fd):.6e})")
