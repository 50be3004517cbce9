r"""The first-order (O(1/n)) closed form of the kernel's motion (Dyer & Gur-Ari 2019), in
our normalization, for gradient flow and for the gradient-descent map.

With $L = \frac1{2P}\sum r^2$ the hierarchy (see `TangentHierarchy`) reads
$\dot\Theta = -\frac1P O_3\cdot r$, $\dot O_3 = -\frac1P O_4\cdot r$, and $O_3, O_4 = O(1/n)$
for one realization in the NTK parameterization. To first order in $(O_3, O_4)$ the residual
in these equations is the kernel one, $r(s) = \sum_i c_i e^{-\lambda_i s/P} e_i$ with
$\Theta_0 = \sum_i \lambda_i e_i e_i^\top$ (training block), $c_i = e_i\cdot r_0$, and
$R(s) = \int_0^s r = \sum_l c_l\,P\frac{1 - e^{-\lambda_l s/P}}{\lambda_l}\,e_l$. Then
$\Theta(t) = \Theta_0 + \Theta^{(1)}(t) + O(n^{-2})$ with

$$\Theta^{(1)}(t) = -\sum_i O_3[e_i]\,c_i\,\frac{1 - e^{-\lambda_i t/P}}{\lambda_i}
 + \sum_{i,l} O_4[e_i, e_l]\,c_i c_l\,\frac1{\lambda_l}\Big[\frac{1 - e^{-\lambda_i t/P}}{\lambda_i}
 - \frac{1 - e^{-(\lambda_i+\lambda_l)t/P}}{\lambda_i + \lambda_l}\Big],$$

where $O_3[e]_{ac} = \sum_d O_{3,acd}\,e_d$ and $O_4[e, e']_{ac} = \sum_{d,e} O_{4,acde}\,e_d e'_e$:
the *first* slot of $O_4$ is the residual's, the second (the derivative direction) the
integrated residual's ($1/\lambda_l$ goes with it). This is Dyer & Gur-Ari's form with their
time $t$ replaced by $t/P$ (their loss has no $1/P$).

**GD map.** Gradient descent at step $\eta$ has $r_j = \sum_i c_i q_i^j e_i$,
$q_i = 1 - \eta\lambda_i/P$, $R_k = \eta\sum_{j<k} r_j$, and the kernel's exact increment
$\Theta(\theta_{j+1}) - \Theta(\theta_j) = -\frac\eta P O_3(\theta_j) r_j
+ \frac{\eta^2}{2P^2} Q_4[r_j, r_j] + \dots$ with $Q_{4,acde} = D^2\Theta_{ac}[\nabla f_d, \nabla f_e]$
(the part of $O_4$ that a discrete step sees twice). With $S_k(q) = \sum_{j<k} q^j =
\frac{1 - q^k}{1 - q}$:

$$\Theta^{(1)}_k = -\tfrac1P O_3[R_k] + \sum_{i,l} c_i c_l\Big(\frac{\eta}{P\lambda_l}
  O_4[e_i, e_l]\big[S_k(q_i) - S_k(q_i q_l)\big] + \frac{\eta^2}{2P^2} Q_4[e_i, e_l]\,S_k(q_i q_l)\Big).$$

As $\eta \to 0$ at $t = \eta k$ it tends to the flow's. The tensors come as dense arrays
(`dense_tensors`), so this is for small $P$; it needs $\Theta_0 \succ 0$ on the training
points.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

__all__ = ["hierarchy_tensors", "kernel_correction"]


@eqx.filter_jit
def hierarchy_tensors(apply_fn: Callable, params: PyTree, x_all: Array, x_train: Array) -> tuple[Array, ...]:
    r"""$\Theta(Z, X)$, $O_3$, $O_4$, $Q_4$ at `params`, outputs flattened, built from kernel jets
    along the training gradients $u(v) = J^\top v$ of the basis vectors $v$ (no $n_\theta^2$
    array: memory $O(P^2 M n_\theta)$, for small $P$ at any width):
    $O_3[v] = D\Theta[u(v)]$, $O_4[v, w] = D\big(\theta \mapsto D\Theta(\theta)[u_\theta(v)]\big)[u(w)]$,
    $Q_4[v, w] = D^2\Theta[u(v), u(w)]$. Same values as `dense_tensors(..., upto=5)`."""

    def jac(p, x):
        j = jax.jacrev(lambda q: apply_fn(q, x).reshape(-1))(p)
        return jnp.concatenate([leaf.reshape(j_len(x), -1) for leaf in jax.tree.leaves(j)], axis=1)

    def j_len(x):
        return jax.eval_shape(lambda: apply_fn(params, x)).size

    def kernel(p):
        return jac(p, x_all) @ jac(p, x_train).T

    def grad(p, v):
        _, vjp = jax.vjp(lambda q: apply_fn(q, x_train).reshape(-1), p)
        return vjp(v)[0]

    def d_kernel(p, v):  # D Θ(p)[u_p(v)]
        return jax.jvp(kernel, (p,), (grad(p, v),))[1]

    theta = kernel(params)
    n = theta.shape[1]
    eye = jnp.eye(n, dtype=theta.dtype)
    o3 = jax.vmap(lambda v: d_kernel(params, v), out_axes=2)(eye)

    def o4_vw(v, w):
        return jax.jvp(lambda p: d_kernel(p, v), (params,), (grad(params, w),))[1]

    def q4_vw(v, w):
        uw = grad(params, w)
        return jax.jvp(lambda p: jax.jvp(kernel, (p,), (grad(params, v),))[1], (params,), (uw,))[1]

    pairs = jax.vmap(lambda v: jax.vmap(lambda w: (o4_vw(v, w), q4_vw(v, w)))(eye))(eye)  # (n, n, M, N)
    o4, q4 = (jnp.moveaxis(a, (0, 1), (2, 3)) for a in pairs)
    return theta, o3, o4, q4


def _check(theta0, o3, o4, r0, q4):
    N = r0.shape[0]
    if theta0.shape[1:] != (N,) or theta0.shape[0] < N:
        raise ValueError(
            f"kernel_correction: `theta0` must be (M, N) with N = len(r0) = {N}, got {theta0.shape}."
        )
    M = theta0.shape[0]
    if o3.shape != (M, N, N) or o4.shape != (M, N, N, N):
        raise ValueError(
            f"kernel_correction: `o3` must be {(M, N, N)} and `o4` {(M, N, N, N)}, got {o3.shape} and {o4.shape}."
        )
    if q4 is not None and q4.shape != (M, N, N, N):
        raise ValueError(f"kernel_correction: `q4` must be {(M, N, N, N)}, got {q4.shape}.")


def kernel_correction(
    theta0: Float[Array, "M N"],
    o3: Float[Array, "M N N"],
    o4: Float[Array, "M N N N"],
    r0: Float[Array, " N"],
    t: ArrayLike,
    *,
    n_train: int,
    lr: float | None = None,
    q4: Float[Array, "M N N N"] | None = None,
) -> Float[Array, "T M N"]:
    r"""$\Theta^{(1)}$ at flow times `t` (flow), or after `t / lr` GD steps (`lr` given; then
    `q4` is required), rows of `theta0` over any points, columns (and the first $N$ rows)
    over the training outputs, flattened. `n_train` is $P$ (the loss's $1/P$).

    **Returns:** an array `(len(t), M, N)`.
    """
    theta0, o3, o4, r0 = (jnp.asarray(a) for a in (theta0, o3, o4, r0))
    _check(theta0, o3, o4, r0, q4)
    N = r0.shape[0]
    lam, vec = jnp.linalg.eigh(0.5 * (theta0[:N] + theta0[:N].T))
    c = vec.T @ r0
    P = n_train
    o3e = jnp.einsum("acd,di->aci", o3, vec)
    o4e = jnp.einsum("acde,di,el->acil", o4, vec, vec)
    t = jnp.atleast_1d(jnp.asarray(t, dtype=theta0.dtype))
    cc = c[:, None] * c[None, :]
    if lr is None:
        gi = -jnp.expm1(-lam[None, :] * t[:, None] / P) / lam  # (T, N): (1 - e^{-λ t/P})/λ
        pair = lam[:, None] + lam[None, :]
        gil = -jnp.expm1(-pair[None] * t[:, None, None] / P) / pair  # (T, N, N)
        w = (gi[:, :, None] - gil) / lam[None, None, :]
        first = -jnp.einsum("aci,ti->tac", o3e, c * gi)
        return first + jnp.einsum("acil,til->tac", o4e, cc * w)
    if q4 is None:
        raise ValueError(
            "kernel_correction: the GD map (`lr` given) needs `q4` (dense_tensors(..., upto=5))."
        )
    q4e = jnp.einsum("acde,di,el->acil", jnp.asarray(q4), vec, vec)
    k = jnp.round(t / lr)
    q = 1 - lr * lam / P
    qq = q[:, None] * q[None, :]

    def S(qv, kk):  # Σ_{j<k} q^j
        return jnp.where(
            jnp.abs(1 - qv) > 1e-14, (1 - qv**kk) / jnp.where(jnp.abs(1 - qv) > 1e-14, 1 - qv, 1.0), kk
        )

    Si = S(q[None, :], k[:, None])  # (T, N)
    Sil = S(qq[None], k[:, None, None])  # (T, N, N)
    Rk = c * P * (1 - q[None, :] ** k[:, None]) / lam  # (T, N), eigencoordinates of R_k
    first = -jnp.einsum("aci,ti->tac", o3e, Rk) / P
    w4 = lr / (P * lam[None, None, :]) * (Si[:, :, None] - Sil)
    w2 = lr**2 / (2 * P**2) * Sil
    return first + jnp.einsum("acil,til->tac", o4e, cc * w4) + jnp.einsum("acil,til->tac", q4e, cc * w2)
