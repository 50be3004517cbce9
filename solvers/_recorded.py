r"""`Recorded`: a dynamics observed more closely — Hessian observables (sharpness, top
eigenvalues) and the flat parameters, saved beside its own observables."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from ._dynamics import AbstractDynamics, AbstractLossDynamics, require
from ._hessian import check_k, default_iters, hessian_eigenpairs

__all__ = ["Recorded"]


class Recorded(eqx.Module):
    r"""`dynamics`, with extra observables saved at every point.

    `solve(Recorded(dynamics, sharpness=True), method, ...)` is exactly
    `solve(dynamics, method, ..., observe=Recorded(...).extra_observables)`: the
    dynamics itself is advanced — with all its capabilities (a closed form, its own
    map, a loss) — and these observables are added:

    - `"sharpness"`: $S = \lambda_{\max}(\nabla^2 L)$ (scalar), when `sharpness=True`;
    - `"hessian_eigenvalues"`: the top-`k` eigenvalues `(k,)`, descending, when `k > 1`;
    - `"params"`: the state flattened to one vector (`jax.flatten_util.ravel_pytree`
      order), when `params=True` — for distances between trajectories.

    The eigenvalues come from Lanczos on Hessian-vector products (`hessian_eigenpairs`),
    started from a fixed random vector (`key`), `iters` Krylov vectors (default
    `min(n, 2k + 40)`).

    Raises `TypeError` if Hessian observables are asked of a dynamics without a loss
    (not an `AbstractLossDynamics`), `ValueError` for a bad `k`.
    """

    dynamics: AbstractDynamics | Recorded
    sharpness: bool = eqx.field(static=True, default=True)
    k: int = eqx.field(static=True, default=1)
    params: bool = eqx.field(static=True, default=False)
    iters: int | None = eqx.field(static=True, default=None)
    key: Any = None

    def __check_init__(self):
        if not isinstance(self.dynamics, (AbstractDynamics, Recorded)):
            raise TypeError(f"Recorded: expected an lmech dynamics, got {type(self.dynamics).__name__}.")
        for name in ("sharpness", "params"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Recorded: `{name}` must be True or False, got {getattr(self, name)!r}.")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"Recorded: `k` must be a positive int, got {self.k!r}.")
        if self.sharpness or self.k > 1:
            require(
                self.base,
                AbstractLossDynamics,
                "Recorded",
                "it defines no loss, so it has no Hessian; record sharpness only on a dynamics with a loss (e.g. Trained).",
            )

    @property
    def base(self) -> AbstractDynamics:
        """The dynamics that is advanced (wrappers removed)."""
        d = self.dynamics
        while isinstance(d, Recorded):
            d = d.dynamics
        return d

    def init(self, *, key: Any = None) -> PyTree:
        return self.base.init(key=key)

    def extra_observables(self, state: PyTree) -> dict[str, Array]:
        """The observables this wrapper adds."""
        obs = {}
        flat = ravel_pytree(state)[0]
        if self.sharpness or self.k > 1:
            n = flat.shape[0]
            check_k(self.k, n, "Recorded")
            iters = default_iters(self.k, n) if self.iters is None else self.iters
            vals, _ = hessian_eigenpairs(self.base.loss, state, self.k, iters=iters, key=self.key)
            obs["sharpness"] = vals[0]
            if self.k > 1:
                obs["hessian_eigenvalues"] = vals
        if self.params:
            obs["params"] = jnp.asarray(flat)
        return obs

    def observe(self, state: PyTree) -> dict[str, Array]:
        """All observables: the dynamics' own and the extra ones."""
        inner = self.dynamics.observe(state)
        return {**inner, **self.extra_observables(state)}
