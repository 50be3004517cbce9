"""Lanczos eigenpairs and sharpness against dense Hessians; Recorded observables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_core import Plain  # a flow without a loss

import lmech.models as lm
import lmech.solvers as ls
import lmech.validation as lv


@pytest.fixture(scope="module")
def small():
    data = lv.datasets.digits(48, 8, key=jax.random.key(0))
    net = lm.MLP(64, (12,), 1, activation="tanh", parameterization="standard", sigma_b=0.5)
    real = lm.Trained(net, data, key=jax.random.key(1))
    p0 = real.init()
    flat, unravel = ravel_pytree(p0)
    H = np.asarray(jax.hessian(lambda x: real.loss(unravel(x)))(flat))
    w, V = np.linalg.eigh(H)
    return real, p0, w[::-1], V[:, ::-1]


def test_sharpness_matches_dense_hessian(small):
    real, p0, w, _ = small
    s = ls.sharpness(real.loss, p0)
    assert abs(float(s) - w[0]) <= 1e-8 * abs(w[0])


def test_top_k_eigenpairs_match_dense(small):
    real, p0, w, V = small
    k = 4
    vals, vecs = ls.hessian_eigenpairs(real.loss, p0, k)
    np.testing.assert_allclose(np.asarray(vals), w[:k], rtol=1e-8)
    flat_vecs = np.asarray(jax.vmap(lambda v: ravel_pytree(v)[0])(vecs))
    overlap = np.abs(np.sum(flat_vecs * V[:, :k].T, axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-8)
    # each is an eigenvector: H v = λ v through the matrix-free product
    for i in range(k):
        v = jax.tree.map(lambda x: x[i], vecs)
        hv = ravel_pytree(ls.hvp(real.loss, p0, v))[0]
        np.testing.assert_allclose(np.asarray(hv), w[i] * flat_vecs[i], atol=1e-8 * abs(w[0]))


def test_lanczos_full_dimension_is_exact_and_handles_invariant_subspaces():
    # a rank-3 matrix: the Krylov space of any start vector is invariant after 3 steps
    key = jax.random.key(3)
    Q, _ = jnp.linalg.qr(jax.random.normal(key, (10, 10)))
    spec = jnp.array([5.0, 2.0, -1.0] + [0.0] * 7)
    A = (Q * spec) @ Q.T
    vals, vecs = ls.lanczos(lambda v: A @ v, jnp.ones(10), 10)
    assert np.all(np.isfinite(np.asarray(vals)))
    np.testing.assert_allclose(np.sort(np.asarray(vals))[::-1], np.sort(np.asarray(spec))[::-1], atol=1e-12)
    np.testing.assert_allclose(np.asarray(A @ vecs[0]), 5.0 * np.asarray(vecs[0]), atol=1e-12)


def test_warm_start_converges_in_few_iterations(small):
    real, p0, w, _ = small
    _, vecs = ls.hessian_eigenpairs(real.loss, p0, 1)
    v0 = jax.tree.map(lambda x: x[0] + 1e-4, vecs)  # a nearby state's eigenvector
    warm = ls.hessian_eigenpairs(real.loss, p0, 1, iters=4, v0=v0)[0][0]
    cold = ls.hessian_eigenpairs(real.loss, p0, 1, iters=4)[0][0]
    assert abs(float(warm) - w[0]) < 1e-8 * w[0]
    assert abs(float(cold) - w[0]) > 100 * abs(float(warm) - w[0])


def test_sharpness_is_jit_vmap_and_grad_compatible():
    A = jnp.diag(jnp.array([1.0, 4.0, 2.0, 0.5]))

    def s_of(c):
        return ls.sharpness(
            lambda th: 0.5 * th @ (A + c * jnp.outer(th, th)) @ th, jnp.ones(4) * 0.1, iters=4
        )

    cs = jnp.array([0.0, 0.5, 1.0])
    batched = jax.jit(jax.vmap(s_of))(cs)
    np.testing.assert_allclose(np.asarray(batched), [float(s_of(c)) for c in cs], rtol=1e-12)
    h = 1e-5
    fd = (s_of(0.5 + h) - s_of(0.5 - h)) / (2 * h)
    np.testing.assert_allclose(float(jax.grad(s_of)(0.5)), float(fd), rtol=1e-6)


def test_recorded_adds_sharpness_and_params_without_changing_the_motion(small):
    real, p0, w, _ = small
    rec = ls.Recorded(real, sharpness=True, k=2, params=True)
    a = ls.solve(rec, ls.GradientDescent(), lr=0.1, steps=20, save_every=10)
    b = ls.solve(real, ls.GradientDescent(), lr=0.1, steps=20, save_every=10)
    np.testing.assert_array_equal(np.asarray(a["loss"]), np.asarray(b["loss"]))
    assert a["hessian_eigenvalues"].shape == (3, 2)
    assert abs(float(a["sharpness"][0]) - w[0]) < 1e-8 * w[0]
    flat_final = ravel_pytree(b.final_state)[0]
    np.testing.assert_array_equal(np.asarray(a["params"][-1]), np.asarray(flat_final))


def test_bad_input_is_refused(small):
    real, p0, _, _ = small
    n = ravel_pytree(p0)[0].size
    with pytest.raises(ValueError, match="only"):
        ls.hessian_eigenpairs(real.loss, p0, n + 1)
    with pytest.raises(ValueError, match="positive int"):
        ls.hessian_eigenpairs(real.loss, p0, 0)

    with pytest.raises(TypeError, match="defines no loss"):
        ls.Recorded(Plain())
    with pytest.raises(ValueError, match="only 3 parameters"):
        ls.solve(
            ls.Recorded(
                lm.Trained(
                    lambda p, x: x[:, :1] * p[0] + p[1] + p[2],
                    lv.datasets.digits(8, 2, key=jax.random.key(0)),
                    params=jnp.ones(3),
                ),
                k=4,
            ),
            ls.GradientDescent(),
            lr=0.1,
            steps=1,
        )
