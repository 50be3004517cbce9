r"""Finite-width fluctuations around the mean-field (DMFT) limit, to leading order in $1/N$
(THEORY.md §4; the two-layer case of Bordelon & Pehlevan 2023).

A width-$N$ two-layer network *is* its single-site dynamics with the empirical measure
$\hat\mu_N = \frac1N\sum_i \delta_{(a_i, w_i)}$ of its $N$ neurons in place of the
single-site law $\mu$: its outputs are a functional $F[\hat\mu_N](t)$ and the DMFT prediction
is $F[\mu](t)$. To first order $F[\hat\mu_N] - F[\mu] = \frac1N\sum_i \psi(s_i) + O(1/N)$ with
$\psi = \delta F/\delta\mu$ centred, so over initializations

$$\operatorname{Cov}\big[f_N(x, t), f_N(x', t)\big] = \frac1N\,
  \operatorname{Cov}_{s\sim\mu}\big[\psi_{x,t}(s), \psi_{x',t}(s)\big] + O(N^{-2}).$$

- **Two-layer linear** (`TwoLayerLinearDMFT`): $F$ depends on $\hat\mu_N$ only through the
  order parameters $(v, C_w, c_a)$ at $t = 0$, whose fluctuations are Gaussian to leading
  order with $\operatorname{Cov}(v) = I/(\gamma_0^2 N)$,
  $\operatorname{Cov}(C_{ij}, C_{kl}) = (\delta_{ik}\delta_{jl} + \delta_{il}\delta_{jk})/N$,
  $\operatorname{Var}(c_a) = 2/N$ and no cross-covariances (odd moments of $a$ vanish). The
  prediction is $J\,\Sigma_0 J^\top$ with $J$ the Jacobian of the solve with respect to the
  start (forward mode through the solve).
- **Two-layer nonlinear** (`TwoLayerDMFT`): $\psi$ is the derivative of the weighted site
  population with respect to each site's weight, $\psi(s_m) = \partial F/\partial w_m - \frac1M\sum_k \partial F/\partial w_k$ (weight $\epsilon$ moved from $\mu$ onto site $m$) —
  which includes the initial output $f_0 = \frac1{\gamma_0}\sum_m w_m a_m\phi(h_m)$ and the
  initial kernel's own fluctuation — by reverse mode through the solve; its covariance over
  the $M$ sites estimates $\operatorname{Cov}_\mu\psi$.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._two_layer import TwoLayerDMFT
from ._two_layer_linear import TwoLayerLinearDMFT

__all__ = ["WidthFluctuations", "width_fluctuations"]


class WidthFluctuations(eqx.Module):
    r"""The leading-order covariance of a width-$N$ network's outputs over initializations.

    - `times`: the saved times `(T,)`.
    - `f_test`: the DMFT (mean-field) test outputs `(T, Q)`.
    - `cov_test`: their covariance at width `width`, `(T, Q, Q)`.
    - `width`: $N$.

    `var_test` is the diagonal; `cov_test * width` is width-independent, and `at(width)`
    rescales to another width. For the two-layer linear DMFT `start` and `start_jacobian`
    (the Jacobian of the test outputs with respect to the start) give each realization's
    own first-order deviation, `first_order(state0)`.
    """

    times: Float[Array, " T"]
    f_test: Float[Array, "T Q"]
    cov_test: Float[Array, "T Q Q"]
    width: int = eqx.field(static=True)
    start: dict | None = None
    start_jacobian: dict | None = None

    def at(self, width: int) -> WidthFluctuations:
        """The same prediction at another width ($\\propto 1/N$)."""
        width = _check_width(width)
        return WidthFluctuations(
            self.times,
            self.f_test,
            self.cov_test * self.width / width,
            width,
            self.start,
            self.start_jacobian,
        )

    def first_order(self, state0: dict) -> Float[Array, "T Q"]:
        r"""Two-layer linear DMFT only: a realization's own first-order deviation
                $J\,(s_0 - s_0^{
        m DMFT})$ of the test outputs, from its order parameters `state0`
                (`TwoLayerLinearDMFT.order_parameters`). It has mean zero over initializations, so
                subtracting it from each network is a control variate for ensemble means: what
                remains is the $O(1/N)$ bias plus second-order noise."""
        if self.start_jacobian is None:
            raise ValueError("first_order: only the two-layer linear DMFT keeps its start Jacobian.")
        d = jax.tree.map(lambda a, b: a - b, state0, self.start)
        j = self.start_jacobian
        return (
            jnp.einsum("tqi,i->tq", j["v"], d["v"])
            + jnp.einsum("tqij,ij->tq", j["C_w"], d["C_w"])
            + j["c_a"] * d["c_a"]
        )

    @property
    def var_test(self) -> Float[Array, "T Q"]:
        return jnp.diagonal(self.cov_test, axis1=1, axis2=2)


def _check_width(width) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width_fluctuations: `width` must be an int >= 1, got {width!r}.")
    return int(width)


def width_fluctuations(dmft, width: int, method, **solve_kwargs) -> WidthFluctuations:
    r"""The $O(1/N)$ covariance of the test outputs of width-`width` networks around the DMFT
    solution (see the module docs), at the times `solve(dmft, method, **solve_kwargs)` saves.

    `dmft`: a `TwoLayerLinearDMFT` (exact Jacobian with respect to the order parameters) or
    a `TwoLayerDMFT` with $\gamma_0 > 0$ (site-weight derivatives; cost about $Q\,T$
    reverse passes through the solve, so keep `samples` moderate — a few thousand sites
    estimate the covariance to a few per cent). `solve_kwargs` must not set `state0`.
    """
    from lmech.solvers import solve

    width = _check_width(width)
    if "state0" in solve_kwargs:
        raise ValueError("width_fluctuations: the start is the DMFT's own; do not pass `state0`.")
    if not isinstance(dmft, (TwoLayerLinearDMFT, TwoLayerDMFT)):
        raise TypeError(
            f"width_fluctuations: needs a TwoLayerLinearDMFT or TwoLayerDMFT, got {type(dmft).__name__}."
        )
    if not isinstance(dmft.gamma0, jax.core.Tracer) and float(dmft.gamma0) <= 0:
        raise ValueError(
            "width_fluctuations: gamma0 must be > 0 (a mean-field network's initial output has "
            "variance 1/(gamma0^2 N))."
        )
    if isinstance(dmft, TwoLayerLinearDMFT):
        return _linear(dmft, width, method, solve, solve_kwargs)
    return _nonlinear(dmft, width, method, solve, solve_kwargs)


def network_deviation(
    dmft: TwoLayerDMFT, readout, weights, method, *, reference=None, **solve_kwargs
) -> Float[Array, "T Q"]:
    r"""The first-order deviation of one width-$N$ network's test outputs from the two-layer
    nonlinear DMFT's solution $F$ (`solve(dmft, method, **solve_kwargs)`).

    A two-layer mean-field network *is* the site population of its $N$ neurons; call $G(\mu)$
    the solution for a site measure $\mu$ without the DMFT's initial-kernel control variate,
    so that the network is $G(\mu_N)$ exactly. The deviation is returned as
    $G'(\mu_M)[\mu_N - \mu_M] + G(\mu_M) - F$: the derivative of $G$ as the DMFT's $M$ sites'
    measure moves towards the network's neurons (the neurons join as extra sites; one
    forward-mode pass through the solve; it includes the network's initial output and its
    initial kernel's fluctuation), plus the sites' own offset from $F$. What the network
    differs from $F$ by beyond it is second order; over initializations the deviation has
    mean about zero, so subtracting it from each network is a control variate for ensemble
    means: what remains is the $O(1/N)$ bias and second-order noise.

    - `readout`: the network's readout weights $a$ `(N,)`; `weights`: its first-layer
      weights $w$ `(N, D)` — both $\mathcal N(0, 1)$ at initialization, in the DMFT's
      normalization ($f = \sum_i a_i\phi(w_i\cdot x/\sqrt D)/(\gamma_0 N)$; in the params of
      `MLP(..., parameterization=Parameterization.mean_field(2, γ₀), bias=False)`:
      `(params[-1][0][0], params[0][0])`).
    - `method`, `solve_kwargs`: as for `solve(dmft, ...)` (an adaptive `GradientFlow` is
      switched to forward-mode differentiation); `reference`: $F$'s test outputs `(T, Q)` if
      already solved.
    """
    from lmech.solvers import solve

    if not isinstance(dmft, TwoLayerDMFT):
        raise TypeError(f"network_deviation: needs a TwoLayerDMFT, got {type(dmft).__name__}.")
    a = jnp.asarray(readout, dmft.a0.dtype)
    w = jnp.asarray(weights, dmft.a0.dtype)
    D = dmft.x_all.shape[1]
    if a.ndim != 1 or w.shape != (a.shape[0], D):
        raise ValueError(
            f"network_deviation: `readout` must be (N,) and `weights` (N, {D}); got {a.shape} and {w.shape}."
        )
    if reference is None:
        reference = _outputs(solve(dmft, method, **solve_kwargs))
    M, N = dmft.samples, a.shape[0]
    h = w @ dmft.x_all.T / np.sqrt(D)
    zero = jnp.zeros_like(dmft.k_offset)
    grown = eqx.tree_at(
        lambda m: (m.a0, m.h0, m.weights, m.k_offset, m.phi_offset, m.g_offset),
        dmft,
        (
            jnp.concatenate([dmft.a0, a]),
            jnp.concatenate([dmft.h0, h]),
            jnp.zeros(M + N, a.dtype),
            zero,
            zero,
            zero,
        ),
    )
    base = jnp.concatenate([dmft.weights, jnp.zeros(N, a.dtype)])
    move = jnp.concatenate([-dmft.weights, jnp.full(N, 1.0 / N, a.dtype)])
    out0 = grown.a0[:, None] * dmft.activation(grown.h0) / dmft.gamma0  # (M + N, P + Q)
    if hasattr(method, "adjoint"):
        import diffrax

        method = eqx.tree_at(lambda m: m.adjoint, method, diffrax.ForwardMode())

    def run(eps):
        site_weights = base + eps * move
        d = eqx.tree_at(lambda m: m.weights, grown, site_weights)
        s0 = {**d.init(), "f": site_weights @ out0}
        return _outputs(solve(d, method, state0=s0, **solve_kwargs))

    value, slope = jax.jvp(run, (jnp.zeros((), a.dtype),), (jnp.ones((), a.dtype),))
    return slope + value - reference


def _outputs(traj):
    return traj["f_test"][..., 0]


def _linear(dmft: TwoLayerLinearDMFT, N: int, method, solve, kw) -> WidthFluctuations:
    s0 = dmft.init()
    traj = solve(dmft, method, state0=s0, **kw)
    if hasattr(method, "adjoint"):  # a few dozen inputs: forward mode through the ODE solve
        import diffrax

        fwd = eqx.tree_at(lambda m: m.adjoint, method, diffrax.ForwardMode())
        jac = jax.jacfwd(lambda s: _outputs(solve(dmft, fwd, state0=s, **kw)))(s0)
    else:
        jac = jax.jacrev(lambda s: _outputs(solve(dmft, method, state0=s, **kw)))(
            s0
        )  # {"v": (T, Q, D), "C_w": (T, Q, D, D), "c_a": (T, Q)}
    jv, jc, ja = jac["v"], jac["C_w"], jac["c_a"]
    cov = jnp.einsum("tpi,tqi->tpq", jv, jv) / dmft.gamma0**2
    cov = cov + jnp.einsum("tpij,tqij->tpq", jc, jc + jnp.swapaxes(jc, -1, -2))
    cov = (cov + 2 * ja[:, :, None] * ja[:, None, :]) / N
    return WidthFluctuations(
        times=traj.times, f_test=traj["f_test"][..., 0], cov_test=cov, width=N, start=s0, start_jacobian=jac
    )


def _nonlinear(dmft: TwoLayerDMFT, N: int, method, solve, kw) -> WidthFluctuations:
    uniform = dmft.weights
    out0 = dmft.a0[:, None] * dmft.activation(dmft.h0) / dmft.gamma0  # (M, P+Q): a φ(h) / γ₀

    def run(weights):
        d = eqx.tree_at(lambda m: m.weights, dmft, weights)
        s0 = d.init()
        s0 = {**s0, "f": (weights - uniform) @ out0}
        return _outputs(solve(d, method, state0=s0, **kw))

    traj = solve(dmft, method, **kw)
    # reverse mode, one output at a time in batches of 8 (a vmap over all T·Q cotangents would
    # hold every backward pass's checkpoints at once)
    out, vjp = jax.vjp(run, uniform)
    basis = jnp.eye(out.size, dtype=out.dtype).reshape(out.size, *out.shape)
    jac = jax.lax.map(lambda e: vjp(e)[0], basis, batch_size=8).reshape(*out.shape, -1)  # (T, Q, M)
    psi = jac - jnp.mean(jac, axis=-1, keepdims=True)  # moving weight ε from μ to one site
    cov = jnp.einsum("tpm,tqm->tpq", psi, psi) / (dmft.samples - 1) / N
    return _assemble(traj, cov, N)


def _assemble(traj, cov, N) -> WidthFluctuations:
    return WidthFluctuations(times=traj.times, f_test=traj["f_test"][..., 0], cov_test=cov, width=N)
