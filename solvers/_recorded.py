r"""`Recorded`: add Hessian observables (sharpness, top eigenvalues) and the flat
parameters to any dynamics that defines a loss."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from ._dynamics import AbstractDynamics
from ._hessian import _check_k, default_iters, hessian_eigenpairs


class Recorded(AbstractDynamics):
    r"""The same dynamics, observed more closely.

    `Recorded(dynamics, sharpness=True)` moves exactly like `dynamics` (same state,
    flow, gradient-descent map and loss) and adds to its observables, at every saved
    point:

    - `"sharpness"`: $S = \lambda_{\max}(\nabla^2 L)$ (scalar), when `sharpness=True`;
    - `"hessian_eigenvalues"`: the top-`k` eigenvalues `(k,)`, descending, when `k > 1`;
    - `"params"`: the state flattened to one vector (`jax.flatten_util.ravel_pytree`
      order), when `params=True` — for distances between trajectories.

    The eigenvalues come from Lanczos on Hessian-vector products (`hessian_eigenpairs`),
    started from a fixed random vector (`key`), `iters` Krylov vectors (default
    `min(n, 2k + 40)`).

    Raises `ValueError` if Hessian observables are asked of a dynamics without a loss,
    or `k` exceeds the number of parameters.
    """

    dynamics: AbstractDynamics
    sharpness: bool = eqx.field(static=True, default=True)
    k: int = eqx.field(static=True, default=1)
    params: bool = eqx.field(static=True, default=False)
    iters: int | None = eqx.field(static=True, default=None)
    key: Any = None

    def __check_init__(self):
        if not isinstance(self.dynamics, AbstractDynamics):
            raise TypeError(f"Recorded: expected an lmech dynamics, got {type(self.dynamics).__name__}.")
        if (self.sharpness or self.k > 1) and not self.dynamics.has_loss:
            raise ValueError(
                f"Recorded: {type(self.dynamics).__name__} defines no `loss`, so it has no "
                "Hessian; record its sharpness only on a dynamics with a loss (e.g. Trained)."
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"Recorded: `k` must be a positive int, got {self.k!r}.")

    def init(self, *, key: Any = None) -> PyTree:
        return self.dynamics.init(key=key)

    def vector_field(self, t, state: PyTree, args: Any) -> PyTree:
        return self.dynamics.vector_field(t, state, args)

    def step(self, state: PyTree, lr: ArrayLike) -> PyTree:
        return self.dynamics.step(state, lr)

    def loss(self, state: PyTree) -> Scalar:
        return self.dynamics.loss(state)

    @property
    def has_loss(self) -> bool:
        return self.dynamics.has_loss

    @property
    def gd_is_euler(self) -> bool:
        return self.dynamics.gd_is_euler

    def observe(self, state: PyTree) -> dict[str, Array]:
        obs = dict(self.dynamics.observe(state))
        flat = ravel_pytree(state)[0]
        if self.sharpness or self.k > 1:
            n = flat.shape[0]
            _check_k(self.k, n, "Recorded")
            iters = default_iters(self.k, n) if self.iters is None else self.iters
            vals, _ = hessian_eigenpairs(self.dynamics.loss, state, self.k, iters=iters, key=self.key)
            obs["sharpness"] = vals[0]
            if self.k > 1:
                obs["hessian_eigenvalues"] = vals
        if self.params:
            obs["params"] = jnp.asarray(flat)
        return obs
