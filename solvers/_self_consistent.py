r"""Two-time theories closed self-consistently on a time grid (DMFT).

A dynamical mean-field theory has no vector field: its order parameters are two-time
functions $\Phi(t, s)$, $G(t, s)$ and response functions, fixed by equations that couple all
times (Bordelon & Pehlevan 2022). `SelfConsistent` discretizes them on a uniform grid of flow
times and solves the discrete equations as a fixed point (optimistix), with two devices that
make the plain iteration robust:

- **continuation in the horizon**: the equations are solved first with the drive switched
  off after $t_1/S$, then $2t_1/S$, ... ($S$ = `stages`), each stage started from the last.
  The equations are causal, so every stage is exact up to its horizon and the next one only
  has a short window of new time to converge — a Picard iteration over a window of length
  $\tau$ contracts like $(c\tau)^k/k!$, which over the whole horizon can first grow by many
  orders of magnitude;
- **implicit differentiation**: derivatives with respect to anything the equations depend
  on ($\gamma_0$, the learning rate through the grid spacing) go through the last stage by
  the implicit function theorem (`optimistix.ImplicitAdjoint`, matrix-free GMRES from
  lineax), not through the iterations.

Optionally (`extrapolate=True`) the grid is solved twice, with spacing $h$ and $h/2$, and the
saved states are Richardson-extrapolated, $(4 s_{h/2} - s_h)/3$: the trapezoid discretization
has an $O(h^2)$ error expansion, so this is $O(h^4)$.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, ArrayLike, PyTree

from ._dynamics import AbstractDynamics, AbstractSelfConsistent, require
from ._methods import AbstractMethod, Observer
from ._outcome import Divergence, SaveGrid, finish, judge_saved
from ._trajectory import RESULTS, Trajectory

__all__ = ["SelfConsistent"]


class SelfConsistent(AbstractMethod):
    r"""Solve a two-time theory (`AbstractSelfConsistent`) on a grid of flow times.

    The grid has `points` intervals per saved interval (uniform, trapezoid quadrature:
    $O(h^2)$), and is solved by a damped fixed-point iteration (`damp`: the weight kept on
    the old iterate) in `stages` continuation stages (see the module docs), each to
    `rtol`/`atol` within `max_steps` sweeps. `extrapolate=True` solves a grid twice as
    fine as well and Richardson-extrapolates the saved states ($O(h^4)$, about 9× the cost).
    `max_memory`: refuse (ValueError) grids whose sweep needs more bytes than this.

    The solve always starts from the theory's own initial condition (the DMFT start);
    `solve(..., state0=...)` is ignored.
    """

    points: int = eqx.field(static=True, default=8)
    stages: int = eqx.field(static=True, default=8)
    rtol: float = eqx.field(static=True, default=1e-10)
    atol: float = eqx.field(static=True, default=1e-10)
    max_steps: int = eqx.field(static=True, default=500)
    damp: float = eqx.field(static=True, default=0.0)
    extrapolate: bool = eqx.field(static=True, default=False)
    max_memory: float = eqx.field(static=True, default=4e9)

    def __check_init__(self):
        for name in ("points", "stages", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SelfConsistent: `{name}` must be an int >= 1, got {v!r}.")
        for name in ("rtol", "atol", "max_memory"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"SelfConsistent: `{name}` must be a number > 0, got {v!r}.")
        if isinstance(self.damp, bool) or not isinstance(self.damp, (int, float)) or not 0 <= self.damp < 1:
            raise ValueError(f"SelfConsistent: `damp` must be in [0, 1), got {self.damp!r}.")
        if not isinstance(self.extrapolate, bool):
            raise TypeError(f"SelfConsistent: `extrapolate` must be True or False, got {self.extrapolate!r}.")

    def check(self, dynamics: AbstractDynamics) -> None:
        require(
            dynamics,
            AbstractSelfConsistent,
            "SelfConsistent()",
            "it is not a two-time theory; integrate it with GradientFlow() or iterate it with GradientDescent().",
        )

    @property
    def label(self) -> str:
        return f"SelfConsistent(points={self.points}, stages={self.stages}, extrapolate={self.extrapolate})"

    def grid(self, dynamics: AbstractSelfConsistent, lr: ArrayLike, grid: SaveGrid, refine: int = 1) -> Array:
        """The flow times of the solve grid (`refine` × `points` intervals per saved interval)."""
        per = self.points * refine
        n = grid.n_saves * per
        bytes_ = dynamics.grid_bytes(n + 1)
        if bytes_ > self.max_memory:
            raise ValueError(
                f"SelfConsistent: a grid of {n + 1} times needs about {bytes_ / 2**30:.1f} GiB per sweep "
                f"(more than max_memory = {self.max_memory / 2**30:.1f} GiB; the cost grows as the grid size squared, "
                "the time as its cube). Save fewer points (larger save_every), use fewer `points` per saved "
                "interval, or raise SelfConsistent(max_memory=...)."
            )
        return lr * jnp.arange(n + 1) * (grid.save_every / per)

    def fixed_point(self, dynamics: AbstractSelfConsistent, times: Array) -> tuple[PyTree, Array, Array]:
        """The grid unknowns at the fixed point on `times`, whether every stage converged, and
        the total number of sweeps."""
        solver = optx.FixedPointIteration(rtol=self.rtol, atol=self.atol, damp=self.damp)

        def fn(q, horizon):
            return dynamics.grid_map(q, times, horizon)

        t_end = times[-1]

        def stage(i, carry):
            q, ok, steps = carry
            horizon = jax.lax.stop_gradient(t_end) * (i + 1) / self.stages
            sol = optx.fixed_point(
                fn, solver, q, args=horizon, max_steps=self.max_steps, throw=False,
                adjoint=optx.RecursiveCheckpointAdjoint(),
            )  # fmt: skip
            return sol.value, ok & (sol.result == optx.RESULTS.successful), steps + sol.stats["num_steps"]

        q0 = jax.lax.stop_gradient(dynamics.grid_init(times))
        carry = (q0, jnp.array(True), jnp.array(0))
        q, ok, steps = jax.lax.fori_loop(0, self.stages - 1, stage, jax.lax.stop_gradient(carry))
        adjoint = optx.ImplicitAdjoint(lx.GMRES(rtol=self.rtol, atol=self.atol, max_steps=1000, restart=40))
        sol = optx.fixed_point(
            fn,
            solver,
            jax.lax.stop_gradient(q),
            args=t_end,
            max_steps=self.max_steps,
            throw=False,
            adjoint=adjoint,
        )
        ok = ok & (sol.result == optx.RESULTS.successful)
        return sol.value, ok, steps + sol.stats["num_steps"]

    def run(
        self,
        dynamics: AbstractDynamics,
        state0: PyTree,
        lr: ArrayLike,
        grid: SaveGrid,
        observe: Observer,
        divergence: Divergence,
        progress: bool,
    ) -> Trajectory:
        self.check(dynamics)

        def saved(refine):
            times = self.grid(dynamics, lr, grid, refine)
            q, ok, steps = self.fixed_point(dynamics, times)
            states = dynamics.grid_states(q, times)
            return jax.tree.map(lambda a: a[:: self.points * refine], states), ok, steps

        states, ok, steps = saved(1)
        if self.extrapolate:
            fine, ok_fine, steps_fine = saved(2)
            states = jax.tree.map(lambda c, f: (4 * f - c) / 3, states, fine)
            ok, steps = ok & ok_fine, steps + steps_fine
        step_idx = grid.step_indices()
        state_init = jax.tree.map(lambda a: a[0], states)
        bound = divergence.bound(state_init)
        observables = jax.vmap(observe)(states)
        codes = jax.vmap(lambda s: divergence.check(s, bound))(states)
        result, reached, fail_step, final_state, last_step = judge_saved(states, codes, step_idx)
        # a fixed point that did not converge is no solution at any time
        result = RESULTS.where(ok, result, RESULTS.fixed_point_failed)
        reached = reached & ok
        fail_step = jnp.where(ok, fail_step, 0)
        stats = {"num_steps": jnp.where(ok, last_step, 0), "num_sweeps": steps}
        return finish(grid, lr, observables, reached, result, fail_step, final_state, stats)
