"""Modified flows: exact on a linear field, the Barrett–Dherin loss in parameter space,
and fitted global error orders 1, 2, 3 against real gradient descent."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_core import Decay, ExactMap  # dy/dt = -a y: with its loss; with its exact map

import lmech.models as lm
import lmech.solvers as ls
import lmech.validation as lv
from lmech.solvers._modified_flow import modified_vector_field

TIGHT = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)


def test_linear_field_series_is_exact():
    # GD y_k = (1 - ηa)^k is the time-η map of y' = log(1 - ηa)/η · y
    # = -(a + ηa²/2 + η²a³/3 + ...) y: order r keeps the first r + 1 terms.
    a, lr = jnp.array([0.5, 1.0, 3.0]), 0.05
    y = jnp.array([1.0, -2.0, 0.5])
    d = Decay(a)
    for order, coef in ((1, a + lr * a**2 / 2), (2, a + lr * a**2 / 2 + lr**2 * a**3 / 3)):
        np.testing.assert_allclose(
            np.asarray(modified_vector_field(d, lr, order, 0.0, y, None)), np.asarray(-coef * y), rtol=1e-14
        )


def test_order_one_is_the_flow_of_the_barrett_dherin_loss():
    data = lv.datasets.digits(16, 4, key=jax.random.key(0))
    net = lm.MLP(64, (6,), 1, activation="tanh", parameterization="standard", sigma_b=0.3)
    real = lm.Trained(net, data, key=jax.random.key(1))
    p, lr = real.init(), 0.3

    def modified_loss(q):
        g = jax.grad(real.loss)(q)
        return real.loss(q) + lr / 4 * sum(jnp.sum(x**2) for x in jax.tree.leaves(g))

    want = jax.tree.map(jnp.negative, jax.grad(modified_loss)(p))
    got = modified_vector_field(real, lr, 1, 0.0, p, None)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-14)


@pytest.mark.slow  # ~40 s; the default run checks the series on a linear field and the Barrett–Dherin identity
def test_global_error_orders_against_real_gd():
    data = lv.datasets.digits(32, 4, key=jax.random.key(0))
    net = lm.MLP(64, (8,), 1, activation="tanh", parameterization="standard")
    rec = ls.Recorded(lm.Trained(net, data, key=jax.random.key(1)), sharpness=False, params=True)
    T, lrs = 1.0, np.array([0.2, 0.1, 0.05, 0.025])
    errs = {m: [] for m in ("flow", "mod1", "mod2")}
    methods = {"flow": TIGHT, "mod1": ls.ModifiedFlow(1, TIGHT), "mod2": ls.ModifiedFlow(2, TIGHT)}
    for lr in lrs:
        steps = int(round(T / lr))
        gd = ls.solve(rec, ls.GradientDescent(), lr=lr, steps=steps, save_every=steps)["params"][-1]
        for m, method in methods.items():
            tr = ls.solve(rec, method, lr=lr, steps=steps, save_every=steps)
            errs[m].append(float(jnp.linalg.norm(tr["params"][-1] - gd)))
    orders = {m: np.polyfit(np.log(lrs), np.log(e), 1)[0] for m, e in errs.items()}
    assert abs(orders["flow"] - 1) < 0.2, orders
    assert abs(orders["mod1"] - 2) < 0.3, orders
    assert abs(orders["mod2"] - 3) < 0.4, orders
    assert errs["mod2"][-1] < errs["mod1"][-1] < errs["flow"][-1]


@pytest.mark.slow  # 13 s; differentiability in lr is checked by default in tests/solvers/test_core.py
def test_modified_flow_is_differentiable_in_lr():
    d = Decay(jnp.array([0.5, 2.0]))
    f = lambda lr: ls.solve(d, ls.ModifiedFlow(2, TIGHT), lr=lr, steps=10)["y"][-1].sum()
    h = 1e-5
    np.testing.assert_allclose(float(jax.grad(f)(0.1)), float((f(0.1 + h) - f(0.1 - h)) / (2 * h)), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        ls.ModifiedFlow(order=3)

    with pytest.raises(TypeError, match="own gradient-descent"):
        ls.solve(ExactMap(jnp.ones(2)), ls.ModifiedFlow(1), lr=0.1, steps=5)
    with pytest.raises(ValueError, match="positive"):
        ls.solve(Decay(jnp.ones(2)), ls.ModifiedFlow(1), lr=-0.1, steps=5)
