"""lmech: the kernel-regime job as a user writes it (time the whole process).

Analytic depth-10 ReLU NTK (NTK parameterization, σ_w = √2, σ_b = 0.1; ten hidden layers
like neural-tangents' `stax` net of `kernel_job_nt.py`) on the first P standardized digits
(parity target ±1) + 256 test points, then the linearized-flow test predictions at the
101 times t = 0 … 100 (lr 1), float64.

    python benchmarks/kernel_job_lmech.py [--P 1536] [--data inputs.npz] [--warm 3] [--save out.npy]
                                          [--spectral auto|eigh|krylov]

`--data` reads `x_train, y_train, x_test` from an .npz instead of the digits; `--warm R`
runs the job R more times in the same process on new data of the same shape (the digits
split at random), printing the median warm time; `--save` writes the predictions.
"""

import time

T0 = time.perf_counter()
import argparse  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402


def digits(P, seed=None):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    if seed is not None:  # a new split of the same shape
        perm = np.random.default_rng(seed).permutation(len(X))
        X, y = X[perm], y[perm]
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    Y = (y % 2 * 2.0 - 1.0)[:, None]
    return X[:P], Y[:P], X[P : P + 256]


def job(x_train, y_train, x_test, spectral="auto", phases=None):
    t0 = time.perf_counter()
    net = lm.MLP(64, (512,) * 10, 1, activation="relu", parameterization="ntk", sigma_w=2**0.5, sigma_b=0.1)
    data = lm.Dataset(x_train, y_train, x_test, np.zeros((len(x_test), 1)))
    lin = lm.Linearized.from_network(net, data, kernel="analytic", spectral=spectral)
    t1 = time.perf_counter()
    traj = ls.solve(lin, ls.ClosedForm(), lr=1.0, steps=100, save_every=1, progress=False)
    pred = np.asarray(traj["f_test"][:, :, 0])  # (101 times, test points)
    if phases is not None:  # kernels (+ the spectral set-up), predictions
        phases += [t1 - t0, time.perf_counter() - t1]
    return pred


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, default=1536)
    ap.add_argument("--data", default=None)
    ap.add_argument("--warm", type=int, default=0)
    ap.add_argument("--save", default=None)
    ap.add_argument("--spectral", default="auto", help="auto, eigh or krylov (Linearized)")
    ap.add_argument("--phases", action="store_true")
    args = ap.parse_args()
    if args.data:
        d = np.load(args.data)
        arrays = d["x_train"], d["y_train"], d["x_test"]
    else:
        arrays = digits(args.P)
    phases = []
    pred = job(*arrays, args.spectral, phases)
    cold = time.perf_counter() - T0
    warm = []
    for r in range(args.warm):
        new = digits(args.P, seed=r + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        job(*new, args.spectral)
        warm.append((time.perf_counter() - t0, time.process_time() - c0))
    if args.save:
        np.save(args.save, pred)
    line = f"lmech P={len(arrays[0])} cold {cold:.3f} s"
    if args.phases:
        line += f" (kernels {phases[0]:.3f} s, predictions {phases[1]:.3f} s)"
    if warm:
        line += f" warm {np.median([w for w, _ in warm]):.3f} s cpu {np.median([c for _, c in warm]):.3f} s"
    print(line, float(pred[-1, 0]))


if __name__ == "__main__":
    main()
