r"""Top Hessian eigenpairs from Hessian-vector products (Lanczos), and sharpness.

Everything here is matrix-free: the Hessian of a loss $L(\theta)$ is only touched
through $v \mapsto \nabla^2 L(\theta)\,v$ (forward-over-reverse autodiff), so the cost
of one product is a small multiple of one gradient and the memory is
`iters` vectors of the parameter size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree, Scalar

__all__ = ["hvp", "lanczos", "hessian_eigenpairs", "sharpness"]


def hvp(loss: Callable[[PyTree], Scalar], state: PyTree, v: PyTree) -> PyTree:
    r"""$\nabla^2 L(\theta)\, v$ by forward-over-reverse differentiation."""
    return jax.jvp(jax.grad(loss), (state,), (v,))[1]


def lanczos(
    matvec: Callable[[Float[Array, " n"]], Float[Array, " n"]],
    v0: Float[Array, " n"] | Float[Array, "b n"],
    iters: int,
    *,
    key: Any = None,
) -> tuple[Float[Array, " m"], Float[Array, "m n"]]:
    r"""Ritz pairs of a symmetric operator from an `iters`-dimensional Krylov space.

    The basis $V = [v_1 \dots v_m]$ of $\{v_0, A v_0, \dots\}$ — or, for a block start
    $V_0$ of $b$ vectors, of $\{V_0, A V_0, A^2 V_0, \dots\}$ (block Lanczos, built one
    vector at a time) — is built with full re-orthogonalization (classical
    Gram–Schmidt, twice), and the Ritz values are the eigenvalues of the projected
    matrix $V^\top A V$ formed from the stored products (no tridiagonal round-off is
    assumed). If the Krylov space becomes invariant (a zero residual), the process
    continues with a random vector orthogonal to $V$.

    Extremal eigenvalues converge first; with `iters` equal to the dimension the
    result is exact up to round-off. A block start close to the top eigenvectors (a
    warm start) needs only a few products. Fixed trip count: jit-, vmap- and
    grad-compatible. Exactly `iters` products of `matvec`.

    **Arguments:**

    - `matvec`: $v \mapsto A v$ for a symmetric $A$ acting on flat vectors.
    - `v0`: the start vector `(n,)`, or a start block `(b, n)` of linearly independent
      rows (need not be orthonormal).
    - `iters`: the Krylov dimension $m$ (static, $b \le m \le n$).
    - `key`: seeds the restart vector (default `jax.random.key(0)`).

    **Returns:** `(values, vectors)`: the $m$ Ritz values in *descending* order and
    the Ritz vectors as the rows of an `(m, n)` array.
    """
    block = v0[None] if v0.ndim == 1 else v0
    b, n = block.shape
    if not b <= iters <= n:
        raise ValueError(
            f"lanczos: `iters` must be between the block size {b} and the dimension {n}, got {iters}."
        )
    key = jax.random.key(0) if key is None else key
    dtype = v0.dtype
    restart = jax.random.normal(key, (n,), dtype)
    q, _ = jnp.linalg.qr(block.T)  # orthonormal start block, (n, b)
    # b spare rows, so every iteration writes its new vector in place (no select of V)
    V = jnp.zeros((iters + b, n), dtype).at[:b].set(q.T)
    AV = jnp.zeros((iters, n), dtype)

    def orthogonalize(w, V):  # the spare rows are zero until written, so they do not matter
        w = w - V.T @ (V @ w)
        return w - V.T @ (V @ w)

    def body(j, carry):
        V, AV = carry
        av = matvec(V[j])
        AV = AV.at[j].set(av)
        w = orthogonalize(av, V)
        bnorm = jnp.linalg.norm(w)
        scale = jnp.linalg.norm(av) + jnp.finfo(dtype).tiny
        invariant = bnorm <= 1e3 * jnp.finfo(dtype).eps * scale
        w = jnp.where(invariant, orthogonalize(jnp.roll(restart, j), V), w)
        nrm = jnp.linalg.norm(w)
        w = w / jnp.where(nrm > 0, nrm, 1.0)
        return V.at[j + b].set(w), AV

    V, AV = jax.lax.fori_loop(0, iters, body, (V, AV))
    V = V[:iters]
    T = V @ AV.T
    T = 0.5 * (T + T.T)
    vals, vecs = jnp.linalg.eigh(T)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    return vals, vecs.T @ V


def check_k(k: int, n: int, who: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{who}: `k` must be a positive int, got {k!r}.")
    if k > n:
        raise ValueError(
            f"{who}: asked for the top {k} Hessian eigenpairs but the state has only {n} "
            "parameters; lower `k`."
        )


def default_iters(k: int, n: int) -> int:
    """The Krylov dimension used when none is given: `min(n, 2k + 40)`."""
    return min(n, 2 * k + 40)


def hessian_eigenpairs(
    loss: Callable[[PyTree], Scalar],
    state: PyTree,
    k: int = 1,
    *,
    iters: int | None = None,
    v0: PyTree | None = None,
    key: Any = None,
) -> tuple[Float[Array, " k"], PyTree]:
    r"""The top-`k` (largest, algebraically) eigenpairs of $\nabla^2 L$ at `state`.

    Matrix-free Lanczos (`lanczos`) on Hessian-vector products of `loss`.

    **Arguments:**

    - `loss`: a scalar function of the state pytree.
    - `state`: where the Hessian is taken.
    - `k`: how many eigenpairs (`1 <= k <=` number of parameters).
    - `iters`: Krylov dimension (default `min(n, 2k + 40)`); more iterations, more
      accuracy for clustered spectra.
    - `v0`: a start vector (pytree like `state`) to warm-start from, e.g. the top
      eigenvector at a nearby state. Default: a fixed random vector from `key`.
    - `key`: default `jax.random.key(0)`: same key, same numbers.

    **Returns:** `(eigenvalues, eigenvectors)`: eigenvalues `(k,)` in descending order;
    eigenvectors a pytree like `state` with a leading axis of size `k` (unit norm over
    all leaves together).
    """
    flat, unravel = ravel_pytree(state)
    n = flat.shape[0]
    check_k(k, n, "hessian_eigenpairs")
    iters = default_iters(k, n) if iters is None else iters
    if not k <= iters <= n:
        raise ValueError(f"hessian_eigenpairs: `iters` must be between k={k} and n={n}, got {iters}.")
    start = None if v0 is None else ravel_pytree(v0)[0].astype(flat.dtype)
    vals, vecs = flat_hessian_ritz(lambda x: loss(unravel(x)), flat, iters, start=start, key=key)
    return vals[:k], jax.vmap(unravel)(vecs[:k])


def flat_hessian_ritz(
    flat_loss: Callable[[Float[Array, " n"]], Scalar],
    flat: Float[Array, " n"],
    iters: int,
    *,
    start: Float[Array, " n"] | None = None,
    key: Any = None,
) -> tuple[Float[Array, " m"], Float[Array, "m n"]]:
    """All `iters` Ritz pairs (descending) of the Hessian of `flat_loss` at `flat`,
    from `start` or a random start vector drawn from `key` (default `key(0)`)."""
    key = jax.random.key(0) if key is None else key
    k_start, key = jax.random.split(key)
    if start is None:
        start = jax.random.normal(k_start, flat.shape, flat.dtype)
    matvec = lambda v: jax.jvp(jax.grad(flat_loss), (flat,), (v,))[1]
    return lanczos(matvec, start, iters, key=key)


def sharpness(
    loss: Callable[[PyTree], Scalar], state: PyTree, *, iters: int | None = None, key: Any = None
) -> Scalar:
    r"""$S(\theta) = \lambda_{\max}(\nabla^2 L(\theta))$, by Lanczos (see `hessian_eigenpairs`)."""
    return hessian_eigenpairs(loss, state, 1, iters=iters, key=key)[0][0]
