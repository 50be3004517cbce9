import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
from lmech.models._kernels import _expectations, _gauss_hermite

X = jax.random.normal(jax.random.key(0), (12, 5))


def _single_net_errors(act, widths, seeds, parameterization="ntk"):
    ref = lm.analytic_ntk(
        lm.MLP(
            5, (widths[0],), 1, activation=act, sigma_w=1.3, sigma_b=0.2, parameterization=parameterization
        ),
        X,
    )
    out = []
    for n in widths:
        net = lm.MLP(5, (n,), 1, activation=act, sigma_w=1.3, sigma_b=0.2)
        errs = []
        for s in range(seeds):
            e = lm.empirical_ntk(net.apply, net.init(jax.random.key(s)), X, output="trace")
            errs.append(float(jnp.linalg.norm(e - ref) / jnp.linalg.norm(ref)))
        out.append(np.mean(errs))
    return np.array(out)


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_empirical_ntk_converges_to_analytic_as_inverse_sqrt_width(act):
    widths = np.array([128, 512, 2048, 8192])
    errs = _single_net_errors(act, widths, seeds=6)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert abs(slope + 0.5) < 0.1, (slope, errs)


def test_erf_closed_form_matches_quadrature():
    k11, k22, k12 = jnp.array([1.3, 0.2]), jnp.array([0.7, 2.0]), jnp.array([0.4, -0.5])
    a = _expectations("erf", k11, k22, k12, 64)
    b = _gauss_hermite(jax.scipy.special.erf, k11, k22, k12, 80)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10)


def test_deep_linear_ntk_closed_form():
    # f = (s/sqrt(n))^L ... : K^l = s^{2l} x.x'/d and Theta^L = L s^{2L} x.x'/d
    L, s = 4, 1.1
    net = lm.MLP(5, (7,) * (L - 1), 1, activation="linear", sigma_w=s)
    k = lm.analytic_kernels(net, X)
    gram = X @ X.T / 5
    np.testing.assert_allclose(k["nngp"], s ** (2 * L) * gram, rtol=1e-13)
    np.testing.assert_allclose(k["ntk"], L * s ** (2 * L) * gram, rtol=1e-13)


def test_standard_parameterization_ntk_matches_monte_carlo():
    n = 256
    net = lm.MLP(5, (n,), 1, activation="erf", parameterization="standard", sigma_w=1.3, sigma_b=0.2)
    ref = lm.analytic_ntk(net, X)
    emp = jnp.mean(
        jnp.stack(
            [lm.empirical_ntk(net.apply, net.init(jax.random.key(s)), X, output="trace") for s in range(32)]
        ),
        0,
    )
    assert float(jnp.linalg.norm(emp - ref) / jnp.linalg.norm(ref)) < 0.02
    # it grows with width, unlike the NTK parameterization
    wide = lm.MLP(5, (4 * n,), 1, activation="erf", parameterization="standard", sigma_w=1.3, sigma_b=0.2)
    assert float(jnp.trace(lm.analytic_ntk(wide, X)) / jnp.trace(ref)) > 3.5


@pytest.mark.parametrize("act,tol", [("erf", 1e-13), ("tanh", 1e-13), ("relu", 1e-7)])
def test_blocking_gives_the_same_kernel(act, tol):
    x = jax.random.normal(jax.random.key(1), (23, 5))
    net = lm.MLP(5, (8, 8), 1, activation=act, sigma_b=0.1)
    a = lm.analytic_kernels(net, x)
    b = lm.analytic_kernels(net, x, block_size=7)
    for k in ("nngp", "ntk"):
        # relu's arccos near the diagonal amplifies last-bit differences of blocked matmuls
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol)


def test_analytic_kernel_bad_input():
    net = lm.MLP(5, (8,), 1)
    with pytest.raises(ValueError, match="shape"):
        lm.analytic_ntk(net, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        lm.analytic_ntk(net, jnp.ones((3, 5)).at[0, 0].set(jnp.nan))


# ------------------------------------------------------------------ empirical NTK
def test_linear_model_ntk_is_exact():
    W, b = jnp.ones((3, 5)), jnp.zeros(3)
    apply = lambda p, x: x @ p[0].T + p[1]  # noqa: E731
    full = lm.empirical_ntk(apply, (W, b), X)
    expected = jnp.einsum("pq,ab->paqb", X @ X.T + 1, jnp.eye(3))
    np.testing.assert_allclose(full, expected, rtol=1e-13)


def test_methods_blocks_and_outputs_agree():
    net = lm.MLP(5, (16,), 3, activation="tanh", sigma_b=0.3)
    p = net.init(jax.random.key(2))
    x2 = jax.random.normal(jax.random.key(3), (7, 5))
    full = lm.empirical_ntk(net.apply, p, X, x2)
    np.testing.assert_allclose(
        lm.empirical_ntk(net.apply, p, X, x2, method="ntvp"), full, rtol=1e-12, atol=1e-13
    )
    np.testing.assert_allclose(
        lm.empirical_ntk(net.apply, p, X, x2, block_size=5), full, rtol=1e-13, atol=1e-14
    )
    diag = lm.empirical_ntk(net.apply, p, X, x2, output="diagonal")
    np.testing.assert_allclose(diag, jnp.einsum("akbk->abk", full), rtol=1e-14)
    np.testing.assert_allclose(
        lm.empirical_ntk(net.apply, p, X, x2, output="trace"), diag.mean(-1), rtol=1e-14
    )
    v = jax.random.normal(jax.random.key(4), (12, 3))
    ntk = lm.empirical_ntk(net.apply, p, X).reshape(36, 36)
    np.testing.assert_allclose(lm.ntk_vector_product(net.apply, p, X, v).ravel(), ntk @ v.ravel(), rtol=1e-12)


def test_diagonal_matches_finite_differences():
    net = lm.MLP(2, (3,), 1, activation="tanh", sigma_b=0.5)
    p = net.init(jax.random.key(5))
    x = jnp.array([[0.3, -1.2]])
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    h = 1e-6
    fd = [
        (net.apply(unravel(flat.at[i].add(h)), x) - net.apply(unravel(flat.at[i].add(-h)), x))[0, 0] / (2 * h)
        for i in range(flat.size)
    ]
    expected = float(np.sum(np.square(fd)))
    assert abs(float(lm.empirical_ntk(net.apply, p, x, output="trace")[0, 0]) - expected) < 1e-7 * expected


def test_equinox_model_and_bad_input():
    model = eqx.nn.MLP(5, 2, 8, 1, key=jax.random.key(6))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    apply = lambda p, x: jax.vmap(eqx.combine(p, static))(x)  # noqa: E731
    k = lm.empirical_ntk(apply, params, X, output="trace")
    assert k.shape == (12, 12) and bool(jnp.all(jnp.linalg.eigvalsh(k) > -1e-10))
    with pytest.raises(ValueError, match="method"):
        lm.empirical_ntk(apply, params, X, method="magic")
    with pytest.raises(ValueError, match="feature"):
        lm.empirical_ntk(apply, params, X, jnp.ones((3, 4)))
