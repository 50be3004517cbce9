"""The two-layer linear mean-field (DMFT) ODE: exact at finite width from a realization's own
order parameters, the kernel limit as γ₀ → 0, its conservation laws, γ₀-derivatives, and
real networks approaching it as N^(-1/2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.models import TwoLayerLinearDMFT, whiten

D, P, Q, Y0 = 8, 32, 16, 1.5
TIGHT = ls.GradientFlow(rtol=1e-10, atol=1e-12)


def _data(seed=0, along_e1=True):
    rng = np.random.default_rng(seed)
    x = whiten(rng.standard_normal((P, D)))
    xt = rng.standard_normal((Q, D))
    beta = np.sqrt(D) * Y0 * (np.eye(D)[0] if along_e1 else rng.standard_normal(D) / np.sqrt(D))
    return lm.Dataset(x, (x @ beta / np.sqrt(D))[:, None], xt, (xt @ beta / np.sqrt(D))[:, None])


def _network(N, gamma0, key):
    """f = Σ a_i w_i·x / (γ₀ N √D) trained with dθ/dt = -γ₀² N ∇L: the parameters are
    φ = θ / c with c² = γ₀² N, so plain gradient flow on φ is that flow on θ."""
    c = gamma0 * np.sqrt(N)
    ka, kw = jax.random.split(key)
    theta = {"a": jax.random.normal(ka, (N,)), "w": jax.random.normal(kw, (N, D))}

    def apply(phi, x):
        a, w = c * phi["a"], c * phi["w"]
        return ((x @ w.T) @ a / (gamma0 * N * np.sqrt(D)))[:, None]

    return apply, jax.tree.map(lambda t: t / c, theta), theta


def test_exact_at_finite_width_from_the_realization():
    data, gamma0 = _data(), 1.0
    dmft = TwoLayerLinearDMFT(data, gamma0)
    apply, phi0, theta = _network(64, gamma0, jax.random.key(0))
    kw = dict(lr=0.1, steps=200, save_every=20)
    real = ls.solve(lm.Trained(apply, data, params=phi0), TIGHT, **kw)
    theory = ls.solve(dmft, TIGHT, state0=dmft.order_parameters(theta["a"], theta["w"]), **kw)
    np.testing.assert_allclose(theory["f_test"], real["f_test"], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(theory["loss"], real["loss"], rtol=1e-7, atol=1e-13)


def test_kernel_limit_as_gamma0_goes_to_zero():
    dmft = TwoLayerLinearDMFT(_data(along_e1=False), 1e-4)
    tr = ls.solve(dmft, TIGHT, lr=0.5, steps=100, save_every=10)
    exact = jax.vmap(dmft.closed_form_kernel_limit)(tr.times)
    np.testing.assert_allclose(tr["v"], exact, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tr["ntk"][-1], 2 * np.eye(D) / D, atol=1e-7)


def test_conservation_laws_and_feature_learning():
    gamma0 = 1.0
    dmft = TwoLayerLinearDMFT(_data(), gamma0)
    tr = ls.solve(dmft, TIGHT, lr=0.5, steps=100, save_every=10)
    v1 = tr["v"][:, 0]
    # from the DMFT start with a target along e1: c_a² - γ₀² v₁² = 1 and tr C_w - c_a = D - 1
    np.testing.assert_allclose(tr["c_a"] ** 2 - gamma0**2 * v1**2, 1.0, rtol=1e-8)
    np.testing.assert_allclose(
        jnp.trace(tr["ntk"], axis1=1, axis2=2) * D - (D + 1) * tr["c_a"], D - 1, rtol=1e-8
    )
    # features learn: the kernel grows along the target and learning is faster than the kernel regime
    assert tr["ntk"][-1, 0, 0] > 1.5 * 2 / D
    kernel = TwoLayerLinearDMFT(_data(), 0.0)
    assert tr["loss"][5] < ls.solve(kernel, TIGHT, lr=0.5, steps=100, save_every=10)["loss"][5]


def test_scalar_reduction_of_theory_md():
    gamma0 = 1.0
    dmft = TwoLayerLinearDMFT(_data(), gamma0)
    tr = ls.solve(dmft, TIGHT, lr=0.02, steps=1000, save_every=1)
    delta = Y0 - tr["v"][:, 0] / np.sqrt(D)
    # dΔ/dt = -(2/D) √(1 + γ₀² D (y₀ - Δ)²) Δ, checked by central differences of the saved Δ
    t = np.asarray(tr.times)
    lhs = (delta[2:] - delta[:-2]) / (t[2:] - t[:-2])
    mid = delta[1:-1]
    rhs = -(2 / D) * np.sqrt(1 + gamma0**2 * D * (Y0 - mid) ** 2) * mid
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-8)


@pytest.mark.slow  # 15 s, mostly compiling the reverse pass through the ODE
def test_gradient_wrt_gamma0_matches_finite_differences():
    data = _data(along_e1=False)

    def final_loss(g):
        dmft = TwoLayerLinearDMFT(data, g)
        return ls.solve(dmft, TIGHT, lr=0.5, steps=20, save_every=20)["loss"][-1]

    g0, h = 0.7, 1e-5
    fd = (final_loss(g0 + h) - final_loss(g0 - h)) / (2 * h)
    np.testing.assert_allclose(float(jax.grad(final_loss)(g0)), float(fd), rtol=1e-6)


def test_bad_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((P, D))
    raw = lm.Dataset(x, x[:, :1], x[:4], x[:4, :1])
    with pytest.raises(ValueError, match="whiten"):
        TwoLayerLinearDMFT(raw, 1.0)
    with pytest.raises(ValueError, match="gamma0"):
        TwoLayerLinearDMFT(_data(), -0.5)
    with pytest.raises(ValueError, match="order_parameters"):
        TwoLayerLinearDMFT(_data(), 1.0).order_parameters(jnp.ones(3), jnp.ones((4, D)))


@pytest.mark.slow
def test_single_networks_approach_dmft_as_inverse_sqrt_width():
    data, gamma0 = _data(), 1.0
    dmft = TwoLayerLinearDMFT(data, gamma0)
    kw = dict(lr=0.5, steps=80, save_every=8)
    limit = ls.solve(dmft, TIGHT, **kw)["f_test"]
    widths, errs, mean_errs = (256, 1024, 4096), [], []
    for N in widths:
        preds = []
        for s in range(8):
            apply, phi0, _ = _network(N, gamma0, jax.random.key(s))
            preds.append(ls.solve(lm.Trained(apply, data, params=phi0), ls.GradientFlow(), **kw)["f_test"])
        preds = np.stack(preds)
        errs.append(np.mean(np.max(np.abs(preds - limit), axis=(1, 2, 3))) / Y0)
        mean_errs.append(np.max(np.abs(preds.mean(0) - limit)) / Y0)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.7 < slope < -0.3  # N^(-1/2): the initial order parameters fluctuate
    assert mean_errs[-1] < 0.02  # the ensemble mean within 2% at N = 4096


@pytest.mark.slow  # 15-30 s, mostly compiling the reverse pass through the ODE
def test_gradient_wrt_lr_matches_finite_differences():
    dmft = TwoLayerLinearDMFT(_data(along_e1=False), 0.7)

    def final_loss(lr):
        return ls.solve(dmft, TIGHT, lr=lr, steps=20, save_every=20)["loss"][-1]

    lr, h = 0.4, 1e-6
    fd = (final_loss(lr + h) - final_loss(lr - h)) / (2 * h)
    np.testing.assert_allclose(float(jax.grad(final_loss)(lr)), float(fd), rtol=1e-6)
