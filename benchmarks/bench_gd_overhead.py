"""lmech's GradientDescent on `Trained` vs bare optax loops on the same network.

MLP 64 → 512 → 512 → 1 (ReLU, NTK parameterization) on 512 digits, MSE, full-batch GD,
1000 steps saving loss/f_train/f_test every 100 steps; float32 and float64.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import timed_interleaved, write_section

import lmech.models as lm
import lmech.solvers as ls
from lmech.validation import datasets


def bench(dtype64: bool, steps: int, save_every: int, repeats: int):
    jax.config.update("jax_enable_x64", dtype64)
    data = datasets.digits(512, 256, key=jax.random.key(0))
    net = lm.MLP(64, (512, 512), 1, activation="relu", parameterization="ntk", sigma_w=np.sqrt(2))
    real = lm.Trained(net, data, key=jax.random.key(1))
    lr = 0.5
    p0 = real.init()

    def lmech_run():
        tr = ls.solve(real, ls.GradientDescent(), lr=lr, steps=steps, save_every=save_every, progress=False)
        return tr.final_state, tr.observables

    opt = optax.sgd(lr)

    def loss_fn(p):
        return lm.mse(net.apply(p, data.x_train), data.y_train)

    def observe(p):
        f = net.apply(p, data.x_train)
        return {"loss": lm.mse(f, data.y_train), "f_train": f, "f_test": net.apply(p, data.x_test)}

    @jax.jit
    def optax_scan(p):
        def inner(carry, _):
            p, s = carry
            g = jax.grad(loss_fn)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        def outer(carry, _):
            carry = jax.lax.scan(inner, carry, None, length=save_every)[0]
            return carry, observe(carry[0])

        (p, _), obs = jax.lax.scan(outer, (p, opt.init(p)), None, length=steps // save_every)
        return p, obs

    @jax.jit
    def optax_step(p, s):
        g = jax.grad(loss_fn)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    obs_jit = jax.jit(observe)

    def optax_loop():
        p, s = p0, opt.init(p0)
        saved = []
        for k in range(steps):
            p, s = optax_step(p, s)
            if (k + 1) % save_every == 0:
                saved.append(obs_jit(p))
        return p, saved

    res = timed_interleaved(
        {"lmech": lmech_run, "optax_scan": lambda: optax_scan(p0), "optax_loop": optax_loop}, repeats=repeats
    )
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(res["lmech"][2][0]), jax.tree.leaves(res["optax_scan"][2][0]))
    )
    loss0, lossT = float(res["lmech"][2][1]["loss"][0]), float(res["lmech"][2][1]["loss"][-1])
    return res, diff, loss0, lossT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps, save_every, repeats = (400, 100, 2) if args.quick else (1000, 100, 3)
    lines = [
        f"MLP 64→512→512→1 (ReLU, NTK param.), 512 digits, MSE, η = 0.5, {steps} full-batch steps, "
        f"observables saved every {save_every}. Warm = median of {repeats} interleaved rounds after the compiling call.",
        "",
        "| dtype | lmech solve (s) | optax in lax.scan (s) | optax Python loop (s) | lmech / optax-scan | max param diff | loss start → end |",
        "|---|---|---|---|---|---|---|",
    ]
    for x64 in (False, True):
        res, diff, l0, lT = bench(x64, steps, save_every, repeats)
        t = {k: v[1] for k, v in res.items()}
        lines.append(
            f"| {'float64' if x64 else 'float32'} | {t['lmech']:.3f} | {t['optax_scan']:.3f} | {t['optax_loop']:.3f} | "
            f"{t['lmech'] / t['optax_scan']:.3f} | {diff:.1e} | {l0:.3f} → {lT:.2e} |"
        )
        print(lines[-1])
    body = "\n".join(lines)
    print(body)
    write_section("GD overhead: lmech vs bare optax" + (" (quick)" if args.quick else ""), body)


if __name__ == "__main__":
    main()
