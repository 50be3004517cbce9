"""The kernel-regime job, and theory vs training.

1. Cold and warm: the analytic depth-10 ReLU NTK on 1536 digits + 256 test points and
   the linearized predictions at 101 times (eigendecomposition included).
2. Cost against P (eigh is O(P^3)).
3. Theory vs training the width-4096 network for the same predictions.
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402
from _common import timed, write_section  # noqa: E402

import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402
from lmech.validation import datasets  # noqa: E402


def predictions(lin):
    return ls.solve(lin, ls.ClosedForm(), lr=1.0, steps=100, save_every=1, progress=False).observables[
        "f_test"
    ]


def job(net, data, block_size=None):
    return predictions(lm.Linearized.from_network(net, data, kernel="analytic", block_size=block_size))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    deep = lm.MLP(64, (512,) * 9, 1, activation="relu", sigma_w=np.sqrt(2), sigma_b=0.1)
    data = datasets.digits(1536, 256, key=jax.random.key(0))
    t0 = time.perf_counter()
    jax.block_until_ready(job(deep, data))
    cold = time.perf_counter() - t0
    _, warm, _ = timed(lambda: job(deep, data), repeats=3)
    lin = lm.Linearized.from_network(deep, data, kernel="analytic")
    _, cached, _ = timed(lambda: predictions(lin), repeats=5)
    lines = [
        "Analytic depth-10 ReLU NTK (NTK param., σ_w²=2, σ_b=0.1) on 1536 digits + 256 test points, "
        "eigendecomposition, test predictions of the linearized flow at 101 times; float64.",
        "",
        f"- cold (first call in the process, compilation included): **{cold:.2f} s**",
        f"- warm, whole job again (kernels, eigh, predictions; nothing cached but compilation): **{warm:.3f} s**",
        f"- warm, predictions at 101 times from the same `Linearized` (eigendecomposition reused): **{cached:.3f} s**",
        "",
        "Cost against the number of training points (warm, 256 test points):",
        "",
        "| P | kernel + eigh + 101 predictions (s) |",
        "|---|---|",
    ]
    Ps = (512, 1024, 1536) if args.quick else (512, 1024, 1536, 2048, 4096, 8192, 10000)
    x_all = np.concatenate([np.asarray(data.x_train), np.asarray(data.x_test)])
    rng = np.random.default_rng(0)
    for P in Ps:
        # beyond the 1797 digits: jittered copies, only to measure cost
        idx = rng.integers(0, len(x_all), P)
        x = x_all[idx] + (0.05 * rng.standard_normal((P, 64)) if P > 1536 else 0)
        d = lm.Dataset(x, rng.standard_normal((P, 1)), data.x_test, data.y_test)
        _, t, _ = timed(lambda: job(deep, d, block_size=2048), repeats=1)
        lines.append(f"| {P} | {t:.2f} |")
        print(lines[-1])
    # theory vs training the network it describes
    small = datasets.digits(256, 256, key=jax.random.key(1))
    net = lm.MLP(64, (4096,), 1, activation="relu", sigma_w=np.sqrt(2))
    params = net.init(jax.random.key(2))
    real = lm.Trained(net, small, params=params)
    steps = 200 if args.quick else 1000
    _, t_train, _ = timed(
        lambda: ls.solve(
            real, ls.GradientDescent(), lr=0.5, steps=steps, save_every=steps // 100, progress=False
        ).observables["f_test"],
        repeats=1,
    )

    def theory():
        lin = lm.Linearized.from_network(net, small, kernel="analytic", params=params)
        return ls.solve(
            lin, ls.ClosedForm(discrete=True), lr=0.5, steps=steps, save_every=steps // 100, progress=False
        ).observables["f_test"]

    _, t_theory, _ = timed(theory, repeats=3)
    lines += [
        "",
        f"Theory vs training (2-layer ReLU, width 4096, 256 digits, {steps} GD steps at η = 0.5, 101 saved points): "
        f"training {t_train:.2f} s, analytic linearized GD map {t_theory:.3f} s — **{t_train / t_theory:.0f}×** faster (warm).",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("Kernel regime" + (" (quick)" if args.quick else ""), body)


if __name__ == "__main__":
    main()
