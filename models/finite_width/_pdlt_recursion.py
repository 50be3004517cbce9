r"""The layer recursion of the 1/n expansion for one input (derivation: `_pdlt` module docs).

Everything here is per input: arrays of shape `(P,)`, the spec's numbers as Python floats
(static), so one trace serves a spec. The 1-D Gaussian expectations
$\langle g\rangle_K = \mathbb E\,g(\sqrt K\,\xi)$ use Gauss–Legendre on each half-line
$[0, 8]$ (64 nodes a side): exact to round-off for functions smooth on each side of 0
(ReLU's kink sits on the split), and their $K$-derivatives come by autodiff through
$\sqrt K$ (so no $\phi''$ is needed).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._activations import AbstractActivation

_HALF_NODES = 64
_HALF_WIDTH = 8.0


@functools.lru_cache(maxsize=4)
def _half_line_rule(nodes: int = _HALF_NODES):
    t, w = np.polynomial.legendre.leggauss(nodes)
    t = (t + 1) * _HALF_WIDTH / 2
    w = w * _HALF_WIDTH / 2 * np.exp(-(t**2) / 2) / np.sqrt(2 * np.pi)
    return t, w


def _expect(fn, k):
    """⟨fn(φ(z), φ'(z))⟩ over z ~ N(0, k) for a scalar k > 0."""
    t, w = (jnp.asarray(a, dtype=jnp.result_type(k)) for a in _half_line_rule())
    z = jnp.sqrt(k) * jnp.concatenate([t, -t])
    return jnp.sum(jnp.concatenate([w, w]) * fn(z))


def _moment_fns(act: AbstractActivation):
    def value_and_slope(z):
        return jax.jvp(act, (z,), (jnp.ones_like(z),))

    def e(k):
        return _expect(lambda z: act(z) ** 2, k)

    def p(k):
        return _expect(lambda z: value_and_slope(z)[1] ** 2, k)

    def rest(k):
        def four(z):
            f, df = value_and_slope(z)
            return jnp.stack([f**4, df**4, f**2 * df**2])

        t, w = (jnp.asarray(a, dtype=jnp.result_type(k)) for a in _half_line_rule())
        z = jnp.sqrt(k) * jnp.concatenate([t, -t])
        return four(z) @ jnp.concatenate([w, w])

    d1 = lambda f: jax.grad(f)  # noqa: E731
    d2 = lambda f: jax.grad(jax.grad(f))  # noqa: E731

    def all_moments(k):
        e4, q, m = rest(k)
        return {
            "e": e(k),
            "e1": d1(e)(k),
            "e2": d2(e)(k),
            "p": p(k),
            "p1": d1(p)(k),
            "p2": d2(p)(k),
            "e4": e4,
            "q": q,
            "m": m,
        }

    return jax.vmap(all_moments)


def layer_recursion(act, sizes, sigma_w, sigma_b2, lam_w, lam_b, sq_norm):
    r"""Run the recursion through layers $1..L$.

    `sizes` = $(n_0, \dots, n_L)$, `lam_w[l-1]` = $\lambda_W$ of layer $l$ (weight term per
    $|h^{l-1}|^2/n_{l-1}$), `lam_b` the bias term (0 without biases), `sq_norm` $= |x|^2$ per
    input. Returns the output-layer dict (`K`, `theta`, `mu_g`, `mu_t`, `s_gg`, `s_gt`,
    `s_tt`, `S`, `R`) and the per-layer diagnostics (stacked, shape `(L, P)`)."""
    moments = _moment_fns(act)
    sw2 = sigma_w**2
    K = sw2 * sq_norm / sizes[0] + sigma_b2
    theta = lam_w[0] * sq_norm / sizes[0] + lam_b
    zero = jnp.zeros_like(K)
    st = dict(K=K, theta=theta, mu_g=zero, mu_t=zero, s_gg=zero, s_gt=zero, s_tt=zero, S=zero, R=zero)
    depth = len(sizes) - 1
    dtype = jnp.result_type(K)
    xs = (jnp.asarray(sizes[1:depth], dtype=dtype), jnp.asarray(lam_w[1:depth], dtype=dtype))

    def step(st, nl):
        n, lw = nl
        m = moments(st["K"])
        th = st["theta"]
        var_e = m["e4"] - m["e"] ** 2
        cov_ep = m["m"] - m["e"] * m["p"]
        n_gg = sw2**2 * var_e
        n_gt = sw2 * (lw * var_e + sw2 * th * cov_ep)
        n_tt = lw**2 * var_e + 2 * lw * sw2 * th * cov_ep + sw2**2 * th**2 * (m["q"] - m["p"] ** 2)
        a = sw2 * m["e1"]  # chi_parallel
        c = lw * m["e1"] + sw2 * m["p1"] * th
        d = sw2 * m["p"]  # chi_perp
        s_gg, s_gt, s_tt = st["s_gg"], st["s_gt"], st["s_tt"]
        shift_g = m["e1"] * st["mu_g"] + 0.5 * m["e2"] * s_gg
        new = dict(
            K=sigma_b2 + sw2 * m["e"],
            theta=lam_b + lw * m["e"] + d * th,
            mu_g=sw2 * shift_g,
            mu_t=lw * shift_g
            + sw2
            * (
                m["p"] * st["mu_t"]
                + m["p1"] * th * st["mu_g"]
                + 0.5 * m["p2"] * th * s_gg
                + m["p1"] * s_gt
                + 2 * m["p1"] * st["R"]
            ),
            s_gg=a * a * s_gg + n_gg / n,
            s_gt=a * (c * s_gg + d * s_gt) + n_gt / n,
            s_tt=c * c * s_gg + 2 * c * d * s_gt + d * d * s_tt + n_tt / n,
            S=sw2**2 * m["q"] * th**2 / n + d * d * st["S"],
            R=sw2**2 * m["m"] * th / n + a * a * st["R"],
        )
        return new, new

    last, hist = jax.lax.scan(step, st, xs)
    layers = {key: jnp.concatenate([st[key][None], hist[key]]) for key in st}
    return last, layers
