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

**On the host.** The recurrence runs in numpy (float64) inside one `jax.pure_callback`:
a compiled loop of matrix-vector products took 0.3 s to compile per call site (and a
`solve` has two), while numpy's BLAS does the 30–60 products of a typical basis in
milliseconds at P = 1536; the small tridiagonal eigenproblems go to LAPACK's MRRR
(`scipy.linalg.eigh_tridiagonal`, O(m²), no threaded BLAS: XLA's dense `eigh` goes through
divide-and-conquer with threaded BLAS, which stalled for ~0.8 s per call on a busy 2-core
machine). On an accelerator the kernel is copied to the host for it (the eigendecomposition
path stays on the device), and the basis is not differentiable with respect to the kernel
or the start residual (use the eigendecomposition for such gradients).

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
    r"""Lanczos bases of $\Theta$ from the columns of $r_0$ (leading axis: the column),
    ready to apply functions of $\Theta$: $f(\Theta) r_0 \approx$ `QS @ weighted(f(ritz), w)`
    and $B f(\Theta) r_0 \approx$ `ZS @ weighted(f(ritz), w)`, per column. Columns of the
    basis past `size` are padding, with zero weight."""

    QS: Float[Array, "c N m"]  # Q_m S: the Ritz vectors
    ZS: Float[Array, "c M m"]  # B Q_m S: their images under the observed map
    ritz: Float[Array, "c m"]  # eigenvalues of T_m (the Ritz values)
    w: Float[Array, "c m"]  # |r0| S[0, :]: r0 in the Ritz basis
    size: Int[Array, " c"]
    converged: Bool[Array, " c"]


def weighted(f: Array, w: Array, xp=jnp) -> Array:
    """`f * w`, zero where the weight is (the padding, where `f` may overflow)."""
    return xp.where(w == 0, 0.0, f * w)


def _ritz(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of the tridiagonal with diagonal `alpha`, off-diagonal
    `beta` (LAPACK's MRRR)."""
    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    import scipy.linalg  # on first use: 0.1 s to import

    return scipy.linalg.eigh_tridiagonal(alpha, beta)


def _lanczos_column(mat, r0, factors, m_max, tol, check_every):
    """One Lanczos basis in numpy: (Q S, Ritz values, weights, size, converged)."""
    N = len(r0)
    beta0 = float(np.linalg.norm(r0))
    if beta0 == 0:
        return np.zeros((N, 1)), np.zeros(1), np.zeros(1), 1, True
    Q = np.zeros((N, m_max))
    Q[:, 0] = r0 / beta0
    alpha, beta = np.zeros(m_max), np.zeros(m_max)
    eps = np.finfo(np.float64).eps
    previous, converged, size = None, False, m_max
    for j in range(m_max):
        v = mat @ Q[:, j]
        alpha[j] = Q[:, j] @ v
        basis = Q[:, : j + 1]
        v -= basis @ (basis.T @ v)  # full re-orthogonalization, twice ("twice is enough")
        v -= basis @ (basis.T @ v)
        b = float(np.linalg.norm(v))
        if b <= 100 * eps * np.max(np.abs(alpha[: j + 1])):  # an invariant subspace: exact
            size, converged = j + 1, True
            break
        beta[j] = b
        if (j + 1) % check_every == 0 or j + 1 == m_max:
            ritz, S = _ritz(alpha[: j + 1], beta[:j])
            w = beta0 * S[0]
            decay, growth = (S @ weighted(f, w, np) for f in factors(ritz))
            if previous is not None:
                d0, g0 = (np.pad(p, (0, j + 1 - len(p))) for p in previous)
                err_decay = np.linalg.norm(decay - d0) / beta0
                err_growth = np.linalg.norm(growth - g0) / max(np.linalg.norm(growth), eps)
                if err_decay <= tol and err_growth <= tol:
                    size, converged = j + 1, True
                    break
            previous = (decay, growth)
        if j + 1 < m_max:
            Q[:, j + 1] = v / b
    ritz, S = _ritz(alpha[:size], beta[: size - 1])
    if ritz[0] < -np.sqrt(eps) * max(ritz[-1], 0.0):  # Ritz values lie inside the spectrum
        raise ValueError(
            f"Linearized: the kernel is not positive semi-definite (Lanczos found an eigenvalue <= "
            f"{ritz[0]:.3g}, largest >= {ritz[-1]:.3g}); an NTK is PSD, so check how it was computed."
        )
    return Q[:, :size] @ S, ritz, beta0 * S[0], size, converged


def lanczos(
    mat: Float[Array, "N N"],
    r0: Float[Array, "N c"],
    observed: Float[Array, "M N"],
    host_factors: Callable[..., tuple[np.ndarray, np.ndarray]],
    params: tuple[Array, ...],
    *,
    max_size: int,
    tol: float,
    check_every: int = 8,
) -> KrylovBasis:
    r"""A Lanczos basis of the symmetric `mat` from each column of `r0`, grown until the two
    functions `host_factors(ritz, *params)` (numpy; e.g. the decay and the growth at the
    largest time) applied to the column, $\lVert r_0\rVert Q f(T) e_1$, change by less than
    `tol` between checks every `check_every` steps — the first relative to
    $\lVert r_0\rVert$, the second relative to itself — or until `max_size` steps (then
    `converged` is False). `observed` is $B$ (e.g. $\Theta_*$). On the host (module docs);
    padded to `max_size` columns."""
    N, c = r0.shape
    M, m = observed.shape[0], max_size
    dtype = r0.dtype

    def host(mat, r0, observed, *params):
        mat, r0, observed = (np.asarray(a, np.float64) for a in (mat, r0, observed))
        params = [np.asarray(p, np.float64) for p in params]
        out = {k: [] for k in ("QS", "ZS", "ritz", "w", "size", "converged")}
        for i in range(c):
            with np.errstate(all="ignore"):  # numpy evaluates both sides of a where
                QS, ritz, w, size, ok = _lanczos_column(
                    mat, r0[:, i], lambda x: host_factors(x, *params), m, tol, check_every
                )
            pad = m - QS.shape[1]
            out["QS"].append(np.pad(QS, ((0, 0), (0, pad))))
            out["ZS"].append(np.pad(observed @ QS, ((0, 0), (0, pad))))
            out["ritz"].append(np.pad(ritz, (0, pad)))
            out["w"].append(np.pad(w, (0, pad)))
            out["size"].append(size)
            out["converged"].append(ok)
        return KrylovBasis(
            *(np.asarray(out[k], dtype) for k in ("QS", "ZS", "ritz", "w")),
            np.asarray(out["size"], np.int32),
            np.asarray(out["converged"], bool),
        )

    shapes = KrylovBasis(
        jax.ShapeDtypeStruct((c, N, m), dtype),
        jax.ShapeDtypeStruct((c, M, m), dtype),
        jax.ShapeDtypeStruct((c, m), dtype),
        jax.ShapeDtypeStruct((c, m), dtype),
        jax.ShapeDtypeStruct((c,), np.int32),
        jax.ShapeDtypeStruct((c,), bool),
    )
    return jax.pure_callback(host, shapes, mat, r0, observed, *params, vmap_method="sequential")


def top_eigenvalue(mat: Float[Array, "N N"], *, tol: float = 1e-14) -> Array:
    r"""$\lambda_{\max}$ of a symmetric matrix, on the host: ARPACK's implicitly restarted
    Lanczos (`scipy.sparse.linalg.eigsh`) to `tol`, or the dense eigenvalues for small ones."""

    def host(a):
        import scipy.sparse.linalg  # on first use

        a = np.asarray(a, np.float64)
        if a.shape[0] <= 64:
            return np.asarray(np.linalg.eigvalsh(a)[-1], mat.dtype)
        start = np.ones(a.shape[0]) + 0.1 * np.sin(np.arange(a.shape[0]))
        return np.asarray(scipy.sparse.linalg.eigsh(a, k=1, which="LA", tol=tol, v0=start)[0][0], mat.dtype)

    return jax.pure_callback(host, jax.ShapeDtypeStruct((), mat.dtype), mat, vmap_method="sequential")


def rayleigh_estimate(mat: Float[Array, "N N"], steps: int = 6) -> Array:
    r"""A lower bound on $\lambda_{\max}$ of a symmetric PSD matrix, close to it when the top
    eigenvalue is separated: the Rayleigh quotient after `steps` power iterations from a fixed
    vector (unrolled: no loop to compile)."""
    v = jnp.ones(mat.shape[0], mat.dtype) + 0.1 * jnp.sin(jnp.arange(mat.shape[0], dtype=mat.dtype))
    for _ in range(steps):
        v = mat @ (v / jnp.linalg.norm(v))
    v = v / jnp.linalg.norm(v)
    return v @ (mat @ v)
