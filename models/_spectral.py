r"""Spectral factors of the linearized MSE dynamics, written once.

For a kernel eigenvalue $\lambda \ge 0$ on $P$ samples the residual along its
eigenvector decays by $e^{-\lambda t/P}$ under gradient flow and by
$(1 - \eta\lambda/P)^k$ under gradient descent; a test point moves by
$\Theta_* V\,g(\lambda)\,V^\top r_0$ with the growth factor
$g = (1 - \text{decay})/\lambda$ (continuous at $\lambda = 0$: $t/P$, resp. $k\eta/P$).
Both are computed with `expm1`/`log1p` where the base lies in $(0, 1]$, so small
$\lambda t/P$ loses no digits. `xp` is the array namespace (`jax.numpy`, or `numpy` on the
host, for the Lanczos stopping test).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["flow_factors", "gd_factors"]


def flow_factors(lam: Float[Array, " n"], t: ArrayLike, P: int, xp=jnp) -> tuple[Array, Array]:
    r"""$(e^{-\lambda t/P},\ (1 - e^{-\lambda t/P})/\lambda)$."""
    x = lam * t / P
    safe = xp.where(lam > 0, lam, 1.0)
    growth = xp.where(lam > 0, -xp.expm1(-x) / safe, t / P)
    return xp.exp(-x), growth


def gd_factors(lam: Float[Array, " n"], lr: ArrayLike, k: ArrayLike, P: int, xp=jnp) -> tuple[Array, Array]:
    r"""$((1 - \eta\lambda/P)^k,\ (1 - (1 - \eta\lambda/P)^k)/\lambda)$."""
    step = lr * lam / P
    base = 1.0 - step
    stable = (base > 0) & (lam > 0)
    log_base = xp.log1p(-xp.where(stable, step, 0.0))
    decay = xp.where(stable, xp.exp(k * log_base), base**k)
    one_minus = xp.where(stable, -xp.expm1(k * log_base), 1.0 - decay)
    safe = xp.where(lam > 0, lam, 1.0)
    growth = xp.where(lam > 0, one_minus / safe, k * lr / P)
    return decay, growth
