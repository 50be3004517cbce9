"""solve() with every method on a dynamics with exact solutions."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.solvers as ls

A = jnp.array([0.5, 1.0, 3.0])
TIGHT = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)


class Decay(ls.AbstractLossDynamics, ls.AbstractClosedFormFlow, ls.AbstractClosedFormMap):
    """dy/dt = -a y: flow exp(-a t), GD (1 - lr a)^k."""

    a: jnp.ndarray

    def init(self, *, key=None):
        return jnp.ones_like(self.a)

    def vector_field(self, t, y, args):
        return -self.a * y

    def loss(self, y):
        return 0.5 * jnp.sum(self.a * y**2)

    def observe(self, y):
        return {"loss": self.loss(y), "y": y}

    def closed_form(self, t, y0):
        return y0 * jnp.exp(-self.a * t)

    def closed_form_steps(self, k, lr, y0):
        return y0 * (1 - lr * self.a) ** k


class Blowup(ls.AbstractDynamics):
    """dy/dt = y^2 from y=1 blows up at t = 1."""

    def init(self, *, key=None):
        return jnp.ones(())

    def vector_field(self, t, y, args):
        return y**2

    def observe(self, y):
        return {"y": y}


class Plain(ls.AbstractDynamics):
    """dy/dt = -y and nothing else: no loss, no closed form, no own map."""

    def init(self, *, key=None):
        return jnp.ones(3)

    def vector_field(self, t, y, args):
        return -y

    def observe(self, y):
        return {"y": y}


class ExactMap(ls.AbstractMapDynamics):
    """dy/dt = -a y with its exact time-lr map as the gradient-descent step."""

    a: jnp.ndarray

    def init(self, *, key=None):
        return jnp.ones_like(self.a)

    def vector_field(self, t, y, args):
        return -self.a * y

    def observe(self, y):
        return {"y": y}

    def step(self, y, lr):
        return y * jnp.exp(-lr * self.a)


class NaNStep(ls.AbstractMapDynamics):
    """Its own GD map, which turns NaN once y < 0.5."""

    a: jnp.ndarray

    def init(self, *, key=None):
        return jnp.ones_like(self.a)

    def vector_field(self, t, y, args):
        return -self.a * y

    def observe(self, y):
        return {"y": y}

    def step(self, y, lr):
        return jnp.where(y < 0.5, jnp.nan, y * (1 - lr * self.a))


def test_gd_is_the_exact_map_and_layout():
    d = Decay(A)
    tr = ls.solve(d, ls.GradientDescent(), lr=0.1, steps=100, save_every=10)
    k = np.arange(0, 101, 10)
    np.testing.assert_array_equal(tr.steps, k)
    np.testing.assert_allclose(tr.times, 0.1 * k, rtol=1e-15)
    np.testing.assert_allclose(tr["y"], (1 - 0.1 * np.asarray(A))[None] ** k[:, None], rtol=1e-13)
    np.testing.assert_allclose(tr.final_state, tr["y"][-1], rtol=0)
    assert tr.result_name == "successful" and int(tr.stats["num_steps"]) == 100


def test_flow_and_closed_forms():
    d = Decay(A)
    fl = ls.solve(d, TIGHT, lr=0.1, steps=100, save_every=10)
    cf = ls.solve(d, ls.ClosedForm(), lr=0.1, steps=100, save_every=10)
    exact = np.exp(-np.asarray(A)[None] * np.asarray(fl.times)[:, None])
    assert np.max(np.abs(np.asarray(fl["y"]) - exact)) < 1e-11  # global error of a 1e-12 local tolerance
    np.testing.assert_allclose(cf["y"], exact, rtol=1e-14)
    cd = ls.solve(d, ls.ClosedForm(discrete=True), lr=0.1, steps=100, save_every=10)
    gd = ls.solve(d, ls.GradientDescent(), lr=0.1, steps=100, save_every=10)
    np.testing.assert_allclose(cd["y"], gd["y"], rtol=1e-12)
    assert int(fl.stats["num_accepted_steps"]) > 0


def test_gd_tends_to_flow_with_order_one():
    d = Decay(A)
    T, lrs = 2.0, np.array([0.0025, 0.005, 0.01, 0.02])
    errs = []
    for lr in lrs:
        tr = ls.solve(d, ls.GradientDescent(), lr=float(lr), steps=round(T / lr), save_every=round(T / lr))
        errs.append(float(jnp.linalg.norm(tr["y"][-1] - jnp.exp(-A * T))))
    assert abs(np.polyfit(np.log(lrs), np.log(errs), 1)[0] - 1) < 0.2


def test_divergence_is_reported_with_step_and_observable():
    d = Decay(A)  # stable iff lr < 2/3
    tr = ls.solve(d, ls.GradientDescent(), lr=0.8, steps=200, save_every=10, throw=False)
    assert tr.result_name == "diverged"
    step = int(tr.stats["fail_step"])
    assert 0 < step <= 200
    msg = tr.message()
    assert f"step {step}" in msg and "lower `lr`" in msg
    # GD on dy/dt = -a y with |1 - 0.8·3| = 1.4: max|y| passes 1e6·2 at step ceil(log(2e6)/log 1.4) = 44
    assert step == int(np.ceil(np.log(2e6) / np.log(1.4)))
    after = np.asarray(tr.steps) >= step
    assert np.all(np.isnan(np.asarray(tr["loss"])[after]))
    assert np.all(np.isfinite(np.asarray(tr["loss"])[~after]))
    with pytest.raises(ls.SolveError, match="diverged at step"):
        ls.solve(d, ls.GradientDescent(), lr=0.8, steps=200, save_every=10)
    ok = ls.solve(d, ls.GradientDescent(), lr=0.6, steps=200, save_every=10)
    assert ok.succeeded


def test_nonfinite_state_is_reported():
    tr = ls.solve(NaNStep(A), ls.GradientDescent(), lr=0.1, steps=100, save_every=10, throw=False)
    assert tr.result_name == "nonfinite"
    # y = 0.9^k * ... : the first component a=0.5 gives y<0.5 after ceil(log .5/log .95) steps
    assert int(tr.stats["fail_step"]) > 1
    assert np.all(np.isfinite(np.asarray(tr.final_state)))


def test_flow_blowup_and_max_steps():
    tr = ls.solve(Blowup(), ls.GradientFlow(), lr=0.01, steps=200, save_every=10, throw=False)
    assert tr.result_name in ("diverged", "nonfinite")
    assert 95 <= int(tr.stats["fail_step"]) <= 101  # blows up at t = 1 = step 100
    with pytest.raises(ls.SolveError):
        ls.solve(Blowup(), ls.GradientFlow(), lr=0.01, steps=200, save_every=10)
    tr = ls.solve(Decay(A), ls.GradientFlow(max_steps=3), lr=0.1, steps=100, save_every=10, throw=False)
    assert tr.result_name == "max_steps_reached"


@pytest.mark.parametrize(
    "method", [ls.GradientDescent(), TIGHT, ls.ClosedForm(), ls.ClosedForm(discrete=True)]
)
def test_grad_wrt_lr_matches_finite_differences(method):
    d = Decay(A)

    def final_loss(lr):
        return ls.solve(d, method, lr=lr, steps=50, save_every=10)["loss"][-1]

    g = jax.grad(final_loss)(0.1)
    h = 1e-6
    fd = (final_loss(0.1 + h) - final_loss(0.1 - h)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_vmap_and_jit_over_lr():
    d = Decay(A)
    lrs = jnp.array([0.05, 0.1, 0.2])
    f = lambda lr: ls.solve(d, ls.GradientDescent(), lr=lr, steps=40, save_every=10)["y"][-1]  # noqa: E731
    batched = jax.vmap(f)(lrs)
    jitted = jax.jit(f)
    for i, lr in enumerate(lrs):
        np.testing.assert_allclose(batched[i], (1 - lr * A) ** 40, rtol=1e-13)
        np.testing.assert_allclose(jitted(lr), (1 - lr * A) ** 40, rtol=1e-13)


def test_progress_modes_give_the_same_numbers():
    d = Decay(A)
    a = ls.solve(d, ls.GradientDescent(), lr=0.01, steps=3000, save_every=100, progress=True)
    b = ls.solve(d, ls.GradientDescent(), lr=0.01, steps=3000, save_every=100, progress=False)
    c = ls.solve(d, TIGHT, lr=0.01, steps=100, save_every=10, progress=True)
    np.testing.assert_array_equal(a["y"], b["y"])
    assert c.succeeded


def test_bad_input():
    d = Decay(A)
    gd = ls.GradientDescent()
    for lr in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr"):
            ls.solve(d, gd, lr=lr, steps=10)
    with pytest.raises(ValueError, match="steps"):
        ls.solve(d, gd, lr=0.1, steps=0)
    with pytest.raises(TypeError, match="steps"):
        ls.solve(d, gd, lr=0.1, steps=10.0)
    with pytest.raises(ValueError, match="save_every"):
        ls.solve(d, gd, lr=0.1, steps=10, save_every=3)
    with pytest.raises(TypeError, match="dynamics"):
        ls.solve("nope", gd, lr=0.1, steps=10)
    with pytest.raises(TypeError, match="method"):
        ls.solve(d, "gd", lr=0.1, steps=10)
    with pytest.raises(TypeError, match="closed-form"):
        ls.solve(Blowup(), ls.ClosedForm(), lr=0.1, steps=10)
    with pytest.raises(ValueError, match="rtol"):
        ls.GradientFlow(rtol=0.0)
    with pytest.raises(ValueError, match="progress"):
        ls.solve(d, gd, lr=0.1, steps=10, progress="yes")
