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

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._data import Dataset
from ._kernels import analytic_kernels
from ._mlp import MLP
from ._spectral import flow_factors, gd_factors


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
    if not isinstance(net, MLP) or not isinstance(data, Dataset):
        raise TypeError("infinite_ensemble: needs an lmech MLP spec and a Dataset.")
    if (t is None) == (steps is None):
        raise ValueError(
            "infinite_ensemble: give the flow time `t`, or `steps` and `lr` for gradient descent."
        )
    if net.parameterization != "ntk":
        raise ValueError(
            "infinite_ensemble: the NTK-GP needs parameterization='ntk' (a width-independent kernel)."
        )
    if t is not None:
        _check_number("t", t, allow_zero=True)
    else:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"infinite_ensemble: `steps` must be an int >= 0, got {steps!r}.")
        if lr is None:
            raise ValueError("infinite_ensemble: gradient descent needs `lr`.")
        _check_number("lr", lr, allow_zero=False)
    tr = analytic_kernels(net, data.x_train, block_size=block_size)
    st = analytic_kernels(net, data.x_test, data.x_train, block_size=block_size)
    ss = analytic_kernels(net, data.x_test, block_size=block_size)
    lam, V = jnp.linalg.eigh(tr["ntk"])
    lam = jnp.clip(lam, 0.0)
    P = data.n_train
    if steps is None:
        _, growth = flow_factors(lam, t, P)
    else:
        bound = 2 * P / lam[-1]
        if not isinstance(lr, jax.core.Tracer) and float(lr) >= float(bound):
            raise ValueError(
                f"infinite_ensemble: lr = {float(lr):.4g} is at or above the stability bound 2P/λ_max = "
                f"{float(bound):.4g}: gradient descent diverges and the ensemble has no finite mean."
            )
        _, growth = gd_factors(lam, lr, steps, P)
    A = st["ntk"] @ (V * growth) @ V.T  # Θ_* Θ⁻¹ (I − decay)
    mean = A @ data.y_train
    Ks = st["nngp"]
    cov = ss["nngp"] - Ks @ A.T - A @ Ks.T + A @ tr["nngp"] @ A.T
    return {"mean": mean, "cov": 0.5 * (cov + cov.T)}


def _check_number(name, v, *, allow_zero: bool) -> None:
    if isinstance(v, jax.core.Tracer):
        return
    if isinstance(v, (bool, str)) or np.asarray(v).dtype.kind not in "fiu" or np.ndim(v) != 0:
        raise TypeError(f"infinite_ensemble: `{name}` must be a real scalar, got {v!r}.")
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(
            f"infinite_ensemble: `{name}` must be {'>= 0' if allow_zero else '> 0'} and finite, got {v!r}."
        )
