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
# # Feature learning in lmech: muP, mean field and DMFT
#
# Under the NTK parameterization a wide network's features freeze; under muP (the mean-field
# scaling) they keep moving at any width, with strength $\gamma_0$. lmech describes a
# parameterization as data (an abc table), checks it on real networks (the coordinate check),
# and solves the infinite-width mean-field dynamics (DMFT) of two-layer networks as an ordinary
# `Dynamics` — compared with real networks, differentiated with respect to $\gamma_0$, and with
# the finite-width variance around it — and of deep linear and deep tanh networks on a time grid. `SIZE` keeps the notebook small in CI; the measured
# numbers are printed as one JSON line at the end (the tests read it).

# %%
import json
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

jax.config.update("jax_enable_x64", True)
import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402

SIZE = int(os.environ.get("LMECH_NOTEBOOK_SIZE", "64"))
results = {}

# %% [markdown]
# ## Parameterizations as data
# A table of exponents $(a_l, b_l, c_l)$ per layer: forward multiplier $n^{-a}$, init std
# $n^{-b}$, learning rate $\eta\,n^{-c}$. The same `MLP` takes `"ntk"`, `"standard"`, `"mup"`
# or `Parameterization.mean_field(depth, gamma0)`; `Trained` applies the per-layer rates.

# %%
for name in ("ntk", "mup"):
    net = lm.MLP(16, (1024, 1024), 1, activation="tanh", parameterization=name, bias=False)
    t = net.abc
    print(f"{name:4s} a={t.a} b={t.b} c={t.c}  kernel limit: {t.kernel_limit()}")
    print("     lr multipliers per layer:", [f"{m:.3g}" for m in net.lr_multipliers()])

# %% [markdown]
# ## Two-layer DMFT against real mean-field networks
# $f = \sum_i a_i\phi(w_i\cdot x/\sqrt D)/(\gamma_0 N)$ trained by gradient flow at rate
# $\gamma_0^2 N$. `TwoLayerDMFT` integrates a Monte-Carlo population of single neurons
# (`samples` sites) driven by the shared residual, with the exact initial kernels as control
# variate. Real networks of growing width approach it.

# %%
rng = np.random.default_rng(0)
D, P, Q = 8, 32, 16
x, xt, beta = rng.standard_normal((P, D)), rng.standard_normal((Q, D)), rng.standard_normal(D)
target = lambda z: 1.5 * np.tanh(z @ beta / np.sqrt(D))[:, None]  # noqa: E731
data = lm.Dataset(x, target(x), xt, target(xt))
gamma0, kw = 1.0, dict(lr=0.5, steps=24, save_every=2)
flow = ls.GradientFlow(rtol=1e-9, atol=1e-11)
dmft = lm.TwoLayerDMFT(data, gamma0, "tanh", samples=128 * SIZE, key=jax.random.key(1))
theory = ls.solve(dmft, flow, **kw)


def mean_field_net(N, g, activation="tanh"):
    table = lm.Parameterization.mean_field(2, g)
    return lm.MLP(D, [N], 1, activation=activation, parameterization=table, bias=False)


def real_runs(net, data, seeds, **kw):
    def one(k):
        tr = ls.solve(lm.Trained(net, data, key=k), ls.GradientFlow(), **kw)
        return tr["f_test"][..., 0], tr["loss"]

    f, loss = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), seeds))
    return np.asarray(f), np.asarray(loss)


widths, errs = (4 * SIZE, 16 * SIZE, 64 * SIZE), []
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
ax1.semilogy(theory.times, theory["loss"], "k-", label="DMFT")
for N in widths:
    f, loss = real_runs(mean_field_net(N, gamma0), data, 4, **kw)
    errs.append(float(np.mean(np.max(np.abs(f - theory["f_test"][..., 0]), axis=(1, 2))) / 1.5))
    ax1.semilogy(theory.times, loss.mean(0), "o", ms=3, label=f"real, N = {N}")
slope = float(np.polyfit(np.log(widths), np.log(errs), 1)[0])
ax1.set(xlabel="flow time t", ylabel="training loss", title=f"tanh, γ₀ = {gamma0}")
ax1.legend()
ax2.loglog(widths, errs, "o-")
ax2.set(xlabel="width N", ylabel="max |f_N − f_DMFT| / y₀", title=f"slope {slope:.2f} (theory −1/2)")
plt.tight_layout()
print("errors:", [f"{e:.3g}" for e in errs], "slope:", round(slope, 2))
results["single_network_slope"] = slope

# %% [markdown]
# ## $\gamma_0 \to 0$ is the kernel regime, and the NTK moves as $\gamma_0^2$
# At $\gamma_0 = 0$ the DMFT is exactly the linearized flow with the analytic NTK of the
# `"ntk"` network (from $f_0 = 0$). The kernel's relative change grows as $\gamma_0^2$.

# %%
kernel_net = lm.MLP(D, [1], 1, activation="tanh", parameterization="ntk", sigma_w=1.0, bias=False)
kernel = ls.solve(lm.Linearized.from_network(kernel_net, data), flow, **kw)
zero = ls.solve(lm.TwoLayerDMFT(data, 0.0, "tanh", samples=64), flow, **kw)
results["gamma0_zero_vs_kernel"] = float(
    np.max(np.abs(zero["f_test"] - kernel["f_test"])) / np.max(np.abs(kernel["f_test"]))
)
print(f"γ₀ = 0 vs the kernel regime: {results['gamma0_zero_vs_kernel']:.1e} relative")
gs = np.array([0.025, 0.05, 0.1])
change = []
for g in gs:
    k = ls.solve(lm.TwoLayerDMFT(data, g, "tanh", samples=128 * SIZE), flow, **kw)["ntk"]
    change.append(float(np.linalg.norm(k[-1] - k[0]) / np.linalg.norm(k[0])))
results["ntk_change_slope"] = float(np.polyfit(np.log(gs), np.log(change), 1)[0])
print("relative NTK change:", [f"{c:.2g}" for c in change], f"slope {results['ntk_change_slope']:.2f}")

# %% [markdown]
# ## Differentiating through the DMFT
# The final loss as a function of $\gamma_0$, by reverse mode through the solve, against
# central finite differences (the sites are fixed by the key, so the function is smooth).


# %%
def final_loss(g):
    d = lm.TwoLayerDMFT(data, g, "tanh", samples=16 * SIZE, key=jax.random.key(3))
    return ls.solve(d, flow, lr=0.5, steps=8, save_every=8)["loss"][-1]


grad = float(jax.grad(final_loss)(0.8))
h = 1e-5
fd = float((final_loss(0.8 + h) - final_loss(0.8 - h)) / (2 * h))
results["dloss_dgamma0"] = {"gradient": grad, "finite_differences": fd}
print(f"dL/dγ₀ = {grad:.8f} (gradient), {fd:.8f} (finite differences)")

# %% [markdown]
# ## Finite width: the variance around the DMFT
# `width_fluctuations` gives the $O(1/N)$ covariance of a width-$N$ network's outputs (linear
# response to its neurons' empirical measure); here the two-layer linear network on whitened
# inputs, against the variance over 64 real networks.

# %%
xw = lm.whiten(rng.standard_normal((P, D)))
bl = 1.5 * rng.standard_normal(D)
lin_data = lm.Dataset(xw, (xw @ bl / np.sqrt(D))[:, None], xt, (xt @ bl / np.sqrt(D))[:, None])
kwv = dict(lr=0.5, steps=24, save_every=8)
pred = lm.width_fluctuations(lm.TwoLayerLinearDMFT(lin_data, 1.0), 256, ls.GradientFlow(rtol=1e-8), **kwv)
f, _ = real_runs(mean_field_net(256, 1.0, "linear"), lin_data, 64, **kwv)
ratio = f.var(0, ddof=1).sum(1) / np.asarray(pred.var_test).sum(1)
plt.figure(figsize=(5, 3.6))
plt.semilogy(pred.times, np.asarray(pred.var_test).sum(1), "k-", label="predicted, N = 256")
plt.semilogy(pred.times, f.var(0, ddof=1).sum(1), "o", label="64 real networks")
plt.xlabel("flow time t")
plt.ylabel("Σ_x Var f(x)")
plt.legend()
print("measured / predicted variance over time:", np.round(ratio, 2))
results["variance_ratio"] = ratio.tolist()

# %% [markdown]
# ## Deep linear networks: the DMFT on a time grid
# For deeper networks the single-site processes depend on the whole past through two-time
# kernels $\Phi^l(t, s)$, $G^l(t, s)$ and response functions, so the DMFT is no ODE.
# `DeepLinearDMFT` writes them as linear-algebraic equations on a grid of flow times and
# `SelfConsistent` solves them as a fixed point (optimistix, with continuation in the time
# horizon; derivatives by implicit differentiation). Depth 2 is the closed ODE above; here
# depth 3 against real networks, and $d L(T)/d\gamma_0$ against finite differences.

# %%
deep = lm.DeepLinearDMFT(lin_data, 1.0, 3)
grid = ls.SelfConsistent(points=8, extrapolate=True)
kwd = dict(lr=0.5, steps=24, save_every=4)
deep_theory = ls.solve(deep, grid, **kwd)
deep_widths = [2 * SIZE, 8 * SIZE, 32 * SIZE]


def deep_errors(theory, data, activation, label, **kw):
    """Mean over 4 depth-3 networks per width of max |f_N − f_DMFT| / 1.5, and its slope."""
    err = []
    for w in deep_widths:
        table = lm.Parameterization.mean_field(3, 1.0)
        net = lm.MLP(D, [w, w], 1, activation=activation, parameterization=table, bias=False)
        f, _ = real_runs(net, data, 4, **kw)
        err.append(
            float(np.mean(np.max(np.abs(f - np.asarray(theory["f_test"])[..., 0]), axis=(1, 2)))) / 1.5
        )
    slope = float(np.polyfit(np.log(deep_widths), np.log(err), 1)[0])
    print(
        f"{label}, single-network error by width:",
        dict(zip(deep_widths, np.round(err, 4))),
        f"slope {slope:.2f}",
    )
    return slope


results["deep_single_slope"] = deep_errors(deep_theory, lin_data, "linear", "depth 3", **kwd)

plt.figure(figsize=(5, 3.6))
for l in range(2):
    plt.plot(deep_theory.times, np.asarray(deep_theory["phi"])[:, l], label=f"Φ^{l + 1}(t, t)")
    plt.plot(deep_theory.times, np.asarray(deep_theory["g"])[:, l], "--", label=f"G^{l + 1}(t, t)")
plt.xlabel("flow time t")
plt.ylabel("order parameter along the target")
plt.legend()


def deep_loss(g):  # the loss at t = 2, before it has converged
    method = ls.SelfConsistent(points=4, rtol=1e-12, atol=1e-12)
    return ls.solve(lm.DeepLinearDMFT(lin_data, g, 3), method, lr=0.5, steps=4, save_every=4)["loss"][-1]


grad = float(jax.grad(deep_loss)(0.8))
fd = float((deep_loss(0.8 + 1e-5) - deep_loss(0.8 - 1e-5)) / 2e-5)
print(f"depth 3: dL(t = 2)/dγ₀ = {grad:.10f} (implicit differentiation), {fd:.10f} (finite differences)")
results["deep_dloss_dgamma0"] = {"gradient": grad, "finite_differences": fd}

# %% [markdown]
# ## Deep nonlinear networks: Monte-Carlo sites on the time grid
# With a nonlinear activation the single-site equations are no longer linear in their
# sources. `DeepDMFT` samples each layer's fields by Monte Carlo (`samples` sites, antithetic,
# the exact initial kernels as control variate), gets the response functions — the reaction
# of the initial weights — as forward-mode Jacobians of the site averages, and is solved by the
# same `SelfConsistent`. The cost grows as $(P n)^3$, so the task is small: 6 Gaussian inputs,
# a tanh target, depth 3.

# %%
rng = np.random.default_rng(3)
xd, xd_test, bd = rng.standard_normal((6, D)), rng.standard_normal((4, D)), rng.standard_normal(D)
tanh_target = lambda z: 1.5 * np.tanh(z @ bd / np.sqrt(D))[:, None]  # noqa: E731
tanh_data = lm.Dataset(xd, tanh_target(xd), xd_test, tanh_target(xd_test))
kwt = dict(lr=1.0, steps=6, save_every=1)
tanh_theory = ls.solve(
    lm.DeepDMFT(tanh_data, 1.0, 3, "tanh", samples=4096),
    ls.SelfConsistent(points=1, rtol=1e-6, atol=1e-6),
    **kwt,
)
results["deep_tanh_single_slope"] = deep_errors(tanh_theory, tanh_data, "tanh", "depth 3 tanh", **kwt)

ntk_t = np.asarray(tanh_theory["ntk"])
plt.figure(figsize=(5, 3.6))
plt.plot(tanh_theory.times, np.linalg.norm(ntk_t - ntk_t[0], axis=(1, 2)) / np.linalg.norm(ntk_t[0]))
plt.xlabel("flow time t")
plt.ylabel("‖K(t) − K(0)‖ / ‖K(0)‖")
plt.title("depth-3 tanh DMFT: the NTK moves")

# %%
print(json.dumps(results))
