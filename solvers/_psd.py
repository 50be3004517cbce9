r"""The projection onto the PSD cone with a derivative that is finite at ties, and the
small semidefinite complementarity problem (a convex QP over the PSD cone) that the
central flow solves for the covariance of gradient descent's oscillation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["psd_complementarity", "psd_part"]


@jax.custom_jvp
def psd_part(Y: Float[Array, "k k"]) -> Float[Array, "k k"]:
    r"""The projection of a symmetric matrix onto the PSD cone, $V \max(\Lambda, 0) V^\top$.

    Its derivative is the Daleckii–Krein (Löwner) formula
    $dP = V\,[\Gamma \circ (V^\top dY\, V)]\,V^\top$ with divided differences
    $\Gamma_{ij} = (f(\lambda_i) - f(\lambda_j))/(\lambda_i - \lambda_j)$, $f = \max(\cdot, 0)$
    ($f'$ on ties), so it stays finite where eigenvalues coincide (e.g. $Y = 0$), where
    differentiating through `eigh` gives NaN.
    """
    w, V = jnp.linalg.eigh(Y)
    return (V * jnp.maximum(w, 0.0)) @ V.T


@psd_part.defjvp
def _psd_part_jvp(primals, tangents):
    (Y,), (dY,) = primals, tangents
    w, V = jnp.linalg.eigh(Y)
    f = jnp.maximum(w, 0.0)
    fp = (w > 0).astype(w.dtype)
    diff = w[:, None] - w[None, :]
    tie = jnp.abs(diff) <= 1e3 * jnp.finfo(w.dtype).eps * (1.0 + jnp.max(jnp.abs(w)))
    gamma = jnp.where(
        tie, 0.5 * (fp[:, None] + fp[None, :]), (f[:, None] - f[None, :]) / jnp.where(tie, 1.0, diff)
    )
    dP = V @ (gamma * (V.T @ dY @ V)) @ V.T
    return (V * f) @ V.T, dP


def psd_complementarity(
    M: Float[Array, "kk kk"],
    B: Float[Array, "k k"],
    *,
    iters: int = 500,
    support: Array | None = None,
) -> Float[Array, "k k"]:
    r"""Solve $\min_{X \succeq 0} \frac14 \mathrm{vec}(X)^\top M\,\mathrm{vec}(X) - \langle B, X\rangle$.

    Equivalently the complementarity problem $X \succeq 0$, $\mathcal A(X) - B \succeq 0$,
    $\langle X, \mathcal A(X) - B\rangle = 0$ with $\mathcal A(X) = \frac12 M\,\mathrm{vec}(X)$
    ($M \succeq 0$, $k^2\times k^2$; $B$ symmetric). Accelerated projected gradient with
    step $1/\lambda_{\max}(\mathcal A)$; the projection clips eigenvalues at zero.
    Fixed iteration count (jit-able). With a boolean `support` of length $k$, $X$ is
    restricted to the rows and columns where it is True.
    """
    k = B.shape[0]
    D = jnp.ones(k, B.dtype) if support is None else support.astype(B.dtype)
    B = 0.5 * (B + B.T)
    A = lambda X: 0.5 * (M @ X.reshape(-1)).reshape(k, k)
    lip = 0.5 * jnp.linalg.eigvalsh(M)[-1]
    step = jnp.where(lip > 0, 1.0 / jnp.where(lip > 0, lip, 1.0), 0.0)

    def project(Y):
        return psd_part(0.5 * (Y + Y.T) * D[:, None] * D[None, :])

    def body(i, carry):
        X, Z, t = carry
        X_new = project(Z - step * (A(Z) - B))
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t**2))
        Z = X_new + ((t - 1.0) / t_new) * (X_new - X)
        return X_new, Z, t_new

    X0 = jnp.zeros_like(B)
    X, _, _ = jax.lax.fori_loop(0, iters, body, (X0, X0, jnp.ones((), B.dtype)))
    return X
