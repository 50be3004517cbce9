"""neural-tangents: the kernel-regime job (run with the reference venv's python; time the
whole process). The same job as the reference `kernel_job.py` of neural-tangents
(analytic depth-10 ReLU NTK, NTK parameterization, W_std = √2, b_std = 0.1, on the first
P standardized digits + 256 test points, linearized-flow test predictions at the 101
times t = 0 … 100, float64), with the options of `kernel_job_lmech.py`:

    VENV/bin/python benchmarks/kernel_job_nt.py [--P 1536] [--data inputs.npz] [--warm 3] [--save out.npy]

`--warm R` jits the kernel function (as neural-tangents' docs recommend) and runs the job
R more times on new data of the same shape; `--phases` prints the kernel and the
prediction times of the cold job.
"""

import time

T0 = time.perf_counter()
import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402


def digits(P, seed=None):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    if seed is not None:  # a new split of the same shape
        perm = np.random.default_rng(seed).permutation(len(X))
        X, y = X[perm], y[perm]
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    Y = (y % 2 * 2.0 - 1.0)[:, None]
    return X[:P], Y[:P], X[P : P + 256]


def kernel_fn():
    layers = []
    for _ in range(10):
        layers += [stax.Dense(512, W_std=2**0.5, b_std=0.1), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, W_std=2**0.5, b_std=0.1))[2]


def job(kfn, x_train, y_train, x_test, phases=None):
    xtr, ytr, xte = jnp.array(x_train), jnp.array(y_train), jnp.array(x_test)
    t0 = time.perf_counter()
    k = kfn(xtr, None, "ntk")
    kte = kfn(xte, xtr, "ntk")
    jax.block_until_ready(kte)
    t1 = time.perf_counter()
    pred = nt.predict.gradient_descent_mse(k, ytr, learning_rate=1.0)
    out = pred(jnp.linspace(0, 100.0, 101), jnp.zeros_like(ytr), jnp.zeros((xte.shape[0], 1)), kte)
    out = np.asarray(out[1][:, :, 0])
    if phases is not None:
        phases += [t1 - t0, time.perf_counter() - t1]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, default=1536)
    ap.add_argument("--data", default=None)
    ap.add_argument("--warm", type=int, default=0)
    ap.add_argument("--save", default=None)
    ap.add_argument("--phases", action="store_true")
    args = ap.parse_args()
    if args.data:
        d = np.load(args.data)
        arrays = d["x_train"], d["y_train"], d["x_test"]
    else:
        arrays = digits(args.P)
    phases = []
    pred = job(kernel_fn(), *arrays, phases=phases)
    cold = time.perf_counter() - T0
    warm = []
    if args.warm:
        kfn = jax.jit(kernel_fn(), static_argnames="get")
        job(kfn, *digits(args.P, seed=0))  # compiles
        for r in range(args.warm):
            new = digits(args.P, seed=r + 1)
            t0, c0 = time.perf_counter(), time.process_time()
            job(kfn, *new)
            warm.append((time.perf_counter() - t0, time.process_time() - c0))
    if args.save:
        np.save(args.save, pred)
    line = f"neural-tangents P={len(arrays[0])} cold {cold:.3f} s"
    if args.phases:
        line += f" (kernels {phases[0]:.3f} s, predictions {phases[1]:.3f} s)"
    if warm:
        line += f" warm {np.median([w for w, _ in warm]):.3f} s cpu {np.median([c for _, c in warm]):.3f} s"
    print(line, float(pred[-1, 0]))


if __name__ == "__main__":
    main()
