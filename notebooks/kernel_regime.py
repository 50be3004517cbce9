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
# # The kernel regime in lmech
#
# A wide network trained by gradient descent stays close to its linearization
# $f_{\rm lin}(\theta) = f_0 + J_0(\theta - \theta_0)$, whose training is a linear ODE in
# function space, $\dot f = -\frac1P\Theta\,(f - y)$ for MSE. lmech solves it exactly — for the
# flow *and* for discrete gradient descent, $(I - \eta\Theta/P)^k$ — and compares it with the
# network itself. `SIZE` keeps the notebook small in CI; raise it for real runs. The measured
# numbers are collected in `results` and printed as one JSON line at the end (the tests read it).

# %%
import json
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

jax.config.update("jax_enable_x64", True)
import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402
import lmech.validation as lv  # noqa: E402

SIZE = int(os.environ.get("LMECH_NOTEBOOK_SIZE", "64"))  # training points
data = lv.datasets.digits(SIZE, SIZE, key=jax.random.key(0), target="parity")
results = {}

# %% [markdown]
# ## Analytic vs empirical NTK
# The infinite-width NTK of the spec, against the empirical NTK of finite networks: the
# difference shrinks like $n^{-1/2}$.

# %%
widths = [64, 256, 1024]
theta_inf = lm.analytic_ntk(lm.MLP(64, (widths[0],), 1, activation="relu", sigma_w=2**0.5), data.x_train)
errs = []
for n in widths:
    net = lm.MLP(64, (n,), 1, activation="relu", sigma_w=2**0.5)
    emp = lm.empirical_ntk(net.apply, net.init(jax.random.key(1)), data.x_train, output="trace")
    errs.append(float(jnp.linalg.norm(emp - theta_inf) / jnp.linalg.norm(theta_inf)))
fig, slope = lv.plot.loglog_fit(widths, errs, xlabel="width n", ylabel="‖Θ_emp − Θ_∞‖/‖Θ_∞‖")
print(f"fitted slope {slope:.2f} (theory: -0.5)")
results["ntk_init_vs_analytic_slope"] = slope

# %% [markdown]
# ## Linearized training vs the real network
# The exact GD map of the linearization against the same network trained by GD.

# %%
net = lm.MLP(64, (1024,), 1, activation="relu", sigma_w=2**0.5)
params = net.init(jax.random.key(2))
lin = lm.Linearized.from_network(net, data, kernel="empirical", params=params)
real = lm.Trained(net, data, params=params)
lr = 0.5
print(f"max stable lr 2P/λ_max = {float(lin.max_stable_lr):.3f}")
theory = ls.solve(lin, ls.ClosedForm(discrete=True), lr=lr, steps=200, save_every=10)
trained = ls.solve(real, ls.GradientDescent(), lr=lr, steps=200, save_every=10)
cmp = lv.compare(theory, trained, labels=("linearized", "real GD"))
print({k: f"{v:.2e}" for k, v in cmp.summary()["f_test"].items()})
results["linearized_vs_real_f_test_max"] = float(cmp.max_relative_error["f_test"])
lv.plot.observable(cmp, "f_test", max_lines=5)
plt.show()

# %% [markdown]
# ## Finite learning rates: the map, not the flow
# Close to $\eta = 2P/\lambda_{\max}$ the gradient flow no longer describes GD; the exact map does.

# %%
lr_big = 0.9 * float(lin.max_stable_lr)
trained = ls.solve(real, ls.GradientDescent(), lr=lr_big, steps=100, save_every=2)
gd_map = ls.solve(lin, ls.ClosedForm(discrete=True), lr=lr_big, steps=100, save_every=2)
flow = ls.solve(lin, ls.ClosedForm(), lr=lr_big, steps=100, save_every=2)
for name, tr in (("exact GD map", gd_map), ("gradient flow", flow)):
    err = lv.compare(tr, trained).max_relative_error["f_test"]
    print(f"{name:14s} vs real GD: max relative test-output error {float(err):.3f}")
    results[f"large_lr_{name.replace(' ', '_')}_vs_real"] = float(err)
lv.plot.trajectories(
    {"real GD": trained, "GD map": gd_map, "flow": flow}, "loss", styles={"GD map": "--", "flow": ":"}
)
plt.yscale("log")
plt.show()

# %% [markdown]
# ## Differentiating through the dynamics
# The final training loss of the exact GD map is differentiable in the learning rate.

# %%
final_loss = lambda lr: ls.solve(lin, ls.ClosedForm(discrete=True), lr=lr, steps=50).observables["loss"][-1]  # noqa: E731
g = jax.grad(final_loss)(0.3)
fd = (final_loss(0.3 + 1e-6) - final_loss(0.3 - 1e-6)) / 2e-6
print(f"d loss / d lr = {float(g):.6e} (finite differences {float(fd):.6e})")
results["dloss_dlr"] = {"gradient": float(g), "finite_differences": float(fd)}

# %% [markdown]
# The measured numbers, as one JSON line:

# %%
print(json.dumps(results))
