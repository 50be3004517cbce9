"""The spine in float32: the library follows JAX's dtype, and its default tolerances are
ones float32 can reach. Each solve runs with x64 switched off and is compared with the
same solve in float64, at float32's precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
import lmech.validation as lv


def _both(fn):
    """fn() in float32 and in float64 (each computed from scratch in its mode)."""
    with jax.enable_x64(False):
        lo = jax.tree.map(np.asarray, fn())
    hi = jax.tree.map(np.asarray, fn())
    return lo, hi


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def test_trained_gd_in_float32():
    net = lm.MLP(64, (32,), 1, activation="tanh")
    # the same numbers in both runs (random draws differ between dtypes)
    params = jax.tree.map(np.asarray, net.init(jax.random.key(1)))
    data = jax.tree.map(np.asarray, lv.datasets.digits(32, 16, key=jax.random.key(0), target="parity"))

    def run():
        d = lm.Dataset(data.x_train, data.y_train, data.x_test, data.y_test)
        real = lm.Trained(net, d, params=jax.tree.map(jnp.asarray, params))
        tr = ls.solve(real, ls.GradientDescent(), lr=0.1, steps=200, save_every=50)
        return tr["f_test"], tr["loss"]

    (f32, l32), (f64, l64) = _both(run)
    assert f32.dtype == np.float32 and f64.dtype == np.float64
    assert _rel(f32, f64) < 1e-4
    assert l32[-1] < 0.7 * l32[0]


def test_saxe_modes_and_gradient_flow_defaults_in_float32():
    def run():
        data = lv.datasets.linear_teacher([3.0, 1.0], 4, 4, n_train=16, key=jax.random.key(0))
        modes = lm.SaxeModes.from_dataset(data, 2, u0=0.05)
        flow = ls.solve(modes, ls.GradientFlow(), lr=0.05, steps=100, save_every=10)  # default tolerances
        closed = ls.solve(modes, ls.ClosedForm(), lr=0.05, steps=100, save_every=10)
        gd = ls.solve(modes, ls.GradientDescent(), lr=0.05, steps=100, save_every=10)
        return flow["mode_strengths"], closed["mode_strengths"], gd["mode_strengths"]

    (fl32, cf32, gd32), (fl64, cf64, gd64) = _both(run)
    assert fl32.dtype == np.float32
    assert _rel(fl32, cf64) < 1e-4  # the float32 default rtol 1e-5 is reached
    assert _rel(cf32, cf64) < 1e-5
    assert _rel(gd32, gd64) < 1e-5
    assert _rel(fl64, cf64) < 1e-7  # and float64's default rtol 1e-8


def test_linearized_in_float32():
    def run():
        data = lv.datasets.digits(64, 16, key=jax.random.key(0), target="parity")
        net = lm.MLP(64, (128,), 1, activation="erf")
        lin = lm.Linearized.from_network(net, data, kernel="analytic")
        gd = ls.solve(lin, ls.ClosedForm(discrete=True), lr=0.5, steps=100, save_every=25)
        it = ls.solve(lin, ls.GradientDescent(), lr=0.5, steps=100, save_every=25)
        return gd["f_test"], it["f_test"]

    (cf32, it32), (cf64, _) = _both(run)
    assert cf32.dtype == np.float32
    assert _rel(cf32, cf64) < 1e-4 and _rel(it32, cf64) < 1e-4


@pytest.mark.parametrize("dtype,expected", [(jnp.float32, (1e-5, 1e-6)), (jnp.float64, (1e-8, 1e-10))])
def test_default_tolerances_follow_the_dtype(dtype, expected):
    assert ls.default_tolerances(jnp.zeros(3, dtype)) == expected
