"""The Krylov (Lanczos) path of `Linearized` against its eigendecomposition path: the same
closed forms (flow and GD map, one and several outputs, shared and full kernels), through
`solve` (all saved times from one basis), the fallback, the PSD check and λ_max."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls
from lmech.models import Linearized, _kernels, _krylov, _linearized, _spectral

P, Q = 160, 40


def _problem(k=1, seed=0, depth=4):
    """The analytic ReLU NTK of a depth-`depth` net on Gaussian inputs (a realistic spectrum:
    one large eigenvalue, a long tail), random targets and initial outputs."""
    rng = np.random.default_rng(seed)
    x, xs = rng.standard_normal((P, 12)), rng.standard_normal((Q, 12))
    net = lm.MLP(12, (64,) * (depth - 1), 1, activation="relu", sigma_w=np.sqrt(2), sigma_b=0.1)
    train, test = _kernels.symmetric_kernels(net, x, xs)
    y, ys = rng.standard_normal((P, k)), rng.standard_normal((Q, k))
    f0, f0s = 0.3 * rng.standard_normal((P, k)), 0.3 * rng.standard_normal((Q, k))
    return train["ntk"], test["ntk"], f0, f0s, y, ys


def _pair(*args, **kw):
    return Linearized(*args, spectral="eigh", **kw), Linearized(*args, spectral="krylov", **kw)


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@jax.jit
def _flow(lin, ts):
    return jax.vmap(lambda t: lin.closed_form(t, lin.init()))(ts)


@jax.jit
def _gd(lin, ks, lr):
    return jax.vmap(lambda k: lin.closed_form_steps(k, lr, lin.init()))(ks)


def test_flow_and_gd_map_match_the_eigendecomposition():
    eig, kry = _pair(*_problem())
    assert kry.eigvecs is None and eig.spectral == "eigh" and kry.spectral == "krylov"
    ts = jnp.array([0.0, 0.5, 20.0, 400.0])
    a, b = _flow(kry, ts), _flow(eig, ts)
    assert _rel(a["f_test"], b["f_test"]) < 1e-8 and _rel(a["f_train"], b["f_train"]) < 1e-8
    lr = 0.9 * float(eig.max_stable_lr)
    ks = jnp.array([1, 10, 300])
    a, b = _gd(kry, ks, lr), _gd(eig, ks, lr)
    assert _rel(a["f_test"], b["f_test"]) < 1e-8 and _rel(a["f_train"], b["f_train"]) < 1e-8
    np.testing.assert_allclose(kry.lam_max, eig.lam_max, rtol=1e-12)


def test_solve_gives_every_saved_time_from_one_basis():
    # ClosedForm vmaps over the saved times: batch_max hands the Lanczos loop the largest
    # one, so the basis is built once and must be right for the early times too (the GD
    # map goes the same way: `_gd` above)
    eig, kry = _pair(*_problem(k=2))
    a = ls.solve(kry, ls.ClosedForm(), lr=2.0, steps=200, save_every=2)
    b = ls.solve(eig, ls.ClosedForm(), lr=2.0, steps=200, save_every=2)
    for name in ("f_train", "f_test", "loss"):
        assert _rel(a[name], b[name]) < 1e-9, name
    # the measured agreement is at round-off (1e-13 on this problem)
    assert _rel(a["f_test"], b["f_test"]) < 1e-11


def test_full_kernel_and_several_outputs():
    ntk, ntk_s, f0, f0s, y, ys = (
        a[:80] if i in (0, 2, 4) else a for i, a in enumerate(_problem(k=3, seed=1))
    )
    ntk, ntk_s = ntk[:, :80], ntk_s[:, :80]
    eye = jnp.eye(3)
    full = (jnp.einsum("pq,ab->paqb", ntk, eye), jnp.einsum("pq,ab->paqb", ntk_s, eye), f0, f0s, y, ys)
    eig, kry = _pair(*full)
    shared = Linearized(ntk, ntk_s, f0, f0s, y, ys, spectral="krylov")
    ts = jnp.array([1.0, 50.0])
    a, b, c = _flow(kry, ts), _flow(eig, ts), _flow(shared, ts)
    assert _rel(a["f_test"], b["f_test"]) < 1e-9 and _rel(c["f_test"], b["f_test"]) < 1e-9


@pytest.mark.slow
def test_gradient_flow_on_the_krylov_path_matches_its_closed_form():
    import diffrax

    _, kry = _pair(*_problem(seed=2))
    tight = ls.GradientFlow(solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14)
    a = ls.solve(kry, tight, lr=0.05, steps=100, save_every=20)
    b = ls.solve(kry, ls.ClosedForm(), lr=0.05, steps=100, save_every=20)
    assert _rel(a["f_test"], b["f_test"]) < 1e-8


def test_unconverged_lanczos_falls_back_to_the_eigendecomposition(monkeypatch):
    # at most 4 Lanczos steps cannot resolve the flow at t = 300: the eigh fallback answers
    ntk, ntk_s, f0, f0s, y, ys = _problem(seed=3)
    cut = 150  # a size no other test compiles
    args = (ntk[:cut, :cut], ntk_s[:, :cut], f0[:cut], f0s, y[:cut], ys)
    eig = Linearized(*args, spectral="eigh")
    kry = Linearized(*args, spectral="krylov")
    monkeypatch.setattr(_linearized, "_KRYLOV_MAX_SIZE", 4)
    a, b = _flow(kry, jnp.array([300.0])), _flow(eig, jnp.array([300.0]))
    assert _rel(a["f_test"], b["f_test"]) < 1e-9
    r0 = jnp.asarray(f0[:cut] - y[:cut])
    basis = _krylov.lanczos(
        args[0],
        r0,
        args[1],
        lambda ritz, s: _spectral.flow_factors(ritz, s, cut, np),
        (jnp.asarray(300.0),),
        max_size=4,
        tol=1e-12,
    )
    assert not bool(basis.converged[0]) and int(basis.size[0]) == 4


def test_lanczos_stops_early_and_exactly_on_an_invariant_subspace():
    # a kernel of rank 3: the Krylov space closes after 3 steps and the answer is exact
    rng = np.random.default_rng(4)
    A = rng.standard_normal((50, 3))
    K = A @ A.T
    r0 = jnp.asarray(rng.standard_normal((50, 1)))
    basis = _krylov.lanczos(
        K,
        r0,
        K[:5],
        lambda ritz, s: _spectral.flow_factors(ritz, s, 50, np),
        (jnp.asarray(7.0),),
        max_size=40,
        tol=1e-12,
    )
    # r0 has a null-space part besides the 3 eigen-directions: the Krylov space closes at 4
    assert bool(basis.converged[0]) and int(basis.size[0]) == 4
    lam, V = np.linalg.eigh(K)
    lam = np.clip(lam, 0, None)
    exact = V @ (np.exp(-lam * 7.0 / 50) * (V.T @ np.asarray(r0[:, 0])))
    decay, _ = _spectral.flow_factors(basis.ritz[0], 7.0, 50)
    np.testing.assert_allclose(
        basis.QS[0] @ _krylov.weighted(decay, basis.w[0]), exact, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(basis.ZS[0], K[:5] @ basis.QS[0], rtol=1e-12, atol=1e-12)


def test_batch_max_is_the_identity_or_the_batch_maximum():
    t = jnp.array([0.5, 3.0, 2.0])
    assert float(_krylov.batch_max(2.0)) == 2.0
    out = jax.vmap(lambda s: _krylov.batch_max(s) + 0 * s)(t)
    np.testing.assert_array_equal(out, [3.0, 3.0, 3.0])
    # differentiating through the stopping rule's input is a zero, not an error
    assert float(jax.grad(lambda s: _krylov.batch_max(s) + s)(1.0)) == 1.0


def test_psd_check_and_auto_choice():
    ntk, ntk_s, f0, f0s, y, ys = _problem(seed=5)
    with pytest.raises(ValueError, match="positive semi-definite"):
        Linearized(-ntk, ntk_s, f0, f0s, y, ys, spectral="krylov")
    # a round-off-sized negative eigenvalue passes both paths
    lam, V = np.linalg.eigh(np.asarray(ntk))
    lam[0] = -1e-12 * lam[-1]
    nearly = (V * lam) @ V.T
    for spectral in ("eigh", "krylov"):
        Linearized(nearly, ntk_s, f0, f0s, y, ys, spectral=spectral)
    with pytest.raises(ValueError, match="spectral"):
        Linearized(ntk, ntk_s, f0, f0s, y, ys, spectral="lanczos")
    assert Linearized(ntk, ntk_s, f0, f0s, y, ys).spectral == "eigh"  # P <= EIGH_UP_TO
    assert P <= _linearized.EIGH_UP_TO
    n = _linearized.EIGH_UP_TO + 1
    A = np.random.default_rng(6).standard_normal((n, 8))
    big = Linearized(
        A @ A.T, A[:3] @ A.T, np.zeros((n, 1)), np.zeros((3, 1)), np.ones((n, 1)), np.zeros((3, 1))
    )
    assert big.spectral == "krylov"  # on the CPU


def test_krylov_finds_negative_directions_that_the_one_pass_checks_miss():
    # a positive diagonal and Cauchy–Schwarz hold, but one eigenvalue is -0.1% of the
    # largest: the Lanczos basis of the start residual finds it and the closed form refuses
    # (at -0.01% and t = 1, where it cannot matter, the basis stops before reaching it)
    ntk, ntk_s, f0, f0s, y, ys = _problem(seed=7)
    lam, V = np.linalg.eigh(np.asarray(ntk))
    lam[0] = -1e-3 * lam[-1]
    bad = (V * lam) @ V.T
    kry = Linearized(bad, ntk_s, f0, f0s, y, ys, spectral="krylov")  # passes the one-pass checks
    with pytest.raises(Exception, match="positive semi-definite"):
        jax.block_until_ready(_flow(kry, jnp.array([100.0])))
    with pytest.raises(ValueError, match="positive semi-definite"):
        Linearized(bad, ntk_s, f0, f0s, y, ys, spectral="eigh")
