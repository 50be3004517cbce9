r"""Parameterizations as data: the abc tables of Yang & Hu (Tensor Programs IV).

An MLP with layer sizes $n_0 = d$ (input), $n_1, \dots, n_L$ (hidden), $n_{L+1} = k$
(output) has weight layers $l = 1, \dots, L+1$. Each is described by three exponents
$(a_l, b_l, c_l)$ of a **width** $n^{(l)}$:

$$
W^l = \mu_l\, w^l, \qquad \mu_l = \alpha_l\, (n^{(l)})^{-a_l}, \qquad
w^l_{ij} \sim \mathcal N\!\big(0,\ \beta_l^2\, (n^{(l)})^{-2 b_l}\big), \qquad
\eta_l = \eta\, \lambda\, (n^{(l)})^{-c_l},
$$

where the network computes $z^l = W^l h^{l-1}$ ($h^0 = x$, $h^l = \phi(z^l)$) and gradient
descent at learning rate $\eta$ updates $w^l \leftarrow w^l - \eta_l \nabla_{w^l} L$.

**The width of a layer.** Input and output dimensions stay fixed as the network widens, so

- hidden layers and the readout ($l \ge 2$) use their fan-in, $n^{(l)} = n_{l-1}$;
- the input layer ($l = 1$) uses the width it maps into, $n^{(1)} = n_1$ (its fan-in $d$
  does not grow); its $d$-dependence is the constant $d^{-1/2}$ below;
- a network without hidden layers has no width: $n^{(1)} = 1$.

**Constants.** $\sigma_w$ (the MLP's weight scale) and the input layer's $d^{-1/2}$ sit either
in the forward multiplier (`constants_in_multiplier=True`, NTK style) or in the init std
(`False`, standard style): with $\kappa_l = \sigma_w\, d^{-1/2}$ for $l = 1$ and $\sigma_w$
otherwise, $\alpha_l = \kappa_l$, $\beta_l = 1$ in the first case and $\alpha_l = 1$,
$\beta_l = \kappa_l$ in the second. The readout multiplier carries an extra constant
`readout_scale` and every learning rate the constant $\lambda = $ `lr_scale`.

**Symmetry.** $(a_l, b_l, c_l) \to (a_l + \theta_l, b_l - \theta_l, c_l - 2\theta_l)$ leaves
$\mu_l w^l$ at init and $\mu_l^2 \eta_l$ (the step on $W^l$) unchanged: the same function
trajectory under gradient descent. The invariants are $a_l + b_l$ and $2a_l + c_l$.

| name | $a$ (input, hidden, readout) | $b$ | $c$ | constants |
| --- | --- | --- | --- | --- |
| `standard` | $0, 0, 0$ | $0, \tfrac12, \tfrac12$ | $0$ | in the init |
| `ntk` | $0, \tfrac12, \tfrac12$ | $0$ | $0$ | in the multiplier |
| `mup` | $-\tfrac12, 0, \tfrac12$ | $\tfrac12$ | $0$ | in the init |
| `mean_field(γ₀)` | $0, \tfrac12, 1$ | $0$ | $-1$ | in the multiplier; readout $1/\gamma_0$, $\lambda = \gamma_0^2$ |

`mean_field(γ₀)` is the Bordelon–Pehlevan (2022) network $f = w^{L+1}\!\cdot\phi(h^L)/(\gamma_0 N)$,
$h^{l+1} = W^l \phi(h^l)/\sqrt N$, $h^1 = W^0 x/\sqrt d$, $W \sim \mathcal N(0, 1)$ trained by
$\dot\theta = -\gamma_0^2 N \nabla L$; up to constants it is `mup` shifted by $\theta = \tfrac12$.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import numpy as np

__all__ = ["Parameterization"]


def _exponents(v, name: str, depth: int | None = None) -> tuple[float, ...]:
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence | np.ndarray):
        raise TypeError(
            f"Parameterization: `{name}` must be a sequence of numbers (one per weight layer), got {v!r}."
        )
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
            raise TypeError(f"Parameterization: every entry of `{name}` must be a real number, got {x!r}.")
        if not math.isfinite(float(x)):
            raise ValueError(f"Parameterization: every entry of `{name}` must be finite, got {x!r}.")
        out.append(float(x))
    if not out:
        raise ValueError(f"Parameterization: `{name}` must have one entry per weight layer (at least one).")
    return tuple(out)


def _positive(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"Parameterization: `{name}` must be a real number, got {v!r}.")
    if not (math.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f"Parameterization: `{name}` must be finite and > 0, got {v!r}.")
    return float(v)


def _depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(
            f"Parameterization: `depth` (the number of weight layers) must be an int >= 1, got {depth!r}."
        )
    return int(depth)


def _three(depth: int, first: float, hidden: float, last: float) -> tuple[float, ...]:
    if depth == 1:
        return (last,) if first == last else (first,)
    return (first, *([hidden] * (depth - 2)), last)


class Parameterization(eqx.Module):
    r"""An abc table for an MLP with `depth` weight layers (see the module docstring for
    the exact convention): per layer an output-multiplier exponent $a_l$, an
    init-variance exponent $b_l$ and a learning-rate exponent $c_l$.

    **Arguments:**

    - `a`, `b`, `c`: one number per weight layer (input layer first, readout last).
    - `constants_in_multiplier`: where $\sigma_w$ and the input layer's $d^{-1/2}$ go
      (True: the forward multiplier, NTK style; False: the init std, standard style).
    - `readout_scale`: an extra constant on the readout's forward multiplier (> 0).
    - `lr_scale`: an extra constant on every layer's learning rate (> 0).
    - `name`: a label (the constructors set it).
    """

    a: tuple[float, ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    constants_in_multiplier: bool = False
    readout_scale: float = 1.0
    lr_scale: float = 1.0
    name: str = "abc"

    def __init__(
        self,
        a: Sequence[float],
        b: Sequence[float],
        c: Sequence[float],
        *,
        constants_in_multiplier: bool = False,
        readout_scale: float = 1.0,
        lr_scale: float = 1.0,
        name: str = "abc",
    ):
        a, b, c = _exponents(a, "a"), _exponents(b, "b"), _exponents(c, "c")
        if not len(a) == len(b) == len(c):
            raise ValueError(
                f"Parameterization: `a`, `b`, `c` need one entry per weight layer each, got lengths "
                f"{len(a)}, {len(b)}, {len(c)}."
            )
        if not isinstance(constants_in_multiplier, (bool, np.bool_)):
            raise TypeError(
                f"Parameterization: `constants_in_multiplier` must be True or False, got {constants_in_multiplier!r}."
            )
        if not isinstance(name, str):
            raise TypeError(f"Parameterization: `name` must be a string, got {name!r}.")
        self.a, self.b, self.c = a, b, c
        self.constants_in_multiplier = bool(constants_in_multiplier)
        self.readout_scale = _positive(readout_scale, "readout_scale")
        self.lr_scale = _positive(lr_scale, "lr_scale")
        self.name = name

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def standard(cls, depth: int, *, c: float = 0.0) -> Parameterization:
        """Standard parameterization; `c` is its (uniform) learning-rate exponent
        (0: the plain `"standard"` network; 1: the stable SP of Yang & Hu)."""
        d = _depth(depth)
        return cls(
            [0.0] * d,
            _three(d, 0.0, 0.5, 0.5),
            [float(c)] * d,
            constants_in_multiplier=False,
            name="standard",
        )

    @classmethod
    def ntk(cls, depth: int) -> Parameterization:
        """NTK parameterization (the `"ntk"` network)."""
        d = _depth(depth)
        return cls(_three(d, 0.0, 0.5, 0.5), [0.0] * d, [0.0] * d, constants_in_multiplier=True, name="ntk")

    @classmethod
    def mup(cls, depth: int) -> Parameterization:
        """Maximal-update parameterization (muP) for SGD."""
        d = _depth(depth)
        return cls(_three(d, -0.5, 0.0, 0.5), [0.5] * d, [0.0] * d, constants_in_multiplier=False, name="mup")

    @classmethod
    def mean_field(cls, depth: int, gamma0: float = 1.0) -> Parameterization:
        r"""The mean-field / DMFT network of Bordelon & Pehlevan with feature-learning
        strength $\gamma_0 > 0$ (it is not defined at $\gamma_0 = 0$, the kernel limit)."""
        d = _depth(depth)
        if isinstance(gamma0, bool) or not isinstance(gamma0, (int, float, np.integer, np.floating)):
            raise TypeError(f"Parameterization.mean_field: `gamma0` must be a real number, got {gamma0!r}.")
        if not (math.isfinite(float(gamma0)) and gamma0 > 0):
            raise ValueError(
                f"Parameterization.mean_field: `gamma0` must be > 0 (gamma0 -> 0 is the kernel limit: "
                f"use 'ntk' for it), got {gamma0!r}."
            )
        g = float(gamma0)
        return cls(
            _three(d, 0.0, 0.5, 1.0),
            [0.0] * d,
            [-1.0] * d,
            constants_in_multiplier=True,
            readout_scale=1.0 / g,
            lr_scale=g * g,
            name=f"mean_field(gamma0={g:g})",
        )

    # -- queries -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.a)

    def shifted(self, theta: float | Sequence[float]) -> Parameterization:
        r"""The symmetric table $(a + \theta, b - \theta, c - 2\theta)$ (per layer if a
        sequence): the same function trajectory under gradient descent."""
        th = [float(theta)] * self.depth if np.ndim(theta) == 0 else list(_exponents(theta, "theta"))
        if len(th) != self.depth:
            raise ValueError(f"Parameterization.shifted: `theta` needs {self.depth} entries, got {len(th)}.")
        return Parameterization(
            [x + t for x, t in zip(self.a, th)],
            [x - t for x, t in zip(self.b, th)],
            [x - 2 * t for x, t in zip(self.c, th)],
            constants_in_multiplier=self.constants_in_multiplier,
            readout_scale=self.readout_scale,
            lr_scale=self.lr_scale,
            name=f"{self.name}+theta",
        )

    def invariants(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """$(a_l + b_l)$ and $(2a_l + c_l)$: equal for tables on one symmetry orbit."""
        return (
            tuple(x + y for x, y in zip(self.a, self.b)),
            tuple(2 * x + y for x, y in zip(self.a, self.c)),
        )

    def kernel_limit(self) -> str | None:
        """`"ntk"` or `"standard"` if the table is (on the symmetry orbit of) that
        parameterization — its infinite-width training is a fixed-kernel regression with
        the analytic kernels of `parameterization="ntk"|"standard"`; `None` if no fixed
        infinite-width kernel describes it (muP, mean field: the features move)."""
        if self.readout_scale != 1.0 or self.lr_scale != 1.0:
            return None
        for ref in (Parameterization.ntk(self.depth), Parameterization.standard(self.depth)):
            if ref.constants_in_multiplier == self.constants_in_multiplier and _close(
                ref.invariants(), self.invariants()
            ):
                return ref.name
        return None

    def mean_field_gamma0(self) -> float | None:
        r"""$\gamma_0$ if the table is (on the symmetry orbit of)
        `Parameterization.mean_field(depth, γ₀)` — the networks the mean-field DMFTs describe —
        else None."""
        g = 1.0 / self.readout_scale
        ref = Parameterization.mean_field(self.depth, g)
        if ref.constants_in_multiplier != self.constants_in_multiplier or not math.isclose(
            self.lr_scale, g * g, rel_tol=1e-12
        ):
            return None
        return g if _close(ref.invariants(), self.invariants()) else None

    def legacy_name(self) -> str | None:
        """`"ntk"`/`"standard"` if this table is exactly that string's network (not only on
        its orbit), else None."""
        for ref in (Parameterization.ntk(self.depth), Parameterization.standard(self.depth)):
            if (
                (ref.a, ref.b, ref.c) == (self.a, self.b, self.c)
                and ref.constants_in_multiplier == self.constants_in_multiplier
                and self.readout_scale == 1.0
                and self.lr_scale == 1.0
            ):
                return ref.name
        return None

    def widths(self, sizes: Sequence[int]) -> tuple[int, ...]:
        r"""The width $n^{(l)}$ of each weight layer for layer sizes $(d, n_1..n_L, k)$."""
        sizes = self._check_sizes(sizes)
        if len(sizes) == 2:
            return (1,)
        return (sizes[1], *sizes[1:-1])

    def forward_multipliers(self, sizes: Sequence[int], sigma_w: float = 1.0) -> tuple[float, ...]:
        r"""$\mu_l = \alpha_l (n^{(l)})^{-a_l}$, with the readout's `readout_scale`."""
        n, kappa = self.widths(sizes), self._kappa(sizes, sigma_w)
        out = [(k if self.constants_in_multiplier else 1.0) * m ** (-a) for k, m, a in zip(kappa, n, self.a)]
        out[-1] *= self.readout_scale
        return tuple(out)

    def init_stds(self, sizes: Sequence[int], sigma_w: float = 1.0) -> tuple[float, ...]:
        r"""The std $\beta_l (n^{(l)})^{-b_l}$ of the trained parameters $w^l$ at init."""
        n, kappa = self.widths(sizes), self._kappa(sizes, sigma_w)
        return tuple(
            (1.0 if self.constants_in_multiplier else k) * m ** (-b) for k, m, b in zip(kappa, n, self.b)
        )

    def lr_multipliers(self, sizes: Sequence[int]) -> tuple[float, ...]:
        r"""$\lambda (n^{(l)})^{-c_l}$: layer $l$ trains at learning rate $\eta$ times this."""
        return tuple(self.lr_scale * m ** (-c) for m, c in zip(self.widths(sizes), self.c))

    def _kappa(self, sizes, sigma_w) -> list[float]:
        sw = _positive(sigma_w, "sigma_w")
        return [sw / math.sqrt(sizes[0])] + [sw] * (self.depth - 1)

    def _check_sizes(self, sizes) -> tuple[int, ...]:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(
                f"Parameterization: `sizes` must be a sequence (in_size, *widths, out_size), got {sizes!r}."
            )
        out = []
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ValueError(
                    f"Parameterization: every layer size must be a positive int, got sizes={tuple(sizes)!r}."
                )
            out.append(int(s))
        if len(out) != self.depth + 1:
            raise ValueError(
                f"Parameterization: this table has {self.depth} weight layers, so `sizes` needs {self.depth + 1} "
                f"entries (in_size, {self.depth - 1} hidden widths, out_size), got {len(out)}."
            )
        return tuple(out)


def _close(x, y) -> bool:
    return all(np.allclose(u, v, rtol=0, atol=1e-12) for u, v in zip(x, y))
