"""The deep linear DMFT on a time grid (`DeepLinearDMFT` + `SelfConsistent`): the two-layer
closed ODE at depth 2, the kernel regime at γ₀ = 0, the grid's order of accuracy, implicit
derivatives against finite differences, real deep networks approaching it as N^(-1/2), and
its errors."""

import jax
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.models import DeepLinearDMFT, whiten
from lmech.validation.experiments._util import loglog_slope

D, P, Q, Y0 = 8, 32, 16, 1.5
TIGHT = ls.GradientFlow(rtol=1e-10, atol=1e-12)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = whiten(rng.standard_normal((P, D)))
    xt = rng.standard_normal((Q, D))
    beta = rng.standard_normal(D)
    target = lambda z: Y0 * (z @ beta / np.sqrt(D))[:, None]  # noqa: E731
    return lm.Dataset(x, target(x), xt, target(xt))


def _max_diff(a, b, name="f_test"):
    return float(np.max(np.abs(np.asarray(a[name]) - np.asarray(b[name]))))


@pytest.mark.parametrize("gamma0", [2.0])
def test_depth_two_is_the_closed_ode(gamma0):
    data = _data()
    ode = ls.solve(lm.TwoLayerLinearDMFT(data, gamma0), TIGHT, lr=0.5, steps=20)
    grid = ls.solve(
        DeepLinearDMFT(data, gamma0, 2), ls.SelfConsistent(points=4, extrapolate=True), lr=0.5, steps=20
    )
    scale = float(np.max(np.abs(ode["f_test"])))
    # Richardson-extrapolated trapezoid grid, O(h^4): measured 3e-7 at γ₀ = 2
    assert _max_diff(grid, ode) / scale < 1e-6
    assert _max_diff(grid, ode, "ntk") / float(np.max(np.abs(ode["ntk"]))) < 1e-6
    assert _max_diff(grid, ode, "loss") / float(ode["loss"][0]) < 1e-6


@pytest.mark.slow  # 7 s; the default tier checks the grid's accuracy against the closed ODE above
def test_grid_error_is_second_order():
    data = _data()
    ode = ls.solve(lm.TwoLayerLinearDMFT(data, 1.0), TIGHT, lr=1.0, steps=10)
    errs = [
        _max_diff(ls.solve(DeepLinearDMFT(data, 1.0, 2), ls.SelfConsistent(points=p), lr=1.0, steps=10), ode)
        for p in (1, 2, 4)
    ]
    slope = loglog_slope([1, 2, 4], errs)
    assert -2.2 < slope < -1.8, (errs, slope)


@pytest.mark.parametrize("depth", [3])
def test_gamma0_zero_is_the_kernel_regime(depth):
    data = _data(1)
    # exact on any grid: the output is integrated exactly for the current kernel
    theory = ls.solve(
        DeepLinearDMFT(data, 0.0, depth), ls.SelfConsistent(points=1, stages=2), lr=1.0, steps=10
    )
    net = lm.MLP(
        D, [1] * (depth - 1), 1, activation="linear", parameterization="ntk", sigma_w=1.0, bias=False
    )
    kernel = ls.solve(lm.Linearized.from_network(net, data), TIGHT, lr=1.0, steps=10)
    scale = float(np.max(np.abs(kernel["f_test"])))
    assert _max_diff(theory, kernel) / scale < 1e-8


def test_hypergradients_match_finite_differences():
    data = _data(2)
    method = ls.SelfConsistent(points=2, rtol=1e-12, atol=1e-12)

    def final_loss(gamma0, lr):
        return ls.solve(DeepLinearDMFT(data, gamma0, 3), method, lr=lr, steps=6, save_every=3)["loss"][-1]

    g0, lr, eps = 0.7, 0.8, 1e-5
    dg, dl = jax.grad(final_loss, argnums=(0, 1))(g0, lr)
    fd_g = (final_loss(g0 + eps, lr) - final_loss(g0 - eps, lr)) / (2 * eps)
    fd_l = (final_loss(g0, lr + eps) - final_loss(g0, lr - eps)) / (2 * eps)
    assert abs(dg - fd_g) / abs(fd_g) < 1e-6
    assert abs(dl - fd_l) / abs(fd_l) < 1e-6


def test_two_time_kernels_are_symmetric_and_start_at_one():
    data = _data()
    dmft = DeepLinearDMFT(data, 1.0, 3)
    times = np.linspace(0.0, 8.0, 17)
    q, ok, _ = ls.SelfConsistent().fixed_point(dmft, times)
    assert bool(ok)
    for name in ("phi", "G"):
        k = np.asarray(q[name])
        np.testing.assert_allclose(k, np.swapaxes(k, 1, 2), atol=1e-10)
        np.testing.assert_allclose(k[:, 0, 0], 1.0, atol=1e-12)
    # feature learning grows every layer's kernel along the target
    assert np.all(np.asarray(q["phi"])[:, -1, -1] > 1.05)


@pytest.mark.slow
def test_real_deep_networks_approach_it():
    """Depth-3 linear muP networks (γ₀ = 1): a single network's max test error against the
    DMFT falls as N^(-1/2) over widths 128 … 2048 (4 seeds), and the width-2048 network's NTK at
    the end is the DMFT's (along the target and across it)."""
    data = _data(3)
    sched = dict(lr=0.5, steps=20)
    theory = ls.solve(DeepLinearDMFT(data, 1.0, 3), ls.SelfConsistent(points=4, extrapolate=True), **sched)
    widths, errs = (128, 512, 2048), []
    scale = float(np.max(np.abs(data.y_test)))
    for n in widths:
        net = lm.MLP(
            D,
            [n, n],
            1,
            activation="linear",
            parameterization=lm.Parameterization.mean_field(3, 1.0),
            bias=False,
        )
        e = [
            _max_diff(
                ls.solve(
                    lm.Trained(net, data, params=net.init(jax.random.key(s))), ls.GradientFlow(), **sched
                ),
                theory,
            )
            for s in range(4)
        ]
        errs.append(np.mean(e) / scale)
    slope = loglog_slope(widths, errs)
    assert -0.7 < slope < -0.35, (errs, slope)
    assert errs[-1] < 0.05
    # the NTK at the end, along and across the target (the DMFT's D x D kernel) vs the widest network's
    tr = ls.solve(lm.Trained(net, data, params=net.init(jax.random.key(0))), ls.GradientFlow(), **sched)
    k_raw = lm.empirical_ntk(net.apply, tr.final_state, data.x_train, output="trace", method="ntvp")
    k_real = widths[-1] * np.asarray(k_raw)  # the flow's kernel: every layer's rate is γ₀² N (γ₀ = 1)
    k_dmft = data.x_train @ np.asarray(theory["ntk"][-1]) @ data.x_train.T
    k_init = data.x_train @ np.asarray(theory["ntk"][0]) @ data.x_train.T
    assert np.linalg.norm(k_dmft - k_init) > 0.5 * np.linalg.norm(k_init)  # it has moved
    assert np.linalg.norm(k_real - k_dmft) / np.linalg.norm(k_dmft) < 0.05


def test_bad_input():
    data = _data()
    with pytest.raises(ValueError, match="depth"):
        DeepLinearDMFT(data, 1.0, 1)
    with pytest.raises(ValueError, match="gamma0"):
        DeepLinearDMFT(data, -0.5, 3)
    rng = np.random.default_rng(0)
    raw = lm.Dataset(
        rng.standard_normal((P, D)),
        rng.standard_normal((P, 1)),
        rng.standard_normal((Q, D)),
        rng.standard_normal((Q, 1)),
    )
    with pytest.raises(ValueError, match="whiten"):
        DeepLinearDMFT(raw, 1.0, 3)
    dmft = DeepLinearDMFT(data, 1.0, 3)
    with pytest.raises(ValueError, match="max_memory"):
        ls.solve(dmft, ls.SelfConsistent(points=64), lr=1.0, steps=200)
    with pytest.raises(TypeError, match="SelfConsistent"):
        ls.solve(dmft, ls.GradientFlow(), lr=1.0, steps=2)
    with pytest.raises(TypeError, match="two-time"):
        ls.solve(lm.TwoLayerLinearDMFT(data, 1.0), ls.SelfConsistent(), lr=1.0, steps=2)
    with pytest.raises(ValueError, match="points"):
        ls.SelfConsistent(points=0)


def test_unconverged_fixed_point_is_a_result_code():
    dmft = DeepLinearDMFT(_data(), 1.0, 3)
    tr = ls.solve(dmft, ls.SelfConsistent(points=2, stages=1, max_steps=2), lr=1.0, steps=4, throw=False)
    assert tr.result_name == "fixed_point_failed"
    assert np.all(np.isnan(np.asarray(tr["loss"])))
    with pytest.raises(ls.SolveError, match="max_steps"):
        ls.solve(dmft, ls.SelfConsistent(points=2, stages=1, max_steps=2), lr=1.0, steps=4)


def test_dmft_of_a_network_spec():
    data = _data()
    mf = lambda depth, act="linear", **kw: lm.MLP(  # noqa: E731
        D,
        [64] * (depth - 1),
        1,
        activation=act,
        parameterization=lm.Parameterization.mean_field(depth, 0.7),
        bias=False,
        **kw,
    )
    assert isinstance(lm.dmft(mf(2), data), lm.TwoLayerLinearDMFT)
    assert isinstance(lm.dmft(mf(2, "tanh"), data, samples=64), lm.TwoLayerDMFT)
    deep = lm.dmft(mf(4), data)
    assert isinstance(deep, DeepLinearDMFT) and deep.depth == 4 and float(deep.gamma0) == 0.7
    # a table on the mean-field orbit is the same theory
    shifted = lm.MLP(
        D,
        [64, 64],
        1,
        activation="linear",
        parameterization=lm.Parameterization.mean_field(3, 0.7).shifted(0.25),
        bias=False,
    )
    assert float(lm.dmft(shifted, data).gamma0) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="Linearized.from_network"):
        lm.dmft(lm.MLP(D, [64], 1, activation="linear", parameterization="ntk", bias=False), data)
    with pytest.raises(ValueError, match="not a mean-field table"):
        lm.dmft(lm.MLP(D, [64], 1, activation="linear", parameterization="mup", bias=False), data)
    with pytest.raises(ValueError, match="sigma_w = 1"):
        lm.dmft(mf(2, sigma_w=2.0), data)
    nonlinear = lm.dmft(mf(3, "tanh"), data, samples=64)
    assert isinstance(nonlinear, lm.DeepDMFT) and nonlinear.depth == 3 and nonlinear.samples == 64
