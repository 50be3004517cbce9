r"""The first-order 1/n recursion for a pair of inputs: mean and covariance of the 2×2 NTK
$\Theta(x_\alpha, x_\beta)$ and of the metric $\hat G_{\alpha\beta}$ (derivation: `_pdlt` module
docs, here with ordered index pairs).

With $z_k \in \mathbb R^2$ the pre-activations of neuron $k$ at the two inputs, $\phi_\alpha = \phi(z_\alpha)$,
$A_{\alpha\beta} = D_\alpha\Theta_{\alpha\beta}D_\beta$ (the $n\times n$ block of the pair), the
conditional state of a layer is $\hat G_{\alpha\beta}$, $T_{\alpha\beta}$,
$Q_{\alpha\beta,\gamma\delta} = \sigma_w^4\operatorname{tr}(A_{\alpha\beta}A_{\gamma\delta}^\top)/n^2
= \mathbb E[\Theta_{km}(\alpha\beta)\Theta_{km}(\gamma\delta)]$ ($k \ne m$) and
$R_{\alpha\beta;\gamma\delta} = \sigma_w^4\,\phi_\gamma^\top A_{\alpha\beta}\phi_\delta/n^2$. Gaussian
integration by parts in $\zeta_k$ (the projection of row $k$ on the span of $\phi_1, \phi_2$) gives
$\mathbb E[g(z_k)(\Theta_{kk}(\alpha\beta) - T_{\alpha\beta})] = \sum_{\gamma\delta}\langle\partial_\gamma\partial_\delta g\rangle R_{\alpha\beta;\gamma\delta}$
and $\mathbb E[g(z_k)h(z_m)\Theta_{km}(\alpha\beta)] = \sum_{\varepsilon\eta}\langle\partial_\varepsilon g\rangle\langle\partial_\eta h\rangle R_{\alpha\beta;\varepsilon\eta}$;
$K$-derivatives are $\partial\langle g\rangle/\partial K_{\gamma\delta} = \tfrac12\langle\partial_\gamma\partial_\delta g\rangle$
(ordered entries). Then, to first order ($\lambda = \lambda_W$, $n = n_l$):

- $\delta\hat G' = \sigma_w^2\,\partial_K e\cdot\delta\hat G$,
  $\delta T'_{\alpha\beta} = (\lambda\,\partial_K e_{\alpha\beta} + \sigma_w^2\Theta_{\alpha\beta}\partial_K p_{\alpha\beta})\cdot\delta\hat G + \sigma_w^2 p_{\alpha\beta}\delta T_{\alpha\beta}$, plus
  the noise of the neuron average (covariances of $\sigma_w^2\phi_\alpha\phi_\beta$ and
  $\lambda\phi_\alpha\phi_\beta + \sigma_w^2\phi'_\alpha\phi'_\beta\Theta_{\alpha\beta}$, over $n$);
- mean shifts as in the diagonal case, with $\sum_{\gamma\delta}\langle\partial_\gamma\partial_\delta(\phi'_\alpha\phi'_\beta)\rangle R_{\alpha\beta;\gamma\delta}$;
- $Q' = \sigma_w^4(\langle\phi'_\alpha\phi'_\beta\phi'_\gamma\phi'_\delta\rangle\Theta_{\alpha\beta}\Theta_{\gamma\delta}/n + \langle\phi'_\alpha\phi'_\gamma\rangle\langle\phi'_\beta\phi'_\delta\rangle Q)$,
  $R'_{\alpha\beta;\gamma\delta} = \sigma_w^4(\langle\phi_\gamma\phi'_\alpha\phi'_\beta\phi_\delta\rangle\Theta_{\alpha\beta}/n
  + \sum_{\varepsilon\eta}\langle\partial_\varepsilon(\phi_\gamma\phi'_\alpha)\rangle\langle\partial_\eta(\phi_\delta\phi'_\beta)\rangle R_{\alpha\beta;\varepsilon\eta})$;
- output: $\operatorname{Cov}(\Theta_{\alpha\beta}, \Theta_{\gamma\delta}) = \Sigma^{TT} + Q_{\alpha\beta,\gamma\delta} + Q_{\alpha\beta,\delta\gamma}$.

Derivatives in $z$ come from autodiff, so the activation must be smooth (not ReLU); the
2-D expectations use a tensor Gauss–Legendre grid on the half-lines of each axis. The
diagonal entries reproduce the single-input recursion (tests).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._pdlt_recursion import _half_line_rule


@functools.lru_cache(maxsize=2)
def _grid(nodes: int = 48):
    t, w = _half_line_rule(nodes)
    t, w = np.concatenate([t, -t]), np.concatenate([w, w])
    xi = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    return xi, np.outer(w, w).ravel()


def _pair_moments(act, K):
    """All the 2-D Gaussian expectations one layer needs, at covariance K (2×2)."""
    xi, w = (jnp.asarray(a, dtype=K.dtype) for a in _grid())
    l11 = jnp.sqrt(K[0, 0])
    l21 = jnp.where(l11 > 0, K[0, 1] / jnp.where(l11 > 0, l11, 1.0), 0.0)
    l22 = jnp.sqrt(jnp.maximum(K[1, 1] - l21**2, 0.0))
    z = jnp.stack([l11 * xi[:, 0], l21 * xi[:, 0] + l22 * xi[:, 1]], -1)

    phi = act
    dphi = lambda v: jax.vmap(jax.grad(lambda s: phi(s)))(v)  # noqa: E731

    def f(v):  # φ_α φ_β
        a = phi(v)
        return jnp.outer(a, a)

    def g(v):  # φ'_α φ'_β
        a = dphi(v)
        return jnp.outer(a, a)

    def h(v):  # φ_γ φ'_α, indexed (γ, α)
        return jnp.outer(phi(v), dphi(v))

    def point(v):
        a, d = phi(v), dphi(v)
        hess = lambda fn: jax.hessian(fn)(v)  # noqa: E731
        d4 = lambda fn: jax.jacfwd(jax.jacfwd(jax.hessian(fn)))(v)  # noqa: E731
        return dict(
            e=f(v),
            p=g(v),
            de=0.5 * hess(f),
            dp=0.5 * hess(g),
            d2e=0.25 * d4(f),
            d2p=0.25 * d4(g),
            jh=jax.jacfwd(h)(v),
            f4=jnp.einsum("a,b,c,d->abcd", a, a, a, a),
            fp=jnp.einsum("a,b,c,d->abcd", a, a, d, d),
            p4=jnp.einsum("a,b,c,d->abcd", d, d, d, d),
        )

    vals = jax.lax.map(point, z, batch_size=512)
    return {k: jnp.tensordot(w, v, axes=1) for k, v in vals.items()}


@eqx.filter_jit
def pair_recursion(act, sizes, sigma_w, sigma_b2, lam_w, lam_b, x):
    """Run the pair recursion for `x` of shape (2, d); returns output-layer tensors."""
    sw2 = sigma_w**2
    gram = x @ x.T
    K = sw2 * gram / sizes[0] + sigma_b2
    theta = lam_w[0] * gram / sizes[0] + lam_b
    z2 = jnp.zeros((2, 2), K.dtype)
    z4 = jnp.zeros((2, 2, 2, 2), K.dtype)
    st = dict(K=K, theta=theta, mu_g=z2, mu_t=z2, s_gg=z4, s_gt=z4, s_tt=z4, Q=z4, R=z4)
    for l in range(1, len(sizes) - 1):
        n, lw = sizes[l], lam_w[l]
        m = _pair_moments(act, st["K"])
        th = st["theta"]
        ee = jnp.einsum("ab,cd->abcd", m["e"], m["e"])
        ep = jnp.einsum("ab,cd->abcd", m["e"], m["p"])
        pp = jnp.einsum("ab,cd->abcd", m["p"], m["p"])
        c_ff = m["f4"] - ee  # Cov(φαφβ, φγφδ)
        c_fg = m["fp"] - ep  # Cov(φαφβ, φ'γφ'δ)
        n_gg = sw2**2 * c_ff
        n_gt = sw2 * (lw * c_ff + sw2 * c_fg * th[None, None])
        n_tt = (
            lw**2 * c_ff
            + lw * sw2 * (c_fg * th[None, None] + jnp.transpose(c_fg, (2, 3, 0, 1)) * th[:, :, None, None])
            + sw2**2 * (m["p4"] - pp) * th[:, :, None, None] * th[None, None]
        )
        mgg = sw2 * m["de"]  # (αβ, γδ)
        mtg = lw * m["de"] + sw2 * th[:, :, None, None] * m["dp"]
        mtt = sw2 * m["p"]  # diagonal in (αβ)

        def lin(a, b):  # (αβ,γδ)·(γδ,εη)
            return jnp.einsum("abcd,cdef->abef", a, b)

        def t(a):
            return jnp.transpose(a, (2, 3, 0, 1))

        s_gg, s_gt, s_tt = st["s_gg"], st["s_gt"], st["s_tt"]
        d = mtt[:, :, None, None]
        new_gg = lin(lin(mgg, s_gg), t(mgg)) + n_gg / n
        new_gt = lin(mgg, lin(s_gg, t(mtg)) + s_gt * t(d)) + n_gt / n
        new_tt = (
            lin(lin(mtg, s_gg), t(mtg))
            + lin(mtg, s_gt) * t(d)
            + d * lin(t(s_gt), t(mtg))
            + d * s_tt * t(d)
            + n_tt / n
        )
        shift_g = jnp.einsum("abcd,cd->ab", m["de"], st["mu_g"]) + 0.5 * jnp.einsum(
            "abcdef,cdef->ab", m["d2e"], s_gg
        )
        shift_p = jnp.einsum("abcd,cd->ab", m["dp"], st["mu_g"]) + 0.5 * jnp.einsum(
            "abcdef,cdef->ab", m["d2p"], s_gg
        )
        cross = jnp.einsum("abcd,cdab->ab", m["dp"], s_gt)  # Cov(p_αβ(Ĝ), T_αβ)
        r_term = jnp.einsum("abcd,abcd->ab", 2 * m["dp"], st["R"])  # ⟨∂γ∂δ(φ'αφ'β)⟩ R_{αβ;γδ}
        new = dict(
            K=sigma_b2 + sw2 * m["e"],
            theta=lam_b + lw * m["e"] + sw2 * m["p"] * th,
            mu_g=sw2 * shift_g,
            mu_t=lw * shift_g + sw2 * (m["p"] * st["mu_t"] + th * shift_p + cross + r_term),
            s_gg=new_gg,
            s_gt=new_gt,
            s_tt=new_tt,
            Q=sw2**2
            * (
                m["p4"] * th[:, :, None, None] * th[None, None] / n
                + jnp.einsum("ac,bd->abcd", m["p"], m["p"]) * st["Q"]
            ),
            R=sw2**2
            * (
                jnp.einsum("cdab->abcd", m["fp"]) * th[:, :, None, None] / n
                + jnp.einsum("cae,dbf,abef->abcd", m["jh"], m["jh"], st["R"])
            ),
        )
        st = new
    return st
