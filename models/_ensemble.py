r"""The infinite ensemble of linearized networks (NTK-GP; Lee et al. 2019, eqs. 14–16).

Over random initializations of a network in NTK parameterization at infinite width,
$f_0 \sim \mathcal{GP}(0, K)$ (the NNGP) and the kernel $\Theta$ is deterministic. The
linearized output at a test point after training is affine in $f_0$:

$$f_t(x_*) = f_0(x_*) - A_t\,(f_0(X) - Y),\qquad A_t = \Theta_*\Theta^{-1}(I - e^{-\Theta t/P}),$$

so it is Gaussian with mean $A_t Y$ and covariance
$K_{**} - K_* A_t^\top - A_t K_*^\top + A_t K A_t^\top$. For gradient descent replace
$e^{-\Theta t/P}$ by $(I - \eta\Theta/P)^k$.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._data import Dataset
from ._kernels import analytic_kernels
from ._mlp import MLP


def infinite_ensemble(
    net: MLP,
    data: Dataset,
    t=None,
    *,
    steps=None,
    lr=None,
    block_size: int | None = None,
) -> dict[str, Float[Array, ...]]:
    """Mean `(Q, k)` and covariance `(Q, Q)` (shared by the k outputs) of the test outputs
    of the infinite ensemble of linearized `net`s trained with MSE on `data`: by
    gradient flow to time `t`, or by `steps` steps of gradient descent at `lr`."""
    if (t is None) == (steps is None):
        raise ValueError(
            "infinite_ensemble: give the flow time `t`, or `steps` and `lr` for gradient descent."
        )
    if steps is not None and lr is None:
        raise ValueError("infinite_ensemble: gradient descent needs `lr`.")
    if net.parameterization != "ntk":
        raise ValueError(
            "infinite_ensemble: the NTK-GP needs parameterization='ntk' (a width-independent kernel)."
        )
    tr = analytic_kernels(net, data.x_train, block_size=block_size)
    st = analytic_kernels(net, data.x_test, data.x_train, block_size=block_size)
    ss = analytic_kernels(net, data.x_test, block_size=block_size)
    lam, V = jnp.linalg.eigh(tr["ntk"])
    lam = jnp.clip(lam, 0.0)
    P = data.n_train
    safe = jnp.where(lam > 0, lam, 1.0)
    if steps is None:
        growth = jnp.where(lam > 0, -jnp.expm1(-lam * t / P) / safe, t / P)
    else:
        growth = jnp.where(lam > 0, (1 - (1 - lr * lam / P) ** steps) / safe, steps * lr / P)
    A = st["ntk"] @ (V * growth) @ V.T  # Θ_* Θ⁻¹ (I − decay)
    mean = A @ data.y_train
    Ks = st["nngp"]
    cov = ss["nngp"] - Ks @ A.T - A @ Ks.T + A @ tr["nngp"] @ A.T
    return {"mean": mean, "cov": 0.5 * (cov + cov.T)}
