r"""Infinite-width NNGP and NTK of the MLP spec (THEORY.md §2).

NTK parameterization, pre-activations $z^{l}$ with fan-in $n_{l-1}$:

$$K^1 = \sigma_w^2\,\tfrac{x\cdot x'}{d} + \sigma_b^2,\quad \Theta^1 = K^1,$$
$$K^{l+1} = \sigma_w^2\,\mathbb E[\phi(u)\phi(v)] + \sigma_b^2,\quad
  \Theta^{l+1} = K^{l+1} + \sigma_w^2\,\mathbb E[\phi'(u)\phi'(v)]\,\Theta^{l},$$

$(u, v) \sim \mathcal N(0, [[K^l(x,x), K^l(x,x')], [K^l(x',x), K^l(x',x')]])$; the
$\sigma_b^2$ terms only with biases; everything times `readout`². In the standard
parameterization the NNGP is the same, but each layer's parameter gradients are not
scaled by $\sigma_w/\sqrt{n_{l-1}}$ ($\sigma_b$): its weight term is
$n_{l-1}\,\mathbb E[\phi\phi]$ (first layer: $x\cdot x'$) and its bias term $1$ — the NTK
grows with the widths, which is why learning rates must shrink $\propto 1/n$ there.
Kernels are for one output; with `out_size = k` the kernel is $\Theta \otimes I_k$.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._activations import get_activation
from ._mlp import MLP

_CLOSED = ("linear", "relu", "erf")


def _expectations(act: str, k11, k22, k12, nodes: int):
    """E[φ(u)φ(v)], E[φ'(u)φ'(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
    if act == "linear":
        return k12, jnp.ones_like(k12)
    norm = jnp.sqrt(k11 * k22)
    safe = jnp.where(norm > 0, norm, 1.0)
    if act == "relu":
        rho = jnp.clip(k12 / safe, -1.0, 1.0)
        theta = jnp.arccos(rho)
        e_phi = jnp.where(
            norm > 0, norm * (jnp.sin(theta) + (jnp.pi - theta) * jnp.cos(theta)) / (2 * jnp.pi), 0.0
        )
        return e_phi, (jnp.pi - theta) / (2 * jnp.pi)
    if act == "erf":
        a, b = 1 + 2 * k11, 1 + 2 * k22
        e_phi = (2 / jnp.pi) * jnp.arcsin(jnp.clip(2 * k12 / jnp.sqrt(a * b), -1.0, 1.0))
        e_dphi = (4 / jnp.pi) / jnp.sqrt(a * b - 4 * k12**2)
        return e_phi, e_dphi
    return _gauss_hermite(get_activation(act), k11, k22, k12, nodes)


def _gauss_hermite(phi, k11, k22, k12, nodes: int):
    x, w = np.polynomial.hermite.hermgauss(nodes)
    z = jnp.asarray(np.sqrt(2.0) * x)
    w = jnp.asarray(w / np.sqrt(np.pi))
    dphi = jax.vmap(jax.grad(phi))
    s1, s2 = jnp.sqrt(k11), jnp.sqrt(k22)
    rho = jnp.clip(k12 / jnp.where(s1 * s2 > 0, s1 * s2, 1.0), -1.0, 1.0)
    c = jnp.sqrt(jnp.clip(1 - rho**2, 0.0))
    z1, z2 = z[:, None], z[None, :]
    ww = w[:, None] * w[None, :]

    def one(s1, s2, rho, c):
        u = s1 * z1 + 0 * z2
        v = s2 * (rho * z1 + c * z2)
        f = lambda g: jnp.sum(ww * g(u.ravel()).reshape(u.shape) * g(v.ravel()).reshape(v.shape))  # noqa: E731
        return f(phi), f(dphi)

    shape = k12.shape
    args = [jnp.broadcast_to(a, shape).ravel() for a in (s1, s2, rho, c)]
    e_phi, e_dphi = jax.lax.map(lambda a: one(*a), tuple(args), batch_size=256)
    return e_phi.reshape(shape), e_dphi.reshape(shape)


def _check(net: MLP, x, name):
    if not isinstance(net, MLP):
        raise TypeError(f"analytic kernels need an lmech MLP spec, got {type(net).__name__}.")
    if net.parameterization not in ("ntk", "standard"):
        raise ValueError(
            f"parameterization {net.parameterization!r} has no fixed infinite-width kernel: "
            "features move at infinite width; use the feature-learning (muP / mean-field) theory."
        )
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != net.in_size:
        raise ValueError(f"`{name}` must have shape (samples, {net.in_size}), got {x.shape}.")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"`{name}` contains NaN or inf.")
    return x


def _block(net: MLP, x1, x2, nodes: int):
    act = net.activation
    d = net.in_size
    ntk_param = net.parameterization == "ntk"
    sw2 = net.sigma_w**2
    sb2 = net.sigma_b**2 if net.has_bias else 0.0
    bias_term = (sb2 if ntk_param else 1.0) if net.has_bias else 0.0
    k12 = sw2 * (x1 @ x2.T) / d + sb2
    k11 = (sw2 * jnp.sum(x1**2, 1) / d + sb2)[:, None]
    k22 = (sw2 * jnp.sum(x2**2, 1) / d + sb2)[None, :]
    theta = (sw2 * (x1 @ x2.T) / d if ntk_param else x1 @ x2.T) + bias_term
    fan_ins = net.widths
    for n in fan_ins:
        e_phi, e_dphi = _expectations(act, k11, k22, k12, nodes)
        d11, _ = _expectations(act, k11, k11, k11, nodes)
        d22, _ = _expectations(act, k22, k22, k22, nodes)
        weight_term = sw2 * e_phi if ntk_param else n * e_phi
        theta = weight_term + bias_term + sw2 * e_dphi * theta
        k12 = sw2 * e_phi + sb2
        k11, k22 = sw2 * d11 + sb2, sw2 * d22 + sb2
    r2 = net.readout**2
    return r2 * k12, r2 * theta


# compiled once per (spec, shapes, nodes): the spec is static and hashable
_block_jit = jax.jit(_block, static_argnums=(0, 3))


def analytic_kernels(
    net: MLP,
    x1: Float[Array, "P1 d"],
    x2: Float[Array, "P2 d"] | None = None,
    *,
    block_size: int | None = None,
    quadrature_nodes: int = 64,
) -> dict[str, Float[Array, "P1 P2"]]:
    """`{"nngp": K(x1, x2), "ntk": Θ(x1, x2)}` of the spec at infinite width (scalar
    output; the kernel of `out_size = k` outputs is this ⊗ I_k).

    linear, relu and erf are closed forms; other activations use `quadrature_nodes`²
    Gauss–Hermite points. `block_size` computes the matrix in blocks of that many rows
    and columns (memory O(block_size²) per step, so P = 10⁴ fits in CPU memory).
    """
    x1 = _check(net, x1, "x1")
    x2 = x1 if x2 is None else _check(net, x2, "x2")
    fn = lambda a, b: _block_jit(net, a, b, quadrature_nodes)  # noqa: E731
    if block_size is None or (x1.shape[0] <= block_size and x2.shape[0] <= block_size):
        k, t = fn(x1, x2)
        return {"nngp": k, "ntk": t}
    rows_k, rows_t = [], []
    for i in range(0, x1.shape[0], block_size):
        ks, ts = zip(
            *(fn(x1[i : i + block_size], x2[j : j + block_size]) for j in range(0, x2.shape[0], block_size))
        )
        rows_k.append(jnp.concatenate(ks, axis=1))
        rows_t.append(jnp.concatenate(ts, axis=1))
    return {"nngp": jnp.concatenate(rows_k), "ntk": jnp.concatenate(rows_t)}


def analytic_ntk(net: MLP, x1, x2=None, **kwargs) -> Float[Array, "P1 P2"]:
    """The infinite-width NTK Θ(x1, x2) of the spec (see `analytic_kernels`)."""
    return analytic_kernels(net, x1, x2, **kwargs)["ntk"]


def analytic_nngp(net: MLP, x1, x2=None, **kwargs) -> Float[Array, "P1 P2"]:
    """The infinite-width NNGP kernel K(x1, x2) of the spec (see `analytic_kernels`)."""
    return analytic_kernels(net, x1, x2, **kwargs)["nngp"]
