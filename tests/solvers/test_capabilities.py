"""Capabilities as types: every method that needs one checks it with isinstance and
says what is missing; wrappers keep the capabilities of what they wrap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_core import ExactMap, Plain

import lmech.models as lm
import lmech.solvers as ls
import lmech.validation as lv

NEEDS = [
    (ls.ClosedForm(), "closed-form flow"),
    (ls.ClosedForm(discrete=True), "closed-form gradient-descent map"),
    (ls.CentralFlow(), "loss's Hessian"),
]


@pytest.mark.parametrize("method,what", NEEDS, ids=["closed_form", "closed_form_steps", "central_flow"])
def test_a_missing_capability_is_a_clear_error(method, what):
    with pytest.raises(TypeError, match=what):
        ls.solve(Plain(), method, lr=0.1, steps=2)


def test_sharpness_needs_a_loss():
    with pytest.raises(TypeError, match="no loss"):
        ls.Recorded(Plain())
    # parameters alone need no loss
    tr = ls.solve(ls.Recorded(Plain(), sharpness=False, params=True), ls.GradientDescent(), lr=0.1, steps=2)
    np.testing.assert_allclose(tr["params"][-1], 0.81 * np.ones(3), rtol=1e-14)


@pytest.fixture(scope="module")
def modes():
    data = lv.datasets.linear_teacher([3.0, 1.0], 4, 4, n_train=16, key=jax.random.key(0))
    return lm.SaxeModes.from_dataset(data, 2, u0=0.05)


def test_recorded_keeps_the_closed_form(modes):
    rec = ls.Recorded(modes, sharpness=True, params=True)
    a = ls.solve(rec, ls.ClosedForm(), lr=0.05, steps=40, save_every=10)
    b = ls.solve(modes, ls.ClosedForm(), lr=0.05, steps=40, save_every=10)
    np.testing.assert_array_equal(a["mode_strengths"], b["mode_strengths"])
    assert {"sharpness", "params"} <= set(a.observables)
    # the sharpness of L = ½Σ(s - a₁a₂)² at the start: the Hessian of each mode is
    # [[a₂², 2a₁a₂ - s], [2a₁a₂ - s, a₁²]] with a₁ = a₂ = √u₀: eigenvalues u₀ ± |2u₀ - s|
    u0, s = 0.05, np.asarray(modes.s)
    expected = np.max(u0 + np.abs(2 * u0 - s))
    np.testing.assert_allclose(a["sharpness"][0], expected, rtol=1e-10)


def test_closed_form_honours_state0(modes):
    a1 = jnp.full_like(modes.a0, jnp.sqrt(0.2))  # balanced, u0 = 0.2
    cf = ls.solve(modes, ls.ClosedForm(), lr=0.05, steps=40, save_every=10, state0=a1)
    fl = ls.solve(modes, ls.GradientFlow(rtol=1e-12, atol=1e-14), lr=0.05, steps=40, save_every=10, state0=a1)
    np.testing.assert_allclose(cf["mode_strengths"], fl["mode_strengths"], rtol=1e-9)
    assert float(cf["mode_strengths"][0, 0]) == pytest.approx(0.2, rel=1e-14)


def test_linearized_closed_form_honours_state0():
    key = jax.random.key(1)
    K = jax.random.normal(key, (6, 6))
    ntk = K @ K.T + 0.1 * jnp.eye(6)
    y = jax.random.normal(jax.random.key(2), (6, 1))
    lin = lm.Linearized(ntk, ntk[:2], jnp.zeros((6, 1)), jnp.zeros((2, 1)), y, y[:2])
    s0 = {"f_train": jnp.ones((6, 1)), "f_test": -jnp.ones((2, 1))}
    for cf, method in (
        (ls.ClosedForm(), ls.GradientFlow(rtol=1e-12, atol=1e-14)),
        (ls.ClosedForm(True), ls.GradientDescent()),
    ):
        a = ls.solve(lin, cf, lr=0.1, steps=30, save_every=10, state0=s0)
        b = ls.solve(lin, method, lr=0.1, steps=30, save_every=10, state0=s0)
        np.testing.assert_allclose(a["f_test"], b["f_test"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a["f_train"][0], s0["f_train"], rtol=1e-14)


def test_own_map_is_used_by_gradient_descent_and_refused_by_modified_flow():
    tr = ls.solve(ExactMap(jnp.ones(2)), ls.GradientDescent(), lr=0.1, steps=10)
    np.testing.assert_allclose(tr["y"][-1], np.exp(-1.0) * np.ones(2), rtol=1e-14)
    with pytest.raises(TypeError, match="own gradient-descent"):
        ls.solve(ExactMap(jnp.ones(2)), ls.ModifiedFlow(), lr=0.1, steps=10)
    with pytest.raises(TypeError):
        ls.solve(ExactMap(jnp.ones(2)), ls.CentralFlow(), lr=0.1, steps=10)
