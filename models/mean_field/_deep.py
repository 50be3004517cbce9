r"""Deep nonlinear networks in the mean-field limit: the DMFT on a time grid, with Monte-Carlo
single sites and their response functions (THEORY.md §4; Bordelon & Pehlevan 2022, eqs. for
$h^\ell$, $z^\ell$ with the reaction terms $A^\ell$, $B^\ell$).

**Network** (our normalization; `depth` $L = H + 1$ weight layers, $H$ hidden layers of width
$N$): $h^1 = W^0 x/\sqrt D$, $h^{l+1} = W^l\phi(h^l)/\sqrt N$, $f = a\cdot\phi(h^H)/(\gamma_0 N)$,
all weights $\mathcal N(0, 1)$, $L = \frac1{2P}\sum_\mu (f_\mu - y_\mu)^2$, flow
$\dot\theta = -\gamma_0^2 N\nabla_\theta L$ — `MLP(D, [N]*H, 1, activation,
parameterization=Parameterization.mean_field(H + 1, γ₀), bias=False)`.

**Single sites** (derived here in this normalization). With $\Delta_\nu = y_\nu - f_\nu$,
$g^l = \phi'(h^l)\,z^l$ ($z^H = a$, $z^l = W^{l\top}g^{l+1}/\sqrt N$) and the order parameters
$\Phi^l = \langle\phi(h^l)\phi(h^l)\rangle$, $G^l = \langle g^l g^l\rangle$ as two-time,
two-point functions ($\Phi^0 = K^x = x\cdot x'/D$, $G^{H+1} = 1$), each layer's fields on the
points $\mu$ (training and test) and times $t$ obey

$$h^l = u^l + \bigl(J^{l-1} + \gamma_0\,\Phi^{l-1}\circ E\bigr)\,g^l,\qquad
  z^l = r^l + \bigl(K^{l+1} + \gamma_0\,G^{l+1}\circ E\bigr)\,\phi(h^l),$$

causal operators on the grid acting on the training-point fields, with
$E_{(t\mu),(s\nu)} = w_{ts}\,\Delta_\nu(s)/P$ ($w$ the trapezoid weights of $\int_0^t ds$; the
weight updates $\dot W^l = \gamma_0 \frac1P\sum_\nu\Delta_\nu g^{l+1}_\nu\phi(h^l_\nu)^\top/\sqrt N$),
Gaussian sources $u^l \sim \mathcal{GP}(0, \Phi^{l-1})$, $r^l \sim \mathcal{GP}(0, G^{l+1})$
($u^1 = w\cdot x/\sqrt D$ constant in time, $r^H = a(0)$), and the reaction terms of the
initial weights $J^l = \langle\partial\phi(h^l)/\partial r^l\rangle$ and
$K^l = \langle\partial g^l/\partial u^l\rangle$ — the discrete response functions
($\gamma_0 A^l$ and $\gamma_0 B^l$ in Bordelon & Pehlevan's notation). With a linear
activation these are the equations of `DeepLinearDMFT` (its $\gamma_0\hat A$, $\gamma_0\hat B$),
and for $H = 1$ those of `TwoLayerDMFT`. The outputs follow
$\dot f_\mu = \frac1P\sum_\nu K_{\mu\nu}(t)\Delta_\nu$ with the NTK
$K = \sum_{l=0}^{H} G^{l+1}(t,t)\circ\Phi^l(t,t)$, integrated exactly over each grid interval
for the interval's mean kernel ($\Delta \leftarrow e^{-h\bar K/P}\Delta$, test outputs by
$\bar K_*\bar K^{-1}$ of the change): at $\gamma_0 = 0$ the kernels do not move and this is
the kernel regime on any grid.

**One sweep** (`grid_map`), layer by layer upwards: draw the sources from the current kernels
(a Cholesky factor of the grid covariance, a small jitter for the exactly repeated times of a
frozen kernel, times fixed base normals — common random numbers, so the sweep is a
deterministic map with a fixed point; the times are factored coarsest-first, so a grid
refined by 2 draws the same sources on the coarse grid's times and Richardson extrapolation
cancels the grids' discretization error without amplifying their Monte-Carlo noise), solve
every site's equations by marching in time (the implicit trapezoid term at the current time
by Newton's method, per site), average the
new $\Phi^l$, $G^l$, and get $J^l$, $K^l$ as the Jacobian of the site average with respect to
a source perturbation shared by all sites (forward mode, on `response_samples` sites); then
integrate the outputs. Solve with `lmech.solvers.SelfConsistent()`.

**Monte Carlo.** `samples` sites per layer, in antithetic pairs with the backward sources
flipped ($r \to -r$ in every layer, $a \to -a$): the $O(\gamma_0)$ change of every kernel is
odd in them and cancels within a pair. The kernels used are
$K(t) = K_0^{\rm exact} + \hat K(t) - \hat K(0)$ (likewise the reported $\Phi$, $G$), with
$K_0^{\rm exact}$ the analytic NTK of the `"ntk"` network: at $\gamma_0 = 0$ the dynamics is
exactly the kernel regime, and the sampling error is that of the change. Cost per sweep:
$O(S\,P\,Q'\,n^2)$ for the sites and $O(S_r\,P^2 Q' n^3)$ for the responses ($n$ grid times,
$Q' = P + Q$ points) — the responses dominate; keep $P n$ in the low hundreds.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Scalar

from lmech.solvers import AbstractLossDynamics, AbstractSelfConsistent

from .._activations import AbstractActivation, GaussianPair, ReLU, get_activation
from .._data import Dataset
from ._checks import check_gamma0
from ._deep_linear import _trapezoid

__all__ = ["DeepDMFT"]

_RESPONSE_CHUNK = 256  # sites per forward-mode Jacobian pass (memory: chunk × P n × Q' n)
_NEWTON_STEPS = 4  # Newton steps for the implicit trapezoid term at the current time


def initial_kernels(act: AbstractActivation, x_all: Array, hidden: int):
    r"""The infinite-width kernels at initialization on all points: $\Phi^l$, $G^l$
    ($l = 1..H$, stacked) and the NTK $K_0 = \sum_{l=0}^H G^{l+1}\circ\Phi^l$ — the NNGP
    recursion $\Phi^l = \mathbb E[\phi\phi]$ under the covariance $\Phi^{l-1}$ and
    $G^l = \mathbb E[\phi'\phi']\circ G^{l+1}$."""
    D = x_all.shape[1]
    kx = x_all @ x_all.T / D
    cov, phis, dphis = kx, [], []
    for _ in range(hidden):
        d = jnp.diagonal(cov)
        m = act.pair_moments(GaussianPair.from_covariance(d[:, None], d[None, :], cov))
        phis.append(m.e12)
        dphis.append(m.de12)
        cov = m.e12
    gs, above = [None] * hidden, jnp.ones_like(kx)
    for l in reversed(range(hidden)):
        gs[l] = dphis[l] * above
        above = gs[l]
    ntk = gs[0] * kx + sum(gs[l] * phis[l - 1] for l in range(1, hidden)) + phis[-1]
    return jnp.stack(phis), jnp.stack(gs), ntk


def _sites(act, u, r, Ch, Cg, P):
    r"""March the single-site equations of one layer in time for every site.

    `u`, `r`: sources `(S, n, Q')`; `Ch`, `Cg`: the operators `(n, Q', n, P)` on the
    training-point fields $g$ and $\phi(h)$. Returns $h$, $z$ `(S, n, Q')`."""
    S, n, _ = u.shape

    def step(carry, t):
        g_hist, p_hist = carry  # (S, n, P), zero from time t on
        hx = u[:, t] + jnp.einsum("msp,ksp->km", Ch[t], g_hist)
        zx = r[:, t] + jnp.einsum("msp,ksp->km", Cg[t], p_hist)
        dh, dz = Ch[t, :, t, :], Cg[t, :, t, :]  # the trapezoid weight of the current time

        def fields(h):
            ph = act(h)
            z = zx + ph[:, :P] @ dz.T
            return ph, z, act.derivative(h[:, :P]) * z[:, :P]

        # the training-point fields at time t solve v = hx + dh (φ'(v) ∘ (zx + dz φ(v))) (per
        # site, P unknowns): Newton from the explicit part without derivatives, then two
        # Newton steps with them and the Jacobian held fixed — the same value, and derivatives
        # exact to second order (one step would give the first: the responses; their own
        # derivative, for implicit differentiation of the fixed point, needs the second)
        dh_tr, dz_tr = dh[:P], dz[:P]

        def residual(v, hx, zx):
            z = zx[:, :P] + act(v) @ dz_tr.T
            return v - hx[:, :P] - (act.derivative(v) * z) @ dh_tr.T

        def jacobian(v, zx):
            d1 = act.derivative(v)
            d2 = jax.jvp(act.derivative, (v,), (jnp.ones_like(v),))[1]
            z = zx[:, :P] + act(v) @ dz_tr.T
            inner = (d2 * z)[:, None, :] * jnp.eye(P, dtype=v.dtype) + d1[:, :, None] * dz_tr[None] * d1[
                :, None, :
            ]
            return jnp.eye(P, dtype=v.dtype) - jnp.einsum("pq,kqr->kpr", dh_tr, inner)

        def newton(v, hx, zx):
            return v - jnp.linalg.solve(jacobian(v, zx), residual(v, hx, zx)[..., None])[..., 0]

        frozen = [jax.lax.stop_gradient(a) for a in (hx, zx)]
        v = jax.lax.fori_loop(0, _NEWTON_STEPS, lambda _, v: newton(v, *frozen), frozen[0][:, :P])
        v = jax.lax.stop_gradient(v)
        jac = jax.lax.stop_gradient(jacobian(v, frozen[1]))
        for _ in range(2):
            v = v - jnp.linalg.solve(jac, residual(v, hx, zx)[..., None])[..., 0]
        h = hx + (act.derivative(v) * (zx[:, :P] + act(v) @ dz_tr.T)) @ dh.T
        h = h.at[:, :P].set(v)
        ph, z, g = fields(h)
        carry = (g_hist.at[:, t].set(g), p_hist.at[:, t].set(ph[:, :P]))
        return carry, (h, z)

    zeros = jnp.zeros((S, n, P), u.dtype)
    _, (h, z) = jax.lax.scan(step, (zeros, zeros), jnp.arange(n))
    return jnp.swapaxes(h, 0, 1), jnp.swapaxes(z, 0, 1)


def _nested_order(n: int) -> np.ndarray:
    r"""Grid indices ordered by how coarse a grid they belong to: by decreasing 2-adic
    valuation $v_2(i)$ ($v_2(0) = \infty$), then by time. A grid refined by 2 maps index $i$
    to $2i$, so its first `(n + 1) // 2` positions are the coarse grid's indices in the
    coarse grid's own order; a Cholesky factor in this order makes the sources at those
    times functions of the same leading base normals on both grids."""
    v = np.array([n.bit_length() + 1] + [(k & -k).bit_length() - 1 for k in range(1, n)])
    return np.lexsort((np.arange(n), -v))


def _time_diagonal(k: Float[Array, "n m n m2"]) -> Float[Array, "n m m2"]:
    idx = jnp.arange(k.shape[0])
    return k[idx, :, idx, :]


class DeepDMFT(AbstractSelfConsistent, AbstractLossDynamics):
    r"""The mean-field dynamics of a deep network with activation $\phi$ (see the module
    docs), by Monte-Carlo single sites on a time grid; solve it with
    `lmech.solvers.SelfConsistent()`.

    Observables: `"loss"`, `"f_train"` `(P, 1)`, `"f_test"` `(Q, 1)`, the NTK `"ntk"` `(P, P)`
    and `"ntk_test"` `(Q, P)`, and the equal-time order parameters `"phi"`, `"g"`
    `(H, P, P)` of the hidden layers.

    **Arguments:**

    - `data`: a `Dataset` with one output (keep the training set small: the cost grows
      as $(P n)^3$ with $n$ grid times).
    - `gamma0`: the feature-learning strength $\gamma_0 \ge 0$.
    - `depth`: weight layers $L \ge 2$.
    - `activation`: a name from `ACTIVATIONS` or an `AbstractActivation` (differentiable
      twice: the responses differentiate $\phi'$).
    - `samples`: Monte-Carlo sites per layer, even (antithetic pairs) — the accuracy knob.
    - `response_samples`: how many of them estimate the response functions (even; default
      `min(samples, 1024)`).
    - `key`: an int seed or PRNG key of the sites.
    - `jitter`: relative diagonal added to a grid covariance before its Cholesky factor.
    """

    x_all: Float[Array, "PQ D"]
    y_train: Float[Array, " P"]
    kx: Float[Array, "PQ PQ"]
    u1: Float[Array, "S PQ"]
    a0: Float[Array, " S"]
    gamma0: Array
    k0: Float[Array, "PQ P"]
    phi0: Float[Array, "H PQ PQ"]
    g0: Float[Array, "H PQ PQ"]
    activation: AbstractActivation
    n_train: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    seed: int = eqx.field(static=True)
    response_samples: int = eqx.field(static=True)
    jitter: float = eqx.field(static=True)

    def __init__(
        self,
        data: Dataset,
        gamma0: ArrayLike,
        depth: int,
        activation: str | AbstractActivation = "tanh",
        *,
        samples: int = 4096,
        response_samples: int | None = None,
        key: Any = None,
        jitter: float = 1e-12,
    ):
        if not isinstance(data, Dataset):
            raise TypeError(f"DeepDMFT: `data` must be an lmech Dataset, got {type(data).__name__}.")
        if data.y_train.shape[1] != 1:
            raise ValueError(f"DeepDMFT: one output only, got targets of shape {data.y_train.shape}.")
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 2:
            raise ValueError(f"DeepDMFT: `depth` (weight layers) must be an int >= 2, got {depth!r}.")
        check_gamma0(gamma0, "DeepDMFT")
        for name, v in (("samples", samples), ("response_samples", response_samples)):
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2 or v % 2
            ):
                raise ValueError(
                    f"DeepDMFT: `{name}` must be an even int >= 2 (antithetic pairs), got {v!r}."
                )
        response_samples = min(int(samples), 1024) if response_samples is None else int(response_samples)
        if response_samples > samples:
            raise ValueError(
                f"DeepDMFT: `response_samples` ({response_samples}) cannot exceed `samples` ({samples})."
            )
        if not (isinstance(jitter, (int, float)) and 0 < jitter < 1e-3):
            raise ValueError(f"DeepDMFT: `jitter` must be a small positive number, got {jitter!r}.")
        act = get_activation(activation)
        if isinstance(act, ReLU) and depth > 2:
            raise ValueError(
                "DeepDMFT: the response functions differentiate phi'(h), which for relu is a step: its "
                "delta function is missed. Use a smooth activation (tanh, erf, gelu, softplus, linear); "
                "the two-layer relu DMFT is TwoLayerDMFT."
            )
        x, xt = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
        P, D = x.shape
        x_all = jnp.concatenate([x, xt])
        if key is None:
            key = 0
        if isinstance(key, (int, np.integer)):
            seed = int(key)
        else:
            seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        ka, kw = jax.random.split(jax.random.key(seed))
        half = int(samples) // 2
        a = jax.random.normal(ka, (half,), x.dtype)
        w = jax.random.normal(kw, (half, D), x.dtype)
        self.x_all, self.y_train = x_all, jnp.asarray(data.y_train)[:, 0]
        self.kx = x_all @ x_all.T / D
        self.u1 = jnp.concatenate([w, w]) @ x_all.T / np.sqrt(D)
        self.a0 = jnp.concatenate([a, -a])
        self.gamma0 = jnp.asarray(gamma0, dtype=x.dtype)
        self.activation = act
        self.n_train, self.depth, self.seed = P, int(depth), seed
        self.response_samples, self.jitter = response_samples, float(jitter)
        self.phi0, self.g0, ntk = initial_kernels(act, x_all, self.hidden)
        self.k0 = ntk[:, :P]

    @property
    def hidden(self) -> int:
        return self.depth - 1

    @property
    def samples(self) -> int:
        return self.a0.shape[0]

    # -- the state at one time -----------------------------------------------------------
    def init(self, *, key: Any = None) -> dict[str, Array]:
        """The infinite-width start: $f = 0$ and the initial kernels."""
        P = self.n_train
        return {
            "f": jnp.zeros(self.x_all.shape[0], self.x_all.dtype),
            "ntk": self.k0,
            "phi": self.phi0[:, :P, :P],
            "g": self.g0[:, :P, :P],
        }

    def loss(self, s) -> Scalar:
        return 0.5 * jnp.mean((s["f"][: self.n_train] - self.y_train) ** 2)

    def observe(self, s) -> dict[str, Array]:
        P = self.n_train
        return {
            "loss": self.loss(s),
            "f_train": s["f"][:P, None],
            "f_test": s["f"][P:, None],
            "ntk": s["ntk"][:P],
            "ntk_test": s["ntk"][P:],
            "phi": s["phi"],
            "g": s["g"],
        }

    # -- the grid equations --------------------------------------------------------------
    def grid_bytes(self, n: int) -> int:
        PQ, P, H = self.x_all.shape[0], self.n_train, self.hidden
        N, Np = PQ * n, P * n
        state = H * (2 * N * N + 2 * N * Np)
        sites = 10 * self.samples * N
        responses = 8 * min(_RESPONSE_CHUNK, self.response_samples) * N * Np
        return int(8 * (state + sites + responses))

    def grid_init(self, times: Array) -> PyTree:
        n, P, H = times.shape[0], self.n_train, self.hidden
        PQ = self.x_all.shape[0]
        tile = lambda k: jnp.broadcast_to(k[:, None, :, None, :], (H, n, PQ, n, PQ))  # noqa: E731
        zeros = jnp.zeros((H, n, PQ, n, P), self.x_all.dtype)
        return {
            "phi": tile(self.phi0),
            "G": tile(self.g0),
            "J": zeros,
            "K": zeros,
            "f": jnp.zeros((n, PQ), self.x_all.dtype),
        }

    def _sample(self, cov: Array, base: Array) -> Array:
        """Sources with covariance `cov` `(n, Q', n, Q')` from base normals `(S', n, Q')`,
        the times factored in `_nested_order` (see `_base_normals`)."""
        n, PQ = cov.shape[:2]
        order = _nested_order(n)
        c = cov[order][:, :, order].reshape(n * PQ, n * PQ)
        c = 0.5 * (c + c.T)
        scale = jnp.mean(jnp.diagonal(c))
        chol = jnp.linalg.cholesky(c + self.jitter * scale * jnp.eye(n * PQ, dtype=c.dtype))
        out = (base.reshape(base.shape[0], n * PQ) @ chol.T).reshape(base.shape[0], n, PQ)
        return out[:, np.argsort(order)]

    def _base_normals(self, n: int, dtype) -> Array:
        r"""The fixed base normals `(2H, S/2, n, Q')` of the sources, by position in
        `_nested_order`: position $j$ draws from its own key, so a grid refined by 2 shares
        the coarse grid's normals on the coarse grid's times (they come first, in the same
        order) — the two grids' sources there are the same draws, and Richardson
        extrapolation between them cancels discretization error instead of amplifying the
        Monte-Carlo noise (which independent draws per grid would)."""
        H, S, PQ = self.hidden, self.samples, self.x_all.shape[0]
        key = jax.random.key(self.seed + 1)
        draw = lambda j: jax.random.normal(jax.random.fold_in(key, j), (2 * H, S // 2, PQ), dtype)  # noqa: E731
        return jnp.moveaxis(jax.vmap(draw)(jnp.arange(n)), 0, 2)

    def _responses(self, u, r, Ch, Cg, which: str) -> Array:
        """The response $\\langle\\partial\\phi(h)/\\partial r\\rangle$ (`which="J"`) or
        $\\langle\\partial g/\\partial u\\rangle$ (`"K"`) `(n, Q', n, P)`, averaged over the
        first `response_samples / 2` sites of each antithetic half."""
        act, P = self.activation, self.n_train
        S, n, PQ = u.shape
        m = self.response_samples // 2
        take = lambda v: jnp.concatenate([v[:m], v[S // 2 : S // 2 + m]])  # noqa: E731
        u, r = take(u), take(r)
        chunk = min(_RESPONSE_CHUNK, 2 * m)
        n_chunks = -(-2 * m // chunk)
        pad = n_chunks * chunk - 2 * m
        weights = jnp.concatenate([jnp.ones(2 * m), jnp.zeros(pad)]) / (2 * m)
        padded = lambda v: jnp.concatenate([v, jnp.zeros((pad,) + v.shape[1:], v.dtype)])  # noqa: E731
        u, r = padded(u), padded(r)

        def one(args):
            uc, rc, wc = args

            def mean_field(eps):
                e = jnp.concatenate([eps, jnp.zeros((n, PQ - P), eps.dtype)], axis=1)
                if which == "J":
                    h, _ = _sites(act, uc, rc + e, Ch, Cg, P)
                    out = act(h)
                else:
                    h, z = _sites(act, uc + e, rc, Ch, Cg, P)
                    out = act.derivative(h) * z
                return jnp.tensordot(wc, out, axes=1)

            return jax.jacfwd(mean_field)(jnp.zeros((n, P), u.dtype))

        split = lambda v: v.reshape((n_chunks, chunk) + v.shape[1:])  # noqa: E731
        parts = jax.lax.map(one, (split(u), split(r), split(weights)))
        return jnp.sum(parts, axis=0)

    def _ntk_mc(self, phi: Array, G: Array) -> Array:
        """$\\hat K(t)$ `(n, Q', P)` from the equal-time diagonals of the sampled kernels."""
        P, H = self.n_train, self.hidden
        ph = [_time_diagonal(phi[l])[:, :, :P] for l in range(H)]
        gs = [_time_diagonal(G[l])[:, :, :P] for l in range(H)]
        k = gs[0] * self.kx[None, :, :P] + ph[-1]
        for l in range(1, H):
            k = k + gs[l] * ph[l - 1]
        return k

    def grid_map(self, q: PyTree, times: Array, horizon: ArrayLike) -> PyTree:
        act, P, H, S = self.activation, self.n_train, self.hidden, self.samples
        n, PQ = times.shape[0], self.x_all.shape[0]
        dtype = self.x_all.dtype
        dt = times[1] - times[0]
        on = (times <= horizon * (1 + 1e-12)).astype(dtype)
        delta = (self.y_train[None, :] - q["f"][:, :P]) * on[:, None]  # (n, P)
        E = (_trapezoid(n, dt)[:, :, None] * delta[None, :, :] / P)[:, None, :, :]  # (n, 1, n, P)
        base = self._base_normals(n, dtype)
        g0 = self.gamma0
        kx = jnp.broadcast_to(self.kx[None, :, None, :], (n, PQ, n, PQ))
        ones = jnp.ones((n, PQ, n, PQ), dtype)
        zeros = jnp.zeros((n, PQ, n, P), dtype)
        phi, G, J, K = [], [], [], []
        for l in range(H):  # upward: the sources of layer l from the kernels just computed below it
            phi_below = kx if l == 0 else phi[l - 1]
            J_below = zeros if l == 0 else J[l - 1]
            G_above = ones if l == H - 1 else q["G"][l + 1]
            K_above = zeros if l == H - 1 else q["K"][l + 1]
            Ch = J_below + g0 * phi_below[..., :P] * E
            Cg = K_above + g0 * G_above[..., :P] * E
            if l == 0:
                u = jnp.broadcast_to(self.u1[:, None, :], (S, n, PQ))
            else:
                half = self._sample(phi_below, base[2 * l])
                u = jnp.concatenate([half, half])
            if l == H - 1:
                r = jnp.broadcast_to(self.a0[:, None, None], (S, n, PQ))
            else:
                half = self._sample(G_above, base[2 * l + 1])
                r = jnp.concatenate([half, -half])
            h, z = _sites(act, u, r, Ch, Cg, P)
            ph, g = act(h), act.derivative(h) * z
            phi.append(jnp.einsum("kam,kbn->ambn", ph, ph) / S)
            G.append(jnp.einsum("kam,kbn->ambn", g, g) / S)
            J.append(self._responses(u, r, Ch, Cg, "J") if l < H - 1 else zeros)
            K.append(self._responses(u, r, Ch, Cg, "K") if l > 0 else zeros)
        phi, G = jnp.stack(phi), jnp.stack(G)
        f = self._outputs(self._ntk_mc(phi, G), on, dt)
        return {"phi": phi, "G": G, "J": jnp.stack(J), "K": jnp.stack(K), "f": f}

    def _kernel(self, k_mc: Array) -> Array:
        """The control-variate kernel $K_0^{\\rm exact} + \\hat K(t) - \\hat K(0)$."""
        return self.k0[None] + k_mc - k_mc[:1]

    def _outputs(self, k_mc: Array, on: Array, dt: Array) -> Array:
        """$f$ `(n, Q')` from $\\dot f = K\\Delta/P$, exact per interval for its mean kernel."""
        P = self.n_train
        k = self._kernel(k_mc)
        kbar = 0.5 * (k[1:] + k[:-1])

        def step(carry, args):
            delta, f_test = carry
            kb, active = args
            ktr = 0.5 * (kb[:P] + kb[:P].T)
            new = jax.scipy.linalg.expm(-dt * active * ktr / P) @ delta
            f_test = f_test + kb[P:] @ jnp.linalg.solve(ktr, delta - new)
            return (new, f_test), (new, f_test)

        start = (self.y_train, jnp.zeros(self.x_all.shape[0] - P, self.y_train.dtype))
        _, (deltas, tests) = jax.lax.scan(step, start, (kbar, on[1:]))
        f_train = self.y_train[None] - jnp.concatenate([self.y_train[None], deltas])
        f_test = jnp.concatenate([start[1][None], tests])
        return jnp.concatenate([f_train, f_test], axis=1)

    def grid_states(self, q: PyTree, times: Array) -> PyTree:
        P, H = self.n_train, self.hidden
        k = self._kernel(self._ntk_mc(q["phi"], q["G"]))
        eq = (
            lambda v, v0: jnp.stack(  # noqa: E731
                [
                    v0[l, :P, :P] + _time_diagonal(v[l])[:, :P, :P] - _time_diagonal(v[l])[:1, :P, :P]
                    for l in range(H)
                ],
                axis=1,
            )
        )
        return {"f": q["f"], "ntk": k, "phi": eq(q["phi"], self.phi0), "g": eq(q["G"], self.g0)}
