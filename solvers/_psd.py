r"""The projection onto the PSD cone with a derivative that is finite at ties, and the
small semidefinite complementarity problem (a convex QP over the PSD cone) that the
central flow solves for the covariance of gradient descent's oscillation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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

    First the interior candidate: the stationary point $\mathcal A(X) = B$ on the support
    (a linear system in the $k(k+1)/2$ entries of the symmetric $X$). Where it is positive
    semidefinite it is the solution — the KKT conditions hold with $\mathcal A(X) - B = 0$
    — and the iterations are skipped (`lax.cond`); otherwise (the solution is on the
    boundary of the cone, or the system is singular) they run.
    """
    k = B.shape[0]
    D = jnp.ones(k, B.dtype) if support is None else support.astype(B.dtype)
    B = 0.5 * (B + B.T)
    X_int, interior = _interior_candidate(M, B, D)
    return jax.lax.cond(interior, lambda: X_int, lambda: _projected_gradient(M, B, D, iters))


def _interior_candidate(M, B, D):
    r"""The stationary point of the QP on the support, over symmetric $X$ (vec$(X) = Tx$,
    $x$ the upper-triangle entries), and whether it is PSD and well-determined."""
    k = B.shape[0]
    ii, jj = np.triu_indices(k)
    T = np.zeros((k * k, ii.size))
    T[ii * k + jj, np.arange(ii.size)] = 1.0
    T[jj * k + ii, np.arange(ii.size)] = 1.0
    m = D[ii] * D[jj]
    N = 0.5 * (T.T @ M @ T) * m[:, None] * m[None, :]
    scale = jnp.sum(jnp.diag(N)) / jnp.maximum(jnp.sum(m), 1.0)  # the off-support rows: identity at N's scale
    N = N + jnp.diag((1.0 - m) * jnp.where(scale > 0, scale, 1.0))
    w = jax.lax.stop_gradient(jnp.linalg.eigvalsh(N))
    well_posed = (w[0] > 1e-10 * w[-1]) & jnp.all(jnp.isfinite(w))
    # a singular system is replaced by the identity (its candidate is discarded), so that
    # no derivative flows through a singular solve
    N = jnp.where(well_posed, N, jnp.eye(N.shape[0], dtype=N.dtype))
    x = jnp.linalg.solve(N, m * (T.T @ B.reshape(-1)))
    X = (T @ x).reshape(k, k)
    psd = jax.lax.stop_gradient(jnp.linalg.eigvalsh(X))[0] >= 0.0
    return X, well_posed & psd


def _projected_gradient(M, B, D, iters):
    """Accelerated projected gradient (FISTA) from X = 0, `iters` steps."""
    k = B.shape[0]
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
