r"""Matrix functions of a kernel applied to a vector, by the Lanczos method.

The linearized MSE dynamics need $f(\Theta)\,r_0$ for a few scalar functions $f$ — the
decay $e^{-\lambda t/P}$ and the growth $(1 - e^{-\lambda t/P})/\lambda$ (flow), or
$(1 - \eta\lambda/P)^k$ and its growth (gradient descent) — at a handful of times. An
eigendecomposition gives them for every vector and time at $O(N^3)$. Lanczos gives them
for one vector at $O(N^2 m)$: $m$ steps build an orthonormal basis $Q_m$ of the Krylov
space $\operatorname{span}\{r_0, \Theta r_0, \dots, \Theta^{m-1} r_0\}$ and the tridiagonal
$T_m = Q_m^\top \Theta Q_m$, and

$$f(\Theta)\,r_0 \approx \lVert r_0\rVert\, Q_m f(T_m)\, e_1,$$

exact for polynomials of degree $< m$; for the smooth functions above the error falls
faster than geometrically once $m$ exceeds $\sqrt{\lambda_{\max} t/P}$ (Hochbruck &
Lubich 1997). One basis serves every time. The basis is kept orthogonal by full
re-orthogonalization (twice, against every earlier vector), so the projection is exact to
round-off rather than only in exact arithmetic.

**Stopping.** Every `check_every` steps the approximations at the *largest* requested time
(the hardest: the polynomial degree needed grows with $t$) are compared with those of the
previous check; the loop stops when the change is below `tol` — the decayed residual
relative to $\lVert r_0\rVert$, the growth vector relative to itself (the test predictions
are its image under $\Theta_*$). A basis that reaches `max_size` without
converging is flagged, and the caller falls back to the eigendecomposition.

**All times at once under `vmap`.** `ClosedForm` evaluates `closed_form(t, state0)` under
`jax.vmap` over the saved times. `batch_max` is the identity on one time and, under
`vmap`, the largest time of the batch as an *unbatched* value — so the Lanczos loop,
which depends on it but not on the individual times, runs once for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jaxtyping import Array, Bool, Float, Int

__all__ = ["KrylovBasis", "batch_max", "lanczos", "rayleigh_estimate", "top_eigenvalue", "weighted"]


@jax.custom_batching.custom_vmap
def _batch_max(x):
    return x


@_batch_max.def_vmap
def _batch_max_rule(axis_size, in_batched, x):
    (batched,) = in_batched
    return (jnp.max(x, axis=0) if batched else x), False


def batch_max(x: Array) -> Array:
    """`x` itself; under `jax.vmap` over `x`, the maximum over the batch, unbatched. Not
    differentiated (a stopping criterion)."""
    return _batch_max(jax.lax.stop_gradient(x))


class KrylovBasis(NamedTuple):
    r"""A Lanczos basis of $\Theta$ from $r_0$, ready to apply functions of $\Theta$:
    $f(\Theta) r_0 \approx$ `QS @ weighted(f(ritz), w)` and $B f(\Theta) r_0 \approx$
    `ZS @ weighted(f(ritz), w)`. Padding columns (past `size`) carry zero weight."""

    QS: Float[Array, "N m"]  # Q_m S: the Ritz vectors
    ZS: Float[Array, "M m"]  # B Q_m S: their images under the observed map
    ritz: Float[Array, " m"]  # eigenvalues of T_m (the Ritz values)
    w: Float[Array, " m"]  # |r0| S[0, :]: r0 in the Ritz basis
    size: Int[Array, ""]
    converged: Bool[Array, ""]


def _ritz(alpha: np.ndarray, beta: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of the leading `size` block of the tridiagonal $T_m$
    (diagonal `alpha`, off-diagonal `beta`), embedded in `m`×`m`: the padding has Ritz value
    0 and unit eigenvectors outside the block (first component 0: no weight). On the host,
    by LAPACK's MRRR (`scipy.linalg.eigh_tridiagonal`): O(m²), no threaded BLAS — XLA's
    dense `eigh` goes through divide-and-conquer with threaded BLAS, which stalls for ~0.8 s
    per call when the cores are busy (measured on a 2-core machine under load)."""
    m = alpha.shape[0]
    ritz, vecs = np.zeros(m, alpha.dtype), np.eye(m, dtype=alpha.dtype)
    if size == 1:
        ritz[0] = alpha[0]
    else:
        ritz[:size], vecs[:size, :size] = scipy.linalg.eigh_tridiagonal(alpha[:size], beta[: size - 1])
    return ritz, vecs


def weighted(f: Array, w: Array, xp=jnp) -> Array:
    """`f * w`, zero where the weight is (the padding, where `f` may overflow)."""
    return xp.where(w == 0, 0.0, f * w)


def _host_coefficients(host_factors, alpha, beta, size, beta0, params):
    """Ritz values, vectors, the weights |r0| S[0, :] and S f(ritz) w for each function."""
    ritz, S = _ritz(np.asarray(alpha), np.asarray(beta), int(size))
    w = np.asarray(beta0) * S[0, :]
    with np.errstate(all="ignore"):  # numpy evaluates both sides of a where
        fs = host_factors(ritz, *(np.asarray(p) for p in params))
        return ritz, S, w, [S @ weighted(f, w, np) for f in fs]


def lanczos(
    matvec: Callable[[Array], Array],
    r0: Float[Array, " N"],
    observe: Callable[[Array], Array],
    host_factors: Callable[..., tuple[np.ndarray, np.ndarray]],
    params: tuple[Array, ...],
    *,
    max_size: int,
    tol: float,
    check_every: int = 8,
) -> KrylovBasis:
    r"""Lanczos from `r0` until the two functions `host_factors(ritz, *params)` (numpy, e.g.
    the decay and the growth at the largest time) applied to `r0`,
    $\lVert r_0\rVert Q f(T) e_1$, change by less than `tol` between checks — the first
    relative to $\lVert r_0\rVert$, the second relative to itself. `matvec(v)` $= \Theta v$;
    `observe(M)` $= B M$ for the observed images of the Ritz vectors (applied once, at the
    end). The small tridiagonal problems and the stopping test run on the host, so the
    compiled loop is only the matrix-vector products."""
    N = r0.shape[0]
    m = max_size
    dtype = r0.dtype
    beta0 = jnp.linalg.norm(r0)
    safe0 = jnp.where(beta0 > 0, beta0, 1.0)
    tiny = jnp.finfo(dtype).eps
    vec_m = jax.ShapeDtypeStruct((m,), dtype)

    def host_check(alpha, beta, size, beta0, decay0, growth0, breakdown, *params):
        _, _, _, (decay, growth) = _host_coefficients(host_factors, alpha, beta, size, beta0, params)
        err_decay = np.linalg.norm(decay - decay0) / (float(beta0) or 1.0)
        err_growth = np.linalg.norm(growth - growth0) / max(np.linalg.norm(growth), float(tiny))
        ok = bool(breakdown) or (err_decay <= tol and err_growth <= tol)
        return decay.astype(dtype), growth.astype(dtype), np.asarray(ok)

    def body(c):
        j, Q = c["j"], c["Q"]
        q = Q[:, j]
        v = matvec(q)
        alpha = c["alpha"].at[j].set(q @ v)
        v = v - Q @ (Q.T @ v)  # full re-orthogonalization, twice ("twice is enough")
        v = v - Q @ (Q.T @ v)
        b = jnp.linalg.norm(v)
        breakdown = b <= 100 * tiny * jnp.max(jnp.abs(alpha))  # an invariant subspace: exact
        beta = c["beta"].at[j].set(jnp.where(breakdown, 0.0, b))
        # Q has a spare last column, so that the write after the last step lands outside
        new = jnp.where(breakdown, 0.0, v / jnp.where(b > 0, b, 1.0))
        Q = jax.lax.dynamic_update_slice(Q, new[:, None], (0, j + 1))
        size = j + 1
        decay, growth, ok = jax.lax.cond(
            (size % check_every == 0) | (size == m) | breakdown,
            lambda: jax.pure_callback(
                host_check,
                (vec_m, vec_m, jax.ShapeDtypeStruct((), bool)),
                alpha, beta, size, beta0, c["decay"], c["growth"], breakdown, *params,
                vmap_method="sequential",
            ),
            lambda: (c["decay"], c["growth"], jnp.asarray(False)),
        )  # fmt: skip
        return {"j": size, "Q": Q, "alpha": alpha, "beta": beta, "decay": decay, "growth": growth,
                "converged": ok, "done": ok | (size >= m)}  # fmt: skip

    zeros_m = jnp.zeros(m, dtype)
    init = {
        "j": jnp.asarray(0),
        "Q": jnp.zeros((N, m + 1), dtype).at[:, 0].set(r0 / safe0),
        "alpha": zeros_m,
        "beta": zeros_m,
        "decay": zeros_m,
        "growth": zeros_m,
        "converged": jnp.asarray(False),
        "done": beta0 == 0,
    }
    out = jax.lax.while_loop(lambda c: ~c["done"], body, init)
    size = jnp.where(beta0 == 0, 1, out["j"])

    def host_final(alpha, beta, size, beta0):
        ritz, S, w, _ = _host_coefficients(lambda r: (), alpha, beta, size, beta0, ())
        return ritz.astype(dtype), S.astype(dtype), w.astype(dtype)

    ritz, S, w = jax.pure_callback(
        host_final,
        (vec_m, jax.ShapeDtypeStruct((m, m), dtype), vec_m),
        out["alpha"],
        out["beta"],
        size,
        beta0,
        vmap_method="sequential",
    )
    QS = out["Q"][:, :m] @ S
    return KrylovBasis(QS, observe(QS), ritz, w, size, out["converged"] | (beta0 == 0))


def top_eigenvalue(matvec: Callable[[Array], Array], n: int, dtype, *, max_size: int, tol: float) -> Array:
    r"""$\lambda_{\max}$ of a symmetric PSD matrix by Lanczos from a fixed vector (ones plus a
    deterministic ripple, so that it is not orthogonal to the top eigenvector), until the top
    Ritz pair changes by less than `tol` relative between checks."""
    start = jnp.ones(n, dtype) + 0.1 * jnp.sin(jnp.arange(n, dtype=dtype))

    def top(ritz):
        f = np.where(ritz == np.max(ritz), ritz, 0.0)
        return f, f

    basis = lanczos(matvec, start, lambda M: M[:0], top, (), max_size=max_size, tol=tol)
    return jnp.max(basis.ritz)


def rayleigh_estimate(mat: Float[Array, "N N"], steps: int = 6) -> Array:
    r"""A lower bound on $\lambda_{\max}$ of a symmetric PSD matrix, close to it when the top
    eigenvalue is separated: the Rayleigh quotient after `steps` power iterations from a fixed
    vector (unrolled: no loop to compile)."""
    v = jnp.ones(mat.shape[0], mat.dtype) + 0.1 * jnp.sin(jnp.arange(mat.shape[0], dtype=mat.dtype))
    for _ in range(steps):
        v = mat @ (v / jnp.linalg.norm(v))
    v = v / jnp.linalg.norm(v)
    return v @ (mat @ v)
