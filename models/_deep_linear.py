r"""Deep linear networks in the mode basis (Saxe, McClelland & Ganguli 2014).

With whitened inputs ($\Sigma_{xx} = I$), $\Sigma_{yx} = U S V^\top$ and a decoupled
initialization $W_1 = R_1 D_1 V^\top,\ W_l = R_l D_l R_{l-1}^\top,\ W_N = U D_N R_{N-1}^\top$
(orthonormal $R_l$, diagonal $D_l$), gradient flow and gradient descent keep the
weights decoupled. Mode $i$ then has one strength $a_{l,i}$ per layer, the end-to-end
map is $W = U\,\mathrm{diag}(u)\,V^\top$ with $u_i = \prod_l a_{l,i}$, and

$$\dot a_{l,i} = \Big(\prod_{m\neq l} a_{m,i}\Big)(s_i - u_i).$$

Balanced modes ($a_{l,i} = a_i$) obey $\dot u = N u^{2-2/N}(s-u)$. Gradient descent is
exactly the Euler step of this flow (the decoupled structure makes the mode map the
full GD map), so the default `step` is exact.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from lmech.solvers import AbstractClosedFormFlow, AbstractLossDynamics

from ._data import Dataset
from ._validate import check_depth

__all__ = ["SaxeModes", "target_modes"]


class SaxeModes(AbstractLossDynamics, AbstractClosedFormFlow):
    r"""Independent modes of a deep linear network under gradient flow / descent.

    State: `a`, shape `(depth, m)` — the strength of every mode in every layer.
    Observables: `"loss"` (exact MSE, including the part of the targets no mode can
    fit), `"mode_strengths"` ($u$), `"singular_values"` (of $W$, descending), and,
    when built with the basis `U`, `V`: `"end_to_end"`; with data: `"f_train"`,
    `"f_test"`. These have the same names and meaning as `Trained`'s.

    Build with `SaxeModes.from_dataset(data, depth, u0=...)`, `SaxeModes.balanced(s,
    u0, depth)` or directly from per-layer strengths `a0`.
    """

    s: Float[Array, " m"]
    a0: Float[Array, "depth m"]
    U: Float[Array, "k m"] | None
    V: Float[Array, "d m"] | None
    x_train: Float[Array, "P d"] | None
    x_test: Float[Array, "Q d"] | None
    loss_offset: Scalar

    def __init__(self, s, a0, *, U=None, V=None, data: Dataset | None = None, loss_offset=0.0):
        s = jnp.asarray(s)
        a0 = jnp.asarray(a0, dtype=s.dtype if jnp.issubdtype(s.dtype, jnp.floating) else None)
        if s.ndim != 1:
            raise ValueError(f"SaxeModes: `s` must be 1-D (one target value per mode), got shape {s.shape}.")
        if a0.ndim == 1:
            a0 = a0[None]
        if a0.ndim != 2 or a0.shape[1] != s.shape[0]:
            raise ValueError(f"SaxeModes: `a0` must have shape (depth, {s.shape[0]}), got {a0.shape}.")
        if a0.shape[0] < 1:
            raise ValueError("SaxeModes: depth must be >= 1.")
        if not isinstance(s, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(s))):
            raise ValueError("SaxeModes: `s` contains NaN or inf.")
        if (U is None) != (V is None):
            raise ValueError("SaxeModes: pass both `U` and `V`, or neither.")
        if U is not None and (U.shape[1] != s.shape[0] or V.shape[1] != s.shape[0]):
            raise ValueError(
                f"SaxeModes: `U` and `V` need {s.shape[0]} columns, got {U.shape} and {V.shape}."
            )
        if data is not None and U is None:
            raise ValueError("SaxeModes: predictions on `data` need the mode basis `U`, `V`.")
        self.s, self.a0, self.U, self.V = s, a0, U, V
        self.x_train = None if data is None else data.x_train
        self.x_test = None if data is None else data.x_test
        self.loss_offset = jnp.asarray(loss_offset)

    # -- constructors -------------------------------------------------------------
    @classmethod
    def balanced(cls, s, u0, depth: int, **kwargs) -> SaxeModes:
        r"""Balanced modes: every layer has strength $u_0^{1/N}$ (needs $u_0 > 0$)."""
        depth = check_depth(depth)
        s = jnp.asarray(s)
        u0 = jnp.broadcast_to(jnp.asarray(u0, s.dtype), s.shape)
        if not isinstance(u0, jax.core.Tracer) and not bool(jnp.all(u0 > 0)):
            raise ValueError("SaxeModes.balanced: `u0` must be > 0 (a balanced mode has a real root).")
        a = u0 ** (1.0 / depth)
        return cls(s, jnp.broadcast_to(a, (depth,) + s.shape), **kwargs)

    @classmethod
    def from_dataset(
        cls, data: Dataset, depth: int, *, u0=None, a0=None, whitened_atol: float = 1e-6
    ) -> SaxeModes:
        r"""Modes of $\Sigma_{yx} = U S V^\top$ for whitened data.

        Give either `u0` (balanced initial end-to-end strengths, scalar or per mode)
        or `a0` (per-layer strengths, shape `(depth, m)`). Raises `ValueError` if the
        inputs are not whitened ($\lVert\Sigma_{xx} - I\rVert_\infty >$ `whitened_atol`).
        """
        depth = check_depth(depth)
        U, s, V, offset = target_modes(data, whitened_atol=whitened_atol)
        if (u0 is None) == (a0 is None):
            raise ValueError("SaxeModes.from_dataset: give exactly one of `u0` or `a0`.")
        kw = dict(U=U, V=V, data=data, loss_offset=offset)
        if u0 is not None:
            return cls.balanced(s, u0, depth, **kw)
        return cls(s, a0, **kw)

    # -- dynamics -------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self.a0.shape[0]

    def init(self, *, key: Any = None) -> Float[Array, "depth m"]:
        return self.a0

    def vector_field(self, t, a: Float[Array, "depth m"], args: Any) -> Float[Array, "depth m"]:
        return _others_product(a) * (self.s - jnp.prod(a, axis=0))

    def loss(self, a) -> Scalar:
        u = jnp.prod(a, axis=0)
        return 0.5 * jnp.sum((self.s - u) ** 2) + self.loss_offset

    def observe(self, a) -> dict[str, Array]:
        u = jnp.prod(a, axis=0)
        obs = {
            "loss": 0.5 * jnp.sum((self.s - u) ** 2) + self.loss_offset,
            "mode_strengths": u,
            "singular_values": -jnp.sort(-jnp.abs(u)),
        }
        if self.U is not None:
            w = (self.U * u) @ self.V.T
            obs["end_to_end"] = w
        if self.x_train is not None:
            obs["f_train"] = self.x_train @ w.T
            obs["f_test"] = self.x_test @ w.T
        return obs

    def closed_form(self, t: Scalar, a0: Float[Array, "depth m"]) -> Float[Array, "depth m"]:
        r"""Two balanced layers started from `a0`: $u(t) = s / (1 + (s/u_0 - 1) e^{-2st})$
        (Saxe eq. 7 in our time); for $s = 0$, $u = u_0/(1 + 2 u_0 t)$."""
        if a0.shape[0] != 2:
            raise ValueError(
                f"SaxeModes.closed_form: exact only for depth 2 (got depth {a0.shape[0]}); "
                "use GradientFlow() for deeper networks."
            )
        _check_balanced(a0)
        u0 = jnp.prod(a0, axis=0)
        s = self.s
        # u = s u0 / (u0 (1 - e^{-2st}) + s e^{-2st}), written without cancellation so
        # that s -> 0 continuously gives u0 / (1 + 2 u0 t).
        zero = s == 0
        s_safe = jnp.where(zero, 1.0, s)  # keeps gradients finite on the unused branch
        grow = -jnp.expm1(-2 * s_safe * t)
        u = jnp.where(
            zero,
            u0 / (1 + 2 * u0 * t),
            s_safe * u0 / (u0 * grow + s_safe * jnp.exp(-2 * s_safe * t)),
        )
        a = jnp.sqrt(u)
        return jnp.stack([a, a])

    def project(self, end_to_end: Float[Array, "*time k d"]) -> Float[Array, "*time m"]:
        r"""The mode strengths $u_i = u_i^\top W v_i$ of end-to-end matrices $W$ (any
        leading axes, e.g. a trajectory's `"end_to_end"`), in this dynamics' mode basis."""
        if self.U is None:
            raise ValueError("SaxeModes.project: needs the mode basis (build the modes with from_dataset).")
        return jnp.einsum("km,...kd,dm->...m", self.U, end_to_end, self.V)

    # -- timescales ------------------------------------------------------------------
    def time_to_fraction(self, fraction: float = 0.5, *, n_nodes: int = 256) -> Float[Array, " m"]:
        r"""Flow time at which balanced mode $i$ reaches `fraction`$\cdot s_i$:
        $t = \int_{u_0}^{f s} \frac{du}{N u^{2-2/N}(s-u)}$ — closed form for depth 2,
        $t = \ln\big(\frac{f}{1-f}\,\frac{s-u_0}{u_0}\big)/(2s)$; Gauss–Legendre in $\ln u$
        otherwise. Modes that never get there ($u_0 \ge f s$) give `inf`."""
        _check_balanced(self.a0)
        u0 = jnp.prod(self.a0, axis=0)
        s, N = self.s, self.depth
        reachable = (u0 > 0) & (u0 < fraction * s)
        if N == 2:
            t = jnp.log(fraction / (1 - fraction) * (s - u0) / u0) / (2 * s)
            return jnp.where(reachable, t, jnp.inf)
        x, w = np.polynomial.legendre.leggauss(n_nodes)
        lo, hi = jnp.log(u0), jnp.log(fraction * s)
        z = 0.5 * (hi - lo)[:, None] * (jnp.asarray(x)[None] + 1) + lo[:, None]
        v = jnp.exp(z)
        integrand = 1.0 / (N * v ** (1 - 2.0 / N) * (s[:, None] - v))
        t = 0.5 * (hi - lo) * jnp.sum(jnp.asarray(w)[None] * integrand, axis=1)
        return jnp.where(reachable, t, jnp.inf)


def _others_product(a: Float[Array, "depth m"]) -> Float[Array, "depth m"]:
    """prod_{m != l} a_m for every layer l, without dividing (a may be 0)."""
    ones = jnp.ones_like(a[:1])
    left = jnp.cumprod(jnp.concatenate([ones, a[:-1]]), axis=0)
    right = jnp.cumprod(jnp.concatenate([ones, a[::-1][:-1]]), axis=0)[::-1]
    return left * right


def _check_balanced(a0) -> None:
    if isinstance(a0, jax.core.Tracer):
        return
    if not bool(jnp.allclose(a0, a0[:1], rtol=1e-12, atol=0)) or not bool(jnp.all(a0 > 0)):
        raise ValueError(
            "SaxeModes: this formula needs balanced, positive modes (every layer the same "
            "strength); use GradientFlow() for unbalanced initial conditions."
        )


def target_modes(data: Dataset, *, whitened_atol: float = 1e-6):
    r"""SVD of $\Sigma_{yx} = U S V^\top$ (thin, $m = \min(k, d)$ modes) and the loss
    offset $\frac12(\mathrm{tr}\,\Sigma_{yy} - \sum_i s_i^2)$ that no mode can remove.
    Checks that the inputs are whitened."""
    sxx = data.input_covariance()
    dev = float(jnp.max(jnp.abs(sxx - jnp.eye(sxx.shape[0]))))
    if dev > whitened_atol:
        raise ValueError(
            f"the mode theory needs whitened inputs (X^T X / P = I); here max|Σxx - I| = "
            f"{dev:.3g}. Use lmech.validation.datasets.linear_teacher, or whiten the inputs."
        )
    U, s, Vt = jnp.linalg.svd(data.input_output_covariance(), full_matrices=False)
    syy = jnp.trace(data.y_train.T @ data.y_train) / data.n_train
    return U, s, Vt.T, 0.5 * (syy - jnp.sum(s**2))
