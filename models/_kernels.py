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

The expectations come from the activation object (`AbstractActivation.pair_moments`).
Next to $K^l$ the recursion carries, per pair, $\det$ of the 2×2 covariance and
$\mathbb E[(z^l(x) - z^l(x'))^2]$, started from the inputs without cancellation — with
$\hat x = x/\lvert x\rvert$ and the two per-pair norms $\lvert\hat x \mp \hat x'\rvert$
(Kahan's angle; the smaller of the two by a pass over the coordinates, the larger from the
parallelogram law), $\lvert x\rvert^2\lvert x'\rvert^2 - (x\cdot x')^2
= \lvert x\rvert^2\lvert x'\rvert^2\,\lvert\hat x-\hat x'\rvert^2\lvert\hat x+\hat x'\rvert^2/4$ and
$\lvert x - x'\rvert^2 = (\lvert x\rvert - \lvert x'\rvert)^2 + \lvert x\rvert\lvert x'\rvert\,\lvert\hat x-\hat x'\rvert^2$
— so that duplicates, near-duplicates and the diagonal are exact to round-off. Only
activations whose moments need it (`needs_exact_det`, ReLU) pay for that per-pair pass
over the inputs; for the others the entries of the covariance suffice.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._activations import (
    QUADRATURE_NODES,
    AbstractActivation,
    GaussianPair,
    check_quadrature_nodes,
    get_activation,
)
from ._blocks import blockwise, check_block_size
from ._mlp import MLP
from ._validate import check_inputs


class _Coefficients(NamedTuple):
    """The numbers of the recursion (traced, so one compilation serves every σ and width)."""

    nngp_first: Array  # σ_w²/d
    sigma_w2: Array
    sigma_b2: Array  # 0 without biases
    ntk_first: Array  # first-layer weight term per x·x': σ_w²/d (ntk) or 1 (standard)
    ntk_bias: Array  # σ_b² (ntk) or 1 (standard); 0 without biases
    ntk_layers: Array  # weight term per E[φφ]: σ_w² (ntk) or the fan-in n_l (standard), zero-padded
    n_layers: Array  # how many of `ntk_layers` are real: L − 1
    readout2: Array


# Hidden layers are scanned over a zero-padded array of a multiple of this length, the
# padding skipped by `lax.cond`: one compilation serves depths 1–17, another 18–33, ...
_DEPTH_BUCKET = 16


def _coefficients(net: MLP, dtype) -> _Coefficients:
    sw2 = net.sigma_w**2
    sb2 = net.sigma_b**2 if net.has_bias else 0.0
    if _kernel_limit(net) == "ntk":
        first, bias, layers = sw2 / net.in_size, sb2, [sw2] * len(net.widths)
    else:
        first, bias, layers = 1.0, (1.0 if net.has_bias else 0.0), list(net.widths)
    padded = layers + [0.0] * (_DEPTH_BUCKET * max(1, -(-len(layers) // _DEPTH_BUCKET)) - len(layers))
    arr = lambda v: np.asarray(v, dtype=dtype)  # noqa: E731  (numpy: no device op before the jit)
    return _Coefficients(
        arr(sw2 / net.in_size),
        arr(sw2),
        arr(sb2),
        arr(first),
        arr(bias),
        arr(padded),
        np.asarray(len(layers)),
        arr(net.readout**2),
    )


def _input_pair(x1, x2, c: _Coefficients, exact_det: bool) -> tuple[GaussianPair, Array]:
    """The layer-1 pre-activation pair, and the Gram matrix x1·x2ᵀ."""
    sq1, sq2 = jnp.sum(x1**2, axis=1), jnp.sum(x2**2, axis=1)
    gram = x1 @ x2.T
    k11 = c.nngp_first * sq1[:, None] + c.sigma_b2
    k22 = c.nngp_first * sq2[None, :] + c.sigma_b2
    k12 = c.nngp_first * gram + c.sigma_b2
    if not exact_det:
        return GaussianPair.from_covariance(k11, k22, k12), gram
    n1, n2 = jnp.sqrt(sq1), jnp.sqrt(sq2)
    u1 = x1 / jnp.where(n1 > 0, n1, 1.0)[:, None]
    u2 = x2 / jnp.where(n2 > 0, n2, 1.0)[:, None]

    # the smaller of |x̂ ∓ x̂'|² by one fused pass over the coordinates (no cancellation), the
    # larger (>= 2) by the parallelogram law |x̂ − x̂'|² + |x̂ + x̂'|² = 2|x̂|² + 2|x̂'|²
    flip = jnp.where(u1 @ u2.T < 0, -1.0, 1.0)
    near = jnp.sum((u1[:, None, :] - flip[:, :, None] * u2[None, :, :]) ** 2, axis=-1)
    far = 2 * (jnp.sum(u1**2, axis=1)[:, None] + jnp.sum(u2**2, axis=1)[None, :]) - near
    minus, plus = jnp.where(flip > 0, near, far), jnp.where(flip > 0, far, near)
    n1, n2 = n1[:, None], n2[None, :]
    dist = c.nngp_first * ((n1 - n2) ** 2 + n1 * n2 * minus)
    det = c.nngp_first**2 * (n1 * n2) ** 2 * minus * plus / 4 + c.sigma_b2 * dist
    return GaussianPair(k11, k22, k12, det, dist), gram


def _block(act: AbstractActivation, nodes: int, c: _Coefficients, x1, x2):
    pair, gram = _input_pair(x1, x2, c, act.needs_exact_det)
    theta = c.ntk_first * gram + c.ntk_bias

    def layer(carry, weight_term):
        pair, theta = carry
        m = act.pair_moments(pair, nodes)
        theta = weight_term * m.e12 + c.ntk_bias + c.sigma_w2 * m.de12 * theta
        a, b = c.sigma_w2, c.sigma_b2
        pair = GaussianPair(
            a * m.e11 + b, a * m.e22 + b, a * m.e12 + b, a * a * m.det + a * b * m.dist, a * m.dist
        )
        return pair, theta

    def maybe_layer(carry, xs):
        i, weight_term = xs
        return jax.lax.cond(i < c.n_layers, layer, lambda carry, _: carry, carry, weight_term), None

    steps = (jnp.arange(c.ntk_layers.shape[0]), c.ntk_layers)
    (pair, theta), _ = jax.lax.scan(maybe_layer, (pair, theta), steps)
    return c.readout2 * pair.k12, c.readout2 * theta


# compiled once per (activation, nodes, shapes, depth bucket): the numbers are traced
_block_jit = jax.jit(_block, static_argnums=(0, 1))

# rows per block of the symmetric path when no `block_size` is given (about; see _split),
# and kernel entries per step of the map over blocks (its temporaries: ~30 MB in float64)
_SYMMETRIC_BLOCK = 128
_CHUNK = 2**18


def _pad_rows(x, n):
    """`x` with rows appended (copies of its first row) up to `n` rows."""
    extra = n - x.shape[0]
    return x if extra == 0 else jnp.concatenate([x, jnp.broadcast_to(x[:1], (extra, x.shape[1]))])


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _symmetric_jit(act, nodes, b, chunk, outputs, c, x, xq):
    r"""$K(x, x)$ and $\Theta(x, x)$ from the blocks on and above the diagonal only (the
    kernels are symmetric), and — if `xq` is not None — $K(x_q, x)$, $\Theta(x_q, x)$, from
    one list of `b`×`b` blocks mapped `chunk` at a time (memory: that many blocks of
    temporaries). `outputs` names the kernels returned (a subset of `("nngp", "ntk")`)."""
    P, Q = x.shape[0], 0 if xq is None else xq.shape[0]
    nb, nq = -(-P // b), -(-Q // b)
    rows = [_pad_rows(x, nb * b)] + ([] if xq is None else [_pad_rows(xq, nq * b)])
    blocks = jnp.concatenate(rows).reshape(nb + nq, b, x.shape[1])
    iu, ju = np.triu_indices(nb)
    it, jt = np.repeat(np.arange(nb, nb + nq), nb), np.tile(np.arange(nb), nq)
    n, total = len(iu), len(iu) + len(it)
    # quadrature maps its own entries in batches (`quadrature_moments`): blocks one at a time
    chunk = min(chunk, total) if act.closed_form else 1
    steps = -(-total // chunk)
    pad = steps * chunk - total  # whole chunks (one compiled body), the extra pairs dropped
    pairs = tuple(np.concatenate([a, bb, np.zeros(pad, int)]) for a, bb in ((iu, it), (ju, jt)))

    def one(ij):
        k, t = _block(act, nodes, c, blocks[ij[0]], blocks[ij[1]])
        return tuple({"nngp": k, "ntk": t}[name] for name in outputs)

    out = jax.lax.map(one, pairs, batch_size=chunk)

    # the square from its upper blocks by one gather: block (I, J) below the diagonal is
    # the transpose of (J, I); entry (i, j) is always computed with x_min(i, j) as the
    # first point (a quadrature rule is not symmetric in its two points), so on the
    # diagonal blocks the lower triangle mirrors the upper
    index = np.zeros((nb, nb), int)
    index[iu, ju] = index[ju, iu] = np.arange(n)
    mirror = np.tril(np.ones((nb, nb), bool), -1)[:, :, None, None] | (
        np.eye(nb, dtype=bool)[:, :, None, None] & ~np.triu(np.ones((b, b), bool))
    )

    def square(v):
        g = v[index]
        full = jnp.where(mirror, jnp.swapaxes(g, 2, 3), g)
        return full.transpose(0, 2, 1, 3).reshape(nb * b, nb * b)[:P, :P]

    def rect(v):
        return v[n:total].reshape(nq, nb, b, b).transpose(0, 2, 1, 3).reshape(nq * b, nb * b)[:Q, :P]

    train = dict(zip(outputs, (square(v) for v in out)))
    return train, (None if xq is None else dict(zip(outputs, (rect(v) for v in out))))


def _split(P: int, block_size: int | None) -> tuple[int, int]:
    """Block rows `b` and blocks per step: `block_size` blocks one at a time, or about
    `_SYMMETRIC_BLOCK` rows (the padding under one row per block), `_CHUNK` entries a step."""
    if block_size is not None:
        return min(block_size, P), 1
    nb = max(1, round(P / _SYMMETRIC_BLOCK))
    b = -(-P // nb)
    return b, max(1, _CHUNK // (b * b))


def symmetric_kernels(
    net, x, x_other=None, *, block_size=None, quadrature_nodes=QUADRATURE_NODES, outputs=("nngp", "ntk")
):
    """`({"nngp": K(x, x), "ntk": Θ(x, x)}, {"nngp": K(x_other, x), "ntk": Θ(x_other, x)} or
    None)`: the symmetric kernel from its upper blocks, and the kernel of other points
    against `x` in the same compiled call (the training and test-train kernels of a
    linearized model); `outputs` selects the kernels (e.g. `("ntk",)`)."""
    x = _check(net, x, "x")
    xq = None if x_other is None else _check(net, x_other, "x_other")
    block_size = check_block_size(block_size, "analytic_kernels")
    b, chunk = _split(x.shape[0], block_size)
    act = get_activation(net.activation)
    coefs = _coefficients(net, x.dtype if xq is None else jnp.result_type(x, xq))
    nodes = check_quadrature_nodes(quadrature_nodes)
    return _symmetric_jit(act, nodes, b, chunk, tuple(outputs), coefs, x, xq)


def _kernel_limit(net: MLP) -> str:
    """`"ntk"` or `"standard"`: the string network whose kernels `net` has — itself, or the one
    whose abc symmetry orbit its table lies on (the same function trajectory under GD with the
    table's learning rates, so the same kernels); feature-learning tables raise."""
    if net.parameterization in ("ntk", "standard"):
        return net.parameterization
    limit = net.abc.kernel_limit()
    if limit is None:
        name = getattr(net.parameterization, "name", net.parameterization)
        raise ValueError(
            f"parameterization {name!r} has no fixed infinite-width kernel: features move at infinite "
            "width (feature-learning table); use the mean-field theory, lmech.models.mean_field "
            "(TwoLayerDMFT, TwoLayerLinearDMFT), whose gamma0 -> 0 limit is the 'ntk' network's kernel regime."
        )
    return limit


def _check(net: MLP, x, name):
    if not isinstance(net, MLP):
        raise TypeError(f"analytic kernels need an lmech MLP spec, got {type(net).__name__}.")
    _kernel_limit(net)
    return check_inputs(x, net.in_size, "analytic kernels", name)


def analytic_kernels(
    net: MLP,
    x1: Float[Array, "P1 d"],
    x2: Float[Array, "P2 d"] | None = None,
    *,
    block_size: int | None = None,
    quadrature_nodes: int = QUADRATURE_NODES,
) -> dict[str, Float[Array, "P1 P2"]]:
    """`{"nngp": K(x1, x2), "ntk": Θ(x1, x2)}` of the spec at infinite width (scalar
    output; the kernel of `out_size = k` outputs is this ⊗ I_k).

    linear, relu and erf are closed forms, exact to round-off on and off the diagonal
    (duplicates and near-duplicates included). Other activations use a trapezoid rule with
    `quadrature_nodes` points per axis (default 80, on [-8, 8]): exact to round-off *for
    that rule*, whose own error grows with the pre-activation variance. Checked on erf
    against its closed form (tests): ≤ 1e-10 relative at σ_w ≤ 2, depths ≤ 10, inputs with
    |x|²/d ≤ 1 (measured 7e-13 at worst; Gauss–Hermite with 64 nodes was off by 7e-4 at
    σ_w = 2). Raise `quadrature_nodes` for larger variances (deep unbounded activations at
    σ_w ≥ 2, large inputs). `block_size` computes the matrix in blocks of that many rows
    and columns (memory O(block_size²) per step, so P = 10⁴ fits in CPU memory). Without
    `x2` the kernel is symmetric: only the blocks on and above the diagonal are computed
    (about half the work) and mirrored, so it is exactly symmetric.
    """
    if x2 is None:
        return symmetric_kernels(net, x1, block_size=block_size, quadrature_nodes=quadrature_nodes)[0]
    x1 = _check(net, x1, "x1")
    x2 = _check(net, x2, "x2")
    block_size = check_block_size(block_size, "analytic_kernels")
    nodes = check_quadrature_nodes(quadrature_nodes)
    act = get_activation(net.activation)
    coefs = _coefficients(net, jnp.result_type(x1, x2))
    k, t = blockwise(lambda a, b: _block_jit(act, nodes, coefs, a, b), x1, x2, block_size)
    return {"nngp": k, "ntk": t}


def analytic_ntk(net: MLP, x1, x2=None, **kwargs) -> Float[Array, "P1 P2"]:
    """The infinite-width NTK Θ(x1, x2) of the spec (see `analytic_kernels`)."""
    return analytic_kernels(net, x1, x2, **kwargs)["ntk"]


def analytic_nngp(net: MLP, x1, x2=None, **kwargs) -> Float[Array, "P1 P2"]:
    """The infinite-width NNGP kernel K(x1, x2) of the spec (see `analytic_kernels`)."""
    return analytic_kernels(net, x1, x2, **kwargs)["nngp"]


__all__ = ["analytic_kernels", "analytic_nngp", "analytic_ntk", "symmetric_kernels"]
