"""Finite-width NTK / NNGP statistics at init (PDLT, Hanin & Nica) against closed forms,
the exact recursion, and ensembles of real networks (Monte-Carlo standard errors)."""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmech.models import (
    MLP,
    FiniteWidthStatistics,
    analytic_kernels,
    aspect_ratio_scan,
    criticality,
    ensemble_samples,
    ensemble_statistics,
    exact_statistics,
    finite_width_statistics,
    pair_statistics,
)
from lmech.models.finite_width._pdlt_ensemble import summarize
from lmech.validation.plot import aspect_ratio as plot_aspect_ratio

CRIT = {"linear": 1.0, "relu": math.sqrt(2), "erf": math.sqrt(math.pi) / 2, "tanh": 1.0}
X = jnp.ones((1, 8))


def _net(act, L, n, **kw):
    kw.setdefault("sigma_w", CRIT.get(act, 1.0))
    return MLP(8, (n,) * (L - 1), 1, activation=act, **kw)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_exact_linear_width_one_closed_form(L):
    # widths 1: Θ = Σ_l Π_{j≠l} w_j² (scaled), so E Θ² = Σ_{l,l'} 3^{#j∉{l,l'}} and E Θ = L
    net = MLP(1, (1,) * (L - 1), 1, activation="linear")
    e2 = sum(3.0 ** sum(j not in (a, b) for j in range(L)) for a in range(L) for b in range(L))
    s = exact_statistics(net, jnp.ones((1, 1)))
    np.testing.assert_allclose(s.ntk_mean, [L], rtol=1e-14)
    np.testing.assert_allclose(s.ntk_variance, [e2 - L**2], rtol=1e-13)


@pytest.mark.parametrize("act,factor", [("linear", 2.0), ("relu", 5.0)])
def test_exact_fourth_cumulant_products(act, factor):
    # E Ĝ_L² / (E Ĝ_L)² = Π (1 + c/n_l): c = 2 (χ²), c = 5 (ReLU, Hanin & Nica's e^{5β})
    widths = (5, 9, 3, 17)
    net = MLP(8, widths, 1, activation=act, sigma_w=1.3, readout=0.7)
    x = jnp.linspace(0.2, 1.0, 16).reshape(2, 8)
    s = exact_statistics(net, x)
    k = analytic_kernels(net, x)
    np.testing.assert_allclose(s.nngp_mean, jnp.diagonal(k["nngp"]), rtol=1e-13)
    np.testing.assert_allclose(s.ntk_mean, jnp.diagonal(k["ntk"]), rtol=1e-13)
    growth = np.prod([1 + factor / w for w in widths]) - 1
    np.testing.assert_allclose(s.fourth_cumulant, 3 * s.nngp_mean**2 * growth, rtol=1e-13)


@pytest.mark.parametrize(
    "act,bias,par",
    [("relu", 0.0, "ntk"), ("erf", 0.3, "standard"), ("tanh", 0.0, "ntk"), ("gelu", 0.2, "ntk")],
)
def test_infinite_width_parts_match_analytic_kernels(act, bias, par):
    net = MLP(8, (7, 9, 5), 1, activation=act, sigma_w=1.2, sigma_b=bias, parameterization=par, readout=0.8)
    x = jnp.linspace(-1.0, 1.0, 24).reshape(3, 8)
    s = _quiet(finite_width_statistics, net, x)
    k = analytic_kernels(net, x)
    np.testing.assert_allclose(s.ntk_infinite, jnp.diagonal(k["ntk"]), rtol=1e-11)
    np.testing.assert_allclose(s.nngp_infinite, jnp.diagonal(k["nngp"]), rtol=1e-11)


@pytest.mark.parametrize("act,par", [("linear", "ntk"), ("relu", "standard")])
def test_first_order_is_the_one_over_n_term_of_the_exact_result(act, par):
    # the first-order recursion and the exact one differ by O(1/n²): slope -2 in n for the
    # relative variance Var Θ/(EΘ)² and the normalized fourth cumulant (both O(1/n) themselves)
    ns = (400, 800, 1600)
    errs = []
    for n in ns:
        net = _net(act, 6, n, parameterization=par)
        f, e = finite_width_statistics(net, X), exact_statistics(net, X)
        errs.append(
            [
                abs(float(f.ntk_relative_variance[0] - e.ntk_relative_variance[0])),
                abs(float(f.fourth_cumulant[0] - e.fourth_cumulant[0]) / float(e.nngp_mean[0]) ** 2),
            ]
        )
        assert abs(float(f.ntk_mean[0] / e.ntk_mean[0] - 1)) < 1e-12  # no mean correction
        assert 0 < float(f.ntk_relative_variance[0]) < 40 * 6 / n  # O(L/n)
    for j in range(2):
        slope = np.polyfit(np.log(ns), np.log([e[j] for e in errs]), 1)[0]
        assert -2.2 < slope < -1.8, (act, par, j, slope)


def test_relu_first_order_constant_eleven_thirds():
    # Var Θ/(EΘ)² → (11/3) L/n at L >> 1 (first order, NTK parameterization, no bias)
    n = 10**6
    r = [
        float(finite_width_statistics(_net("relu", L, n), X).ntk_relative_variance[0]) * n / L
        for L in (400, 800)
    ]
    extrapolated = 2 * r[1] - r[0]  # remove the O(1/L) term
    assert abs(extrapolated - 11 / 3) < 2e-3, r


def test_relu_layer_tensors_closed_forms():
    # ReLU at criticality, equal widths n, K = K_1: Θ_l = lK, and to first order
    # V_l = n Var Ĝ_l = 5K²(l−1) (σ_w⁴ Var φ² = 5K²) and n S̄_l = 2K² Σ_{j<l} j² (σ_w⁴⟨φ'⁴⟩ = 2)
    L, n = 7, 50
    s = finite_width_statistics(_net("relu", L, n), X)
    K = 2.0 * 8 / 8
    ls = np.arange(1, L + 1)
    np.testing.assert_allclose(s.layers["metric"][:, 0], K * np.ones(L), rtol=1e-11)
    np.testing.assert_allclose(s.layers["ntk"][:, 0], ls * K, rtol=1e-11)
    np.testing.assert_allclose(s.layers["vertex"][:, 0], 5 * K**2 * (ls - 1), rtol=1e-11, atol=1e-11)
    b = [2 * K**2 * sum(j**2 for j in range(1, l)) for l in ls]
    np.testing.assert_allclose(s.layers["ntk_b"][:, 0], b, rtol=1e-11, atol=1e-11)


def test_jit_and_layers():
    net = _net("tanh", 4, 32)
    eager = finite_width_statistics(net, X)
    jitted = eqx.filter_jit(finite_width_statistics)(net, X)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert eager.layers["vertex"].shape == (4, 1)
    assert float(eager.layers["vertex"][0, 0]) == 0.0  # layer 1 is Gaussian
    assert isinstance(eager, FiniteWidthStatistics)
    ex = eqx.filter_jit(exact_statistics)(_net("relu", 4, 32), X)
    np.testing.assert_allclose(
        ex.ntk_variance, exact_statistics(_net("relu", 4, 32), X).ntk_variance, rtol=1e-12
    )


XP = jnp.stack([jnp.linspace(0.2, 1.2, 8), jnp.linspace(1.0, -0.5, 8)])


def test_pairs_diagonal_is_the_single_input_recursion():
    net = MLP(8, (30, 40, 50), 1, activation="erf", sigma_w=1.2, sigma_b=0.3, readout=0.9)
    p = pair_statistics(net, XP, warn_off_criticality=False)
    k = analytic_kernels(net, XP)
    np.testing.assert_allclose(p.ntk_infinite, k["ntk"], rtol=1e-11)
    np.testing.assert_allclose(p.nngp_infinite, k["nngp"], rtol=1e-11)
    for i in range(2):
        d = finite_width_statistics(net, XP[i : i + 1], warn_off_criticality=False)
        np.testing.assert_allclose(p.ntk_mean[i, i], d.ntk_mean[0], rtol=1e-11)
        np.testing.assert_allclose(p.ntk_covariance[i, i, i, i], d.ntk_variance[0], rtol=1e-11)
        np.testing.assert_allclose(3 * p.metric_covariance[i, i, i, i], d.fourth_cumulant[0], rtol=1e-11)
    # symmetries: Θ12 = Θ21, and the covariance is symmetric under swapping the two entries
    np.testing.assert_allclose(p.ntk_mean, p.ntk_mean.T, rtol=1e-12)
    c = p.ntk_covariance
    np.testing.assert_allclose(c, jnp.transpose(c, (2, 3, 0, 1)), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(c[0, 1, 0, 1], c[1, 0, 1, 0], rtol=1e-10)
    with pytest.raises(ValueError, match="smooth"):
        pair_statistics(_net("relu", 3, 8), XP)
    with pytest.raises(ValueError, match="exactly 2"):
        pair_statistics(_net("tanh", 3, 8), X)


# ------------------------------------------------------------------ ensembles


def _check(meas, pred, name, theory_tol, n_se=4.0):
    err, se = meas.relative_error(name, getattr(pred, name))
    assert abs(float(err[0])) <= theory_tol + n_se * float(se[0]), (name, float(err[0]), float(se[0]))
    return float(err[0]), float(se[0])


def test_ensemble_deep_linear_exact():
    net = MLP(8, (16,) * 3, 32, activation="linear")  # 32 outputs: the NNGP vertex from output pairs
    meas = ensemble_statistics(net, X, jax.random.PRNGKey(0), 2048, chunk=1024)
    pred = exact_statistics(net, X)
    err, se = _check(meas, pred, "ntk_variance", 0.0)
    assert se < 0.05  # the measurement resolves the variance to a few percent
    _check(meas, pred, "ntk_mean", 0.0)
    _check(meas, pred, "nngp_mean", 0.0)
    err, se = _check(meas, pred, "nngp_relative_variance", 0.0)
    assert se < 0.1


def test_ensemble_relu_exact_at_aspect_ratio_0p1():
    net = _net("relu", 3, 32)  # L/n = 0.094
    meas = ensemble_statistics(net, X, jax.random.PRNGKey(1), 2048, chunk=1024)
    err, se = _check(meas, exact_statistics(net, X), "ntk_relative_variance", 0.0)
    assert se < 0.05


@pytest.mark.parametrize("act", ["erf", "tanh"])
def test_ensemble_smooth_first_order_at_criticality(act):
    net = _net(act, 3, 32)  # L/n = 0.094
    meas = ensemble_statistics(net, X, jax.random.PRNGKey(2), 2048, chunk=1024)
    pred = finite_width_statistics(net, X)
    _check(meas, pred, "ntk_relative_variance", 0.10)
    # the mean correction (−0.7%) against the measured mean, absolute in units of Θ∞
    corr = meas.ntk_mean[0] / float(pred.ntk_infinite[0]) - 1
    se = meas.ntk_mean_se[0] / float(pred.ntk_infinite[0])
    assert (
        abs(corr - float(pred.ntk_mean_correction[0]))
        <= 0.1 * abs(float(pred.ntk_mean_correction[0])) + 4 * se
    )


def test_summary_standard_errors_against_repeats():
    # the delta-method s.e. of the relative variance matches the spread over repeats
    rng = np.random.default_rng(0)
    samples = rng.gamma(4.0, size=(200, 400, 1))
    stats = [summarize(s, s) for s in samples]
    r = np.array([s.ntk_relative_variance[0] for s in stats])
    se = np.mean([s.ntk_relative_variance_se[0] for s in stats])
    assert abs(r.mean() - 0.25) < 3 * r.std() / np.sqrt(len(r)) + 0.25 / 400 * 3  # 1/k = 0.25 (small bias)
    assert 0.8 < r.std() / se < 1.2


def test_plot(tmp_path):
    # the figure from scan-shaped data (the scan itself runs in the slow tests)
    aspect = np.array([0.05, 0.1, 0.2])
    pred = np.array(
        [float(exact_statistics(_net("relu", L, 20), X).ntk_relative_variance[0]) for L in (1, 2, 4)]
    )
    scan = dict(
        aspect=aspect, measured=pred * 1.02, measured_se=0.01 * pred, first_order=pred * 0.95, exact=pred
    )
    fig = plot_aspect_ratio({"relu": scan, "tanh": {k: v for k, v in scan.items() if k != "exact"}})
    fig.savefig(tmp_path / "f.png")
    assert len(fig.axes[0].lines) >= 3  # two first-order lines and one exact line


# ------------------------------------------------------------------ bad input


def test_bad_input():
    with pytest.raises(ValueError, match="width"):
        MLP(8, (0,), 1)
    with pytest.raises(TypeError, match="MLP"):
        finite_width_statistics(object(), X)
    with pytest.raises(ValueError, match="relu.*linear|linear"):
        exact_statistics(_net("tanh", 3, 8), X)
    with pytest.raises(ValueError, match="sigma_b"):
        exact_statistics(_net("relu", 3, 8, sigma_b=0.1), X)
    with pytest.raises(ValueError, match="shape"):
        finite_width_statistics(_net("tanh", 3, 8), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="x = 0"):
        finite_width_statistics(_net("tanh", 3, 8), jnp.zeros((1, 8)))
    with pytest.warns(UserWarning, match="sigma_w=1"):
        finite_width_statistics(_net("tanh", 3, 8, sigma_w=1.5), X)
    with pytest.warns(UserWarning, match="sigma_w=1.41"):
        finite_width_statistics(_net("relu", 3, 8, sigma_w=1.0), X)
    with pytest.warns(UserWarning, match="no criticality rule"):
        finite_width_statistics(_net("gelu", 3, 8), X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finite_width_statistics(_net("erf", 3, 8), X)  # critical: no warning
    assert criticality(_net("erf", 3, 8))[0] and not criticality(_net("erf", 3, 8, sigma_w=1.0))[0]
    with pytest.raises(ValueError, match="seeds"):
        ensemble_samples(_net("relu", 2, 4), X, jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="sigma_w"):
        aspect_ratio_scan("gelu", 8, [2], jax.random.PRNGKey(0), 4)
    with pytest.raises(ValueError, match="mapping"):
        plot_aspect_ratio({})


# ------------------------------------------------------------------ slow: the claims


@pytest.mark.slow
@pytest.mark.parametrize("act", ["linear", "relu", "erf", "tanh"])
def test_slow_claims_at_aspect_ratio_up_to_0p1(act):
    # linear: exact within 5%; relu (exact) and erf/tanh (first order) within 10% for
    # L/n <= 0.1 — each up to 4 Monte-Carlo standard errors, which must themselves be small
    tol = 0.05 if act == "linear" else 0.10
    scan = aspect_ratio_scan(act, 64, [2, 4, 6], jax.random.PRNGKey(11), 12000, chunk=1000)
    pred = scan["exact"] if act in ("linear", "relu") else scan["first_order"]
    err, se = scan["measured"] / pred - 1, scan["measured_se"] / pred
    assert (se < 0.03).all(), se
    assert (np.abs(err) <= tol + 4 * se).all(), (err, se)
    if act in ("erf", "tanh"):
        # the O(1/n) mean correction: measured against predicted within 4 s.e. + 20%
        mc, mse, mp = scan["mean_correction"], scan["mean_correction_se"], scan["mean_correction_first_order"]
        assert (np.abs(mc - mp) <= 0.2 * np.abs(mp) + 4 * mse).all(), (mc, mse, mp)
    else:
        assert (np.abs(scan["mean_correction"]) <= 4 * scan["mean_correction_se"]).all()  # E Θ = Θ∞


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_slow_nngp_vertex(act):
    # Var Ĝ_L/(EĜ_L)² (the output layer's four-point vertex) from 32 outputs' pairs, L/n = 0.094
    net = MLP(8, (64,) * 5, 32, activation=act, sigma_w=CRIT[act])
    meas = ensemble_statistics(net, X, jax.random.PRNGKey(6), 12000, chunk=1000)
    pred = exact_statistics(net, X) if act == "relu" else finite_width_statistics(net, X)
    err, se = _check(meas, pred, "nngp_relative_variance", 0.10)
    assert se < 0.045


@pytest.mark.slow
def test_slow_growth_to_aspect_ratio_0p5(tmp_path):
    scans = {
        a: aspect_ratio_scan(a, 32, [4, 8, 12, 16], jax.random.PRNGKey(5), 3000, chunk=500)
        for a in ("relu", "tanh")
    }
    for a, s in scans.items():
        assert np.all(np.diff(s["measured"]) > 0), (a, s["measured"])  # grows with L/n
        assert s["measured"][-1] > 3 * s["measured"][0]
    # relu: the exact recursion holds at every L/n (4 s.e. + 10%); first order falls behind
    r = scans["relu"]
    assert (np.abs(r["measured"] / r["exact"] - 1) <= 0.1 + 4 * r["measured_se"] / r["exact"]).all()
    assert r["first_order"][-1] < 0.5 * r["measured"][-1]
    fig = plot_aspect_ratio(scans, logy=True)
    fig.savefig(tmp_path / "aspect.png")


@pytest.mark.slow
@pytest.mark.parametrize(
    "net",
    [
        MLP(8, (40, 60, 30), 1, activation="erf", sigma_w=1.2, sigma_b=0.5),
        MLP(8, (64, 64, 64), 1, activation="tanh", parameterization="standard"),
    ],
    ids=["erf-bias-widths", "tanh-standard"],
)
def test_slow_first_order_off_the_critical_line(net):
    # biases, unequal widths, standard parameterization: the 1/n expansion at fixed depth
    x = jnp.linspace(0.3, 1.5, 8)[None]
    pred = _quiet(finite_width_statistics, net, x)
    meas = ensemble_statistics(net, x, jax.random.PRNGKey(3), 6000, chunk=500)
    _check(meas, pred, "ntk_relative_variance", 0.10)
    corr, se = (
        meas.ntk_mean[0] / float(pred.ntk_infinite[0]) - 1,
        meas.ntk_mean_se[0] / float(pred.ntk_infinite[0]),
    )
    assert (
        abs(corr - float(pred.ntk_mean_correction[0]))
        <= 0.2 * abs(float(pred.ntk_mean_correction[0])) + 4 * se
    )


@pytest.mark.slow
def test_slow_pairs_against_ensemble():
    # off-diagonal NTK statistics of a critical tanh net, L/n = 6/64, and an erf net with
    # biases and unequal widths: within 10% + 4 s.e. (the mean of Θ12 within 4 s.e. + 20%)
    for net in (_net("tanh", 6, 64), MLP(8, (40, 60, 30), 1, activation="erf", sigma_w=1.2, sigma_b=0.3)):
        p = pair_statistics(net, XP, warn_off_criticality=False)
        th, _ = ensemble_samples(net, XP, jax.random.PRNGKey(9), 12000, chunk=1000, full=True)
        for a, b, c, d in [(0, 1, 0, 1), (0, 0, 1, 1), (0, 0, 0, 0), (1, 1, 1, 1)]:
            u, v = th[:, a, b] - th[:, a, b].mean(), th[:, c, d] - th[:, c, d].mean()
            cov, se = (u * v).mean(), (u * v - (u * v).mean()).std() / np.sqrt(len(u))
            pred = float(p.ntk_covariance[a, b, c, d])
            assert abs(cov - pred) <= 0.1 * abs(pred) + 4 * se, ((a, b, c, d), cov, se, pred)
        m, se = th[:, 0, 1].mean(), th[:, 0, 1].std() / np.sqrt(len(th))
        assert (
            abs(m - float(p.ntk_mean[0, 1]))
            <= 0.2 * abs(float(p.ntk_mean[0, 1] - p.ntk_infinite[0, 1])) + 4 * se
        )
