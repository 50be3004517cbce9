r"""Initial weights for real deep linear networks that the mode theory describes:
decoupled (Saxe et al. 2014) factor chains, and the effective initial mode strengths
of a small random two-layer initialization."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array

from ._deep_linear import SaxeModes
from ._mlp import MLP

__all__ = ["decoupled_init", "effective_initial_strengths", "factor_chain"]


def decoupled_init(network: MLP, modes: SaxeModes, *, key: Any) -> tuple[tuple[Array, None], ...]:
    r"""Parameters of a linear `network` in the decoupled form of `modes`:
    $W_1 = R_1 D_1 V^\top$, $W_l = R_l D_l R_{l-1}^\top$, $W_N = U D_N R_{N-1}^\top$ with
    random orthonormal $R_l$ (keyword `key`) and $D_l = \mathrm{diag}(a_{l})$."""
    if not (network.is_linear and network.parameterization == "standard"):
        raise ValueError(
            "decoupled_init: needs MLP(activation='linear', bias=False, "
            "parameterization='standard') so that parameters are the layer matrices."
        )
    if network.depth != modes.depth:
        raise ValueError(f"decoupled_init: network depth {network.depth} != modes depth {modes.depth}.")
    if modes.U is None:
        raise ValueError("decoupled_init: the modes need their basis (build them with from_dataset).")
    m = modes.s.shape[0]
    if any(w < m for w in network.widths):
        raise ValueError(
            f"decoupled_init: every hidden width must be >= the {m} modes, got {network.widths}."
        )
    if network.readout != 1.0:
        raise ValueError("decoupled_init: needs readout=1.")
    return factor_chain(modes.U, modes.a0, modes.V, network.widths, key=key)


def factor_chain(U, D, V, widths, *, key: Any) -> tuple[tuple[Array, None], ...]:
    """Layer matrices `W_N ... W_1 = U diag(prod D) V^T` through random orthonormal
    hidden bases of the given widths (D has shape `(len(widths) + 1, m)`)."""
    m = D.shape[1]
    keys = jax.random.split(key, max(len(widths), 1))
    Rs = [_orthonormal_columns(k, n, m, U.dtype) for k, n in zip(keys, widths)]
    left = [V] + Rs  # basis on the input side of each layer
    right = Rs + [U]  # basis on the output side
    return tuple(((r * d) @ l.T, None) for r, d, l in zip(right, D, left))


def _orthonormal_columns(key, n: int, m: int, dtype) -> Array:
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype=dtype))
    q = q * jnp.sign(jnp.diag(r))  # Haar-distributed
    return q[:, :m]


def effective_initial_strengths(W1, W2, U, V, *, rule: str = "orthogonalized") -> Array:
    r"""Effective initial strengths $u_{0,i}$ of the modes of a two-layer linear network
    $W_2 W_1$ started from small random weights (modes ordered by decreasing $s_i$, the
    columns of `U`, `V`).

    In the early, linear phase $a_i = W_1 v_i$ and $b_i = W_2^\top u_i$ obey
    $\dot a_i = s_i b_i,\ \dot b_i = s_i a_i$: only the hidden vector
    $r_i = (a_i + b_i)/2$ grows (as $e^{s_i t}$), so mode $i$ behaves like a balanced
    mode started at

    - `rule="projected"`: $u_{0,i} = \lVert r_i\rVert^2$ (modes independent);
    - `rule="orthogonalized"`: $u_{0,i} = \lVert P^\perp_{<i} r_i\rVert^2$, where
      $P^\perp_{<i}$ projects out the hidden directions $r_1, \dots, r_{i-1}$ of the
      faster modes (Gram–Schmidt in order of decreasing $s$): once a mode is learned,
      the $-W_2^\top W_2 W_1$ term removes the later modes' components along its
      hidden direction.
    """
    A = W1 @ V  # (h, m): a_i in columns
    B = W2.T @ U  # (h, m): b_i in columns
    R = 0.5 * (A + B)
    if rule == "projected":
        return jnp.sum(R**2, axis=0)
    if rule == "orthogonalized":
        Q, T = jnp.linalg.qr(R)  # Gram–Schmidt in column order
        return jnp.diag(T) ** 2
    raise ValueError(
        f"effective_initial_strengths: unknown rule {rule!r}; use 'projected' or 'orthogonalized'."
    )
