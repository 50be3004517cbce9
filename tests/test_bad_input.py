"""Bad input gives a clear error that names the argument — one case per class of bad
input, for every public constructor and for `solve`. (The CLI's classes are in
tests/validation/test_cli.py; the kernels' in tests/models/test_kernels.py.)"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
import lmech.solvers as ls

X = jax.random.normal(jax.random.key(0), (8, 3))
Y = jax.random.normal(jax.random.key(1), (8, 1))
DATA = lm.Dataset(X, Y, X[:4], Y[:4])
ONEHOT = lm.Dataset(X, jax.nn.one_hot(jnp.arange(8) % 2, 2))
NET = lm.MLP(3, (4,), 1, activation="tanh")
REAL = lm.Trained(NET, DATA, key=jax.random.key(2))
K = X @ X.T + 0.1 * jnp.eye(8)
Z = jnp.zeros((8, 1))

CASES = {
    # the network spec
    "mlp in_size 0": (lambda: lm.MLP(0, (4,), 1), ValueError, "in_size"),
    "mlp width 0": (lambda: lm.MLP(3, (0,), 1), ValueError, "width"),
    "mlp widths not a tuple": (lambda: lm.MLP(3, 4, 1), TypeError, "widths"),
    "mlp activation": (lambda: lm.MLP(3, (4,), 1, activation="swish9"), ValueError, "activation"),
    "mlp parameterization": (
        lambda: lm.MLP(3, (4,), 1, parameterization="ntp2"),
        ValueError,
        "parameterization",
    ),
    "mlp sigma_w 0": (lambda: lm.MLP(3, (4,), 1, sigma_w=0.0), ValueError, "sigma_w"),
    "mlp sigma_w nan": (lambda: lm.MLP(3, (4,), 1, sigma_w=float("nan")), ValueError, "sigma_w"),
    "mlp sigma_w string": (lambda: lm.MLP(3, (4,), 1, sigma_w="1"), TypeError, "sigma_w"),
    "mlp sigma_b < 0": (lambda: lm.MLP(3, (4,), 1, sigma_b=-1.0), ValueError, "sigma_b"),
    "mlp bias 'no'": (lambda: lm.MLP(3, (4,), 1, bias="no"), TypeError, "bias"),
    "mlp bias False with sigma_b": (lambda: lm.MLP(3, (4,), 1, bias=False, sigma_b=0.1), ValueError, "bias"),
    "mlp readout 0": (lambda: lm.MLP(3, (4,), 1, readout=0.0), ValueError, "readout"),
    # data
    "dataset x 1-D": (lambda: lm.Dataset(X[:, 0], Y), ValueError, "x_train"),
    "dataset y (P,1,1)": (lambda: lm.Dataset(X, Y[:, :, None]), ValueError, "y_train"),
    "dataset P mismatch": (lambda: lm.Dataset(X, Y[:5]), ValueError, "y_train"),
    "dataset NaN": (lambda: lm.Dataset(X.at[0, 0].set(jnp.nan), Y), ValueError, "x_train"),
    "dataset complex": (lambda: lm.Dataset(X + 1j, Y), TypeError, "x_train"),
    "dataset x_test alone": (lambda: lm.Dataset(X, Y, X[:2]), ValueError, "y_test"),
    # real training
    "trained data": (lambda: lm.Trained(NET, (X, Y), key=jax.random.key(0)), TypeError, "data"),
    "trained loss name": (lambda: lm.Trained(NET, DATA, "hinge", key=jax.random.key(0)), ValueError, "loss"),
    "trained ce one output": (
        lambda: lm.Trained(NET, DATA, "ce", key=jax.random.key(0)),
        ValueError,
        "2 outputs",
    ),
    "trained ce real targets": (
        lambda: lm.Trained(
            lm.MLP(3, (4,), 2), lm.Dataset(X, jnp.hstack([Y, Y])), "ce", key=jax.random.key(0)
        ),
        ValueError,
        "probabilities",
    ),
    "trained params shape": (
        lambda: lm.Trained(NET, DATA, params=lm.MLP(3, (5,), 1).init(jax.random.key(0))),
        ValueError,
        "shape",
    ),
    "trained no key": (lambda: lm.Trained(NET, DATA), ValueError, "key"),
    "trained apply_fn no params": (lambda: lm.Trained(lambda p, x: x, DATA), ValueError, "params"),
    "trained out_size": (
        lambda: lm.Trained(lm.MLP(3, (4,), 2), DATA, key=jax.random.key(0)),
        ValueError,
        "out_size",
    ),
    # theories
    "linearized ntk shape": (
        lambda: lm.Linearized(K[:5], K[:4], Z, Z[:4], Y, Y[:4]),
        ValueError,
        "ntk_train",
    ),
    "linearized not PSD": (
        lambda: lm.Linearized(-K, -K[:4], Z, Z[:4], Y, Y[:4]),
        ValueError,
        "positive semi-definite",
    ),
    "linearized NaN": (
        lambda: lm.Linearized(K.at[0, 0].set(jnp.nan), K[:4], Z, Z[:4], Y, Y[:4]),
        ValueError,
        "NaN",
    ),
    "linearized ce one output": (
        lambda: lm.Linearized(K, K[:4], Z, Z[:4], Y, Y[:4], loss="ce"),
        ValueError,
        "2 outputs",
    ),
    "linearized ce closed form": (
        lambda: ls.solve(
            lm.Linearized(
                K, K[:4], jnp.zeros((8, 2)), jnp.zeros((4, 2)), ONEHOT.y_train, ONEHOT.y_train[:4], loss="ce"
            ),
            ls.ClosedForm(),
            lr=0.1,
            steps=2,
        ),
        ValueError,
        "MSE only",
    ),
    "end_to_end W0 shape": (lambda: lm.EndToEnd(DATA, 2, jnp.zeros((3, 1))), ValueError, "W0"),
    "end_to_end ce real targets": (
        lambda: lm.EndToEnd(lm.Dataset(X, jnp.hstack([Y, Y])), 2, jnp.zeros((2, 3)), loss="ce"),
        ValueError,
        "probabilities",
    ),
    "end_to_end depth 0": (lambda: lm.EndToEnd(DATA, 0, jnp.zeros((1, 3))), ValueError, "depth"),
    "saxe s 2-D": (lambda: lm.SaxeModes(jnp.ones((2, 2)), jnp.ones((2, 2))), ValueError, "`s`"),
    "saxe a0 shape": (lambda: lm.SaxeModes(jnp.ones(2), jnp.ones((2, 3))), ValueError, "a0"),
    "ensemble t < 0": (lambda: lm.infinite_ensemble(lm.MLP(3, (4,), 1), DATA, t=-1.0), ValueError, "`t`"),
    "ensemble lr < 0": (
        lambda: lm.infinite_ensemble(lm.MLP(3, (4,), 1), DATA, steps=5, lr=-0.1),
        ValueError,
        "lr",
    ),
    "ensemble steps < 0": (
        lambda: lm.infinite_ensemble(lm.MLP(3, (4,), 1), DATA, steps=-5, lr=0.1),
        ValueError,
        "steps",
    ),
    "ensemble lr unstable": (
        lambda: lm.infinite_ensemble(lm.MLP(3, (4,), 1), DATA, steps=5, lr=1e6),
        ValueError,
        "stability",
    ),
    # solve and methods
    "solve lr string": (lambda: ls.solve(REAL, ls.GradientDescent(), lr="0.1", steps=2), TypeError, "lr"),
    "solve lr complex": (lambda: ls.solve(REAL, ls.GradientDescent(), lr=0.1 + 1j, steps=2), TypeError, "lr"),
    "solve lr bool": (lambda: ls.solve(REAL, ls.GradientDescent(), lr=True, steps=2), TypeError, "lr"),
    "solve lr vector": (
        lambda: ls.solve(REAL, ls.GradientDescent(), lr=[0.1, 0.2], steps=2),
        ValueError,
        "lr",
    ),
    "solve lr 0": (lambda: ls.solve(REAL, ls.GradientDescent(), lr=0.0, steps=2), ValueError, "lr"),
    "solve steps float": (
        lambda: ls.solve(REAL, ls.GradientDescent(), lr=0.1, steps=2.0),
        TypeError,
        "steps",
    ),
    "solve state0 shape": (
        lambda: ls.solve(
            REAL, ls.GradientDescent(), lr=0.1, steps=2, state0=lm.MLP(3, (5,), 1).init(jax.random.key(0))
        ),
        ValueError,
        "state0",
    ),
    "solve state0 structure": (
        lambda: ls.solve(REAL, ls.GradientDescent(), lr=0.1, steps=2, state0=jnp.ones(3)),
        ValueError,
        "state0",
    ),
    "solve state0 NaN": (
        lambda: ls.solve(
            REAL,
            ls.GradientDescent(),
            lr=0.1,
            steps=2,
            state0=jax.tree.map(lambda p: p * jnp.nan, REAL.init()),
        ),
        ValueError,
        "NaN",
    ),
    "solve observe": (
        lambda: ls.solve(REAL, ls.GradientDescent(), lr=0.1, steps=2, observe=3),
        TypeError,
        "observe",
    ),
    "solve throw": (
        lambda: ls.solve(REAL, ls.GradientDescent(), lr=0.1, steps=2, throw="yes"),
        TypeError,
        "throw",
    ),
    "flow rtol 0": (lambda: ls.GradientFlow(rtol=0.0), ValueError, "rtol"),
    "flow atol nan": (lambda: ls.GradientFlow(atol=float("nan")), ValueError, "atol"),
    "flow max_steps": (lambda: ls.GradientFlow(max_steps=1.5), ValueError, "max_steps"),
    "flow solver": (lambda: ls.GradientFlow(solver="tsit5"), TypeError, "solver"),
    "closed form discrete": (lambda: ls.ClosedForm(discrete="yes"), TypeError, "discrete"),
    "recorded k": (lambda: ls.Recorded(REAL, k=0), ValueError, "k"),
    "recorded k bool": (lambda: ls.Recorded(REAL, k=True), ValueError, "k"),
    "modified order": (lambda: ls.ModifiedFlow(order=3), ValueError, "order"),
    "central k": (lambda: ls.CentralFlow(k=0), ValueError, "k"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_clear_error(name):
    make, exc, pattern = CASES[name]
    with pytest.raises(exc, match=pattern):
        make()


def test_good_input_still_works():
    # the same constructors with good values (so the cases above fail for the stated reason)
    assert lm.MLP(3, [4], 1, bias=True, sigma_b=0.1).has_bias
    assert lm.Dataset(np.asarray(X), np.asarray(Y[:, 0])).y_train.shape == (8, 1)
    ce = lm.Trained(lm.MLP(3, (4,), 2), ONEHOT, "ce", key=jax.random.key(0))
    assert ce.loss_fn is lm.cross_entropy
    assert float(lm.Linearized(K, K[:4], Z, Z[:4], Y, Y[:4]).max_stable_lr) > 0
    ens = lm.infinite_ensemble(lm.MLP(3, (4,), 1), DATA, steps=5, lr=0.1)
    assert np.all(np.isfinite(np.asarray(ens["mean"])))
    assert ls.solve(REAL, ls.GradientDescent(), lr=1, steps=2, state0=REAL.init()).succeeded
    assert ls.GradientFlow(solver=diffrax.Dopri5(), rtol=1e-6, atol=1e-8, max_steps=10).max_steps == 10
