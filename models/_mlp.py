"""The network spec: one description yields the real network and its theories."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from ._activations import AbstractActivation, Linear, get_activation
from ._parameterization import Parameterization

#: The parameterizations with a fixed infinite-width kernel (`models/_kernels.py`).
PARAMETERIZATIONS = ("ntk", "standard")
#: Names accepted by `MLP(parameterization=...)`; `"mean_field"` is `gamma0 = 1`.
PARAMETERIZATION_NAMES = ("ntk", "standard", "mup", "mean_field")

#: Parameters of an MLP: one `(w, b)` pair per layer, `b` is None without biases.
Params = tuple[tuple[Array, Array | None], ...]


def _int_like(v):
    """numpy integers become Python ints; anything else is left for the checks."""
    return int(v) if isinstance(v, np.integer) else v


def _scale(name):
    def convert(v):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"MLP: `{name}` must be a real number, got {v!r}.")
        return float(v)

    return convert


def _parameterization(p):
    """An exact ntk/standard table becomes its string (the kernels read the string)."""
    if isinstance(p, Parameterization):
        return p.legacy_name() or p
    return p


def _widths(ws):
    return tuple(_int_like(w) for w in ws) if isinstance(ws, (tuple, list)) else ws


class MLP(eqx.Module):
    r"""A fully connected network, described by its widths, activation and
    parameterization. It holds no parameters: `init(key)` draws them and
    `apply(params, x)` evaluates the network (like `neural_tangents.stax`).

    Layer sizes $n_0 = $ `in_size`, $n_1..n_L = $ `widths`, $n_{L+1} = $ `out_size`;
    pre-activations $z^{l}$ for $l = 1..L+1$ with $h^0 = x$, $h^l = \phi(z^l)$:

    - `"ntk"`: $z^{l} = \frac{\sigma_w}{\sqrt{n_{l-1}}} W^{l} h^{l-1} + \sigma_b b^{l}$,
      with $W, b \sim \mathcal N(0, 1)$.
    - `"standard"`: $z^{l} = W^{l} h^{l-1} + b^{l}$, with
      $W \sim \mathcal N(0, \sigma_w^2/n_{l-1})$, $b \sim \mathcal N(0, \sigma_b^2)$.

    Both give the same function distribution at init; they differ in how gradients
    (and the NTK) scale with width. The output is `readout * z^{L+1}`.

    - `"mup"`, `"mean_field"` (with $\gamma_0 = 1$) or any `Parameterization` (an abc
      table, see `models/_parameterization.py`): $z^l = \mu_l W^l h^{l-1}$ with
      $W^l \sim \mathcal N(0, s_l^2)$, the multipliers $\mu_l$ and stds $s_l$ from
      `Parameterization.forward_multipliers` / `init_stds`, and per-layer learning rates
      `lr_multipliers()` used by `Trained`. These have no fixed infinite-width kernel
      (the analytic kernels refuse them) and take no biases for now. A table equal to
      `Parameterization.ntk` / `.standard` is stored as the string (same numbers).

    **Arguments:**

    - `in_size`, `widths` (tuple of hidden widths, may be empty), `out_size`.
    - `activation`: a name (`linear, relu, erf, tanh, gelu, softplus, sigmoid`; see
      `lm.ACTIVATIONS`) or an activation object (`lm.Activation(name, fn)` for any
      function: its kernels then come by quadrature).
    - `parameterization`: `"ntk"`, `"standard"`, `"mup"`, `"mean_field"` or a
      `Parameterization` with `depth = len(widths) + 1`.
    - `sigma_w`, `sigma_b`: weight and bias scales.
    - `bias`: whether layers have biases (default: `sigma_b != 0`).
    - `readout`: a multiplier on the output.
    """

    in_size: int = eqx.field(static=True, converter=_int_like)
    widths: tuple[int, ...] = eqx.field(static=True, converter=_widths)
    out_size: int = eqx.field(static=True, converter=_int_like)
    activation: str | AbstractActivation = eqx.field(static=True, default="relu")
    parameterization: str | Parameterization = eqx.field(
        static=True, default="ntk", converter=_parameterization
    )
    sigma_w: float = eqx.field(static=True, default=1.0, converter=_scale("sigma_w"))
    sigma_b: float = eqx.field(static=True, default=0.0, converter=_scale("sigma_b"))
    bias: bool | None = eqx.field(static=True, default=None)
    readout: float = eqx.field(static=True, default=1.0, converter=_scale("readout"))

    def __check_init__(self):
        for name in ("in_size", "out_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MLP: `{name}` must be a positive int, got {v!r}.")
        if not isinstance(self.widths, tuple):
            raise TypeError(f"MLP: `widths` must be a tuple of ints, e.g. (512,), got {self.widths!r}.")
        for w in self.widths:
            if not isinstance(w, int) or isinstance(w, bool) or w < 1:
                raise ValueError(f"MLP: every width must be a positive int, got widths={self.widths!r}.")
        get_activation(self.activation)
        p = self.parameterization
        if isinstance(p, Parameterization):
            if p.depth != self.depth:
                raise ValueError(
                    f"MLP: the Parameterization table has {p.depth} layers but the network has "
                    f"{self.depth} weight layers (len(widths) + 1); build it with depth={self.depth}."
                )
        elif not isinstance(p, str):
            raise TypeError(
                f"MLP: `parameterization` must be one of {PARAMETERIZATION_NAMES} or a Parameterization, got {p!r}."
            )
        elif p not in PARAMETERIZATION_NAMES:
            raise ValueError(f"MLP: unknown parameterization {p!r}; choose one of {PARAMETERIZATION_NAMES}.")
        if not (math.isfinite(self.sigma_w) and self.sigma_w > 0):
            raise ValueError(f"MLP: `sigma_w` must be positive, got {self.sigma_w}.")
        if not (math.isfinite(self.sigma_b) and self.sigma_b >= 0):
            raise ValueError(f"MLP: `sigma_b` must be >= 0, got {self.sigma_b}.")
        if not (math.isfinite(self.readout) and self.readout != 0):
            raise ValueError(f"MLP: `readout` must be a finite non-zero number, got {self.readout}.")
        if self.bias is not None and not isinstance(self.bias, (bool, np.bool_)):
            raise TypeError(
                f"MLP: `bias` must be True, False or None (None: biases iff sigma_b != 0), got {self.bias!r}."
            )
        if self.bias is False and self.sigma_b != 0:
            raise ValueError("MLP: `bias=False` with `sigma_b != 0` is contradictory; drop one of them.")
        if not self._legacy and self.has_bias:
            raise ValueError(
                f"MLP: parameterization {self.abc.name!r} takes no biases yet; use sigma_b=0 (bias=False) "
                "or parameterization='ntk'/'standard'."
            )

    @property
    def _legacy(self) -> bool:
        return isinstance(self.parameterization, str) and self.parameterization in PARAMETERIZATIONS

    @property
    def abc(self) -> Parameterization:
        """The parameterization as an abc table (`Parameterization`)."""
        p = self.parameterization
        if isinstance(p, Parameterization):
            return p
        return {
            "ntk": Parameterization.ntk,
            "standard": Parameterization.standard,
            "mup": Parameterization.mup,
            "mean_field": Parameterization.mean_field,
        }[p](self.depth)

    def lr_multipliers(self) -> tuple[float, ...]:
        """Each weight layer's learning rate as a multiple of the global one (all 1 for
        `"ntk"` / `"standard"`)."""
        if self._legacy:
            return (1.0,) * self.depth
        return self.abc.lr_multipliers(self.sizes)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.in_size, *self.widths, self.out_size)

    @property
    def depth(self) -> int:
        """The number of weight layers."""
        return len(self.widths) + 1

    @property
    def has_bias(self) -> bool:
        return self.sigma_b != 0 if self.bias is None else bool(self.bias)

    @property
    def is_linear(self) -> bool:
        """A linear network without biases: $f(x) = W_{\\rm eff}\\, x$."""
        return isinstance(get_activation(self.activation), Linear) and not self.has_bias

    def init(self, key: Any) -> Params:
        """Draw parameters (see the class docstring for the distributions)."""
        keys = jax.random.split(key, 2 * self.depth)
        if not self._legacy:
            stds = self.abc.init_stds(self.sizes, self.sigma_w)
            return tuple(
                (std * jax.random.normal(keys[2 * l], (n_out, n_in)), None)
                for l, (std, n_in, n_out) in enumerate(zip(stds, self.sizes[:-1], self.sizes[1:]))
            )
        params = []
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = jax.random.normal(keys[2 * l], (n_out, n_in))
            b = jax.random.normal(keys[2 * l + 1], (n_out,)) if self.has_bias else None
            if self.parameterization == "standard":
                w = w * (self.sigma_w / math.sqrt(n_in))
                b = None if b is None else b * self.sigma_b
            params.append((w, b))
        return tuple(params)

    def _layer_multipliers(self) -> tuple[tuple[float, float], ...]:
        if self._legacy:
            return tuple(self._multipliers(n_in) for n_in in self.sizes[:-1])
        return tuple((m, 1.0) for m in self.abc.forward_multipliers(self.sizes, self.sigma_w))

    def _multipliers(self, n_in: int) -> tuple[float, float]:
        if self.parameterization == "ntk":
            return self.sigma_w / math.sqrt(n_in), self.sigma_b
        return 1.0, 1.0

    def apply(self, params: Params, x: Float[Array, "*batch d"]) -> Float[Array, "*batch k"]:
        """Evaluate the network on `x` of shape `(..., in_size)`."""
        if x.shape[-1] != self.in_size:
            raise ValueError(
                f"MLP.apply: inputs have {x.shape[-1]} features, the network expects in_size={self.in_size}."
            )
        phi = get_activation(self.activation)
        h = x
        mults = self._layer_multipliers()
        if len(params) != len(mults):
            raise ValueError(f"MLP.apply: `params` has {len(params)} layers, the network has {len(mults)}.")
        for l, ((w, b), (mw, mb)) in enumerate(zip(params, mults)):
            z = mw * (h @ w.T)
            if b is not None:
                z = z + mb * b
            h = z if l == len(params) - 1 else phi(z)
        return self.readout * h

    def effective_weights(self, params: Params) -> list[Float[Array, "o i"]]:
        """The layer matrices as they act on the data (multipliers included)."""
        return [m * w for (w, _), (m, _) in zip(params, self._layer_multipliers())]

    def end_to_end(self, params: Params) -> Float[Array, "k d"]:
        r"""$W = r\, W_{L+1} \cdots W_1$ for a linear network without biases."""
        if not self.is_linear:
            raise ValueError("MLP.end_to_end: only defined for activation='linear' without biases.")
        ws = self.effective_weights(params)
        out = ws[0]
        for w in ws[1:]:
            out = w @ out
        return self.readout * out

    def __call__(self, params: Params, x: Array) -> Array:
        return self.apply(params, x)

    def observables(self, params: Params) -> dict[str, Array]:
        """Extra observables of the network as such: for a linear network without
        biases the end-to-end matrix `(k, d)` and its singular values (descending)."""
        if not self.is_linear:
            return {}
        w = self.end_to_end(params)
        return {"end_to_end": w, "singular_values": jnp.linalg.svd(w, compute_uv=False)}


def count_params(params: PyTree) -> int:
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(params))
