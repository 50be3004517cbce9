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

Predictions at a few times need only these matrix functions applied to $r_0$, which
Lanczos gives at $O(N^2 m)$ instead of the $O(N^3)$ eigendecomposition (`_krylov.py`):
`spectral="krylov"`; `"eigh"` keeps the eigendecomposition, which pays off when the same
model is solved from many start states; `"auto"` takes Krylov above `EIGH_UP_TO`
unknowns.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from lmech.solvers import AbstractClosedFormFlow, AbstractClosedFormMap, AbstractLossDynamics

from ._krylov import batch_max, lanczos, top_eigenvalue, weighted
from ._losses import MSE, AbstractLoss, get_loss
from ._spectral import flow_factors, gd_factors

__all__ = ["EIGH_UP_TO", "Linearized"]

#: `spectral="auto"` uses the eigendecomposition up to this many unknowns (P·k), Lanczos above
EIGH_UP_TO = 1024
#: Lanczos: the largest basis before falling back to the eigendecomposition, and the
#: tolerance of its stopping test (relative change of the answer at the largest time)
_KRYLOV_MAX_SIZE = 256
_KRYLOV_TOL = 1e-12
_SPECTRAL = ("auto", "eigh", "krylov")


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

    - `spectral`: how the closed forms get their matrix functions of $\Theta$:
      `"eigh"` (one eigendecomposition, $O(N^3)$, reused by every call), `"krylov"`
      (Lanczos from the start residual at each call, $O(N^2 m)$ with $m$ a few tens; one
      basis serves all the saved times of a `solve`; the Lanczos recurrence runs on the
      host), or `"auto"` (default): eigh up to `EIGH_UP_TO` unknowns $N$ (= P, or P·k for a
      full kernel) and on accelerators, Krylov above on the CPU. The Krylov path is not
      differentiable with respect to the kernel or the start state (eigh is).

    The kernel must be positive semi-definite: eigenvalues below
    $-\sqrt{\epsilon}\,\lambda_{\max}$ raise `ValueError`. With `"eigh"` smaller negative
    ones (round-off) are set to zero, and the flow, the GD map and the closed forms all use
    that same projected kernel on the training points. With `"krylov"` (no eigendecomposition,
    and no $O(N^3)$ factorization either) the checks are the necessary conditions of one pass
    — $\Theta_{ii} \ge 0$ and $|\Theta_{ij}| \le \sqrt{\Theta_{ii}\Theta_{jj}}$, to
    $\sqrt{\epsilon}\max_i\Theta_{ii}$ — at construction, and then the Ritz values of every
    Lanczos basis, which lie inside the spectrum (a negative one beyond
    $-\sqrt{\epsilon}$ times the largest raises): negative directions that the dynamics
    excite are found, others cannot change the answer. Every method then uses the kernel as
    given (symmetrized).
    """

    ntk_train: Array
    ntk_test_train: Array
    f0_train: Float[Array, "P k"]
    f0_test: Float[Array, "Q k"]
    y_train: Float[Array, "P k"]
    y_test: Float[Array, "Q k"]
    eigvals: Float[Array, " N"] | None
    eigvecs: Float[Array, "N N"] | None
    loss_fn: AbstractLoss
    spectral: str = eqx.field(static=True)

    def __init__(
        self, ntk_train, ntk_test_train, f0_train, f0_test, y_train, y_test, *, loss="mse", spectral="auto"
    ):
        loss_fn = get_loss(loss)
        if spectral not in _SPECTRAL:
            raise ValueError(f"Linearized: `spectral` must be one of {_SPECTRAL}, got {spectral!r}.")
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
        ):  # numpy: a check is no device computation (and no compilation)
            if not isinstance(a, jax.core.Tracer) and not np.isfinite(np.asarray(a)).all():
                raise ValueError(f"Linearized: `{name}` contains NaN or inf.")
        loss_fn.check_targets(y_train, "Linearized")
        if spectral == "auto":  # Lanczos runs on the host: on accelerators keep the device eigh
            on_cpu = _on_host(mat) or (isinstance(mat, jax.core.Tracer) and jax.default_backend() == "cpu")
            spectral = "krylov" if mat.shape[0] > EIGH_UP_TO and on_cpu else "eigh"
        if spectral == "eigh":  # numpy on the CPU: the same LAPACK call, without a compilation
            lam, vec, smallest, lam_max = _eigh_host(mat) if _on_host(mat) else _eigh(mat)
            if not isinstance(lam_max, jax.core.Tracer):
                tol = math.sqrt(float(jnp.finfo(mat.dtype).eps)) * max(float(lam_max), 0.0)
                if float(smallest) < -tol:
                    raise ValueError(
                        f"Linearized: the kernel is not positive semi-definite (smallest eigenvalue "
                        f"{float(smallest):.3g}, largest {float(lam_max):.3g}); an NTK is PSD, so check how "
                        "it was computed."
                    )
        else:
            # numpy skips a compilation (0.1 s); above a few thousand rows XLA's pass is faster
            small = _on_host(mat) and mat.shape[0] <= 4096
            mat, scale, ok = _krylov_setup_host(mat) if small else _krylov_setup(mat)
            lam, vec = None, None
            if not isinstance(ok, jax.core.Tracer) and not bool(ok):
                raise ValueError(
                    "Linearized: the kernel is not positive semi-definite (a diagonal entry is negative, "
                    "or an entry breaks |Θ_ij| <= √(Θ_ii Θ_jj), beyond √ε·max Θ_ii = "
                    f"{math.sqrt(float(jnp.finfo(mat.dtype).eps)) * float(scale):.3g}); an NTK is PSD, so "
                    "check how it was computed."
                )
        # round-off can leave tiny negative eigenvalues: every eigh method uses the projected kernel
        self.eigvals = lam
        self.eigvecs = vec
        self.spectral = spectral
        if spectral == "krylov":  # the symmetrized kernel, used by every method
            ntk_train = mat if ntk_train.ndim == 2 else mat.reshape(ntk_train.shape)
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
        spectral: str = "auto",
    ) -> Linearized:
        r"""The linearized model of `net` on `data`.

        - `kernel="analytic"`: the infinite-width NTK of the spec (shared over outputs).
          With `key`/`params` the initial outputs $f_0$ are those of that network (the
          linearization of one finite network, with the infinite-width kernel); without
          them $f_0 = 0$, the infinite-ensemble mean. $\Theta(X, X)$ (from its upper
          blocks) and $\Theta(x_*, X)$ come from one compiled call.
        - `kernel="empirical"`: the empirical NTK of the network at `params` (or
          `net.init(key)`), `output="trace"` (shared, averaged over logits) or
          `"full"` (all output pairs).
        - `spectral`: see the class (`"auto"`, `"eigh"`, `"krylov"`).
        """
        from ._empirical_ntk import empirical_ntk
        from ._kernels import symmetric_kernels

        if params is None and key is not None:
            params = net.init(key)
        if kernel == "analytic":
            train, test = symmetric_kernels(
                net, data.x_train, data.x_test, block_size=block_size, outputs=("ntk",)
            )
            ntk, ntk_star = train["ntk"], test["ntk"]
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
            f0, f0s = (
                np.zeros(data.y_train.shape, data.y_train.dtype),
                np.zeros(data.y_test.shape, data.y_test.dtype),
            )
        else:
            f0, f0s = net.apply(params, data.x_train), net.apply(params, data.x_test)
        return cls(ntk, ntk_star, f0, f0s, data.y_train, data.y_test, loss=loss, spectral=spectral)

    # -- helpers --------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self.ntk_train.ndim == 2

    @property
    def n_train(self) -> int:
        return self.y_train.shape[0]

    @property
    def lam_max(self) -> Scalar:
        """$\\lambda_{\\max}(\\Theta)$: from the eigendecomposition, or by Lanczos (ARPACK, to 1e-14)."""
        if self.eigvals is not None:
            return self.eigvals[-1]
        return top_eigenvalue(self.ntk_train_matrix())

    @property
    def max_stable_lr(self) -> Scalar:
        r"""$2P/\lambda_{\max}(\Theta)$: gradient descent on MSE diverges above it."""
        return 2 * self.n_train / self.lam_max

    def _flat(self, r: Float[Array, "n k"]) -> Array:
        return r if self.shared else r.reshape(-1, 1)

    def _unflat(self, r: Array, n: int) -> Array:
        return r if self.shared else r.reshape(n, -1)

    def ntk_train_matrix(self) -> Array:
        if self.shared:
            return self.ntk_train
        n = self.ntk_train.shape[0] * self.ntk_train.shape[1]
        return self.ntk_train.reshape(n, n)

    def _test_matrix(self) -> Array:
        if self.shared:
            return self.ntk_test_train
        Q, k = self.y_test.shape
        return self.ntk_test_train.reshape(Q * k, -1)

    def _apply_train(self, g):
        """Θ g: the PSD-projected V diag(λ) Vᵀ (eigh), or the symmetrized kernel (krylov)."""
        if self.eigvecs is None:
            return self._unflat(self.ntk_train_matrix() @ self._flat(g), self.n_train)
        V = self.eigvecs
        return self._unflat(V @ (self.eigvals[:, None] * (V.T @ self._flat(g))), self.n_train)

    def _apply_test(self, g):
        return self._unflat(self._test_matrix() @ self._flat(g), self.y_test.shape[0])

    def _spectral(self, state0, factors, s, extra=()):
        """f_train = Y + decay(Θ) r0 ; f_test = f0* − Θ* growth(Θ) r0, with
        `factors(λ, xp, s, *extra) -> (decay, growth)` at the time (or step) `s`: by the
        eigendecomposition, or by a Lanczos basis built for the largest `s` of the batch."""
        r0 = self._flat(state0["f_train"] - self.y_train)
        if self.eigvecs is None:
            decay_r, growth_r = _krylov_apply(
                self.ntk_train_matrix(),
                self._test_matrix(),
                r0,
                factors,
                s,
                tuple(jnp.asarray(e) for e in extra),
            )
        else:
            c = self.eigvecs.T @ r0
            decay, growth = factors(self.eigvals, jnp, s, *extra)
            decay_r = self.eigvecs @ (decay[:, None] * c)
            growth_r = self._test_matrix() @ (self.eigvecs @ (growth[:, None] * c))
        P = self.n_train
        f_train = self.y_train + self._unflat(decay_r, P)
        return {"f_train": f_train, "f_test": state0["f_test"] - self._unflat(growth_r, self.y_test.shape[0])}

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
        P = self.n_train
        return self._spectral(state0, lambda lam, xp, s: flow_factors(lam, s, P, xp), t)

    def closed_form_steps(self, k, lr, state0):
        r"""The exact MSE gradient-descent iterate after `k` steps at `lr`, from `state0`."""
        self._require_mse("closed_form_steps")
        P = self.n_train
        return self._spectral(state0, lambda lam, xp, s, lr: gd_factors(lam, lr, s, P, xp), k, (lr,))


@jax.jit
def _eigh(mat):
    """The eigendecomposition of the symmetrized kernel: eigenvalues clipped at 0
    (ascending), eigenvectors, the smallest eigenvalue before clipping, and λ_max."""
    lam, vec = jnp.linalg.eigh(0.5 * (mat + mat.T))
    return jnp.clip(lam, 0.0), vec, lam[0], jnp.maximum(lam[-1], 0.0)


def _on_host(a) -> bool:
    """A concrete array on the CPU (so that numpy reads it in place)."""
    return not isinstance(a, jax.core.Tracer) and all(d.platform == "cpu" for d in a.devices())


def _eigh_host(mat):
    """`_eigh` in numpy (for a concrete kernel on the CPU)."""
    m = np.asarray(mat)
    lam, vec = np.linalg.eigh(0.5 * (m + m.T))
    return jnp.asarray(np.clip(lam, 0.0, None)), jnp.asarray(vec), lam[0], max(lam[-1], 0.0)


def _krylov_setup_host(mat, rows: int = 256):
    """`_krylov_setup` in numpy, by panels of `rows` rows (a whole-matrix transpose in numpy
    is a cache-hostile strided copy: 4.4 s at N = 8192 against 0.5 s by panels). 0.05 s at
    N = 1536 against 0.18 s for the first (compiling) call of the jitted one; 2.7 s against
    0.6 s at N = 8192."""
    m = np.asarray(mat)
    d = np.diagonal(m).copy()
    scale = max(float(d.max()), 0.0)
    slack = math.sqrt(float(np.finfo(m.dtype).eps)) * scale
    root = np.sqrt(np.maximum(d, 0.0))
    # an exactly symmetric kernel (the analytic ones are, by construction) is used as it is:
    # no copy; otherwise the symmetrized copy is built panel by panel
    symmetric = all(np.array_equal(m[i : i + rows], m[:, i : i + rows].T) for i in range(0, len(m), rows))
    sym = mat if symmetric else np.empty_like(m)
    ok = bool(np.all(d >= -slack))
    for i in range(0, len(m), rows):
        panel = m[i : i + rows] if symmetric else 0.5 * (m[i : i + rows] + m[:, i : i + rows].T)
        if not symmetric:
            sym[i : i + rows] = panel
        ok = ok and bool(np.all(np.abs(panel) <= root[i : i + rows, None] * root[None, :] + slack))
    return jnp.asarray(sym), scale, ok


@jax.jit
def _krylov_setup(mat):
    """The symmetrized kernel, its largest diagonal entry, and the necessary conditions of
    positive semi-definiteness that cost one pass (O(N²), not the O(N³) of a factorization):
    Θ_ii >= -√ε s and |Θ_ij| <= √(Θ_ii Θ_jj) + √ε s, s = max Θ_ii. The Lanczos bases add
    their Ritz values, which lie inside the spectrum (`_krylov.lanczos`)."""
    mat = 0.5 * (mat + mat.T)
    d = jnp.diagonal(mat)
    scale = jnp.maximum(jnp.max(d), 0.0)
    slack = jnp.sqrt(jnp.finfo(mat.dtype).eps) * scale
    root = jnp.sqrt(jnp.maximum(d, 0.0))
    ok = jnp.all(d >= -slack) & jnp.all(jnp.abs(mat) <= root[:, None] * root[None, :] + slack)
    return mat, scale, ok


def _krylov_apply(mat, test_mat, r0, factors, s, extra):
    """(decay(Θ) r0, Θ* growth(Θ) r0) for the columns of r0, by one Lanczos basis per column
    built for the largest `s` of the batch (`batch_max`); the eigendecomposition (on the
    host) if Lanczos does not converge within `_KRYLOV_MAX_SIZE` steps."""
    bases = lanczos(
        mat,
        r0,
        test_mat,
        lambda ritz, *p: factors(ritz, np, *p),
        (batch_max(s), *extra),
        max_size=min(mat.shape[0], _KRYLOV_MAX_SIZE),
        tol=_KRYLOV_TOL,
    )

    def by_krylov(_):
        def one(QS, ZS, ritz, w):
            decay, growth = factors(ritz, jnp, s, *extra)
            return QS @ weighted(decay, w), ZS @ weighted(growth, w)

        decay_r, growth_r = jax.vmap(one)(bases.QS, bases.ZS, bases.ritz, bases.w)
        return decay_r.T, growth_r.T

    def by_eigh(_):  # on the host: a compiled eigh would cost compile time on every solve
        def host(m):
            lam, vec = np.linalg.eigh(0.5 * (m + m.T))
            return np.clip(lam, 0.0, None).astype(m.dtype), vec.astype(m.dtype)

        n = mat.shape[0]
        shapes = (jax.ShapeDtypeStruct((n,), mat.dtype), jax.ShapeDtypeStruct((n, n), mat.dtype))
        lam, vec = jax.pure_callback(host, shapes, mat, vmap_method="sequential")
        decay, growth = factors(lam, jnp, s, *extra)
        c = vec.T @ r0
        return vec @ (decay[:, None] * c), test_mat @ (vec @ (growth[:, None] * c))

    return jax.lax.cond(jnp.all(bases.converged), by_krylov, by_eigh, None)
