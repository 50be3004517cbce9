"""The central flow: its small semidefinite problem, its constraint S = 2/η, its
agreement with gradient flow below the threshold, and its derivative in η."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_core import Plain  # a flow without a loss

import lmech.models as lm
import lmech.solvers as ls
import lmech.validation as lv

LR = 0.4  # 2/η = 5: this net's sharpness crosses it near t = 6 under gradient flow


@pytest.fixture(scope="module")
def real():
    data = lv.datasets.digits(32, 8, key=jax.random.key(0), target="parity")
    net = lm.MLP(64, (8, 8), 1, activation="tanh", parameterization="standard", sigma_w=0.5)
    return lm.Trained(net, data, key=jax.random.key(1))


@pytest.mark.parametrize("k", [2, 3])
def test_psd_complementarity_solves_the_kkt_system(k):
    key = jax.random.key(k)
    G = jax.random.normal(key, (k * k, 5 * k))
    M = G @ G.T
    for i in range(4):
        B = jax.random.normal(jax.random.fold_in(key, i), (k, k))
        B = B + B.T
        X = ls.psd_complementarity(M, B, iters=4000)
        Y = 0.5 * (M @ X.reshape(-1)).reshape(k, k) - 0.5 * (B + B.T)
        scale = float(jnp.linalg.norm(B))
        assert float(jnp.linalg.eigvalsh(X)[0]) > -1e-12
        assert float(jnp.linalg.eigvalsh(Y)[0]) > -1e-6 * scale
        assert abs(float(jnp.sum(X * Y))) < 1e-6 * scale * (1 + float(jnp.linalg.norm(X)))


@pytest.mark.parametrize("k", [2, 3])
def test_psd_complementarity_interior_shortcut(k):
    # where the stationary point A(X) = B is PSD it is taken without iterating: the same X
    # as long projected-gradient runs, on and off a support, and the derivative of that
    # solution (the linear solve's) against central differences
    from lmech.solvers._psd import _interior_candidate, _projected_gradient

    key = jax.random.key(10 + k)
    G = jax.random.normal(key, (k, k, 6 * k))
    Gf = (0.5 * (G + G.transpose(1, 0, 2))).reshape(k * k, -1)  # G_ij = G_ji, as in the central flow
    M = Gf @ Gf.T
    solve = jax.jit(lambda B, D: ls.psd_complementarity(M, B, support=D > 0))
    reference = jax.jit(lambda B, D: _projected_gradient(M, B, D, 20000))
    candidate = jax.jit(lambda B, D: _interior_candidate(M, B, D)[1])
    derivative = jax.jit(lambda B, D: jax.jvp(lambda s: solve(B + s * jnp.eye(k), D), (0.0,), (1.0,))[1])
    seen = 0
    for i in range(24):
        B = jax.random.normal(jax.random.fold_in(key, i), (k, k))
        B = B + B.T
        for D in (jnp.ones(k), (jnp.arange(k) < k - 1).astype(float)):
            if not candidate(B, D):
                continue
            seen += 1
            X, X_pg = solve(B, D), reference(B, D)
            assert float(jnp.max(jnp.abs(X - X_pg))) < 1e-8 * float(jnp.max(jnp.abs(X_pg)))
            h = 1e-6
            fd = (solve(B + h * jnp.eye(k), D) - solve(B - h * jnp.eye(k), D)) / (2 * h)
            np.testing.assert_allclose(np.asarray(derivative(B, D)), np.asarray(fd), atol=1e-6)
    assert seen >= 4  # the shortcut was exercised


@pytest.mark.slow  # 17 s
def test_below_the_threshold_it_is_gradient_flow(real):
    flow = ls.GradientFlow(rtol=1e-9, atol=1e-12)
    lr = 0.05  # 2/η = 40, far above the sharpness
    cf = ls.solve(real, ls.CentralFlow(flow=flow), lr=lr, steps=100, save_every=20)
    gf = ls.solve(real, flow, lr=lr, steps=100, save_every=20)
    np.testing.assert_allclose(np.asarray(cf["f_train"]), np.asarray(gf["f_train"]), rtol=1e-7, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(cf["sigma2"]), 0.0)
    np.testing.assert_allclose(np.asarray(cf["loss_averaged"]), np.asarray(cf["loss"]))


@pytest.mark.slow  # 20 s; the central flow against GD is checked by default in tests/validation/test_central_vs_gd.py
def test_the_sharpness_is_held_at_two_over_eta(real):
    cf = ls.solve(real, ls.CentralFlow(), lr=LR, steps=40, save_every=4)
    gf = ls.solve(ls.Recorded(real), ls.GradientFlow(rtol=1e-6, atol=1e-9), lr=LR, steps=40, save_every=4)
    s_cf = np.asarray(cf["sharpness"]) * LR / 2
    s_gf = np.asarray(gf["sharpness"]) * LR / 2
    assert s_gf[-1] > 1.1  # gradient flow goes past the threshold ...
    assert np.all(s_cf <= 1 + 1e-5)  # ... the central flow does not (up to rtol)
    np.testing.assert_allclose(s_cf[-4:], 1.0, atol=1e-3)
    # k = 1 is enough here: the second eigenvalue stays below the threshold
    assert np.all(np.asarray(cf["next_eigenvalue"]) * LR / 2 < 0.95)
    sig = np.asarray(cf["sigma2"])
    assert sig[0] == 0 and np.all(sig[-4:] > 0)
    np.testing.assert_allclose(np.asarray(cf["loss_averaged"]), np.asarray(cf["loss"]) + sig / LR, rtol=1e-12)


@pytest.mark.slow  # 23 s
def test_active_vector_field_relaxes_the_sharpness_at_rate_kappa(real):
    gf = ls.solve(real, ls.GradientFlow(rtol=1e-8, atol=1e-10), lr=LR, steps=20)
    theta = gf.final_state  # t = 8: past the crossing
    method = ls.CentralFlow(k=1, warm=False)
    central = method.wrap(real, LR, theta)
    F = central.vector_field(0.0, theta, None)
    p = central.pieces(theta)
    assert float(p.X[0, 0]) > 0
    S = lambda th: ls.sharpness(real.loss, th)
    dS = jax.jvp(S, (theta,), (F,))[1]
    kappa = method.stiffness / LR
    np.testing.assert_allclose(float(dS), -kappa * (float(S(theta)) - 2 / LR), rtol=1e-6)
    # with k = 2 the second eigenvalue is below 2/η and stays free: same field
    F2 = ls.CentralFlow(k=2, warm=False).wrap(real, LR, theta).vector_field(0.0, theta, None)
    np.testing.assert_allclose(
        np.asarray(ravel_pytree(F2)[0]), np.asarray(ravel_pytree(F)[0]), rtol=1e-6, atol=1e-9
    )
    # warm: the carried eigenvectors seed a short block Krylov process; from the top
    # Ritz vectors it gives the same field, and the basis is at rest
    warm = ls.CentralFlow(k=2).wrap(real, LR, theta)
    W = warm.vector_field(0.0, {"theta": theta, "basis": warm.start_basis(theta)}, None)
    np.testing.assert_allclose(
        np.asarray(ravel_pytree(W["theta"])[0]), np.asarray(ravel_pytree(F)[0]), rtol=1e-6, atol=1e-9
    )
    assert float(jnp.max(jnp.abs(W["basis"]))) < 1e-4 * kappa


@pytest.mark.slow  # 24 s; the warm field equals the cold one at a state in the test above
def test_warm_and_cold_central_flows_agree(real):
    kw = dict(lr=LR, steps=40, save_every=10)
    warm = ls.solve(real, ls.CentralFlow(k=2), **kw)
    cold = ls.solve(real, ls.CentralFlow(k=2, warm=False), **kw)
    for name in ("loss_averaged", "sharpness", "sigma2"):
        np.testing.assert_allclose(np.asarray(warm[name]), np.asarray(cold[name]), rtol=1e-4, atol=1e-8)


def test_psd_part_and_its_derivative():
    key = jax.random.key(7)
    A = jax.random.normal(key, (4, 4))
    Y = A + A.T
    dY = jax.random.normal(jax.random.fold_in(key, 1), (4, 4))
    dY = dY + dY.T
    P = ls.psd_part(Y)
    w = np.linalg.eigvalsh(np.asarray(P))
    assert w.min() > -1e-12
    np.testing.assert_allclose(
        np.asarray(P - Y), np.asarray(ls.psd_part(-Y)), atol=1e-12
    )  # Moreau: Y = P(Y) - P(-Y)
    h = 1e-6
    fd = (ls.psd_part(Y + h * dY) - ls.psd_part(Y - h * dY)) / (2 * h)
    np.testing.assert_allclose(np.asarray(jax.jvp(ls.psd_part, (Y,), (dY,))[1]), np.asarray(fd), atol=1e-7)
    # ties (here Y = 0 and a repeated eigenvalue), where differentiating eigh gives NaN
    for Y0 in (jnp.zeros((3, 3)), jnp.diag(jnp.array([1.0, 1.0, -2.0]))):
        g = jax.grad(lambda y: jnp.sum(ls.psd_part(y) * dY[:3, :3]))(Y0)
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.slow  # ~50 s each, mostly compilation; the notebook checks k = 1 against FD by default
@pytest.mark.parametrize("k", [1, 2])
def test_central_flow_is_differentiable_in_eta(real, k):
    def final_loss(lr):
        return ls.solve(
            real, ls.CentralFlow(k=k, flow=ls.GradientFlow(rtol=1e-9, atol=1e-11)), lr=lr, steps=20
        )["loss"][-1]

    lr, h = 0.4, 1e-4
    g = float(jax.grad(final_loss)(lr))
    fd = float((final_loss(lr + h) - final_loss(lr - h)) / (2 * h))
    assert abs(g - fd) <= 1e-4 * abs(fd), (g, fd)


def test_bad_input(real):
    with pytest.raises(TypeError, match="needs the loss's Hessian"):
        ls.solve(Plain(), ls.CentralFlow(), lr=0.1, steps=2)
    n = ravel_pytree(real.init())[0].size
    with pytest.raises(ValueError, match="top"):
        ls.solve(real, ls.CentralFlow(k=n + 1), lr=0.1, steps=2)
    with pytest.raises(ValueError, match="positive"):
        ls.solve(real, ls.CentralFlow(), lr=0.0, steps=2)
    with pytest.raises(ValueError, match="positive int"):
        ls.CentralFlow(k=0)
