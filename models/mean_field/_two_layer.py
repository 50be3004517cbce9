r"""Two-layer nonlinear network in the mean-field (muP) limit: the DMFT as a Monte-Carlo
population of single-site processes (THEORY.md §4; Bordelon & Pehlevan 2022, two-layer case).

**Network and time** (the same normalization as `TwoLayerLinearDMFT`). Width $N$,
$f(x) = \sum_i a_i\, \phi(h_i(x)) / (\gamma_0 N)$ with $h_i(x) = w_i\cdot x/\sqrt D$,
$a_i, w_i \sim \mathcal N(0, 1)$, $L = \frac1{2P}\sum_\mu (f_\mu - y_\mu)^2$ and
$\dot\theta = -\gamma_0^2 N\,\nabla_\theta L$ — `MLP(D, [N], 1, activation,
parameterization=Parameterization.mean_field(2, gamma0), bias=False)` trained by gradient flow.

**Single-site equations** (derived here). With $\Delta_\mu = y_\mu - f_\mu$ and the input
kernel $K^x(x, x') = x\cdot x'/D$, each neuron's readout and its pre-activations on the
training and test points obey

$$\dot a = \frac{\gamma_0}{P}\sum_\mu \Delta_\mu\, \phi(h_\mu),\qquad
  \dot h(x) = \frac{\gamma_0}{P}\, a \sum_\mu \Delta_\mu\, \phi'(h_\mu)\, K^x(x, x_\mu),$$

from $(a, h) \sim \mathcal N(0, 1) \otimes \mathcal{GP}(0, K^x)$, and the outputs
$\dot f(x) = \frac1P\sum_\mu K(x, x_\mu)\,\Delta_\mu$ with the NTK

$$K = \Phi + G \odot K^x,\qquad \Phi(x, x') = \langle \phi(h(x))\,\phi(h(x'))\rangle,\qquad
  G(x, x') = \langle a^2\, \phi'(h(x))\,\phi'(h(x'))\rangle .$$

At $N \to \infty$ the averages are over the single-site distribution and the sites interact
only through $\Delta(t)$. The dependence is causal and local in time, so the self-consistent
time-grid fixed point of Bordelon & Pehlevan (fields given $\Delta$, then $\Delta$ given the
kernels) has the solution of this forward ODE as its unique fixed point: it is integrated
directly, with adaptive steps, by `solve`.

**Monte Carlo with a control variate.** The averages use `samples` = $M$ sites drawn once
(`key`); the kernels are $K(t) = K_0^{\rm exact} + \hat K_M(t) - \hat K_M(0)$, with
$K_0^{\rm exact}$ the analytic infinite-width NTK (`analytic_kernels` of the
`parameterization="ntk"` network, $\sigma_w = 1$) and $\hat K_M$ the sample average. The
sampling error is then that of the kernel's *change*: at $\gamma_0 = 0$ the dynamics is
exactly the kernel regime (`Linearized` from $f_0 = 0$), and the sample count is the accuracy
knob for the feature-learning part. The sites come in antithetic pairs $(a, w)$, $(-a, w)$:
to first order in $\gamma_0$ the change of a site's $h$ is odd in $a$ and that of $a$ even, so
the $O(\gamma_0)$ change of $\Phi$ and $G$ — zero in expectation, since $\langle a\rangle = 0$ —
cancels exactly within each pair instead of leaving $O(\gamma_0/\sqrt M)$ sampling noise; the
error is $O(\gamma_0^2/\sqrt M)$, relative $O(M^{-1/2})$ at every $\gamma_0$.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Scalar

from lmech.solvers import AbstractLossDynamics

from .._activations import AbstractActivation, get_activation
from .._data import Dataset
from ._checks import check_gamma0

__all__ = ["TwoLayerDMFT"]


class TwoLayerDMFT(AbstractLossDynamics):
    r"""The mean-field (DMFT) dynamics of a two-layer network with activation $\phi$, by a
    population of `samples` single-site processes (see the module docs).

    State: `{"a": (M,), "h": (M, P + Q), "f": (P + Q,)}` — each site's readout and
    pre-activations on the training then test points, and the outputs.

    Observables: `"loss"`, `"f_train"` `(P, 1)`, `"f_test"` `(Q, 1)`, the order parameters
    `"phi"` ($\Phi$) and `"g"` ($G$) and the NTK `"ntk"` ($K$) on the training points
    `(P, P)`, and `"ntk_test"` $K(x_*, X)$ `(Q, P)`.

    **Arguments:**

    - `data`: a `Dataset` with one output.
    - `gamma0`: the feature-learning strength $\gamma_0 \ge 0$ (may be traced).
    - `activation`: a name from `ACTIVATIONS` or an `AbstractActivation`.
    - `samples`: the number $M$ of Monte-Carlo sites, even (antithetic pairs; the accuracy
      knob: relative error of the feature-learning part $O(M^{-1/2})$).
    - `key`: the PRNG key of the sites.
    - `kernel0`: optional `(K_0(X∪X_*, X), Φ_0, G_0)` exact initial kernels on
      `(P + Q, P)`; by default the analytic ones of the `"ntk"` network.
    """

    x_all: Float[Array, "PQ D"]
    y_train: Float[Array, " P"]
    kx: Float[Array, "P PQ"]
    a0: Float[Array, " M"]
    h0: Float[Array, "M PQ"]
    weights: Float[Array, " M"]
    gamma0: Array
    k_offset: Float[Array, "PQ P"]
    phi_offset: Float[Array, "PQ P"]
    g_offset: Float[Array, "PQ P"]
    activation: AbstractActivation
    n_train: int = eqx.field(static=True)

    def __init__(
        self,
        data: Dataset,
        gamma0: ArrayLike,
        activation: str | AbstractActivation = "tanh",
        *,
        samples: int = 4096,
        key: Any = None,
        kernel0: tuple[Array, Array, Array] | None = None,
    ):
        if not isinstance(data, Dataset):
            raise TypeError(f"TwoLayerDMFT: `data` must be an lmech Dataset, got {type(data).__name__}.")
        if data.y_train.shape[1] != 1:
            raise ValueError(f"TwoLayerDMFT: one output only, got targets of shape {data.y_train.shape}.")
        check_gamma0(gamma0, "TwoLayerDMFT")
        if (
            isinstance(samples, bool)
            or not isinstance(samples, (int, np.integer))
            or samples < 2
            or samples % 2
        ):
            raise ValueError(
                f"TwoLayerDMFT: `samples` must be an even int >= 2 (antithetic pairs), got {samples!r}."
            )
        act = get_activation(activation)
        x, xt = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
        P, D = x.shape
        x_all = jnp.concatenate([x, xt])
        key = jax.random.key(0) if key is None else key
        ka, kw = jax.random.split(key)
        half = int(samples) // 2  # antithetic pairs (a, w), (-a, w): see the module docs
        a0 = jax.random.normal(ka, (half,), x.dtype)
        a0 = jnp.concatenate([a0, -a0])
        w0 = jax.random.normal(kw, (half, D), x.dtype)
        w0 = jnp.concatenate([w0, w0])
        self.x_all, self.y_train = x_all, jnp.asarray(data.y_train)[:, 0]
        self.kx = x @ x_all.T / D
        self.a0, self.h0 = a0, w0 @ x_all.T / np.sqrt(D)
        self.weights = jnp.full(int(samples), 1.0 / int(samples), x.dtype)
        self.gamma0 = jnp.asarray(gamma0, dtype=x.dtype)
        self.activation = act
        self.n_train = P
        if kernel0 is None:
            kernel0 = _exact_initial_kernels(act, x_all, P)
        k_ex, phi_ex, g_ex = (jnp.asarray(k) for k in kernel0)
        if k_ex.shape != (x_all.shape[0], P) or phi_ex.shape != k_ex.shape or g_ex.shape != k_ex.shape:
            raise ValueError(
                f"TwoLayerDMFT: `kernel0` must be three arrays of shape {(x_all.shape[0], P)}, got "
                f"{[np.shape(k) for k in kernel0]}."
            )
        phi_mc, g_mc = self._order_parameters(self.a0, self.h0)
        self.phi_offset = phi_ex - phi_mc
        self.g_offset = g_ex - g_mc
        self.k_offset = k_ex - (phi_mc + g_mc * self.kx.T)

    @property
    def samples(self) -> int:
        return self.a0.shape[0]

    def _order_parameters(self, a, h):
        """Sample averages $\\hat\\Phi$, $\\hat G$ on (train ∪ test) × train."""
        P, w = self.n_train, self.weights[:, None]
        ph, dph = self.activation(h), self.activation.derivative(h)
        phi = (w * ph).T @ ph[:, :P]
        g = (w * a[:, None] ** 2 * dph).T @ dph[:, :P]
        return phi, g

    def init(self, *, key: Any = None) -> dict[str, Array]:
        """The sites at initialization and $f = 0$ (the infinite-width start)."""
        return {"a": self.a0, "h": self.h0, "f": jnp.zeros(self.x_all.shape[0], self.a0.dtype)}

    def vector_field(self, t, s, args):
        P, w = self.n_train, self.weights
        a, h = s["a"], s["h"]
        delta = self.y_train - s["f"][:P]
        ph, dph = self.activation(h[:, :P]), self.activation.derivative(h[:, :P])
        back = (dph * delta) @ self.kx / P  # (M, P+Q): Σ_μ Δ_μ φ'(h_μ) K^x(x, x_μ) / P
        phi_all, dphi_all = self.activation(h), self.activation.derivative(h)
        # K Δ / P from the sites, without forming K: Φ Δ + (G ⊙ K^x) Δ
        kdelta = phi_all.T @ (w * (ph @ delta)) / P + (w * a**2)[None, :] @ (dphi_all * back)
        return {
            "a": self.gamma0 * ph @ delta / P,
            "h": self.gamma0 * a[:, None] * back,
            "f": kdelta.reshape(-1) + self.k_offset @ delta / P,
        }

    def loss(self, s) -> Scalar:
        r = s["f"][: self.n_train] - self.y_train
        return 0.5 * jnp.mean(r**2)

    def observe(self, s) -> dict[str, Array]:
        P = self.n_train
        phi, g = self._order_parameters(s["a"], s["h"])
        phi, g = phi + self.phi_offset, g + self.g_offset
        k = phi + g * self.kx.T
        return {
            "loss": self.loss(s),
            "f_train": s["f"][:P, None],
            "f_test": s["f"][P:, None],
            "phi": phi[:P],
            "g": g[:P],
            "ntk": k[:P],
            "ntk_test": k[P:],
        }


def _exact_initial_kernels(act: AbstractActivation, x_all, P: int):
    """$K_0$, $\\Phi_0$, $G_0$ on (train ∪ test) × train: $K_0$ and $\\Phi_0$ are the analytic
    NTK and NNGP of the two-layer `"ntk"` network with $\\sigma_w = 1$ and no biases (the
    kernel-regime module's own), $G_0 = \\mathbb E[\\phi'\\phi']$ from the activation's moments."""
    from .._activations import GaussianPair
    from .._kernels import analytic_kernels
    from .._mlp import MLP

    D = x_all.shape[1]
    net = MLP(D, [1], 1, activation=act, parameterization="ntk", sigma_w=1.0, bias=False)
    kern = analytic_kernels(net, x_all, x_all[:P])
    sq = jnp.sum(x_all**2, axis=1) / D
    pair = GaussianPair.from_covariance(sq[:, None], sq[None, :P], x_all @ x_all[:P].T / D)
    return kern["ntk"], kern["nngp"], act.pair_moments(pair).de12
