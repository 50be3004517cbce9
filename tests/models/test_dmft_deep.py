"""The deep nonlinear DMFT (`DeepDMFT`: Monte-Carlo single sites and response functions on a
time grid): the initial kernels against the analytic ones, the kernel regime at γ₀ = 0, the
deep linear DMFT when the activation is linear (a check of the response functions: without
them the error is 9%, measured), real deep tanh networks approaching it, and its errors."""

import jax
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.models.mean_field._deep import _nested_order, initial_kernels
from lmech.validation.experiments._util import loglog_slope

GRID = ls.SelfConsistent(points=1, rtol=1e-6, atol=1e-6)


def _orthogonal_data(seed=0):
    """Four orthogonal training inputs (whitened: X^T X / P = I) and a linear target."""
    rng = np.random.default_rng(seed)
    x = 2.0 * np.eye(4)
    xt = rng.standard_normal((3, 4))
    beta = rng.standard_normal(4)
    target = lambda z: 1.5 * (z @ beta / 2.0)[:, None]  # noqa: E731
    return lm.Dataset(x, target(x), xt, target(xt))


def _tanh_data(P=6, Q=4, D=8, seed=0):
    rng = np.random.default_rng(seed)
    x, xt, beta = rng.standard_normal((P, D)), rng.standard_normal((Q, D)), rng.standard_normal(D)
    target = lambda z: 1.5 * np.tanh(z @ beta / np.sqrt(D))[:, None]  # noqa: E731
    return lm.Dataset(x, target(x), xt, target(xt))


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_initial_kernels_are_the_analytic_ones(act):
    data = _tanh_data()
    x_all = np.concatenate([data.x_train, data.x_test])
    net = lm.MLP(8, [1, 1, 1], 1, activation=act, parameterization="ntk", sigma_w=1.0, bias=False)
    ref = lm.analytic_kernels(net, x_all, x_all)
    phi, _, ntk = initial_kernels(lm.get_activation(act), x_all, 3)
    assert np.max(np.abs(np.asarray(ntk) - np.asarray(ref["ntk"]))) < 1e-12
    assert np.max(np.abs(np.asarray(phi[-1]) - np.asarray(ref["nngp"]))) < 1e-12


def test_gamma0_zero_is_the_kernel_regime():
    # the same shapes as the next test, so one compilation serves both (the experiment `dmft`
    # checks tanh networks at γ₀ = 0: 3.6e-7 in its quick run)
    data = _orthogonal_data()
    sched = dict(lr=1.0, steps=4, save_every=1)
    theory = ls.solve(lm.DeepDMFT(data, 0.0, 3, "linear", samples=2048, response_samples=128), GRID, **sched)
    net = lm.MLP(4, [1, 1], 1, activation="linear", parameterization="ntk", sigma_w=1.0, bias=False)
    kernel = ls.solve(lm.Linearized.from_network(net, data), ls.GradientFlow(rtol=1e-10, atol=1e-12), **sched)
    scale = float(np.max(np.abs(kernel["f_test"])))
    # the kernels cannot move at γ₀ = 0 and the outputs are integrated exactly for them
    assert float(np.max(np.abs(np.asarray(theory["f_test"]) - np.asarray(kernel["f_test"])))) / scale < 1e-6


def test_linear_activation_is_the_deep_linear_dmft():
    data = _orthogonal_data()
    sched = dict(lr=1.0, steps=4, save_every=1)
    exact = ls.solve(lm.DeepLinearDMFT(data, 1.0, 3), GRID, **sched)
    mc = ls.solve(lm.DeepDMFT(data, 1.0, 3, "linear", samples=2048, response_samples=128), GRID, **sched)
    scale = float(np.max(np.abs(exact["f_train"])))
    err = float(np.max(np.abs(np.asarray(mc["f_train"]) - np.asarray(exact["f_train"])))) / scale
    # Monte-Carlo error of the kernels' change: 0.30% here (2048 sites, one grid interval per
    # save), 0.24% with 4096 sites and two; 9% with the response functions left out
    assert err < 0.01, err
    assert mc["ntk"].shape == (5, 4, 4) and mc["phi"].shape == (5, 2, 4, 4)


@pytest.mark.slow  # ~3 min: a depth-3 tanh DMFT (8192 sites) and 12 real networks up to width 4096
def test_deep_tanh_networks_approach_the_dmft():
    from lmech.validation.experiments.dmft import real_ensemble

    data = _tanh_data(P=8, Q=8, D=16)
    sched = dict(lr=1.0, steps=8, save_every=1)
    theory = ls.solve(
        lm.DeepDMFT(data, 1.0, 3, "tanh", samples=8192),
        ls.SelfConsistent(points=1, rtol=1e-6, atol=1e-6),
        **sched,
    )
    f_th = np.asarray(theory["f_test"][..., 0])
    scale = float(np.max(np.abs(data.y_test)))
    widths, errs = (256, 1024, 4096), []
    for N in widths:
        net = lm.MLP(
            16,
            [N, N],
            1,
            activation="tanh",
            parameterization=lm.Parameterization.mean_field(3, 1.0),
            bias=False,
        )
        real = real_ensemble(
            net, data, jax.random.split(jax.random.key(1), 2), sched, antithetic=True, serial=True
        )
        errs.append(float(np.mean(np.max(np.abs(real["f_test"] - f_th), axis=(1, 2)))) / scale)
    slope = loglog_slope(widths, errs)
    assert errs[-1] < 0.05 and -0.75 < slope < -0.3, (errs, slope)


def test_refined_grid_shares_the_coarse_sources():
    """Index i of a grid maps to 2i on the grid refined by 2; the sources there are the same
    draws on both grids (the Monte-Carlo noise is common to the two levels of a Richardson
    extrapolation), and their covariance is the one asked for."""
    for n in (11, 21, 41):
        coarse, fine = _nested_order(n), _nested_order(2 * n - 1)
        assert sorted(coarse) == list(range(n)) and coarse[0] == 0
        np.testing.assert_array_equal(fine[:n], 2 * coarse)
    dyn = lm.DeepDMFT(_tanh_data(P=3, Q=2), 1.0, 3, samples=4096)
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 1.0, 9)
    pts = rng.standard_normal((5, 5))
    k_pts = pts @ pts.T / 5

    def cov(times):  # a smooth covariance over (time, point)
        kt = np.exp(-((times[:, None] - times[None, :]) ** 2))
        return np.einsum("ts,ab->tasb", kt, k_pts)

    fine = dyn._sample(cov(t), dyn._base_normals(9, np.float64)[0])
    coarse = dyn._sample(cov(t[::2]), dyn._base_normals(5, np.float64)[0])
    np.testing.assert_allclose(fine[:, ::2], coarse, atol=1e-9)
    emp = np.einsum("kta,ksb->tasb", fine, fine) / fine.shape[0]
    assert np.max(np.abs(emp - cov(t))) < 6 / np.sqrt(fine.shape[0]), np.max(np.abs(emp - cov(t)))


@pytest.mark.slow  # ~1.5 min: three grids
def test_grid_refinement_converges_at_second_order():
    """With the sources shared between grid levels, the solution's change under refinement
    shrinks by ~4 per halving (trapezoid, O(h²)). Measured on the `dmft` experiment's first two
    deep-tanh points with 2048 sites: 4.7 per halving; with independent draws per grid (before)
    0.7 — the Monte-Carlo noise dominated and Richardson extrapolation amplified it."""
    data = _tanh_data(P=2, Q=2, D=16, seed=3)
    dyn = lm.DeepDMFT(data, 1.0, 3, "tanh", samples=2048, response_samples=256)
    f = [
        np.asarray(
            ls.solve(dyn, ls.SelfConsistent(points=p, rtol=1e-6, atol=1e-6), lr=1.0, steps=6)["f_test"]
        )
        for p in (1, 2, 4)
    ]
    ratio = np.max(np.abs(f[0] - f[1])) / np.max(np.abs(f[1] - f[2]))
    assert ratio > 3.0, ratio


def test_errors():
    data = _tanh_data()
    with pytest.raises(ValueError, match="smooth activation"):
        lm.DeepDMFT(data, 1.0, 3, "relu")
    with pytest.raises(ValueError, match="even int"):
        lm.DeepDMFT(data, 1.0, 3, samples=7)
    with pytest.raises(ValueError, match="cannot exceed"):
        lm.DeepDMFT(data, 1.0, 3, samples=64, response_samples=128)
    with pytest.raises(ValueError, match="gamma0"):
        lm.DeepDMFT(data, -1.0, 3)
    with pytest.raises(ValueError, match="depth"):
        lm.DeepDMFT(data, 1.0, 1)
    with pytest.raises(TypeError, match="SelfConsistent"):
        ls.solve(lm.DeepDMFT(data, 1.0, 3, samples=64), ls.GradientFlow(), lr=1.0, steps=2)
    with pytest.raises(ValueError, match="max_memory"):
        ls.solve(lm.DeepDMFT(data, 1.0, 3, samples=64), ls.SelfConsistent(points=64), lr=1.0, steps=100)


@pytest.mark.slow  # ~2.5 min: reverse mode through the fixed point, the responses' own derivatives
def test_hypergradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x, xt, beta = rng.standard_normal((4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(6)
    target = lambda z: 1.5 * np.tanh(z @ beta / np.sqrt(6))[:, None]  # noqa: E731
    data = lm.Dataset(x, target(x), xt, target(xt))
    method = ls.SelfConsistent(points=2, rtol=1e-10, atol=1e-10)

    def final_loss(gamma0, lr):
        dmft = lm.DeepDMFT(data, gamma0, 3, "tanh", samples=256, response_samples=64)
        return ls.solve(dmft, method, lr=lr, steps=3, save_every=3)["loss"][-1]

    g0, lr = 0.8, 0.7
    grads = jax.grad(final_loss, argnums=(0, 1))(g0, lr)

    def fd(f, h):  # central differences, Richardson-extrapolated (error O(h^4))
        c = lambda s: (f(s) - f(-s)) / (2 * s)  # noqa: E731
        return (4 * c(h / 2) - c(h)) / 3

    fd_g = fd(lambda s: final_loss(g0 + s, lr), 2e-3)
    fd_lr = fd(lambda s: final_loss(g0, lr + s), 2e-3)
    # measured: 2e-6 and 3e-7 against plain central differences at h = 1e-3 (their own O(h^2) error)
    assert abs(float(grads[0]) - float(fd_g)) < 1e-6 * abs(float(fd_g))
    assert abs(float(grads[1]) - float(fd_lr)) < 1e-6 * abs(float(fd_lr))
