r"""The ensemble mean over initializations of a two-layer network under gradient descent, to
$O(1/n)$: $\mathbb E f_t = f^\infty_t + c_t/n + O(n^{-2})$, from single-neuron expectations —
no network of width $n$ is sampled (the average over init that Dyer & Gur-Ari 2019 take by
Feynman diagrams, here in our normalization for the GD map).

**Population form.** A two-layer network in NTK parameterization is
$f(x) = n^{-1/2}\sum_i u(\omega_i, x)$ with i.i.d. neurons $\omega_i = (a_i, w_i)$ and
$u(\omega, x) = \sigma_w a\,\phi(\sigma_w w\cdot x/\sqrt d)$ (times `readout`). Under GD on
$L = \frac1{2P}\sum_\mu r_\mu^2$ each neuron moves by
$\Delta\omega = -\frac\eta P\sum_\mu \rho_{t\mu}\nabla_\omega u(\omega, x_\mu)$ with $\rho = r/\sqrt n$:
it is driven by the shared residual path only. With $h(\omega;\rho)$ the output path of one
neuron driven by the path $\rho$, and $H_k(\omega) = \frac1{k!}D^k_\rho h(\omega; 0)$,

$$f = \sum_k n^{(1-k)/2}\,\langle H_k\rangle_n[r^{\otimes k}]
    = G_0 + (\bar H_1 + n^{-1/2}G_1)[r] + n^{-1}\big(G_2[r,r] + \bar H_3[r,r,r]\big) + O(n^{-3/2}),$$

where $\langle\cdot\rangle_n$ is the average over the $n$ neurons, $\bar H_k = \mathbb E_\omega H_k$,
and $G_k = \sqrt n(\langle H_k\rangle_n - \bar H_k)$ are (to this order) jointly Gaussian with the
single-neuron covariances $\operatorname{Cov}_\omega(H_j, H_k)$. The flip $a \to -a$,
$\rho \to -\rho$ maps a neuron's path to its negative, so $H_k$ is odd in $a$ for even $k$:
$\bar H_0 = \bar H_2 = 0$, and $G_0$ (the initial output, $\sim\mathcal N(0, K)$) is
uncorrelated with $G_1$. $\bar H_1[\rho]_t = -\frac\eta P\,\Theta\sum_{s<t}\rho_s$ is the
kernel regime (the analytic NTK $\Theta$). Expanding the training residual
$r = r_0 + n^{-1/2}r_1 + n^{-1}r_2$ with $\mathcal L[s]$ the solution of $r = s + \bar H_1[r]$
(kernel GD driven by the source path $s$), $B = \mathcal L[y]$ and $C = \mathcal L[G_0]$:
$r_0 = C - B$, $r_1 = \mathcal L[G_1[r_0]]$ (mean zero), and the mean shift is

$$c = S + \bar H_1[\mathcal L[S_{\rm train}]],\qquad
S = -\mathbb E_\omega \tilde H_1\big[\mathcal L[\tilde H_1[B]]\big]
    - 2\,\mathbb E_\omega H_2\big[\mathcal L[H_0], B\big]
    - \bar H_3[B,B,B] - 3\sum_j \lambda_j\,\bar H_3[\mathcal L[v_j], \mathcal L[v_j], B],$$

$\tilde H_1 = H_1 - \bar H_1$, $(\lambda_j, v_j)$ the eigenpairs of the NNGP $K$ on the
training points (the Gaussian average over $G_0$), every path evaluated on the training and
test points; $f^\infty = -\bar H_1[B]$. The derivatives of $h$ are nested forward-mode
derivatives of a single neuron's GD run.

**The expectations.** Each integrand is a polynomial of degree $\le 4$ in $a$ (a term of
order $k$ in $\rho$ carries at most $k + 1$ factors of $a$), so $a$ is integrated exactly by
Gauss–Hermite (`nodes` = 3 is exact to degree 5); $w$ enters only through its projection on
the span of the inputs, sampled by scrambled Sobol points (`points`). The quasi-Monte-Carlo
error of $c$ is the accuracy knob: it enters the prediction divided by $n$.

Scope: one hidden layer, NTK parameterization, no biases, one output, MSE, the GD map, a
smooth activation (the expansion needs $\phi'''$).
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from lmech.solvers import RESULTS, Trajectory

from .._activations import ReLU, get_activation
from .._data import Dataset
from .._kernels import analytic_kernels
from .._mlp import MLP

__all__ = ["EnsembleMean", "ensemble_mean"]


class EnsembleMean(eqx.Module):
    r"""$\mathbb E f_t = f^\infty_t + c_t/n$ at the saved GD steps (see `ensemble_mean`).

    `limit` and `coefficient` are `(times, P + Q)`: training points first, then test points.
    `at(width)` is the prediction for networks of that width as a `Trajectory` (`f_train`,
    `f_test`), comparable with `lmech.validation.compare`.
    """

    steps: Array
    times: Array
    limit: Float[Array, "T PQ"]
    coefficient: Float[Array, "T PQ"]
    n_train: int = eqx.field(static=True)

    def outputs(self, width: float) -> Float[Array, "T PQ"]:
        """$f^\\infty + c/n$ on the training and test points."""
        if not width > 0:
            raise ValueError(f"EnsembleMean: `width` must be positive, got {width}.")
        return self.limit + self.coefficient / width

    def at(self, width: float) -> Trajectory:
        f = self.outputs(width)
        return Trajectory(
            steps=self.steps,
            times=self.times,
            observables={"f_train": f[:, : self.n_train, None], "f_test": f[:, self.n_train :, None]},
            final_state=None,
            result=RESULTS.successful,
            stats={},
            method="EnsembleMean",
        )


def _check(net, data, lr, steps, save_every, points, nodes):
    if not isinstance(net, MLP) or len(net.widths) != 1:
        raise TypeError("ensemble_mean: `net` must be an MLP with one hidden layer (a two-layer network).")
    if net.parameterization != "ntk":
        raise ValueError(
            f"ensemble_mean: the expansion is for the NTK parameterization, got {net.parameterization!r}."
        )
    if net.has_bias:
        raise ValueError("ensemble_mean: networks with biases are not covered (use sigma_b = 0, bias=False).")
    if net.out_size != 1:
        raise ValueError(f"ensemble_mean: one output only, got out_size = {net.out_size}.")
    if isinstance(get_activation(net.activation), ReLU):
        raise ValueError(
            "ensemble_mean: the expansion needs the third derivative of the activation; ReLU's are zero "
            "almost everywhere and miss its kink. Use a smooth activation (tanh, erf, gelu, softplus)."
        )
    if not isinstance(data, Dataset):
        raise TypeError("ensemble_mean: `data` must be a lmech Dataset.")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"ensemble_mean: `steps` must be a positive int, got {steps!r}.")
    if not (isinstance(save_every, int) and save_every >= 1 and steps % save_every == 0):
        raise ValueError(f"ensemble_mean: `save_every` must be a positive int dividing steps={steps}.")
    if not (isinstance(points, int) and points >= 2 and points & (points - 1) == 0):
        raise ValueError(f"ensemble_mean: `points` must be a power of two (Sobol), got {points!r}.")
    if not (isinstance(nodes, int) and nodes >= 3):
        raise ValueError(f"ensemble_mean: `nodes` must be an int >= 3 (exact to degree 5), got {nodes!r}.")
    if not float(lr) > 0:
        raise ValueError(f"ensemble_mean: `lr` must be positive, got {lr}.")


def ensemble_mean(
    net: MLP,
    data: Dataset,
    *,
    lr: float,
    steps: int,
    save_every: int = 1,
    points: int = 2**14,
    nodes: int = 3,
    seed: int = 0,
    chunk: int = 1024,
    progress: bool = True,
) -> EnsembleMean:
    r"""The mean over initializations of width-$n$ networks' outputs under `steps` GD steps at
    learning rate `lr`, to $O(1/n)$ for every $n$ at once (module docs): the kernel regime
    $f^\infty$ and the coefficient $c$ of $1/n$.

    **Arguments:** `net` (two-layer `MLP`, NTK parameterization, no biases, smooth
    activation), `data`, `lr`, `steps`, `save_every`; `points`: Sobol points for the
    projection of $w$ on the inputs' span (a power of two; the error of $c$ falls about as
    `points`$^{-1/2}$ or faster); `nodes`: Gauss–Hermite nodes for the readout; `seed`: the
    Sobol scrambling; `chunk`: neurons per compiled batch; `progress`: a progress bar.
    """
    _check(net, data, lr, steps, save_every, points, nodes)
    from scipy.stats import norm, qmc  # noqa: PLC0415  (set-up only)
    from tqdm.auto import tqdm  # noqa: PLC0415

    dtype = jnp.result_type(float)
    xtr, xte = jnp.asarray(data.x_train, dtype), jnp.asarray(data.x_test, dtype)
    y = jnp.asarray(data.y_train, dtype)[:, 0]
    P, T, eta = xtr.shape[0], steps, jnp.asarray(lr, dtype)
    x_all = jnp.concatenate([xtr, xte])
    unit = dataclasses.replace(net, widths=(1,))  # one neuron: u(ω, x)
    kern = analytic_kernels(net, x_all, xtr)
    Th = jnp.asarray(kern["ntk"], dtype)  # (P + Q, P)
    lam, V = jnp.linalg.eigh(jnp.asarray(kern["nngp"], dtype)[:P])
    keep = lam > 1e-12 * jnp.max(lam)
    lam, V = lam[keep], V[:, keep]

    def u(om, x):
        return unit.apply(om, x)[:, 0]

    def H1bar(rho):  # the kernel regime's response to a driving path: (T + 1, P + Q)
        c = jnp.concatenate([jnp.zeros((1, P), dtype), jnp.cumsum(rho[:T], 0)])
        return -(eta / P) * c @ Th.T

    def solve_L(s):  # r = s + H1bar[r] on the training points (causal)
        def step(acc, st):
            r = st - (eta / P) * Th[:P] @ acc
            return acc + r, r

        return jax.lax.scan(step, jnp.zeros(P, dtype), s)[1]

    def h(om, rho):  # one neuron driven by the path rho (T, P): its outputs at steps 0..T
        def step(o, r):
            g = jax.grad(lambda q: jnp.dot(u(q, xtr), r))(o)
            return jax.tree.map(lambda a, b: a - (eta / P) * b, o, g), u(o, x_all)

        last, outs = jax.lax.scan(step, om, rho)
        return jnp.concatenate([outs, u(last, x_all)[None]])

    def d1(om, a):  # D h(om; 0)[a]
        return jax.jvp(lambda s: h(om, s * a[:T]), (0.0,), (1.0,))[1]

    def d2(om, a, b):
        return jax.jvp(
            lambda t: jax.jvp(lambda s: h(om, s * a[:T] + t * b[:T]), (0.0,), (1.0,))[1], (0.0,), (1.0,)
        )[1]

    def d3(om, a, b, c):
        def inner(r):
            def mid(t):
                return jax.jvp(lambda s: h(om, s * a[:T] + t * b[:T] + r * c[:T]), (0.0,), (1.0,))[1]

            return jax.jvp(mid, (0.0,), (1.0,))[1]

        return jax.jvp(inner, (0.0,), (1.0,))[1]

    const = lambda v: jnp.broadcast_to(v, (T + 1, P))  # noqa: E731
    B = solve_L(const(y))
    CV = jax.vmap(lambda v: solve_L(const(v)))(V.T)  # L[v_j]

    def integrand(om):
        H1B = d1(om, B) - H1bar(B)
        LB = solve_L(H1B[:, :P])
        d = -(d1(om, LB) - H1bar(LB))
        e = -d2(om, solve_L(const(u(om, xtr))), B)  # -2 · H_2 = -2 · (1/2) D²h
        f = -d3(om, B, B, B) / 6.0  # H_3 = D³h / 6
        f = f - 0.5 * jnp.einsum("j,jtp->tp", lam, jax.vmap(lambda c: d3(om, c, c, B))(CV))
        return d + e + f

    # w enters through its projection on span(x_all); the readout by Gauss–Hermite
    U, sv, _ = np.linalg.svd(np.asarray(x_all).T, full_matrices=False)
    basis = jnp.asarray(U[:, sv > 1e-10 * sv.max()].T, dtype)  # (k, d), orthonormal rows
    gx, gw = np.polynomial.hermite_e.hermegauss(nodes)
    gx, gw = jnp.asarray(gx, dtype), jnp.asarray(gw / gw.sum(), dtype)
    treedef = jax.tree.structure(unit.init(jax.random.key(0)))

    @jax.jit
    def batch(v):
        def one(vi):
            w = (vi @ basis)[None, :]
            vals = jax.vmap(lambda a: integrand(jax.tree.unflatten(treedef, [w, jnp.full((1, 1), a)])))(gx)
            return jnp.tensordot(gw, vals, 1)

        return jax.vmap(one)(v).sum(0)

    sobol = qmc.Sobol(d=basis.shape[0], scramble=True, seed=seed).random_base2(int(math.log2(points)))
    normals = norm.ppf(sobol)
    total = jnp.zeros((T + 1, x_all.shape[0]), dtype)
    for i in tqdm(range(0, points, chunk), desc="ensemble_mean", disable=not progress, leave=False):
        total = total + batch(jnp.asarray(normals[i : i + chunk], dtype))
    S = total / points
    coef = S + H1bar(solve_L(S[:, :P]))
    limit = -H1bar(B)
    idx = jnp.arange(0, T + 1, save_every)
    return EnsembleMean(idx, eta * idx, limit[idx], coef[idx], P)
