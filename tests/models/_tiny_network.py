"""The tiny erf network and random data shared by the finite-width tests (in 3, one hidden layer)."""

import jax

import lmech.models as lm


def tiny(k=2, width=12, P=4, Q=2, activation="erf", seed=0):
    """`(net, data, params)`: `k` outputs, `P` training and `Q` test points."""
    ks = jax.random.split(jax.random.key(seed), 5)
    data = lm.Dataset(
        jax.random.normal(ks[0], (P, 3)),
        jax.random.normal(ks[1], (P, k)),
        jax.random.normal(ks[2], (Q, 3)),
        jax.random.normal(ks[3], (Q, k)),
    )
    net = lm.MLP(in_size=3, widths=(width,), out_size=k, activation=activation, sigma_b=0.3)
    return net, data, net.init(ks[4])
