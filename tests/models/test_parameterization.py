"""Parameterizations as data: abc tables in the MLP spec and in real training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.models._parameterization import Parameterization as P

D = 6


def _data(p=12, key=0):
    kx, ky = jax.random.split(jax.random.key(key))
    x = jax.random.normal(kx, (p, D))
    y = jnp.sin(x[:, :1]) + 0.3 * x[:, 1:2]
    return lm.Dataset(x, y)


@pytest.mark.parametrize("name", ["ntk", "standard"])
def test_ntk_and_standard_tables_are_the_old_networks(name):
    """A table equal to ntk / standard is stored as the string, so every number (params,
    outputs, GD trajectory) is the one of the string network, and the kernels accept it."""
    table = getattr(P, name)(3)
    assert table.kernel_limit() == name and table.legacy_name() == name
    old = lm.MLP(D, (16, 8), 1, activation="tanh", parameterization=name, sigma_w=1.3, sigma_b=0.2)
    new = lm.MLP(D, (16, 8), 1, activation="tanh", parameterization=table, sigma_w=1.3, sigma_b=0.2)
    assert new.parameterization == name and new == old
    assert new.lr_multipliers() == (1.0, 1.0, 1.0)
    data = _data()
    real = [lm.Trained(n, data, key=jax.random.key(1)) for n in (old, new)]
    assert real[1].lr_multipliers is None  # plain -grad L
    runs = [ls.solve(r, ls.GradientDescent(), lr=0.2, steps=5) for r in real]
    for a, b in zip(jax.tree.leaves(runs[0].final_state), jax.tree.leaves(runs[1].final_state)):
        assert np.array_equal(a, b)
    # the table's own multipliers / stds are the numbers the string network uses
    sizes, sw = new.sizes, 1.3
    fan_in = np.array(sizes[:-1], float)
    mult, std = table.forward_multipliers(sizes, sw), table.init_stds(sizes, sw)
    if name == "ntk":
        np.testing.assert_allclose(mult, sw / np.sqrt(fan_in), rtol=1e-15)
        np.testing.assert_allclose(std, 1.0, rtol=0)
    else:
        np.testing.assert_allclose(mult, 1.0, rtol=0)
        np.testing.assert_allclose(std, sw / np.sqrt(fan_in), rtol=1e-15)
    lm.analytic_ntk(new, data.x_train)  # a kernel limit: the kernels run


def test_mup_init_scales_and_forward_multipliers():
    n, d, sw = 512, D, 1.2
    net = lm.MLP(d, (n, n), 1, activation="tanh", parameterization="mup", sigma_w=sw)
    table = net.abc
    assert table.kernel_limit() is None
    # the muP table: input multiplier sqrt(n), hidden 1, readout 1/sqrt(n); every std ~ n^{-1/2}
    np.testing.assert_allclose(table.forward_multipliers(net.sizes, sw), [n**0.5, 1.0, n**-0.5], rtol=1e-14)
    np.testing.assert_allclose(
        table.init_stds(net.sizes, sw), [sw / np.sqrt(d * n), sw / np.sqrt(n), sw / np.sqrt(n)], rtol=1e-14
    )
    params = net.init(jax.random.key(0))
    for (w, b), s in zip(params, table.init_stds(net.sizes, sw)):
        assert b is None
        assert abs(float(jnp.std(w)) / s - 1) < 4 / np.sqrt(w.size) + 0.01
    x = jax.random.normal(jax.random.key(1), (7, d))
    (w1, _), (w2, _), (w3, _) = params
    h1 = jnp.tanh(n**0.5 * x @ w1.T)
    h2 = jnp.tanh(h1 @ w2.T)
    np.testing.assert_allclose(net.apply(params, x), n**-0.5 * h2 @ w3.T, rtol=1e-13, atol=1e-15)
    # muP: hidden pre-activations O(1), output -> 0 as 1/sqrt(n) at init
    assert 0.3 < float(jnp.std(n**0.5 * x @ w1.T)) < 3


@pytest.mark.parametrize(
    "table",
    [
        P.mean_field(3, gamma0=2.0),
        P([-0.5, 0.25, 0.5], [0.5, 0.25, 0.5], [0.3, -1.0, 0.5], constants_in_multiplier=True, lr_scale=0.7),
    ],
)
def test_per_layer_learning_rates_are_the_hand_written_update(table):
    net = lm.MLP(D, (32, 16), 1, activation="tanh", parameterization=table)
    data = _data()
    real = lm.Trained(net, data, key=jax.random.key(2))
    eta = 0.05
    tr = ls.solve(real, ls.GradientDescent(), lr=eta, steps=1)
    # by hand: the network written out, its gradient, and w_l - eta * lr_scale * n_l^{-c_l} grad_l
    sizes = net.sizes
    n = (sizes[1], sizes[1], sizes[2])
    assert table.widths(sizes) == n
    mult = [
        (1 / np.sqrt(D) if table.constants_in_multiplier else 1.0) * n[0] ** -table.a[0],
        (1.0) * n[1] ** -table.a[1],
        n[2] ** -table.a[2] * table.readout_scale,
    ]

    def loss(ws):
        h = jnp.tanh(mult[0] * data.x_train @ ws[0].T)
        h = jnp.tanh(mult[1] * h @ ws[1].T)
        return 0.5 * jnp.mean((mult[2] * h @ ws[2].T - data.y_train) ** 2)

    w0 = [w for w, _ in real.params0]
    np.testing.assert_allclose(real.loss(real.params0), loss(w0), rtol=1e-13)
    g = jax.grad(loss)(w0)
    for l, ((w_new, _), w, gl) in enumerate(zip(tr.final_state, w0, g)):
        lr_l = eta * table.lr_scale * n[l] ** -table.c[l]
        np.testing.assert_allclose(w_new, w - lr_l * gl, rtol=1e-12, atol=1e-15)


def test_abc_symmetry_gives_the_same_function_trajectory():
    """(a + theta, b - theta, c - 2 theta), per layer: the same function under GD."""
    data = _data(16, key=3)
    base = P.mup(3)
    shifted = base.shifted([0.3, -0.2, 0.45])
    np.testing.assert_allclose(shifted.invariants(), base.invariants(), atol=1e-15)
    runs = []
    for table in (base, shifted):
        net = lm.MLP(D, (64, 32), 1, activation="tanh", parameterization=table, sigma_w=1.1)
        runs.append(
            ls.solve(lm.Trained(net, data, key=jax.random.key(4)), ls.GradientDescent(), lr=0.5, steps=30)
        )
    f0, f1 = runs[0].observables["f_train"], runs[1].observables["f_train"]
    assert float(jnp.max(jnp.abs(f0[-1] - f0[0]))) > 1e-2  # it did train
    np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-10)
    # the parameters themselves differ (the symmetry moves scale between w and its multiplier)
    assert not np.allclose(runs[0].final_state[0][0], runs[1].final_state[0][0])
    # the ntk orbit still has the ntk kernel limit
    assert P.ntk(3).shifted(0.25).kernel_limit() == "ntk"


def test_feature_learning_tables_have_no_kernel_and_the_kernels_say_so():
    x = jnp.ones((3, D))
    for p in ("mup", "mean_field", P.mean_field(2, 0.5)):
        net = lm.MLP(D, (8,), 1, parameterization=p)
        assert net.abc.kernel_limit() is None
        with pytest.raises(ValueError, match="feature-learning"):
            lm.analytic_ntk(net, x)
    assert P.standard(3, c=1.0).kernel_limit() is None  # not one of our kernels


def test_bad_input():
    with pytest.raises(ValueError, match="lengths"):
        P([0, 0.5], [0, 0], [0, 0, 0])
    with pytest.raises(TypeError, match="`a`"):
        P("abc", [0], [0])
    with pytest.raises(TypeError, match="real number"):
        P([0, None], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="finite"):
        P([0, np.inf], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="gamma0"):
        P.mean_field(2, gamma0=-1.0)
    with pytest.raises(ValueError, match="kernel limit"):
        P.mean_field(2, gamma0=0.0)
    with pytest.raises(TypeError, match="gamma0"):
        P.mean_field(2, gamma0="1")
    with pytest.raises(ValueError, match="depth"):
        P.mup(0)
    with pytest.raises(ValueError, match="lr_scale"):
        P([0], [0], [0], lr_scale=-1.0)
    with pytest.raises(ValueError, match="positive int"):
        P.mup(2).forward_multipliers((4, -8, 1))
    with pytest.raises(ValueError, match="entries"):
        P.mup(2).lr_multipliers((4, 8, 8, 1))
    with pytest.raises(ValueError, match="depth=2"):
        lm.MLP(D, (8,), 1, parameterization=P.mup(3))
    with pytest.raises(ValueError, match="biases"):
        lm.MLP(D, (8,), 1, parameterization="mup", sigma_b=0.1)
    with pytest.raises(TypeError, match="parameterization"):
        lm.MLP(D, (8,), 1, parameterization=3)
    with pytest.raises(ValueError, match="parameterization"):
        lm.MLP(D, (8,), 1, parameterization="mu_p")


def test_central_flow_refuses_per_layer_learning_rates():
    import lmech.solvers as ls

    net = lm.MLP(8, (16,), 1, activation="tanh", parameterization="mean_field", bias=False)
    x = np.random.default_rng(0).standard_normal((8, 8))
    real = lm.Trained(net, lm.Dataset(x, x[:, :1], x[:2], x[:2, :1]), key=jax.random.key(0))
    assert lm.Parameterization is not None and real.lr_multipliers is not None
    with pytest.raises(TypeError, match="different learning rates"):
        ls.solve(real, ls.CentralFlow(), lr=0.1, steps=2)


def test_a_table_on_the_ntk_orbit_has_the_ntk_kernels_and_trains_like_them():
    rng = np.random.default_rng(0)
    x, xt = rng.standard_normal((8, D)), rng.standard_normal((4, D))
    data = lm.Dataset(x, np.sin(x[:, :1]), xt, np.sin(xt[:, :1]))
    shifted = lm.MLP(D, (2048,), 1, activation="tanh", parameterization=P.ntk(2).shifted(0.5))
    plain = lm.MLP(D, (2048,), 1, activation="tanh", parameterization="ntk", bias=False)
    for a, b in zip(lm.analytic_kernels(shifted, x, xt).values(), lm.analytic_kernels(plain, x, xt).values()):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    # a wide network with the shifted table (its per-layer learning rates) follows the kernel regime
    kw = dict(lr=0.5, steps=40, save_every=40)
    real = ls.solve(lm.Trained(shifted, data, key=jax.random.key(0)), ls.GradientDescent(), **kw)
    params = shifted.init(jax.random.key(0))
    lin = ls.solve(lm.Linearized.from_network(shifted, data, params=params), ls.GradientDescent(), **kw)
    err = np.max(np.abs(real["f_test"] - lin["f_test"])) / np.max(np.abs(lin["f_test"]))
    assert err < 0.04  # finite-width deviation: measured 0.040, 0.013, 0.0028 at n = 512, 2048, 8192
