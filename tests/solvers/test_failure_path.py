"""One failure path: the same divergence definition and result codes for every method;
clear errors (not tracer errors) and no silent zero gradients through failed solves."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_core import Decay  # dy/dt = -a y with loss and both closed forms

import lmech.solvers as ls

A = jnp.array([0.5, 1.0, 3.0])


class Grow(ls.AbstractClosedFormFlow):
    """dy/dt = y: exp(t) passes the threshold 1e6·(1 + 1) at t = log(2e6)."""

    def init(self, *, key=None):
        return jnp.ones(())

    def vector_field(self, t, y, args):
        return y

    def observe(self, y):
        return {"y": y}

    def closed_form(self, t, y0):
        return y0 * jnp.exp(t)


def test_one_divergence_definition_for_every_method():
    # GD: |1 - 0.8*3| = 1.4 per step: max|y| > 2e6 first at step ceil(log(2e6)/log(1.4)) = 44
    expected = int(np.ceil(np.log(2e6) / np.log(1.4)))
    gd = ls.solve(Decay(A), ls.GradientDescent(), lr=0.8, steps=100, save_every=1, throw=False)
    cf = ls.solve(Decay(A), ls.ClosedForm(discrete=True), lr=0.8, steps=100, save_every=1, throw=False)
    for tr in (gd, cf):
        assert tr.result == ls.RESULTS.diverged and tr.result_name == "diverged"
        assert int(tr.stats["fail_step"]) == expected
        y = np.asarray(tr["y"])
        assert np.all(np.isfinite(y[:expected])) and np.all(np.isnan(y[expected:]))
    # the flow of dy/dt = y crosses the same bound at t = log(2e6): flow event and closed form agree
    lr, t_cross = 0.01, np.log(2e6)
    fl = ls.solve(Grow(), ls.GradientFlow(), lr=lr, steps=2000, save_every=1, throw=False)
    cl = ls.solve(Grow(), ls.ClosedForm(), lr=lr, steps=2000, save_every=1, throw=False)
    for tr in (fl, cl):
        assert tr.result_name == "diverged"
        assert int(tr.stats["fail_step"]) == int(np.ceil(t_cross / lr))
    # a custom threshold changes the step for every method alike
    gd2 = ls.solve(Decay(A), ls.GradientDescent(), lr=0.8, steps=100, divergence_threshold=10.0, throw=False)
    assert int(gd2.stats["fail_step"]) == int(np.ceil(np.log(20.0) / np.log(1.4)))


@pytest.mark.parametrize("bad", [0, 1.0, -5.0, float("nan"), float("inf"), "big", True])
def test_divergence_threshold_is_validated(bad):
    with pytest.raises((ValueError, TypeError), match="divergence_threshold"):
        ls.solve(Decay(A), ls.GradientDescent(), lr=0.1, steps=10, divergence_threshold=bad)


def test_messages_come_from_the_result_codes():
    tr = ls.solve(Decay(A), ls.GradientDescent(), lr=0.8, steps=100, throw=False)
    assert ls.RESULTS[tr.result] in tr.message() and "lower `lr`" in tr.message()
    with pytest.raises(ls.SolveError, match="diverged at step 44"):
        ls.solve(Decay(A), ls.GradientDescent(), lr=0.8, steps=100)
    assert "GradientDescent" in tr.method and ls.solve(
        Decay(A), ls.ClosedForm(), lr=0.1, steps=2
    ).method.startswith("ClosedForm")


def _final_loss(method, throw):
    return lambda lr: ls.solve(Decay(A), method, lr=lr, steps=100, save_every=10, throw=throw)["loss"][-1]


@pytest.mark.parametrize(
    "method", [ls.GradientDescent(), ls.ClosedForm(discrete=True)], ids=["gd", "closed_form_steps"]
)
def test_grad_through_a_failing_solve(method):
    # throw=True: a clear runtime error naming the failure, not a TracerArrayConversionError
    with pytest.raises(Exception, match="diverged|divergence threshold") as info:
        jax.grad(_final_loss(method, True))(0.8)
    assert "Tracer" not in type(info.value).__name__
    # throw=False: the value is NaN and so is its derivative (never a silent zero)
    g = jax.grad(_final_loss(method, False))(0.8)
    assert np.isnan(float(g))
    # a NaN learning rate under tracing is refused at run time
    with pytest.raises(Exception, match="lr"):
        jax.grad(_final_loss(method, False))(jnp.nan)


def test_grad_through_max_steps_and_flow_blowup():
    f = lambda lr: ls.solve(Decay(A), ls.GradientFlow(max_steps=3), lr=lr, steps=100, save_every=10)["loss"][
        -1
    ]
    with pytest.raises(Exception, match="max_steps"):
        jax.grad(f)(0.1)
    g = lambda lr: ls.solve(
        Decay(A), ls.GradientFlow(max_steps=3), lr=lr, steps=100, save_every=10, throw=False
    )["loss"][-1]
    assert np.isnan(float(jax.grad(g)(0.1)))


def test_succeeded_solves_keep_exact_gradients():
    f = _final_loss(ls.GradientDescent(), False)
    h = 1e-6
    np.testing.assert_allclose(jax.grad(f)(0.1), (f(0.1 + h) - f(0.1 - h)) / (2 * h), rtol=1e-6)


def test_vmapped_results_are_batched_codes():
    lrs = jnp.array([0.1, 0.8])
    tr = jax.vmap(lambda lr: ls.solve(Decay(A), ls.GradientDescent(), lr=lr, steps=100, throw=False))(lrs)
    np.testing.assert_array_equal(np.asarray(tr.result == ls.RESULTS.diverged), [False, True])
    # with throw=True a batched solve raises the failing member's message at run time
    with pytest.raises(Exception, match="divergence threshold"):
        jax.vmap(lambda lr: ls.solve(Decay(A), ls.GradientDescent(), lr=lr, steps=100))(lrs)


def test_flow_solver_failure_is_a_result_not_nans():
    stiff = ls.GradientFlow(solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=1.0)
    tr = ls.solve(Decay(A), stiff, lr=0.1, steps=1000, save_every=10, throw=False)
    # explicit Euler with dt = 1 on rate 3 is GD at lr = 1: |1 - 3| = 2, diverges
    assert tr.result_name == "diverged"
    assert eqx.is_array(tr.stats["fail_step"])
