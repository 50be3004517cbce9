r"""The linearized network: training in the kernel regime, in function space.

For a network linearized around its initialization, $f_\theta(x) \approx f_0(x) +
\partial_\theta f_0(x)(\theta - \theta_0)$, gradient flow on
$L = \frac1P\sum_\mu \ell(f(x_\mu), y_\mu)$ moves the outputs by

$$\dot f(X) = -\tfrac1P\,\Theta\,\nabla_f\ell(f(X)),\qquad
  \dot f(x_*) = -\tfrac1P\,\Theta_*\,\nabla_f\ell(f(X)),$$

with $\Theta = \Theta(X, X)$ and $\Theta_* = \Theta(x_*, X)$ fixed. Gradient descent on the
linearized model is *exactly* the Euler step of this flow. For MSE
($\nabla_f\ell = f - y$) both have closed forms through one eigendecomposition
$\Theta = V\Lambda V^\top$, with $r_0 = f_0(X) - Y$:

- flow: $f_t(X) = Y + V e^{-\Lambda t/P} V^\top r_0$,
  $f_t(x_*) = f_0(x_*) - \Theta_* V\,\frac{1 - e^{-\Lambda t/P}}{\Lambda}\,V^\top r_0$;
- GD: the same with $e^{-\lambda t/P}$ replaced by $(1 - \eta\lambda/P)^k$. It
  diverges iff $\eta > 2P/\lambda_{\max}$.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from lmech.solvers import AbstractClosedFormFlow, AbstractClosedFormMap, AbstractLossDynamics

from ._losses import MSE, AbstractLoss, get_loss
from ._spectral import flow_factors, gd_factors

__all__ = ["Linearized"]


class Linearized(AbstractLossDynamics, AbstractClosedFormFlow, AbstractClosedFormMap):
    r"""Function-space dynamics of a linearized network with a fixed kernel.

    State: `{"f_train": (P, k), "f_test": (Q, k)}`. Observables: `"loss"`,
    `"f_train"`, `"f_test"` (the same names as `Trained`).

    The kernel is either *shared* across outputs — `ntk_train` of shape `(P, P)`,
    meaning $\Theta \otimes I_k$ (analytic kernels, or an empirical NTK averaged over
    logits) — or *full*: shape `(P, k, P, k)` (an empirical NTK with all output pairs).

    **Arguments:**

    - `ntk_train`: $\Theta(X, X)$, `(P, P)` or `(P, k, P, k)`.
    - `ntk_test_train`: $\Theta(x_*, X)$, `(Q, P)` or `(Q, k, P, k)`.
    - `f0_train`, `f0_test`: outputs at initialization (zeros for the ensemble mean).
    - `y_train`, `y_test`: targets.
    - `loss`: an `AbstractLoss` or its name: `"mse"` (closed forms available) or
      `"cross_entropy"`/`"ce"` (integrate with `GradientFlow` / iterate with
      `GradientDescent`).

    The kernel must be positive semi-definite: eigenvalues below
    $-\sqrt{\epsilon}\,\lambda_{\max}$ raise `ValueError`; smaller negative ones (round-off)
    are set to zero, and the flow, the GD map and the closed forms all use that same
    projected kernel on the training points.
    """

    ntk_train: Array
    ntk_test_train: Array
    f0_train: Float[Array, "P k"]
    f0_test: Float[Array, "Q k"]
    y_train: Float[Array, "P k"]
    y_test: Float[Array, "Q k"]
    eigvals: Float[Array, " N"]
    eigvecs: Float[Array, "N N"]
    loss_fn: AbstractLoss

    def __init__(self, ntk_train, ntk_test_train, f0_train, f0_test, y_train, y_test, *, loss="mse"):
        loss_fn = get_loss(loss)
        f0_train, y_train = jnp.asarray(f0_train), jnp.asarray(y_train)
        f0_test, y_test = jnp.asarray(f0_test), jnp.asarray(y_test)
        P, k = y_train.shape
        Q = y_test.shape[0]
        if f0_train.shape != (P, k) or f0_test.shape != (Q, k) or y_test.shape[1:] != (k,):
            raise ValueError(
                f"Linearized: f0_train {f0_train.shape}, f0_test {f0_test.shape} must match "
                f"y_train {y_train.shape} and y_test {y_test.shape}."
            )
        ntk_train, ntk_test_train = jnp.asarray(ntk_train), jnp.asarray(ntk_test_train)
        if ntk_train.shape == (P, P):
            if ntk_test_train.shape != (Q, P):
                raise ValueError(
                    f"Linearized: ntk_test_train must have shape {(Q, P)}, got {ntk_test_train.shape}."
                )
            mat = ntk_train
        elif ntk_train.shape == (P, k, P, k):
            if ntk_test_train.shape != (Q, k, P, k):
                raise ValueError(
                    f"Linearized: ntk_test_train must have shape {(Q, k, P, k)}, got {ntk_test_train.shape}."
                )
            mat = ntk_train.reshape(P * k, P * k)
        else:
            raise ValueError(
                f"Linearized: ntk_train must have shape (P, P) = {(P, P)} or (P, k, P, k) = "
                f"{(P, k, P, k)}, got {ntk_train.shape}."
            )
        for name, a in (
            ("ntk_train", ntk_train),
            ("ntk_test_train", ntk_test_train),
            ("f0_train", f0_train),
            ("f0_test", f0_test),
        ):
            if not isinstance(a, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(a))):
                raise ValueError(f"Linearized: `{name}` contains NaN or inf.")
        loss_fn.check_targets(y_train, "Linearized")
        lam, vec = jnp.linalg.eigh(0.5 * (mat + mat.T))
        if not isinstance(lam, jax.core.Tracer):
            tol = float(jnp.sqrt(jnp.finfo(lam.dtype).eps)) * max(float(jnp.max(jnp.abs(lam))), 0.0)
            if float(lam[0]) < -tol:
                raise ValueError(
                    f"Linearized: the kernel is not positive semi-definite (smallest eigenvalue {float(lam[0]):.3g}, "
                    f"largest {float(lam[-1]):.3g}); an NTK is PSD, so check how it was computed."
                )
        # round-off can leave tiny negative eigenvalues: every method uses the projected kernel
        self.eigvals = jnp.clip(lam, 0.0)
        self.eigvecs = vec
        self.ntk_train, self.ntk_test_train = ntk_train, ntk_test_train
        self.f0_train, self.f0_test, self.y_train, self.y_test = f0_train, f0_test, y_train, y_test
        self.loss_fn = loss_fn

    # -- construction from a network --------------------------------------------------
    @classmethod
    def from_network(
        cls,
        net,
        data,
        *,
        kernel: str = "analytic",
        key: Any = None,
        params: Any = None,
        loss="mse",
        block_size: int | None = None,
        output: str = "trace",
    ) -> Linearized:
        r"""The linearized model of `net` on `data`.

        - `kernel="analytic"`: the infinite-width NTK of the spec (shared over outputs).
          With `key`/`params` the initial outputs $f_0$ are those of that network (the
          linearization of one finite network, with the infinite-width kernel); without
          them $f_0 = 0$, the infinite-ensemble mean.
        - `kernel="empirical"`: the empirical NTK of the network at `params` (or
          `net.init(key)`), `output="trace"` (shared, averaged over logits) or
          `"full"` (all output pairs).
        """
        from ._empirical_ntk import empirical_ntk
        from ._kernels import analytic_ntk

        if params is None and key is not None:
            params = net.init(key)
        if kernel == "analytic":
            ntk = analytic_ntk(net, data.x_train, block_size=block_size)
            ntk_star = analytic_ntk(net, data.x_test, data.x_train, block_size=block_size)
        elif kernel == "empirical":
            if params is None:
                raise ValueError("Linearized.from_network: kernel='empirical' needs `key=` or `params=`.")
            ntk = empirical_ntk(net.apply, params, data.x_train, output=output, block_size=block_size)
            ntk_star = empirical_ntk(
                net.apply, params, data.x_test, data.x_train, output=output, block_size=block_size
            )
        else:
            raise ValueError(
                f"Linearized.from_network: kernel must be 'analytic' or 'empirical', got {kernel!r}."
            )
        if params is None:
            f0, f0s = jnp.zeros_like(data.y_train), jnp.zeros_like(data.y_test)
        else:
            f0, f0s = net.apply(params, data.x_train), net.apply(params, data.x_test)
        return cls(ntk, ntk_star, f0, f0s, data.y_train, data.y_test, loss=loss)

    # -- helpers --------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self.ntk_train.ndim == 2

    @property
    def n_train(self) -> int:
        return self.y_train.shape[0]

    @property
    def max_stable_lr(self) -> Scalar:
        r"""$2P/\lambda_{\max}(\Theta)$: gradient descent on MSE diverges above it."""
        return 2 * self.n_train / self.eigvals[-1]

    def _flat(self, r: Float[Array, "n k"]) -> Array:
        return r if self.shared else r.reshape(-1, 1)

    def _unflat(self, r: Array, n: int) -> Array:
        return r if self.shared else r.reshape(n, -1)

    def _apply_train(self, g):
        """Θ g with the PSD-projected training kernel V diag(λ) Vᵀ."""
        V = self.eigvecs
        return self._unflat(V @ (self.eigvals[:, None] * (V.T @ self._flat(g))), self.n_train)

    def _apply_test(self, g):
        Q = self.y_test.shape[0]
        mat = (
            self.ntk_test_train if self.shared else self.ntk_test_train.reshape(Q * self.y_test.shape[1], -1)
        )
        return self._unflat(mat @ self._flat(g), Q)

    def ntk_train_matrix(self) -> Array:
        if self.shared:
            return self.ntk_train
        n = self.ntk_train.shape[0] * self.ntk_train.shape[1]
        return self.ntk_train.reshape(n, n)

    def _spectral(self, state0, fn_train, fn_test):
        """f_train = Y + V fn_train(λ) Vᵀ r0 ; f_test = f0* − Θ* V fn_test(λ) Vᵀ r0."""
        r0 = self._flat(state0["f_train"] - self.y_train)
        c = self.eigvecs.T @ r0
        P = self.n_train
        f_train = self.y_train + self._unflat(self.eigvecs @ (fn_train[:, None] * c), P)
        g = self._unflat(self.eigvecs @ (fn_test[:, None] * c), P)
        return {"f_train": f_train, "f_test": state0["f_test"] - self._apply_test(g)}

    def _require_mse(self, what: str):
        if not isinstance(self.loss_fn, MSE):
            raise ValueError(
                f"Linearized.{what}: closed forms exist for MSE only; integrate "
                f"loss={self.loss_fn.name!r} with GradientFlow() or iterate it with GradientDescent()."
            )

    # -- dynamics ----------------------------------------------------------------------
    def init(self, *, key: Any = None):
        return {"f_train": self.f0_train, "f_test": self.f0_test}

    def vector_field(self, t, state, args):
        g = self.loss_fn.grad_f(state["f_train"], self.y_train) / self.n_train
        return {"f_train": -self._apply_train(g), "f_test": -self._apply_test(g)}

    def loss(self, state) -> Scalar:
        return self.loss_fn(state["f_train"], self.y_train)

    def observe(self, state):
        return {"loss": self.loss(state), "f_train": state["f_train"], "f_test": state["f_test"]}

    def closed_form(self, t, state0):
        r"""The exact MSE flow from `state0` at flow time `t`."""
        self._require_mse("closed_form")
        return self._spectral(state0, *flow_factors(self.eigvals, t, self.n_train))

    def closed_form_steps(self, k, lr, state0):
        r"""The exact MSE gradient-descent iterate after `k` steps at `lr`, from `state0`."""
        self._require_mse("closed_form_steps")
        return self._spectral(state0, *gd_factors(self.eigvals, lr, k, self.n_train))
