import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.models import Linearized

TIGHT = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)


def _features(x, A):
    return jnp.concatenate([jnp.tanh(x @ A), jnp.ones((x.shape[0], 1))], axis=1)


def _random_feature_problem(P=20, Q=7, d=5, n=30, k=2, seed=0):
    """f(x) = phi(x) W with fixed random features: exactly linear in its parameters W,
    so its NTK is Theta = phi phi^T (x) I_k and GD on it is the linearized GD map."""
    keys = jax.random.split(jax.random.key(seed), 5)
    x = jax.random.normal(keys[0], (P, d))
    xs = jax.random.normal(keys[1], (Q, d))
    y = jax.random.normal(keys[2], (P, k))
    ys = jax.random.normal(keys[3], (Q, k))
    A = jax.random.normal(keys[4], (d, n)) / jnp.sqrt(d)
    W0 = 0.3 * jax.random.normal(jax.random.fold_in(keys[4], 1), (n + 1, k))
    data = lm.Dataset(x, y, xs, ys)
    apply = lambda W, x_: _features(x_, A) @ W  # noqa: E731
    phi, phis = _features(x, A), _features(xs, A)
    lin = Linearized(phi @ phi.T, phis @ phi.T, apply(W0, x), apply(W0, xs), y, ys)
    return lin, lm.Trained(apply, data, params=W0), data


def test_closed_form_equals_diffrax_flow():
    lin, _, _ = _random_feature_problem()
    cf = ls.solve(lin, ls.ClosedForm(), lr=0.1, steps=300, save_every=30)
    fl = ls.solve(lin, TIGHT, lr=0.1, steps=300, save_every=30)
    for name in ("f_train", "f_test", "loss"):
        err = jnp.max(jnp.abs(cf[name] - fl[name])) / jnp.max(jnp.abs(cf[name]))
        assert err < 1e-8, (name, err)


def test_gd_closed_form_equals_iterated_map_and_real_gd():
    lin, real, _ = _random_feature_problem()
    lr = 0.9 * float(lin.max_stable_lr)
    cf = ls.solve(lin, ls.ClosedForm(discrete=True), lr=lr, steps=200, save_every=20)
    it = ls.solve(lin, ls.GradientDescent(), lr=lr, steps=200, save_every=20)
    gd = ls.solve(real, ls.GradientDescent(), lr=lr, steps=200, save_every=20)
    for name in ("f_train", "f_test"):
        scale = jnp.max(jnp.abs(gd[name]))
        assert jnp.max(jnp.abs(cf[name] - gd[name])) / scale < 1e-10
        assert jnp.max(jnp.abs(it[name] - gd[name])) / scale < 1e-10


def test_gd_map_tends_to_flow_with_order_one():
    lin, _, _ = _random_feature_problem()
    lr_max = float(lin.max_stable_lr)
    T = 40 * lr_max
    lrs = lr_max * np.array([0.0025, 0.005, 0.01, 0.02])
    errs = []
    flow = lin.closed_form(T, lin.init())
    for lr in lrs:
        gd = lin.closed_form_steps(round(T / lr), lr, lin.init())
        errs.append(float(jnp.linalg.norm(gd["f_test"] - flow["f_test"])))
    slope = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    assert abs(slope - 1) < 0.2


def test_lr_above_threshold_diverges():
    lin, _, _ = _random_feature_problem()
    lr = 1.05 * float(lin.max_stable_lr)
    tr = ls.solve(lin, ls.ClosedForm(discrete=True), lr=lr, steps=2000, save_every=10, throw=False)
    assert tr.result_name == "diverged"
    tr2 = ls.solve(lin, ls.GradientDescent(), lr=lr, steps=2000, save_every=10, throw=False)
    assert tr2.result_name == "diverged"
    with pytest.raises(ls.SolveError, match="diverged"):
        ls.solve(lin, ls.GradientDescent(), lr=lr, steps=2000, save_every=10)
    ok = ls.solve(
        lin, ls.ClosedForm(discrete=True), lr=0.95 * float(lin.max_stable_lr), steps=2000, save_every=10
    )
    assert ok.succeeded


def test_full_kernel_matches_shared_kernel():
    lin, _, _ = _random_feature_problem(k=3)
    P, k = lin.y_train.shape
    Q = lin.y_test.shape[0]
    eye = jnp.eye(k)
    full = Linearized(
        jnp.einsum("pq,ab->paqb", lin.ntk_train, eye),
        jnp.einsum("pq,ab->paqb", lin.ntk_test_train, eye),
        lin.f0_train,
        lin.f0_test,
        lin.y_train,
        lin.y_test,
    )
    a, b = lin.closed_form(3.0, lin.init()), full.closed_form(3.0, full.init())
    np.testing.assert_allclose(a["f_test"], b["f_test"], rtol=1e-10, atol=1e-12)
    assert b["f_test"].shape == (Q, k) and b["f_train"].shape == (P, k)


def test_cross_entropy_flow_matches_real_training_of_linear_model():
    lin, real, data = _random_feature_problem(k=3)
    labels = jax.nn.one_hot(jnp.argmax(data.y_train, axis=1), 3)
    data_ce = lm.Dataset(
        data.x_train, labels, data.x_test, jax.nn.one_hot(jnp.argmax(data.y_test, axis=1), 3)
    )
    lin_ce = Linearized(
        lin.ntk_train,
        lin.ntk_test_train,
        lin.f0_train,
        lin.f0_test,
        data_ce.y_train,
        data_ce.y_test,
        loss="cross_entropy",
    )
    real_ce = lm.Trained(real.apply_fn, data_ce, loss="cross_entropy", params=real.params0)
    a = ls.solve(lin_ce, TIGHT, lr=0.1, steps=100, save_every=10)
    b = ls.solve(real_ce, TIGHT, lr=0.1, steps=100, save_every=10)
    assert jnp.max(jnp.abs(a["f_test"] - b["f_test"])) / jnp.max(jnp.abs(b["f_test"])) < 1e-8
    with pytest.raises(ValueError, match="MSE"):
        ls.solve(lin_ce, ls.ClosedForm(), lr=0.1, steps=10)


def test_bad_shapes():
    lin, _, _ = _random_feature_problem()
    with pytest.raises(ValueError, match="ntk_train"):
        Linearized(lin.ntk_train[:-1], lin.ntk_test_train, lin.f0_train, lin.f0_test, lin.y_train, lin.y_test)
    with pytest.raises(ValueError, match="ntk_test_train"):
        Linearized(
            lin.ntk_train, lin.ntk_test_train[:, :-1], lin.f0_train, lin.f0_test, lin.y_train, lin.y_test
        )
    with pytest.raises(ValueError, match="NaN"):
        Linearized(
            lin.ntk_train * jnp.nan, lin.ntk_test_train, lin.f0_train, lin.f0_test, lin.y_train, lin.y_test
        )


def test_from_network_empirical_and_analytic():
    from lmech.validation import datasets

    data = datasets.digits(30, 10, key=jax.random.key(0))
    net = lm.MLP(64, (64,), 1, activation="erf")
    params = net.init(jax.random.key(1))
    lin = Linearized.from_network(net, data, kernel="empirical", params=params, block_size=8)
    np.testing.assert_allclose(
        lin.ntk_train, lm.empirical_ntk(net.apply, params, data.x_train, output="trace"), rtol=1e-12
    )
    np.testing.assert_allclose(lin.f0_test, net.apply(params, data.x_test), rtol=1e-14)
    # the early dynamics of the real network follow its linearization
    real = ls.solve(
        lm.Trained(net, data, params=params), ls.GradientDescent(), lr=0.5, steps=10, save_every=10
    )
    th = ls.solve(lin, ls.ClosedForm(discrete=True), lr=0.5, steps=10, save_every=10)
    assert (
        float(jnp.linalg.norm(th["f_test"][-1] - real["f_test"][-1]) / jnp.linalg.norm(real["f_test"][-1]))
        < 0.05
    )
    ens = Linearized.from_network(net, data, kernel="analytic")
    np.testing.assert_array_equal(ens.f0_train, 0.0)
    np.testing.assert_allclose(ens.ntk_train, lm.analytic_ntk(net, data.x_train), rtol=1e-14)
    with pytest.raises(ValueError, match="kernel"):
        Linearized.from_network(net, data, kernel="magic")


@pytest.mark.parametrize("mode", ["flow", "gd"])
def test_infinite_ensemble_matches_an_ensemble_of_wide_linearized_networks(mode):
    x = jax.random.normal(jax.random.key(0), (8, 4))
    y = jnp.sin(x[:, :1])
    xs = jax.random.normal(jax.random.key(1), (3, 4))
    data = lm.Dataset(x, y, xs, jnp.zeros((3, 1)))
    net = lm.MLP(4, (2048,), 1, activation="erf", sigma_b=0.3)
    lr, steps, t = 0.5, 20, 10.0
    kw = dict(t=t) if mode == "flow" else dict(steps=steps, lr=lr)
    pred = lm.infinite_ensemble(net, data, **kw)
    theta = lm.analytic_ntk(net, x)
    theta_s = lm.analytic_ntk(net, xs, x)

    def one(key):
        p = net.init(key)
        lin = Linearized(theta, theta_s, net.apply(p, x), net.apply(p, xs), y, data.y_test)
        st = (
            lin.closed_form(t, lin.init()) if mode == "flow" else lin.closed_form_steps(steps, lr, lin.init())
        )
        return st["f_test"][:, 0]

    samples = jax.vmap(one)(jax.random.split(jax.random.key(2), 400))
    mean, cov = samples.mean(0), jnp.cov(samples.T)
    sd = jnp.sqrt(jnp.diag(pred["cov"]))
    assert float(jnp.max(jnp.abs(mean - pred["mean"][:, 0]) / sd)) < 4 / jnp.sqrt(400) * 1.5 + 0.05
    np.testing.assert_allclose(jnp.diag(cov), jnp.diag(pred["cov"]), rtol=0.25)
    with pytest.raises(ValueError, match="flow time"):
        lm.infinite_ensemble(net, data)
