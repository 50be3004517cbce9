r"""Finite-width statistics of the NTK and the NNGP at initialization (THEORY.md §3;
Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (PDLT), ch. 4 and 8;
Hanin & Nica 2019, "Finite depth and width corrections to the neural tangent kernel").

One input $x$, one output of an `MLP` spec (the diagonal $\Theta(x, x)$ and $f(x)^2$).
Layers $l = 1..L$ (`net.depth` weight layers), widths $n_0 = d, n_1, \dots, n_{L-1}$,
$n_L$ = `out_size`. Given the layers below $l$, the pre-activations $z^l_k$ are i.i.d.
$\mathcal N(0, \hat G_l)$ with the **random metric**
$\hat G_{l+1} = \sigma_b^2 + \tfrac{\sigma_w^2}{n_l}\sum_k \phi(z^l_k)^2$ ($\hat G_1 = \sigma_w^2|x|^2/d + \sigma_b^2$),
and the NTK of layer $l+1$ is
$\Theta^{l+1} = (\lambda_b + \tfrac{\lambda_W}{n_l}|\phi|^2)\,I + \tfrac{\sigma_w^2}{n_l} W A^l W^\top$,
$A^l = D\Theta^l D$, $D = \operatorname{diag}\phi'(z^l)$, with $\lambda_W = \sigma_w^2$,
$\lambda_b = \sigma_b^2$ (NTK parameterization) or $\lambda_W = n_l$, $\lambda_b = 1$ (standard).

**The 1/n expansion (derived here; `finite_width_statistics`).** Conditionally on the layers
below, the rows of $W^{l+1}$ are independent, so $(\hat G_{l+1}, T_{l+1})$ with
$T_{l+1} = \mathbb E[\Theta^{l+1}_{kk} \mid \text{below}]$ is an average of $n_l$ i.i.d. terms.
With $\langle g\rangle_K = \mathbb E\,g(\sqrt K\xi)$, $e(K) = \langle\phi^2\rangle_K$,
$p(K) = \langle\phi'^2\rangle_K$ and two Gaussian integrations by parts
in $\zeta_k = w_k\cdot\phi/|\phi|$, where $z_k = a\zeta_k + \sigma_b\beta_k$, $a^2 = \hat G - \sigma_b^2$
($\mathbb E[g(z)\zeta] = a\langle g'\rangle$, $\mathbb E[g(z)(\zeta^2 - 1)] = 2a^2\,\partial_K\langle g\rangle$; and
$\mathbb E[w_k^\top A w_k - \operatorname{tr}A \mid \zeta_k] = (\zeta_k^2 - 1)\,\phi^\top A\phi/|\phi|^2$),
the exact conditional means are

$$\mathbb E[\hat G_{l+1}] = \sigma_b^2 + \sigma_w^2 e(\hat G_l),\qquad
  \mathbb E[T_{l+1}] = \lambda_b + \lambda_W e(\hat G_l) + \sigma_w^2 p(\hat G_l) T_l + 2\sigma_w^2 p'(\hat G_l) R_l,$$

where $R_l = \sigma_w^4\,\phi^\top A\phi/n^2$ carries the correlation of $\Theta_{kk}$ with
$z_k^2$ (the analogue of PDLT's $F$). Expanding around the infinite-width $(K_l, \Theta_l)$ to $O(1/n)$
with $\Sigma_l = \operatorname{Cov}(\hat G_l, T_l)$ and mean shifts $\mu_l$:

- $\Sigma_{l+1} = M\Sigma_l M^\top + N_l/n_l$,
  $M = \begin{pmatrix}\chi_\parallel & 0\\ \lambda_W e' + \sigma_w^2 p'\Theta_l & \chi_\perp\end{pmatrix}$,
  $\chi_\parallel = \sigma_w^2 e'(K_l)$, $\chi_\perp = \sigma_w^2 p(K_l)$, and $N_l$ the covariance
  of $(\sigma_w^2\phi^2,\ \lambda_W\phi^2 + \sigma_w^2\phi'^2\Theta_l)$ under $\mathcal N(0, K_l)$.
  $n_{l-1}\Sigma_{GG}$ is PDLT's four-point vertex $V$; $n\Sigma_{TT}$, $n\Sigma_{GT}$ play the roles of
  their NTK-variance and NTK–preactivation tensors $A$ and $D$ (single input; normalizations ours).
- $\mu^G_{l+1} = \sigma_w^2(e'\mu^G + \tfrac12 e''\Sigma_{GG})$,
  $\mu^T_{l+1} = \lambda_W(e'\mu^G + \tfrac12 e''\Sigma_{GG})
  + \sigma_w^2(p\mu^T + p'\Theta\mu^G + \tfrac12 p''\Theta\Sigma_{GG} + p'\Sigma_{GT} + 2p'\bar R)$.
- $\bar S_{l+1} = \sigma_w^4\langle\phi'^4\rangle\Theta_l^2/n_l + \chi_\perp^2\bar S_l$ — the mean of
  $S = \mathbb E[(\Theta^{l+1}_{km})^2 \mid \text{below}]$ (the analogue of PDLT's $B/n$); $\bar R_{l+1} = \sigma_w^4\langle\phi^2\phi'^2\rangle\Theta_l/n_l + \chi_\parallel^2\bar R_l$.
- Output: $\mathbb E\Theta = \Theta_L + \mu^T_L$, $\operatorname{Var}\Theta = \Sigma^{TT}_L + 2\bar S_L$;
  $\mathbb E f^2 = K_L + \mu^G_L$, $\mathbb E f^4 - 3(\mathbb E f^2)^2 = 3\Sigma^{GG}_L$ (times `readout`⁴).

Layer 1 is deterministic ($\Sigma_1 = \mu_1 = \bar S_1 = \bar R_1 = 0$). Errors are
$O(1/n^2)$ at fixed depth; at criticality the corrections grow like $L/n$ and the
neglected terms like $(L/n)^2$. Derivatives in $K$ come from autodiff of the 1-D
expectations (exact for ReLU's kinks), which use Gauss–Legendre on each half-line.

**ReLU** ($\sigma_w^2 = 2$, $\sigma_b = 0$): $\sigma_w^4\operatorname{Var}\phi^2 = 4(\tfrac32 - \tfrac14)K^2 = 5K^2$,
so $\operatorname{Var}\hat G_L/K^2 = \prod_l(1 + 5/n_l) - 1 \approx 5\sum_l 1/n_l$ — the 5 of
Hanin & Nica's $\mathbb E[\Theta^2]/\mathbb E[\Theta]^2 \approx e^{5\beta}$. The NTK itself, in our NTK
parameterization: $\operatorname{Var}\Theta/(\mathbb E\Theta)^2 \to \tfrac{11}{3}L/n$ to first order at
$L \gg 1$ (this recursion), and exactly (`exact_statistics`) $\log(\mathbb E\Theta^2/(\mathbb E\Theta)^2)/(L/n)$
= 3.48, 3.99, 4.26, 4.51, 4.70 at $L/n$ = 0.1, 0.5, 1, 2, 4 ($n = 200$): 5 is the growth rate
at large $L/n$, not the small-$L/n$ slope. At $L/n = 0.1$ the first-order ReLU variance is
18% below the exact one (0.342 vs 0.416), so use `exact_statistics` for ReLU.

**Exact: linear and ReLU without biases** (`exact_statistics`). For these two the
conditional moments above close exactly on $(\hat G^2, \hat GT, T^2, S, R)$ — homogeneity
plus the sign flip $w_k \to -w_k$ — so the mean and variance of $\Theta$ and the moments of
$f^2$ follow from a linear recursion with no approximation in $1/n$. (A product formula
over layers built on per-layer rotation invariance, treating the forward and backward
directions as independent of one another, is wrong from depth 4 on: the directions couple
the layers. Measured: depth 4, width 2, $2\cdot10^7$ seeds, $\operatorname{Var}\Theta = 22.508 \pm 0.053$;
this recursion 22.461, the product formula 22.070.)
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._activations import Erf, Linear, ReLU, get_activation
from .._mlp import MLP
from .._validate import check_inputs
from ._pdlt_recursion import layer_recursion

__all__ = [
    "FiniteWidthStatistics",
    "criticality",
    "PairStatistics",
    "finite_width_statistics",
    "pair_statistics",
    "exact_statistics",
]


class FiniteWidthStatistics(NamedTuple):
    r"""Ensemble statistics at init of the diagonal NTK and NNGP, per input (shape `(P,)`),
    all for one output and including `readout`.

    - `ntk_mean` $\mathbb E\Theta(x,x)$, `ntk_variance` $\operatorname{Var}\Theta(x,x)$,
      `ntk_infinite` the infinite-width $\Theta(x,x)$.
    - `nngp_mean` $\mathbb E f(x)^2$, `nngp_infinite` the infinite-width $K(x,x)$,
      `fourth_cumulant` $\mathbb E f^4 - 3(\mathbb E f^2)^2$ ($= 3\operatorname{Var}\hat G_L$).
    - `layers`: per-layer arrays `(L, P)` of the recursion (`None` for the exact deep-linear
      result): `vertex` $V_l = n_{l-1}\operatorname{Var}\hat G_l$, `ntk_a`
      $n_{l-1}\operatorname{Var}T_l$, `ntk_b` $n_{l-1}\bar S_l$, `ntk_d` $n_{l-1}\operatorname{Cov}(\hat G_l, T_l)$,
      `ntk_f` $n_{l-1}\bar R_l$, `metric` $K_l$, `ntk` $\Theta_l$ (without `readout`).
    """

    ntk_mean: Array
    ntk_variance: Array
    ntk_infinite: Array
    nngp_mean: Array
    nngp_infinite: Array
    fourth_cumulant: Array
    layers: dict | None = None

    @property
    def ntk_relative_variance(self) -> Array:
        r"""$\operatorname{Var}\Theta/(\mathbb E\Theta)^2$ ($= \mathbb E[\Theta^2]/\mathbb E[\Theta]^2 - 1$)."""
        return self.ntk_variance / self.ntk_mean**2

    @property
    def ntk_second_moment_ratio(self) -> Array:
        r"""$\mathbb E[\Theta^2]/\mathbb E[\Theta]^2$ (Hanin & Nica's statistic)."""
        return 1 + self.ntk_relative_variance

    @property
    def nngp_relative_variance(self) -> Array:
        r"""$\operatorname{Var}\hat G_L/(\mathbb E\hat G_L)^2$ — the four-point vertex of the output
        layer over the metric squared, $V_L/(n_{L-1}K_L^2)$ (from `fourth_cumulant`)."""
        return self.fourth_cumulant / (3 * self.nngp_mean**2)

    @property
    def ntk_mean_correction(self) -> Array:
        r"""$(\mathbb E\Theta - \Theta_\infty)/\Theta_\infty$."""
        return self.ntk_mean / self.ntk_infinite - 1


# ---------------------------------------------------------------------------- checks


def _check_net(net, who):
    if not isinstance(net, MLP):
        raise TypeError(f"{who}: needs an lmech MLP spec, got {type(net).__name__}.")
    if net.parameterization not in ("ntk", "standard"):
        raise ValueError(
            f"{who}: parameterization must be 'ntk' or 'standard', got {net.parameterization!r}."
        )


def _check_x(net, x, who):
    return check_inputs(x, net.in_size, who, allow_vector=True)


def criticality(net: MLP) -> tuple[bool, str]:
    r"""Whether `net` sits at criticality ($\chi_\parallel = \chi_\perp = 1$ at the fixed
    point, PDLT §5), and a sentence saying what to change otherwise.

    linear: $\sigma_w = 1$, no bias; relu: $\sigma_w^2 = 2$, $\sigma_b = 0$; erf: $\sigma_w^2 = \pi/4$
    ($\phi'(0) = 2/\sqrt\pi$), $\sigma_b = 0$; tanh: $\sigma_w = 1$, $\sigma_b = 0$ (the $K^\star = 0$
    class). Other activations: no criticality rule known here (returns False)."""
    act = get_activation(net.activation)
    sb = net.sigma_b if net.has_bias else 0.0
    if isinstance(act, Linear):
        target = 1.0
    elif isinstance(act, ReLU):
        target = math.sqrt(2.0)
    elif isinstance(act, Erf):
        target = math.sqrt(math.pi) / 2
    elif act.name == "tanh":
        target = 1.0
    else:
        return False, (
            f"no criticality rule for activation {act.name!r}; the 1/n expansion still holds at fixed "
            "depth, but its L/n scaling is only established for linear, relu, erf and tanh."
        )
    ok = sb == 0 and math.isclose(net.sigma_w, target, rel_tol=1e-9)
    msg = (
        ""
        if ok
        else f"{act.name} is critical at sigma_w={target:.6g}, sigma_b=0 (got sigma_w={net.sigma_w}, sigma_b={sb})."
    )
    return ok, msg


def _check_depth_width(net, who):
    if net.depth < 1 or any(w < 1 for w in net.sizes):
        raise ValueError(f"{who}: depth and widths must be >= 1, got sizes {net.sizes}.")


# ------------------------------------------------------------- the 1/n recursion


def finite_width_statistics(
    net: MLP, x: Float[Array, "P d"], *, warn_off_criticality: bool = True
) -> FiniteWidthStatistics:
    r"""Mean and variance of the diagonal NTK $\Theta(x, x)$, the mean of $f(x)^2$ and its
    fourth cumulant, to first order in $1/n$ (module docs), for any activation of the spec
    (1-D Gaussian expectations by quadrature) and both parameterizations; variable widths
    allowed. Per-layer $V, A, B, D, F$ in `.layers`.

    Off criticality (see `criticality`) the expansion still holds at fixed depth but the
    corrections grow exponentially in $L$ rather than like $L/n$; a `UserWarning` says what
    to change unless `warn_off_criticality=False`. Jit-able with the spec static
    (`eqx.filter_jit`)."""
    _check_net(net, "finite_width_statistics")
    _check_depth_width(net, "finite_width_statistics")
    x = _check_x(net, x, "finite_width_statistics")
    if warn_off_criticality:
        ok, msg = criticality(net)
        if not ok:
            warnings.warn(
                f"finite_width_statistics: not at criticality — {msg} The 1/n terms then grow "
                "exponentially with depth instead of like L/n.",
                stacklevel=2,
            )
    sq = jnp.sum(x**2, axis=1)
    sb2 = net.sigma_b**2 if net.has_bias else 0.0
    if sb2 == 0 and not isinstance(x, jax.core.Tracer) and not bool(np.all(np.asarray(sq) > 0)):
        raise ValueError(
            "finite_width_statistics: an input x = 0 without biases has a zero pre-activation "
            "variance; drop it or give the spec a bias (sigma_b > 0)."
        )
    return _recursion(net, sq, sb2)


@eqx.filter_jit
def _recursion(net, sq, sb2):
    act = get_activation(net.activation)
    n = net.sizes
    if net.parameterization == "ntk":
        lam_w, lam_b = [net.sigma_w**2] * net.depth, sb2
    else:
        lam_w, lam_b = [float(n[l]) for l in range(net.depth)], (1.0 if net.has_bias else 0.0)
    out, layers = layer_recursion(act, n, net.sigma_w, sb2, lam_w, lam_b, sq)
    r2 = net.readout**2
    fan_in = jnp.asarray(n[:-1], dtype=sq.dtype)[:, None]
    diag = {
        "vertex": fan_in * layers["s_gg"],
        "ntk_a": fan_in * layers["s_tt"],
        "ntk_b": fan_in * layers["S"],
        "ntk_d": fan_in * layers["s_gt"],
        "ntk_f": fan_in * layers["R"],
        "metric": layers["K"],
        "ntk": layers["theta"],
    }
    return FiniteWidthStatistics(
        ntk_mean=r2 * (out["theta"] + out["mu_t"]),
        ntk_variance=r2**2 * (out["s_tt"] + 2 * out["S"]),
        ntk_infinite=r2 * out["theta"],
        nngp_mean=r2 * (out["K"] + out["mu_g"]),
        nngp_infinite=r2 * out["K"],
        fourth_cumulant=3 * r2**2 * out["s_gg"],
        layers=diag,
    )


# ------------------------------------------- exact: linear and ReLU without biases


def exact_statistics(net: MLP, x: Float[Array, "P d"]) -> FiniteWidthStatistics:
    r"""Exact finite-width mean and variance of $\Theta(x, x)$ and the first two moments of
    $f(x)^2$ for a ReLU (or linear) network without biases, at any widths.

    For $\phi$ = ReLU or identity and $\sigma_b = 0$, the conditional moments of
    $(\hat G_{l+1}, T_{l+1}, S_{l+1}, R_{l+1})$ given the layers below are *exactly* linear in
    $(\hat G_l^2, \hat G_l T_l, T_l^2, S_l, R_l)$ (module docs for $T, S, R$): homogeneity gives
    $\langle\phi^2\rangle_K = \varepsilon K$, $\langle\phi^4\rangle_K = \kappa K^2$
    (ReLU $\varepsilon = \tfrac12, \kappa = \tfrac32$, $p = \langle\phi'^2\rangle = \tfrac12$;
    linear $1, 3, 1$), and the sign flip $w_k \to -w_k$ (which maps $z_k \to -z_k$ and leaves
    $\Theta_{kk}$ and $\Theta_{km}^2$ unchanged) replaces each $\phi'(z_k)^2$ by $p$ inside
    $\mathbb E[\phi'^2_k\Theta_{kk}^2]$ and $\mathbb E[\phi'^2_k\phi'^2_m\Theta_{km}^2]$. With $\Theta^2$
    written $T^2 + 2S$ in expectation, one layer maps (rows of $W$ independent, $n = n_l$,
    $\lambda = \lambda_W$, $U = \lambda\phi^2 + \sigma_w^2\phi'^2\Theta_{kk}$):

    - $\mathbb E[\hat G'^2] = \sigma_w^4\hat G^2(\kappa/n + (1 - 1/n)\varepsilon^2)$
    - $\mathbb E[U] = \lambda\varepsilon\hat G + \sigma_w^2 pT$,
      $\mathbb E[\phi^2 U] = \lambda\kappa\hat G^2 + \sigma_w^2\varepsilon(\hat GT + 2R)$,
      $\mathbb E[U^2] = \lambda^2\kappa\hat G^2 + 2\lambda\sigma_w^2\varepsilon(\hat GT + 2R) + \sigma_w^4p(T^2 + 2S)$
    - $\mathbb E[T'^2] = \mathbb E[U^2]/n + (1 - 1/n)\mathbb E[U]^2$,
      $\mathbb E[\hat G'T'] = \sigma_w^2(\mathbb E[\phi^2U]/n + (1 - 1/n)\varepsilon\hat G\,\mathbb E[U])$
    - $\mathbb E[S'] = \sigma_w^4(p(T^2 + 2S)/n + (1 - 1/n)p^2S)$,
      $\mathbb E[R'] = \sigma_w^4(\varepsilon(\hat GT + 2R)/n + (1 - 1/n)\varepsilon^2R)$.

    At the output $\mathbb E\Theta^2 = \mathbb E T_L^2 + 2\mathbb E S_L$ and $\mathbb E f^4 = 3\mathbb E\hat G_L^2$.
    It follows that $\mathbb E\hat G_L^2/\mathbb E[\hat G_L]^2 = \prod_{l<L}(1 + 5/n_l)$ for ReLU
    (Hanin & Nica's $e^{5\beta}$ for the forward pass) and $\prod_{l<L}(1 + 2/n_l)$ for linear
    networks, and $\mathbb E\Theta = \Theta_\infty$ (no mean correction) for both."""
    _check_net(net, "exact_statistics")
    _check_depth_width(net, "exact_statistics")
    act = get_activation(net.activation)
    if not isinstance(act, (ReLU, Linear)) or net.has_bias:
        raise ValueError(
            "exact_statistics: exact only for activation='relu' or 'linear' without biases "
            "(sigma_b=0); use finite_width_statistics (first order in 1/n) otherwise."
        )
    x = _check_x(net, x, "exact_statistics")
    eps, kappa, p = (0.5, 1.5, 0.5) if isinstance(act, ReLU) else (1.0, 3.0, 1.0)
    n, sw2 = net.sizes, net.sigma_w**2
    lam = [sw2] * net.depth if net.parameterization == "ntk" else [float(v) for v in n[:-1]]
    sq = jnp.sum(x**2, axis=1)
    g = sw2 * sq / n[0]
    t = lam[0] * sq / n[0]
    # first moments, and the second moments (G², GT, T², S, R)
    mg, mt = g, t
    gg, gt, tt, S, R = g * g, g * t, t * t, jnp.zeros_like(g), jnp.zeros_like(g)
    for l in range(1, net.depth):
        w, lw, rest = n[l], lam[l], 1 - 1 / n[l]
        u_g = lw * eps * gg + sw2 * p * gt  # E[G·E[U|F]]
        u_u = (lw * eps) ** 2 * gg + 2 * lw * eps * sw2 * p * gt + (sw2 * p) ** 2 * tt  # E[E[U|F]²]
        phi2_u = lw * kappa * gg + sw2 * eps * (gt + 2 * R)
        u2 = lw**2 * kappa * gg + 2 * lw * sw2 * eps * (gt + 2 * R) + sw2**2 * p * (tt + 2 * S)
        new_gg = sw2**2 * gg * (kappa / w + rest * eps**2)
        new_gt = sw2 * (phi2_u / w + rest * eps * u_g)
        new_tt = u2 / w + rest * u_u
        new_S = sw2**2 * (p * (tt + 2 * S) / w + rest * p**2 * S)
        new_R = sw2**2 * (eps * (gt + 2 * R) / w + rest * eps**2 * R)
        mg, mt = sw2 * eps * mg, lw * eps * mg + sw2 * p * mt
        gg, gt, tt, S, R = new_gg, new_gt, new_tt, new_S, new_R
    r2 = net.readout**2
    return FiniteWidthStatistics(
        ntk_mean=r2 * mt,
        ntk_variance=r2**2 * (tt + 2 * S - mt**2),
        ntk_infinite=r2 * mt,
        nngp_mean=r2 * mg,
        nngp_infinite=r2 * mg,
        fourth_cumulant=3 * r2**2 * (gg - mg**2),
    )


# ------------------------------------------------------------------------- pairs


class PairStatistics(NamedTuple):
    r"""First-order statistics of the 2×2 kernels of a pair of inputs (one output, `readout`
    included): `ntk_mean` $\mathbb E\Theta_{\alpha\beta}$ `(2, 2)`, `ntk_covariance`
    $\operatorname{Cov}(\Theta_{\alpha\beta}, \Theta_{\gamma\delta})$ `(2, 2, 2, 2)`, `ntk_infinite`,
    `nngp_mean` $\mathbb E f_\alpha f_\beta$, `nngp_infinite`, and `metric_covariance`
    $\operatorname{Cov}(\hat G_{\alpha\beta}, \hat G_{\gamma\delta})$ (the output layer's four-point
    vertex over $n_{L-1}$; $\mathbb E[f_\alpha f_\beta f_\gamma f_\delta]$ follows by Wick's rule
    given $\hat G$)."""

    ntk_mean: Array
    ntk_covariance: Array
    ntk_infinite: Array
    nngp_mean: Array
    nngp_infinite: Array
    metric_covariance: Array


def pair_statistics(net: MLP, x: Float[Array, "2 d"], *, warn_off_criticality: bool = True) -> PairStatistics:
    r"""`finite_width_statistics` for a pair of inputs, off-diagonal entries included
    (`_pdlt_pairs` module docs): first order in $1/n$, smooth activations only (the
    recursion differentiates $\phi$ four times; ReLU's pairs are not covered), both
    parameterizations, biases and unequal widths allowed."""
    _check_net(net, "pair_statistics")
    x = _check_x(net, x, "pair_statistics")
    if x.shape[0] != 2:
        raise ValueError(
            f"pair_statistics: `x` must hold exactly 2 inputs, shape (2, {net.in_size}); got {x.shape}."
        )
    act = get_activation(net.activation)
    if isinstance(act, ReLU):
        raise ValueError(
            "pair_statistics: needs a smooth activation (erf, tanh, gelu, softplus, linear, ...); "
            "for relu use exact_statistics or finite_width_statistics on the diagonal."
        )
    if warn_off_criticality:
        ok, msg = criticality(net)
        if not ok:
            warnings.warn(f"pair_statistics: not at criticality — {msg}", stacklevel=2)
    from ._pdlt_pairs import pair_recursion

    sb2 = net.sigma_b**2 if net.has_bias else 0.0
    n = net.sizes
    if net.parameterization == "ntk":
        lam_w, lam_b = [net.sigma_w**2] * net.depth, sb2
    else:
        lam_w, lam_b = [float(n[l]) for l in range(net.depth)], (1.0 if net.has_bias else 0.0)
    st = pair_recursion(act, n, net.sigma_w, sb2, lam_w, lam_b, x)
    r2 = net.readout**2
    Q = st["Q"]
    return PairStatistics(
        ntk_mean=r2 * (st["theta"] + st["mu_t"]),
        ntk_covariance=r2**2 * (st["s_tt"] + Q + jnp.transpose(Q, (0, 1, 3, 2))),
        ntk_infinite=r2 * st["theta"],
        nngp_mean=r2 * (st["K"] + st["mu_g"]),
        nngp_infinite=r2 * st["K"],
        metric_covariance=r2**2 * st["s_gg"],
    )
