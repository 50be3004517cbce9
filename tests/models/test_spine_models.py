"""MLP spec, Trained, and the deep-linear theory against real gradient descent."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.validation import datasets

TIGHT = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14, max_steps=200_000)
S = (3.0, 2.0, 1.0, 0.5)


@pytest.fixture(scope="module")
def data():
    return datasets.linear_teacher(S, 6, 5, 40, 12, key=jax.random.key(0))


def _linear_net(d, k, depth, width=7):
    return lm.MLP(d, (width,) * (depth - 1), k, activation="linear", parameterization="standard", bias=False)


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


# ---------------------------------------------------------------- MLP and Trained
def test_mlp_parameterizations_give_the_same_function_at_init():
    ntk = lm.MLP(5, (64, 32), 3, activation="tanh", parameterization="ntk", sigma_w=1.3, sigma_b=0.2)
    std = lm.MLP(5, (64, 32), 3, activation="tanh", parameterization="standard", sigma_w=1.3, sigma_b=0.2)
    p_ntk = ntk.init(jax.random.key(1))
    p_std = std.init(jax.random.key(1))  # same normals, scaled into the weights
    x = jax.random.normal(jax.random.key(2), (9, 5))
    np.testing.assert_allclose(ntk.apply(p_ntk, x), std.apply(p_std, x), rtol=1e-12)
    assert ntk.apply(p_ntk, x).shape == (9, 3)
    w = np.asarray(std.init(jax.random.key(3))[1][0])
    assert abs(w.std() - 1.3 / np.sqrt(64)) < 0.05 * 1.3 / np.sqrt(64)


def test_mlp_bad_input():
    with pytest.raises(ValueError, match="activation"):
        lm.MLP(3, (4,), 1, activation="swishy")
    with pytest.raises(ValueError, match="parameterization"):
        lm.MLP(3, (4,), 1, parameterization="bogus")
    with pytest.raises(ValueError, match="width"):
        lm.MLP(3, (0,), 1)
    with pytest.raises(ValueError, match="in_size"):
        lm.MLP(0, (4,), 1)
    with pytest.raises(ValueError, match="features"):
        net = lm.MLP(3, (4,), 1)
        net.apply(net.init(jax.random.key(0)), jnp.ones((2, 4)))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_trained_vector_field_is_minus_the_fd_gradient(loss):
    d = datasets.teacher_student(lm.MLP(3, (5,), 2, activation="tanh"), 10, 2, key=jax.random.key(4))
    if loss == "cross_entropy":
        d = lm.Dataset(
            d.x_train,
            jax.nn.one_hot(jnp.argmax(d.y_train, 1), 2),
            d.x_test,
            jax.nn.one_hot(jnp.argmax(d.y_test, 1), 2),
        )
    net = lm.MLP(3, (4,), 2, activation="tanh", sigma_b=0.5)
    real = lm.Trained(net, d, loss=loss, key=jax.random.key(5))
    p = real.init()
    vf = real.vector_field(0.0, p, None)
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    vflat = jax.flatten_util.ravel_pytree(vf)[0]
    h = 1e-6
    for i in range(0, flat.size, 3):
        e = jnp.zeros_like(flat).at[i].set(h)
        fd = (real.loss(unravel(flat + e)) - real.loss(unravel(flat - e))) / (2 * h)
        assert abs(float(vflat[i] + fd)) < 1e-8


def test_trained_gd_is_the_plain_training_loop():
    d = datasets.digits(40, 10, key=jax.random.key(0))
    net = lm.MLP(64, (32,), 1, activation="relu", sigma_w=np.sqrt(2), sigma_b=0.1)
    real = lm.Trained(net, d, key=jax.random.key(1))
    tr = ls.solve(real, ls.GradientDescent(), lr=0.3, steps=20, save_every=20)
    p = real.init()
    for _ in range(20):
        g = jax.grad(real.loss)(p)
        p = jax.tree.map(lambda a, b: a - 0.3 * b, p, g)
    for a, b in zip(jax.tree.leaves(tr.final_state), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert set(tr.observables) == {"loss", "f_train", "f_test"}
    assert tr["f_test"].shape == (2, 10, 1)


def test_trained_bring_your_own_and_bad_input(data):
    W = jnp.zeros((5, 6))
    real = lm.Trained(lambda p, x: x @ p.T, data, params=W)
    tr = ls.solve(real, ls.GradientFlow(), lr=0.1, steps=100, save_every=100)
    # linear regression on whitened data converges to Sigma_yx
    np.testing.assert_allclose(tr.final_state, data.input_output_covariance(), atol=1e-3)
    with pytest.raises(ValueError, match="in_size"):
        lm.Trained(lm.MLP(7, (4,), 5), data, key=jax.random.key(0))
    with pytest.raises(ValueError, match="out_size"):
        lm.Trained(lm.MLP(6, (4,), 2), data, key=jax.random.key(0))
    with pytest.raises(ValueError, match="params"):
        lm.Trained(lambda p, x: x, data)
    with pytest.raises(ValueError, match="loss"):
        lm.Trained(lm.MLP(6, (4,), 5), data, loss="hinge", key=jax.random.key(0))


def test_dataset_checks():
    x, y = jnp.ones((4, 3)), jnp.ones((4, 1))
    with pytest.raises(ValueError, match="samples"):
        lm.Dataset(x, jnp.ones((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        lm.Dataset(x.at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="features"):
        lm.Dataset(x, y, jnp.ones((2, 2)), jnp.ones((2, 1)))


# ---------------------------------------------------------------- deep linear theory
def test_closed_form_equals_mode_ode(data):
    modes = lm.SaxeModes.from_dataset(data, 2, u0=0.01)
    cf = ls.solve(modes, ls.ClosedForm(), lr=0.05, steps=200, save_every=10)
    ode = ls.solve(modes, TIGHT, lr=0.05, steps=200, save_every=10)
    u_cf, u_ode = np.asarray(cf["mode_strengths"]), np.asarray(ode["mode_strengths"])
    assert np.max(np.abs(u_cf - u_ode) / np.abs(u_cf)) < 1e-8


@pytest.mark.parametrize("depth", [2, 3, pytest.param(4, marks=pytest.mark.slow)])
def test_mode_ode_equals_full_parameter_flow(data, depth):
    modes = lm.SaxeModes.from_dataset(data, depth, u0=0.05)
    net = _linear_net(6, 5, depth)
    real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.key(depth)))
    a = ls.solve(modes, TIGHT, lr=0.05, steps=200, save_every=20)
    b = ls.solve(real, TIGHT, lr=0.05, steps=200, save_every=20)
    for name in ("end_to_end", "loss", "singular_values", "f_test"):
        assert _rel(a[name], b[name]) < 1e-8, name


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("lr", [0.01, 0.05])
def test_exact_mode_map_equals_real_gd(data, depth, lr):
    modes = lm.SaxeModes.from_dataset(data, depth, u0=0.05)
    net = _linear_net(6, 5, depth)
    real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.key(7)))
    a = ls.solve(modes, ls.GradientDescent(), lr=lr, steps=300, save_every=30)
    b = ls.solve(real, ls.GradientDescent(), lr=lr, steps=300, save_every=30)
    assert _rel(a["end_to_end"], b["end_to_end"]) < 1e-9
    assert _rel(a["loss"], b["loss"]) < 1e-9


def test_flow_gd_gap_is_first_order(data):
    modes = lm.SaxeModes.from_dataset(data, 2, u0=0.05)
    T = 4.0
    flow = modes.closed_form(T, modes.init())
    lrs = np.array([0.0025, 0.005, 0.01, 0.02])
    gaps = []
    for lr in lrs:
        gd = ls.solve(
            modes, ls.GradientDescent(), lr=float(lr), steps=round(T / lr), save_every=round(T / lr)
        )
        gaps.append(float(jnp.max(jnp.abs(jnp.prod(gd.final_state, 0) - jnp.prod(flow, 0)))))
    assert abs(np.polyfit(np.log(lrs), np.log(gaps), 1)[0] - 1) < 0.2


def test_balancedness_drift_under_gd_and_conservation_under_flow(data):
    net = _linear_net(6, 5, 3)
    params = net.init(jax.random.key(3))  # random, not balanced
    real = lm.Trained(net, data, params=params)
    lr = 0.05
    ws = [w for w, _ in params]
    grads = [g for g, _ in jax.grad(real.loss)(params)]
    new = [w - lr * g for w, g in zip(ws, grads)]
    before, after = lm.balancedness(ws), lm.balancedness(new)
    predicted = lm.balancedness_drift(grads, lr)
    for b, a, p in zip(before, after, predicted):
        assert float(jnp.max(jnp.abs(p))) > 1e-6  # the drift is not trivially zero
        np.testing.assert_allclose(a - b, p, rtol=1e-9, atol=1e-14 * float(jnp.max(jnp.abs(b))))
    flow = ls.solve(real, TIGHT, lr=0.05, steps=100, save_every=100)
    end = lm.balancedness([w for w, _ in flow.final_state])
    for b, e in zip(before, end):
        assert float(jnp.max(jnp.abs(e - b))) < 1e-9 * float(jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("depth", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_end_to_end_flow_matches_balanced_network(depth):
    data = datasets.linear_teacher([2.0, 1.0, 0.5], 4, 3, 20, 5, key=jax.random.key(1))
    W0 = 0.3 * jax.random.normal(jax.random.key(2), (3, 4))
    U, s, Vt = jnp.linalg.svd(W0, full_matrices=False)
    D = jnp.broadcast_to(s ** (1.0 / depth), (depth, s.size))
    params = lm.factor_chain(U, D, Vt.T, (5,) * (depth - 1), key=jax.random.key(3))
    net = lm.MLP(4, (5,) * (depth - 1), 3, activation="linear", parameterization="standard", bias=False)
    np.testing.assert_allclose(net.end_to_end(params), W0, atol=1e-14)
    real = lm.Trained(net, data, params=params)
    e2e = lm.EndToEnd(data, depth, W0)
    a = ls.solve(e2e, TIGHT, lr=0.05, steps=100, save_every=10)
    b = ls.solve(real, TIGHT, lr=0.05, steps=100, save_every=10)
    assert _rel(a["end_to_end"], b["end_to_end"]) < 1e-7


@pytest.mark.parametrize("depth", [2, 3])
def test_time_to_fraction_matches_the_ode(data, depth):
    modes = lm.SaxeModes.from_dataset(data, depth, u0=0.01)
    t_half = np.asarray(modes.time_to_fraction(0.5))[: len(S)]
    for i, t in enumerate(t_half):
        u = np.asarray(ls.solve(modes, TIGHT, lr=float(t), steps=1).final_state).prod(0)[i]
        assert abs(u - S[i] / 2) < 1e-6 * S[i]


def test_orthogonalized_strengths_predict_stepwise_learning():
    s = (3.0, 2.0, 1.0, 0.5)
    d = datasets.linear_teacher(s, 4, 4, 16, key=jax.random.key(5))
    U, s_, V, _ = lm.target_modes(d)
    k1, k2 = jax.random.split(jax.random.key(6))
    W1, W2 = 1e-3 * jax.random.normal(k1, (4, 4)), 1e-3 * jax.random.normal(k2, (4, 4))
    net = _linear_net(4, 4, 2, width=4)
    gd = ls.solve(
        lm.Trained(net, d, params=((W1, None), (W2, None))), ls.GradientDescent(), lr=0.02, steps=2000
    )
    u_real = np.asarray(lm.SaxeModes.from_dataset(d, 2, u0=1.0).project(gd["end_to_end"]))
    from lmech.validation.experiments._util import first_crossing

    t_real = first_crossing(np.asarray(gd.times), u_real, np.asarray(s_) / 2)
    errs = {}
    for rule in ("projected", "orthogonalized"):
        th = lm.SaxeModes.balanced(s_, lm.effective_initial_strengths(W1, W2, U, V, rule=rule), 2)
        tr = ls.solve(th, ls.GradientDescent(), lr=0.02, steps=2000)
        t_pred = first_crossing(np.asarray(tr.times), np.asarray(tr["mode_strengths"]), np.asarray(s_) / 2)
        errs[rule] = np.max(np.abs(t_pred - t_real) / t_real)
    assert errs["orthogonalized"] < 0.01
    assert errs["orthogonalized"] < errs["projected"]


def test_deep_linear_bad_input(data):
    with pytest.raises(ValueError, match="depth"):
        lm.SaxeModes.from_dataset(data, 0, u0=0.1)
    bad = lm.Dataset(2.0 * data.x_train, data.y_train)
    with pytest.raises(ValueError, match="whitened"):
        lm.SaxeModes.from_dataset(bad, 2, u0=0.1)
    modes = lm.SaxeModes.from_dataset(data, 3, u0=0.1)
    with pytest.raises(ValueError, match="depth 2"):
        modes.closed_form(1.0, modes.init())
    with pytest.raises(ValueError, match="u0"):
        lm.SaxeModes.balanced(jnp.array(S), -1.0, 2)
    with pytest.raises(ValueError, match="depth"):
        lm.EndToEnd(data, 0, jnp.zeros((5, 6)))


def test_lr_beyond_stability_diverges(data):
    modes = lm.SaxeModes.from_dataset(data, 2, u0=0.05)
    # at the fixed point the map is unstable when lr * 2 * s_max > 2
    tr = ls.solve(modes, ls.GradientDescent(), lr=0.8, steps=500, save_every=10, throw=False)
    assert tr.result_name == "diverged"
    with pytest.raises(ls.SolveError, match="diverged"):
        ls.solve(modes, ls.GradientDescent(), lr=0.8, steps=500, save_every=10)


def test_unbalanced_two_layer_modes_match_full_flow_and_conserve(data):
    modes0 = lm.SaxeModes.from_dataset(data, 2, u0=0.05)
    m = modes0.s.shape[0]
    a0 = jnp.stack([jnp.full((m,), 0.5), jnp.full((m,), 0.02)])  # a != b
    modes = lm.SaxeModes(modes0.s, a0, U=modes0.U, V=modes0.V, data=data, loss_offset=modes0.loss_offset)
    net = _linear_net(6, 5, 2)
    real = lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.key(9)))
    a = ls.solve(modes, TIGHT, lr=0.05, steps=100, save_every=10)
    b = ls.solve(real, TIGHT, lr=0.05, steps=100, save_every=10)
    assert _rel(a["end_to_end"], b["end_to_end"]) < 1e-8
    end = a.final_state
    np.testing.assert_allclose(end[0] ** 2 - end[1] ** 2, a0[0] ** 2 - a0[1] ** 2, rtol=1e-9)
    with pytest.raises(ValueError, match="balanced"):
        modes.closed_form(1.0, modes.init())
