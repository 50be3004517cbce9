"""Analytic kernels (activations, blocking, Monte Carlo against wide networks) and the
empirical NTK. Exactness against an independent reference: test_kernel_exactness.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
from lmech.models import _kernels
from lmech.models._activations import QUADRATURE_NODES

X = jax.random.normal(jax.random.key(0), (12, 5))


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _mc_errors(act, widths, seeds, parameterization="ntk", hidden_layers=1, mean=False):
    """Relative error of the empirical NTK of width-n networks against the analytic NTK of
    the *same* spec, per width: averaged over seeds (`mean=False`), or of the seed-mean."""
    out = []
    for n in widths:
        net = lm.MLP(
            5,
            (n,) * hidden_layers,
            1,
            activation=act,
            sigma_w=1.3,
            sigma_b=0.2,
            parameterization=parameterization,
        )
        ref = lm.analytic_ntk(net, X)
        emp = [
            lm.empirical_ntk(net.apply, net.init(jax.random.key(s)), X, output="trace") for s in range(seeds)
        ]
        out.append(_rel(jnp.mean(jnp.stack(emp), 0), ref) if mean else np.mean([_rel(e, ref) for e in emp]))
    return np.array(out)


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_empirical_ntk_converges_to_analytic_as_inverse_sqrt_width(act):
    widths = np.array([256, 1024, 4096])
    errs = _mc_errors(act, widths, seeds=8)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert abs(slope + 0.5) < 0.1, (slope, errs)


@pytest.mark.parametrize(
    "act,parameterization",
    [
        ("relu", "ntk"),
        ("tanh", "standard"),
        pytest.param("erf", "ntk", marks=pytest.mark.slow),
        pytest.param("gelu", "standard", marks=pytest.mark.slow),
    ],
)
def test_deep_empirical_ntk_matches_analytic_on_average(act, parameterization):
    # two hidden layers: the recursion past the first layer, against real networks. The
    # seed-mean's error is the seed fluctuation (measured 0.024-0.047; 0.013 with 64 seeds,
    # 0.014 at width 2048); a parameterization applied to one side only gives 0.99
    errs = _mc_errors(act, [512], seeds=16, parameterization=parameterization, hidden_layers=2, mean=True)
    assert errs[0] < 0.08, errs


@pytest.mark.slow
@pytest.mark.parametrize("act,parameterization", [("relu", "standard"), ("tanh", "ntk")])
def test_deep_empirical_ntk_converges_as_inverse_sqrt_width(act, parameterization):
    widths = np.array([64, 256, 1024, 4096])
    errs = _mc_errors(act, widths, seeds=4, parameterization=parameterization, hidden_layers=2)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert abs(slope + 0.5) < 0.1, (slope, errs)


# ------------------------------------------------------------------ activations
def _covariances(n=60, seed=0):
    rng = np.random.default_rng(seed)
    k11, k22 = rng.uniform(0.05, 3.0, n), rng.uniform(0.05, 3.0, n)
    rho = np.concatenate([rng.uniform(-0.99, 0.99, n - 4), [1.0, -1.0, 1 - 1e-9, -1 + 1e-9]])
    return lm.GaussianPair.from_covariance(k11, k22, rho * np.sqrt(k11 * k22))


def test_activation_registry_and_objects():
    relu = lm.get_activation("relu")
    assert relu is lm.ACTIVATIONS["relu"] and lm.get_activation(relu) is relu
    assert lm.get_activation("identity") is lm.ACTIVATIONS["linear"]
    z = jnp.linspace(-2.0, 2.0, 9)
    np.testing.assert_array_equal(relu(z), jax.nn.relu(z))
    for name, act in lm.ACTIVATIONS.items():
        assert act.name == name
        h = 1e-6
        fd = (act(z + 0.3 + h) - act(z + 0.3 - h)) / (2 * h)  # off the ReLU kink
        np.testing.assert_allclose(act.derivative(z + 0.3), fd, rtol=1e-7, atol=1e-9)
    assert {n for n, a in lm.ACTIVATIONS.items() if a.closed_form} == {"linear", "relu", "erf"}
    with pytest.raises(ValueError, match="activation"):
        lm.get_activation("swishy")
    with pytest.raises(ValueError, match="activation"):
        lm.get_activation(None)


def test_fast_first_quadrant_atan2_is_within_two_ulp():
    from lmech.models._activations import _atan2_first_quadrant

    rng = np.random.default_rng(0)
    n = 200_000
    y = 10 ** rng.uniform(-20, 3, n) * rng.uniform(0, 1, n)
    x = 10 ** rng.uniform(-20, 3, n)
    y[:10], x[10:20], x[20:30] = 0.0, 0.0, y[20:30]  # the axes and the diagonal
    exact = np.arctan2(y.astype(np.longdouble), x.astype(np.longdouble))
    got = np.asarray(jax.jit(_atan2_first_quadrant)(y, x)).astype(np.longdouble)
    ulp = np.abs(got - exact) / np.spacing(np.maximum(exact, 1e-300).astype(np.float64))
    assert float(ulp.max()) <= 2.0, float(ulp.max())  # measured 1.45 (numpy's float64: 0.78)
    assert got[:10].max() == 0 and np.all(got[10:20] == np.float64(np.pi / 2))


def test_closed_forms_at_the_exact_diagonal():
    # θ = 0: E[φ²] = k/2 and E[φ'²] = 1/2 for ReLU, exactly; erf: (2/π) arcsin(2k/(1+2k)), 4/(π√(1+4k))
    k = jnp.array([0.3, 1.0, 7.0])
    e, de = lm.get_activation("relu").gaussian_expectations(k, k, k)
    np.testing.assert_array_equal(e, k / 2)
    np.testing.assert_array_equal(de, 0.5)
    e, de = lm.get_activation("erf").gaussian_expectations(k, k, k)
    np.testing.assert_allclose(e, 2 / np.pi * np.arcsin(2 * k / (1 + 2 * k)), rtol=1e-15)
    np.testing.assert_allclose(de, 4 / (np.pi * np.sqrt(1 + 4 * k)), rtol=1e-15)


def _quadrature_error(name, nodes):
    pair = _covariances()
    act = lm.get_activation(name)
    exact = act.pair_moments(pair)
    quad = jax.jit(act.quadrature_moments, static_argnums=1)(pair, nodes)
    diag = lambda k: act.pair_moments(lm.GaussianPair.from_covariance(k, k, k))  # noqa: E731
    d11, d22 = diag(pair.k11), diag(pair.k22)
    # errors relative to the Cauchy–Schwarz scale of each moment
    e = np.abs(quad.e12 - exact.e12) / np.sqrt(exact.e11 * exact.e22)
    de = np.abs(quad.de12 - exact.de12) / np.sqrt(d11.de12 * d22.de12)
    return float(np.max(e)), float(np.max(de))


def test_quadrature_against_the_closed_forms():
    # erf is smooth: the trapezoid rule converges like exp(-c/h²) (measured at variances up
    # to 3: 5e-5 / 7e-4 at 32 nodes, 6e-10 / 2e-8 at 48, 2e-15 at the default 80)
    e48, de48 = _quadrature_error("erf", 48)
    e80, de80 = _quadrature_error("erf", QUADRATURE_NODES)
    assert 1e-11 < e48 < 1e-8 and 1e-9 < de48 < 1e-6, (e48, de48)
    assert e80 < 1e-14 and de80 < 1e-14, (e80, de80)
    # ReLU's kink: algebraic convergence, measured orders 2.3 (E[φφ], a kink) and 1.1
    # (E[φ'φ'], a step) between 32 and 128 nodes
    (e32, de32), (e128, de128) = _quadrature_error("relu", 32), _quadrature_error("relu", 128)
    order, order_d = np.log(e32 / e128) / np.log(4), np.log(de32 / de128) / np.log(4)
    assert 2.0 < order < 2.7 and 0.9 < order_d < 1.3, (order, order_d)


def _erf_by_quadrature_error(sigma_w, depths):
    """Worst relative error (Cauchy–Schwarz-floored, as in test_kernel_exactness.py) of the
    NNGP and NTK computed by quadrature against erf's closed form, over `depths`."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 64))
    x /= np.sqrt(np.mean(x**2, axis=1, keepdims=True))  # |x|²/d = 1
    x = np.concatenate([x, x[:1], x[:1] + 1e-7 * rng.standard_normal(64), -x[2:3], 0.5 * x[3:4]])
    by_quadrature = lm.Activation("erf_by_quadrature", jax.scipy.special.erf)
    worst = 0.0
    for depth in depths:
        kw = dict(sigma_w=sigma_w, sigma_b=0.1)
        ref = lm.analytic_kernels(lm.MLP(64, (8,) * (depth - 1), 1, activation="erf", **kw), x)
        got = lm.analytic_kernels(lm.MLP(64, (8,) * (depth - 1), 1, activation=by_quadrature, **kw), x)
        for name in ("nngp", "ntk"):
            r = np.asarray(ref[name])
            scale = np.sqrt(np.outer(np.diag(r), np.diag(r)))
            err = np.abs(np.asarray(got[name]) - r) / np.maximum(np.abs(r), 1e-2 * scale)
            worst = max(worst, float(err.max()))
    return worst


@pytest.mark.parametrize(
    "sigma_w,depths",
    [(1.0, (2, 10)), (2.0, (2, 3, 10)), pytest.param(1.4, tuple(range(2, 11)), marks=pytest.mark.slow)],
)
def test_quadrature_route_reproduces_the_erf_kernel(sigma_w, depths):
    # the stated accuracy of the default rule: <= 1e-10 relative at σ_w <= 2, depth <= 10,
    # |x|²/d <= 1 (measured worst 7e-13 at σ_w = 2; Gauss–Hermite with 64 nodes: 7e-4)
    assert _erf_by_quadrature_error(sigma_w, depths) <= 1e-10


def test_user_activation_goes_through_quadrature():
    mine = lm.Activation("my_tanh", jnp.tanh)
    assert not mine.closed_form and lm.get_activation(mine) is mine
    net = lm.MLP(5, (8, 8), 1, activation="tanh", sigma_b=0.2)
    ref = lm.analytic_kernels(net, X, X)
    got = _kernels._block_jit(mine, QUADRATURE_NODES, _kernels._coefficients(net, X.dtype), X, X)
    np.testing.assert_array_equal(got[0], ref["nngp"])
    np.testing.assert_array_equal(got[1], ref["ntk"])


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


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_blocking_gives_the_same_kernel(act):
    x = jax.random.normal(jax.random.key(1), (23, 5))
    net = lm.MLP(5, (8, 8), 1, activation=act, sigma_b=0.1)
    # the symmetric path (upper blocks, mirrored) and the two-argument path, each blocked
    # and not; the two paths differ only by a quadrature rule's asymmetry in its two points
    pairs = (
        (lm.analytic_kernels(net, x), lm.analytic_kernels(net, x, block_size=7)),
        (lm.analytic_kernels(net, x, x[:11]), lm.analytic_kernels(net, x, x[:11], block_size=7)),
    )
    for a, b in pairs:
        for k in ("nngp", "ntk"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-15)
    sym = pairs[0][0]["ntk"]
    np.testing.assert_array_equal(sym, sym.T)
    np.testing.assert_allclose(sym[:, :11], pairs[1][0]["ntk"], rtol=1e-10 if act == "tanh" else 1e-13)


def test_analytic_kernel_bad_input():
    net = lm.MLP(5, (8,), 1)
    with pytest.raises(ValueError, match="shape"):
        lm.analytic_ntk(net, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        lm.analytic_ntk(net, jnp.ones((3, 5)).at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="quadrature_nodes"):
        lm.analytic_ntk(net, X, quadrature_nodes=0)
    # the MLP spec refuses muP / mean field today; the kernels refuse them on their own too
    feature_learning = lm.MLP(5, (8,), 1)
    object.__setattr__(feature_learning, "parameterization", "mup")
    with pytest.raises(ValueError, match="feature-learning"):
        lm.analytic_ntk(feature_learning, X)


@pytest.mark.parametrize("block_size", [0, -3, 2.5, True, "8"])
def test_block_size_must_be_a_positive_int(block_size):
    net = lm.MLP(5, (8,), 1)
    with pytest.raises(ValueError, match="block_size"):
        lm.analytic_kernels(net, X, block_size=block_size)
    with pytest.raises(ValueError, match="block_size"):
        lm.empirical_ntk(net.apply, net.init(jax.random.key(0)), X, block_size=block_size)


def test_analytic_kernels_under_jit_and_compiled_once():
    net = lm.MLP(5, (8, 8), 1, activation="relu", sigma_b=0.1)
    eager = lm.analytic_ntk(net, X)
    jitted = jax.jit(lambda x: lm.analytic_ntk(net, x, block_size=6))(X)
    np.testing.assert_allclose(jitted, eager, rtol=1e-13)
    x = X
    lm.analytic_ntk(net, x, x[:5])
    compiled = (_kernels._block_jit, _kernels._symmetric_jit)
    sizes = [f._cache_size() for f in compiled]
    # other numbers (σ_w, σ_b, widths, readout) and depths in the same bucket: no new
    # compilation, on the symmetric path and the two-argument one
    for other in (
        lm.MLP(5, (8, 8), 1, activation="relu", sigma_b=0.1),
        lm.MLP(5, (30, 4, 9), 1, activation="relu", sigma_w=1.7, sigma_b=0.4, readout=2.0),
        lm.MLP(5, (30,), 1, activation="relu", parameterization="standard"),
    ):
        lm.analytic_ntk(other, x)
        lm.analytic_ntk(other, x, x[:5])
    assert [f._cache_size() for f in compiled] == sizes


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


def test_empirical_ntk_of_closed_over_inputs_under_jit_and_map():
    # the NaN check of concrete inputs must not trace (it raised TracerBoolConversionError)
    net = lm.MLP(4, (8,), 1, activation="tanh")
    x = np.random.default_rng(0).standard_normal((5, 4))
    params = net.init(jax.random.key(0))
    eager = lm.empirical_ntk(net.apply, params, x, output="trace")
    jitted = jax.jit(lambda p: lm.empirical_ntk(net.apply, p, x, output="trace"))(params)
    mapped = jax.lax.map(
        lambda k: lm.empirical_ntk(net.apply, net.init(k), x, output="trace"),
        jax.random.split(jax.random.key(0), 2),
    )
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    assert mapped.shape == (2, 5, 5)
    with pytest.raises(ValueError, match="NaN"):
        lm.empirical_ntk(net.apply, params, np.full((2, 4), np.nan))
