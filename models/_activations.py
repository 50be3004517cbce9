r"""Activations as objects: the function, and its Gaussian expectations for the kernels.

An activation is an `AbstractActivation`: it is called like a function, $\phi(z)$, and
it knows its **pair moments** — for $(u, v) \sim \mathcal N(0, \Sigma)$,
$\Sigma = [[k_{11}, k_{12}], [k_{12}, k_{22}]]$,

$$\mathbb E[\phi(u)\phi(v)],\quad \mathbb E[\phi'(u)\phi'(v)],\quad \mathbb E[\phi(u)^2],\quad
  \mathbb E[\phi(v)^2],$$

which the infinite-width NNGP/NTK recursions consume (THEORY.md §2). `ReLU`, `Erf` and
`Linear` have closed forms; any other function, `Activation(name, fn)`, uses a 2-D
trapezoid rule on the truncated line (`AbstractActivation.quadrature_moments`, available
to every activation, e.g. to check a closed form).

**The quadrature rule.** $\mathbb E[g(z)]$, $z \sim \mathcal N(0, 1)$, is
$\sum_i h\,\varphi(z_i)\,g(z_i)$ on `nodes` equally spaced points $z_i \in [-8, 8]$
($\varphi$ the standard normal density; the tail beyond 8 weighs $1.2\cdot10^{-15}$). For a
smooth $g$ the trapezoid rule on the line converges like $e^{-c/h^2}$ (its error is the
aliased Fourier transform of $g\varphi$ at $2\pi/h$), much faster than Gauss–Hermite with
the same points, whose nodes spread to $\pm\sqrt{2n}$ and leave the centre coarse. Measured
on the erf NTK against its closed form (inputs with $\lvert x\rvert^2/d \le 1$, $\sigma_b = 0.1$,
depths 1–10, worst entry relative): at $\sigma_w = 1, 1.4, 2$ Gauss–Hermite with 64 nodes is
off by 6e-12, 5e-7, 7e-4; the trapezoid with 80 nodes (the default) by 7e-14, 4e-14, 7e-13.
The error grows with the pre-activation variance $k$ (the features of $\phi(\sqrt k z)$
shrink like $1/\sqrt k$): deep unbounded activations at $\sigma_w \ge 2$ (GELU's variance
doubles per layer) need more nodes.

Nearly equal inputs make $\Sigma$ nearly singular, and $\theta = \arccos(k_{12}/\sqrt{k_{11}k_{22}})$
at $\rho = 1 - \varepsilon$ turns round-off into $\sqrt\varepsilon$. So the pair also carries
$\det\Sigma = k_{11}k_{22} - k_{12}^2$ and $\mathbb E[(u-v)^2] = k_{11} + k_{22} - 2k_{12}$,
computed stably from the data and passed from layer to layer through the moments'
own $\mathbb E[\phi\phi]\,\mathbb E[\phi\phi] - \mathbb E[\phi\phi]^2$ and
$\mathbb E[(\phi(u) - \phi(v))^2]$ (both $\geq 0$); ReLU's angle is then
$\theta = \operatorname{atan2}(\sqrt{\det\Sigma}, k_{12})$, exact to round-off at every $\theta$.

Names are aliases resolved in one place, `get_activation`.
"""

from __future__ import annotations

import abc
import functools
import math
import types
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = [
    "ACTIVATIONS",
    "AbstractActivation",
    "Activation",
    "Erf",
    "GaussianPair",
    "Linear",
    "PairMoments",
    "QUADRATURE_NODES",
    "ReLU",
    "check_quadrature_nodes",
    "get_activation",
    "quadrature_rule",
]


class GaussianPair(NamedTuple):
    r"""$(u, v) \sim \mathcal N(0, [[k_{11}, k_{12}], [k_{12}, k_{22}]])$, arrays that broadcast
    together (e.g. `k11` of shape `(P1, 1)`, `k22` `(1, P2)`, the rest `(P1, P2)`).
    `det` $= k_{11}k_{22} - k_{12}^2$ and `dist` $= \mathbb E[(u - v)^2]$ are carried
    separately so that nearly equal inputs keep their digits."""

    k11: Array
    k22: Array
    k12: Array
    det: Array
    dist: Array

    @classmethod
    def from_covariance(cls, k11, k22, k12) -> GaussianPair:
        """The pair with `det` and `dist` computed from the entries (fine away from $\\rho = \\pm 1$)."""
        k11, k22, k12 = (jnp.asarray(k) for k in (k11, k22, k12))
        det = jnp.maximum(k11 * k22 - k12**2, 0.0)
        return cls(k11, k22, k12, det, jnp.maximum(k11 + k22 - 2 * k12, 0.0))


class PairMoments(NamedTuple):
    r"""$\mathbb E[\phi(u)\phi(v)]$ (`e12`), $\mathbb E[\phi'(u)\phi'(v)]$ (`de12`),
    $\mathbb E[\phi(u)^2]$ (`e11`, the shape of `k11`), $\mathbb E[\phi(v)^2]$ (`e22`), and the
    next layer's stable pieces: `det` $= e_{11}e_{22} - e_{12}^2$, `dist`
    $= \mathbb E[(\phi(u) - \phi(v))^2]$."""

    e12: Array
    de12: Array
    e11: Array
    e22: Array
    det: Array
    dist: Array


#: the default number of quadrature points per axis (see the module docs for its accuracy)
QUADRATURE_NODES = 80
#: the rule's half-width: nodes on [-8, 8]
_HALF_WIDTH = 8.0


@functools.lru_cache(maxsize=16)
def quadrature_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the trapezoid rule for $\\mathbb E[g(z)]$, $z \\sim \\mathcal N(0, 1)$:
    `nodes` equally spaced points on $[-8, 8]$, weights $h\\,\\varphi(z_i)$ (float64 numpy)."""
    z = np.linspace(-_HALF_WIDTH, _HALF_WIDTH, nodes)
    return z, (z[1] - z[0]) * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)


def _value_and_derivative(fn, z):
    """φ(z) and φ'(z) elementwise, in one pass."""
    return jax.jvp(fn, (z,), (jnp.ones_like(z),))


def check_quadrature_nodes(nodes) -> int:
    if isinstance(nodes, bool) or not isinstance(nodes, (int, np.integer)) or nodes < 2:
        raise ValueError(
            f"`quadrature_nodes` must be an int >= 2 (quadrature points per axis), got {nodes!r}."
        )
    return int(nodes)


class AbstractActivation(eqx.Module):
    r"""A pointwise nonlinearity $\phi$ and its Gaussian pair moments (see the module docs)."""

    name: eqx.AbstractVar[str]
    #: whether `pair_moments` is a closed form (otherwise quadrature)
    closed_form: eqx.AbstractClassVar[bool]
    #: whether `pair_moments` needs `det` and `dist` exact to round-off relative to
    #: themselves (an angle θ = atan2(√det, k12), as in ReLU's arc-cosine kernel). Otherwise
    #: they may come from the covariance entries (absolute error ~eps·k², no per-pair pass over
    #: the inputs): the moments of a smooth φ are smooth functions of det itself.
    needs_exact_det: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, z: Array) -> Array:
        """$\\phi(z)$, elementwise."""

    @abc.abstractmethod
    def pair_moments(self, pair: GaussianPair, nodes: int = QUADRATURE_NODES) -> PairMoments:
        """The moments of $(\\phi(u), \\phi(v))$; `nodes` is used only by quadrature."""

    def derivative(self, z: Array) -> Array:
        """$\\phi'(z)$, elementwise (by `jax.jvp`)."""
        return _value_and_derivative(self, jnp.asarray(z))[1]

    def gaussian_expectations(
        self, k11: Array, k22: Array, k12: Array, *, nodes: int = QUADRATURE_NODES
    ) -> tuple[Array, Array]:
        r"""$\mathbb E[\phi(u)\phi(v)]$ and $\mathbb E[\phi'(u)\phi'(v)]$ for
        $(u, v) \sim \mathcal N(0, [[k_{11}, k_{12}], [k_{12}, k_{22}]])$."""
        m = self.pair_moments(GaussianPair.from_covariance(k11, k22, k12), check_quadrature_nodes(nodes))
        return m.e12, m.de12

    def quadrature_moments(self, pair: GaussianPair, nodes: int = QUADRATURE_NODES) -> PairMoments:
        r"""The moments by the `nodes`² point trapezoid rule (module docs): with $s_i = \sqrt{k_{ii}}$,
        $\rho = k_{12}/(s_1 s_2)$, $c = \sqrt{\det\Sigma}/(s_1 s_2)$,
        $u = s_1 z_1$, $v = s_2(\rho z_1 + c z_2)$ for independent standard normals;
        $\mathbb E[\phi(u)^2]$ by the 1-D rule."""
        k11, k22, k12, det, _ = pair
        z, w = (jnp.asarray(a, dtype=jnp.result_type(k11, k22, k12)) for a in quadrature_rule(nodes))
        s1, s2 = jnp.sqrt(k11), jnp.sqrt(k22)
        s = s1 * s2
        safe = jnp.where(s > 0, s, 1.0)
        rho = jnp.where(s > 0, k12 / safe, 1.0)
        c = jnp.where(s > 0, jnp.sqrt(det) / safe, 0.0)
        shape = jnp.broadcast_shapes(s1.shape, s2.shape, k12.shape, det.shape)
        args = tuple(jnp.broadcast_to(a, shape).ravel() for a in (s1, s2, rho, c))

        def one(a):
            s1, s2, rho, c = a
            fu, dfu = _value_and_derivative(self, s1 * z)
            fv, dfv = _value_and_derivative(self, s2 * (rho * z[:, None] + c * z[None, :]))
            return jnp.sum(w * fu * (fv @ w)), jnp.sum(w * dfu * (dfv @ w))

        e12, de12 = jax.lax.map(one, args, batch_size=128) if args[0].size else (args[0], args[0])
        e12, de12 = e12.reshape(shape), de12.reshape(shape)
        e11, e22 = (jnp.sum(w * self(jnp.sqrt(k)[..., None] * z) ** 2, axis=-1) for k in (k11, k22))
        return _moments_from_expectations(e12, de12, e11, e22)


def _moments_from_expectations(e12, de12, e11, e22) -> PairMoments:
    """Smooth activations: the next layer's `det` and `dist` straight from the moments."""
    det = jnp.maximum(e11 * e22 - e12**2, 0.0)
    return PairMoments(e12, de12, e11, e22, det, jnp.maximum(e11 + e22 - 2 * e12, 0.0))


class Activation(AbstractActivation):
    """Any elementwise function, with quadrature moments: `Activation("swish", jax.nn.swish)`."""

    name: str = eqx.field(static=True)
    fn: Callable[[Array], Array] = eqx.field(static=True)
    closed_form: ClassVar[bool] = False

    def __call__(self, z):
        return self.fn(z)

    def pair_moments(self, pair, nodes=QUADRATURE_NODES):
        return self.quadrature_moments(pair, nodes)


class Linear(AbstractActivation):
    r"""$\phi(z) = z$: the moments are the covariance itself."""

    name: str = eqx.field(static=True, default="linear")
    closed_form: ClassVar[bool] = True

    def __call__(self, z):
        return z

    def pair_moments(self, pair, nodes=QUADRATURE_NODES):
        k11, k22, k12, det, dist = pair
        return PairMoments(k12, jnp.ones_like(k12), k11, k22, det, dist)


# Taylor coefficients, in t², of h(t)/t³ = (sin t − t cos t)/t³ and g(t)/t³ = (t − sin t)/t³,
# used for t < 1 where the direct forms cancel (10 terms: below 1e-18 relative at t = 1)
_H = tuple((-1) ** (n + 1) * 2 * n / math.factorial(2 * n + 1) for n in range(1, 11))
_G = tuple((-1) ** (n + 1) / math.factorial(2 * n + 1) for n in range(1, 11))


def _odd_series(coefs, t):
    t2 = t * t
    acc = jnp.zeros_like(t)
    for c in reversed(coefs):
        acc = acc * t2 + c
    return acc * t * t2


# Cephes' rational approximation of arctan on [-0.66, 0.66] (double precision)
_ATAN_P = (
    -8.750608600031904122785e-1,
    -1.615753718733365076637e1,
    -7.500855792314704667340e1,
    -1.228866684490136173410e2,
    -6.485021904942025371773e1,
)
_ATAN_Q = (
    2.485846490142306297962e1,
    1.650270098316988542046e2,
    4.328810604912902668951e2,
    4.853903996359136964868e2,
    1.945506571482613964425e2,
)
_PI_4_LO = 3.061616997868382943065e-17  # π/4 − fl(π/4)


def _atan2_first_quadrant(y, x):
    r"""$\operatorname{atan2}(y, x)$ for $x, y \ge 0$, in $[0, \pi/2]$, within 1.5 ulp (measured
    over 2·10⁶ pairs spanning 23 decades against 80-bit `arctan2`; the library's float64 one
    is within 0.8), in vectorizable arithmetic: XLA's float64
    `arctan2` calls a scalar library routine, 5.6× slower, and was half the time of the
    ReLU kernel. The ratio $t = \min/\max \in [0, 1]$, reduced to $[-0.2, 0.66]$ by
    $\arctan t = \pi/4 + \arctan\frac{t-1}{t+1}$, then Cephes' rational approximation."""
    swap = y > x
    num, den = jnp.where(swap, x, y), jnp.where(swap, y, x)
    t = num / jnp.where(den > 0, den, 1.0)
    mid = t > 0.66
    u = jnp.where(mid, (t - 1) / (t + 1), t)
    z = u * u
    p = _ATAN_P[0]
    for c in _ATAN_P[1:]:
        p = p * z + c
    q = z + _ATAN_Q[0]
    for c in _ATAN_Q[1:]:
        q = q * z + c
    a = u + u * (z * p / q)
    a = jnp.where(mid, (a + _PI_4_LO) + math.pi / 4, a)
    return jnp.where(swap, (math.pi / 2 - a) + 2 * _PI_4_LO, a)


class ReLU(AbstractActivation):
    r"""$\phi(z) = \max(z, 0)$ (arc-cosine kernel of degree 1). With $s = \sqrt{k_{11}k_{22}}$,
    $\theta = \operatorname{atan2}(\sqrt{\det\Sigma}, k_{12})$, $\bar\theta = \pi - \theta$ and
    $h(t) = \sin t - t\cos t$:

    $$\mathbb E[\phi\phi] = \frac{s\,h(\bar\theta)}{2\pi},\quad
      \mathbb E[\phi'\phi'] = \frac{\bar\theta}{2\pi},\quad \mathbb E[\phi(u)^2] = \frac{k_{11}}{2},$$
    $$e_{11}e_{22} - e_{12}^2 = \frac{(\pi s - s h(\bar\theta))(\pi s + s h(\bar\theta))}{4\pi^2},\
      \pi s - s h(\bar\theta) = \bar\theta\, s(1 - \cos\theta) + s(\theta - \sin\theta),\quad
      \mathbb E[(\phi(u) - \phi(v))^2] = \frac{\mathbb E[(u-v)^2]}{2} - \frac{s\,h(\theta)}{\pi},$$

    every term evaluated without cancellation ($h$ and $t - \\sin t$ by their series below 1,
    $s(1 - \cos\theta) = \det\Sigma/(s + k_{12})$ for $k_{12} > 0$), so the kernel is exact to
    round-off on the diagonal ($\theta = 0$), for near-duplicates and near-antipodal pairs."""

    name: str = eqx.field(static=True, default="relu")
    closed_form: ClassVar[bool] = True
    needs_exact_det: ClassVar[bool] = True

    def __call__(self, z):
        return jax.nn.relu(z)

    def pair_moments(self, pair, nodes=QUADRATURE_NODES):
        k11, k22, k12, det, dist = pair
        s = jnp.sqrt(k11) * jnp.sqrt(k22)
        r = jnp.sqrt(det)  # s sin θ
        psi = _atan2_first_quadrant(r, jnp.abs(k12))  # θ or π − θ, whichever is <= π/2
        pos = k12 >= 0
        theta = jnp.where(pos, psi, jnp.pi - psi)
        theta_bar = jnp.where(pos, jnp.pi - psi, psi)
        sh_theta = jnp.where(theta < 1, s * _odd_series(_H, theta), r - theta * k12)
        sh_bar = jnp.where(theta_bar < 1, s * _odd_series(_H, theta_bar), r + theta_bar * k12)
        s_one_minus_cos = jnp.where(k12 > 0, det / jnp.where(k12 > 0, s + k12, 1.0), s - k12)
        s_g = jnp.where(theta < 1, s * _odd_series(_G, theta), s * theta - r)
        gap = theta_bar * s_one_minus_cos + s_g  # π s − s h(θ̄) >= 0
        return PairMoments(
            e12=sh_bar / (2 * jnp.pi),
            de12=theta_bar / (2 * jnp.pi),
            e11=k11 / 2,
            e22=k22 / 2,
            det=gap * (jnp.pi * s + sh_bar) / (4 * jnp.pi**2),
            dist=jnp.maximum(dist / 2 - sh_theta / jnp.pi, 0.0),
        )


class Erf(AbstractActivation):
    r"""$\phi(z) = \operatorname{erf}(z)$. With $q = (1 + 2k_{11})(1 + 2k_{22}) - 4k_{12}^2
    = 1 + 2(k_{11} + k_{22}) + 4\det\Sigma$ (a sum of positive terms):

    $$\mathbb E[\phi\phi] = \tfrac{2}{\pi}\arcsin\frac{2k_{12}}{\sqrt{(1+2k_{11})(1+2k_{22})}}
      = \tfrac{2}{\pi}\operatorname{atan2}(2k_{12}, \sqrt q),\qquad
      \mathbb E[\phi'\phi'] = \frac{4}{\pi\sqrt q}.$$"""

    name: str = eqx.field(static=True, default="erf")
    closed_form: ClassVar[bool] = True

    def __call__(self, z):
        return jax.scipy.special.erf(z)

    def pair_moments(self, pair, nodes=QUADRATURE_NODES):
        k11, k22, k12, det, _ = pair
        root_q = jnp.sqrt(1 + 2 * (k11 + k22) + 4 * det)
        e11, e22 = ((2 / jnp.pi) * jnp.arctan2(2 * k, jnp.sqrt(1 + 4 * k)) for k in (k11, k22))
        return _moments_from_expectations(
            (2 / jnp.pi) * jnp.arctan2(2 * k12, root_q), (4 / jnp.pi) / root_q, e11, e22
        )


def _gelu(z):
    return jax.nn.gelu(z, approximate=False)


_BUILTIN = (
    Linear(),
    ReLU(),
    Erf(),
    Activation("tanh", jnp.tanh),
    Activation("gelu", _gelu),
    Activation("softplus", jax.nn.softplus),
    Activation("sigmoid", jax.nn.sigmoid),
)

#: The activations by name (read-only).
ACTIVATIONS: types.MappingProxyType[str, AbstractActivation] = types.MappingProxyType(
    {a.name: a for a in _BUILTIN}
)

#: Other spellings, resolved only here.
_ALIASES = {"identity": "linear", "none": "linear"}


def get_activation(activation: str | AbstractActivation) -> AbstractActivation:
    """Resolve a name (or alias) to its activation object; an activation object passes through."""
    if isinstance(activation, AbstractActivation):
        return activation
    if isinstance(activation, str):
        found = ACTIVATIONS.get(_ALIASES.get(activation, activation))
        if found is not None:
            return found
    raise ValueError(
        f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} (aliases: "
        f"{sorted(_ALIASES)}) or pass an AbstractActivation, e.g. Activation('swish', jax.nn.swish)."
    )
