r"""The perturbative (small-$\gamma_0$) theory of feature learning: the DMFT to $O(\gamma_0^2)$
(THEORY.md §4).

At $\gamma_0 = 0$ the mean-field dynamics is the kernel regime. Its first correction is of
order $\gamma_0^2$: in both two-layer DMFTs the feature-learning strength enters the single-site
equations linearly, and the $O(\gamma_0)$ change of the kernels averages to zero over the
readout ($\langle a\rangle = 0$, $a$ independent of the fields at init), so every observable is

$$o(t; \gamma_0) = o_0(t) + \tfrac12\gamma_0^2\, \partial_{\gamma_0}^2 o(t; 0) + O(\gamma_0^4).$$

`perturbative` computes $o_0$ and the curvature $\partial_{\gamma_0}^2 o(t; 0)$ exactly — by
forward-over-forward differentiation of the solve at $\gamma_0 = 0$ — and evaluates the
truncation at any $\gamma_0$ without solving again.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

__all__ = ["Perturbative", "perturbative"]


class Perturbative(eqx.Module):
    r"""Observables to $O(\gamma_0^2)$: `times`, `zeroth` (name → $o_0(t)$, the kernel
    regime) and `curvature` (name → $\partial^2_{\gamma_0} o(t; 0)$).
    `at(gamma0)` gives $o_0 + \tfrac12\gamma_0^2\,\partial^2_{\gamma_0}o$ for every observable."""

    times: Array
    zeroth: dict[str, Array]
    curvature: dict[str, Array]

    def at(self, gamma0: ArrayLike) -> dict[str, Array]:
        g2 = jnp.asarray(gamma0) ** 2
        return {k: v + 0.5 * g2 * self.curvature[k] for k, v in self.zeroth.items()}


def perturbative(make: Callable[[Array], eqx.Module], method, **solve_kwargs) -> Perturbative:
    r"""The $O(\gamma_0^2)$ theory of the dynamics `make(gamma0)` (e.g.
    `lambda g: TwoLayerDMFT(data, g, "tanh", samples=M, key=key)`), solved with `method` and
    `solve_kwargs` at $\gamma_0 = 0$ and differentiated twice there (see the module docs).

    `method` is an ODE method (`GradientFlow`: its adjoint is switched to forward mode) or any
    method that supports forward-mode differentiation.
    """
    from lmech.solvers import solve

    if not callable(make):
        raise TypeError("perturbative: `make` must be a function gamma0 -> dynamics.")
    if "state0" in solve_kwargs:
        raise ValueError("perturbative: the start is the dynamics' own; do not pass `state0`.")
    if hasattr(method, "adjoint"):
        import diffrax

        method = eqx.tree_at(lambda m: m.adjoint, method, diffrax.ForwardMode())

    def observe(g):
        return dict(solve(make(g), method, **solve_kwargs).observables)

    def first(g):
        return jax.jvp(observe, (g,), (jnp.ones_like(g),))

    zero = jnp.zeros(())
    (obs0, _), (_, second) = jax.jvp(first, (zero,), (jnp.ones_like(zero),))
    times = solve(make(zero), method, **solve_kwargs).times
    return Perturbative(times=times, zeroth=obs0, curvature=second)
