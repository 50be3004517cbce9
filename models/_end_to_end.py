r"""The end-to-end matrix of a balanced deep linear network (Arora, Cohen & Hazan 2018),
and balancedness diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from lmech.solvers import AbstractLossDynamics

from ._data import Dataset
from ._losses import AbstractLoss, get_loss
from ._validate import check_depth


class EndToEnd(AbstractLossDynamics):
    r"""The product $W = W_N\cdots W_1$ of a depth-$N$ linear network started balanced
    ($W_{l+1}^\top W_{l+1} = W_l W_l^\top$), under gradient flow on the weights:

    $$\dot W = -\sum_{j=1}^{N} (W W^\top)^{\frac{j-1}{N}}\, \nabla_W L(W)\,
    (W^\top W)^{\frac{N-j}{N}}$$

    (Arora, Cohen & Hazan 2018, Theorem 1). Any loss of $f = W x$ works; fractional
    powers come from the thin SVD of $W$. State: $W$, shape `(k, d)`.
    Observables: `"loss"`, `"f_train"`, `"f_test"`, `"end_to_end"`, `"singular_values"`.
    """

    W0: Float[Array, "k d"]
    data: Dataset
    depth: int = eqx.field(static=True)
    loss_fn: AbstractLoss

    def __init__(self, data: Dataset, depth: int, W0, loss: str | AbstractLoss = "mse"):
        if not isinstance(data, Dataset):
            raise TypeError(f"EndToEnd: `data` must be an lmech Dataset, got {type(data).__name__}.")
        self.depth = check_depth(depth)
        W0 = jnp.asarray(W0)
        if W0.shape != (data.out_size, data.in_size):
            raise ValueError(
                f"EndToEnd: `W0` must have shape (out, in) = {(data.out_size, data.in_size)}, got {W0.shape}."
            )
        loss_fn = get_loss(loss)
        loss_fn.check_targets(data.y_train, "EndToEnd")
        self.W0, self.data, self.loss_fn = W0, data, loss_fn

    def init(self, *, key: Any = None):
        return self.W0

    def loss(self, W) -> Scalar:
        return self.loss_fn(self.data.x_train @ W.T, self.data.y_train)

    def vector_field(self, t, W, args: Any):
        G = jax.grad(self.loss)(W)
        N = self.depth
        # Powers through the thin SVD W = U diag(σ) Vᵀ: (WWᵀ)^p = U σ^{2p} Uᵀ and
        # (WᵀW)^p = V σ^{2p} Vᵀ for p > 0, exactly zero on the complement (an eigh of
        # the square factors would leave round-off there, and its square root is not
        # smooth); the p = 0 factor is the identity.
        U, sig, Vt = jnp.linalg.svd(W, full_matrices=False)

        def power(basis, p):
            return (basis * sig ** (2 * p)) @ basis.T

        out = jnp.zeros_like(W)
        for j in range(1, N + 1):
            left = G if j == 1 else power(U, (j - 1) / N) @ G
            out = out + (left if j == N else left @ power(Vt.T, (N - j) / N))
        return -out

    def observe(self, W) -> dict[str, Array]:
        f_train = self.data.x_train @ W.T
        return {
            "loss": self.loss_fn(f_train, self.data.y_train),
            "f_train": f_train,
            "f_test": self.data.x_test @ W.T,
            "end_to_end": W,
            "singular_values": jnp.linalg.svd(W, compute_uv=False),
        }


def balancedness(weights: Sequence[Array]) -> list[Array]:
    r"""$D_l = W_{l+1}^\top W_{l+1} - W_l W_l^\top$ for $l = 1..N-1$ — conserved by gradient
    flow on the layer matrices (exactly, for any loss)."""
    return [w2.T @ w2 - w1 @ w1.T for w1, w2 in zip(weights[:-1], weights[1:])]


def balancedness_drift(grads: Sequence[Array], lr) -> list[Array]:
    r"""The change of $D_l$ in one gradient-descent step from weights with gradients
    $G_l$: exactly $\eta^2 (G_{l+1}^\top G_{l+1} - G_l G_l^\top)$ (the $O(\eta)$ terms
    cancel because $W_{l+1}^\top G_{l+1} = G_l W_l^\top$)."""
    return [lr**2 * (g2.T @ g2 - g1 @ g1.T) for g1, g2 in zip(grads[:-1], grads[1:])]
