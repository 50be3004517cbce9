"""lmech on an accelerator: the kernel-regime job against the same job on the same machine's
CPU, and the two-layer DMFT against training the network it describes — each side by side in
one run.

1. The kernel-regime job of `kernel_job_lmech.py` (analytic depth-10 ReLU NTK + linearized
   predictions at 101 times, float64) at P = 1536 … 16384 on jittered digits
   (`bench_kernel.sweep_data`), in one process per backend: the first call (compilation
   included) and the median of two warm calls on the accelerator, then the same on the CPU
   (`JAX_PLATFORMS=cpu`, a child process; up to `--cpu-max-P`); the two backends' predictions
   compared.
2. Feature learning: `TwoLayerDMFT` (tanh, M Monte-Carlo sites) against real mean-field
   networks of width N on P = 256 points (D = 16), gradient flow to t = 10: warm seconds of
   each, on the accelerator.

    python benchmarks/bench_gpu.py [--sizes 1536 4096 8192 16384] [--cpu-max-P 8192]
                                   [--dmft-samples 16384 65536] [--dmft-widths 4096 65536] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def kernel_backend(sizes, workdir) -> dict:
    """This process's backend: first and warm seconds and predictions per P."""
    from bench_kernel import sweep_data
    from kernel_job_lmech import job

    out = {}
    for P in sizes:
        path = Path(workdir) / f"data{P}.npz"
        if not path.exists():
            sweep_data(P, path)
        d = np.load(path)
        arrays = d["x_train"], d["y_train"], d["x_test"]
        t0 = time.perf_counter()
        pred = job(*arrays)
        first = time.perf_counter() - t0
        warm = []
        for _ in range(2):
            t0 = time.perf_counter()
            job(*arrays)
            warm.append(time.perf_counter() - t0)
        np.save(Path(workdir) / f"pred_{jax.default_backend()}_{P}.npy", pred)
        out[P] = {"first": first, "warm": float(np.median(warm))}
        print(f"{jax.default_backend()} P={P}: first {first:.2f} s, warm {np.median(warm):.2f} s", flush=True)
    return out


def dmft_vs_training(samples=(16384, 65536), widths=(4096, 65536)) -> dict:
    import lmech.models as lm
    import lmech.solvers as ls

    rng = np.random.default_rng(0)
    P, D = 256, 16
    x, xt, beta = rng.standard_normal((P, D)), rng.standard_normal((64, D)), rng.standard_normal(D)
    target = lambda z: 1.5 * np.tanh(z @ beta / np.sqrt(D))[:, None]  # noqa: E731
    data = lm.Dataset(x, target(x), xt, target(xt))
    kw = dict(lr=1.0, steps=10, save_every=5)
    method = ls.GradientFlow(rtol=1e-6, atol=1e-8)
    out = {}

    def timed(fn):
        jax.block_until_ready(fn())
        t0 = time.perf_counter()
        r = jax.block_until_ready(fn())
        return time.perf_counter() - t0, r

    ref = None
    for M in samples:
        dm = lm.TwoLayerDMFT(data, 1.0, "tanh", samples=M, key=jax.random.key(1))
        run = jax.jit(lambda d: ls.solve(d, method, **kw)["f_test"])
        secs, f = timed(lambda: run(dm))
        ref = f
        out[f"dmft_M{M}"] = secs
        print(f"DMFT M={M}: {secs:.3f} s", flush=True)
    for N in widths:
        net = lm.MLP(
            D, [N], 1, activation="tanh", parameterization=lm.Parameterization.mean_field(2, 1.0), bias=False
        )
        tr = lm.Trained(net, data, key=jax.random.key(2))
        run = jax.jit(lambda t: ls.solve(t, method, **kw)["f_test"])
        secs, f = timed(lambda: run(tr))
        out[f"real_N{N}"] = secs
        out[f"real_N{N}_vs_dmft"] = float(np.max(np.abs(np.asarray(f) - np.asarray(ref))) / 1.5)
        print(f"real N={N}: {secs:.3f} s; max|f - f_DMFT|/y0 = {out[f'real_N{N}_vs_dmft']:.3g}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1536, 4096, 8192, 16384])
    ap.add_argument("--cpu-max-P", type=int, default=8192)
    ap.add_argument("--dmft-samples", type=int, nargs="+", default=[16384, 65536])
    ap.add_argument("--dmft-widths", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--write", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # the CPU run, in its own process
        res = kernel_backend(args.sizes, args.child)
        Path(args.child, "cpu.json").write_text(json.dumps(res))
        return
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    with tempfile.TemporaryDirectory() as work:
        acc = kernel_backend(args.sizes, work)
        cpu_sizes = [P for P in args.sizes if P <= args.cpu_max_P]
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        subprocess.run(
            [sys.executable, __file__, "--child", work, "--sizes", *map(str, cpu_sizes)], env=env, check=True
        )
        cpu = {int(k): v for k, v in json.loads(Path(work, "cpu.json").read_text()).items()}
        agree = {}
        for P in cpu_sizes:
            a, b = (np.load(Path(work, f"pred_{n}_{P}.npy")) for n in (backend, "cpu"))
            agree[P] = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    dm = dmft_vs_training(args.dmft_samples, args.dmft_widths)
    lines = [
        f"Accelerator: {device} ({backend}); CPU: the same machine's {os.cpu_count()} cores (`JAX_PLATFORMS=cpu`).",
        "",
        "Kernel-regime job (analytic depth-10 ReLU NTK + linearized predictions at 101 times, float64; one process "
        "per backend; first call includes compilation; warm = median of 2):",
        "",
        "| P | accelerator first / warm (s) | CPU first / warm (s) | CPU / accelerator (warm) | predictions, max rel. diff |",
        "| --- | --- | --- | --- | --- |",
    ]
    for P in args.sizes:
        a = acc[P]
        if P in cpu:
            c = cpu[P]
            lines.append(
                f"| {P} | {a['first']:.2f} / {a['warm']:.2f} | {c['first']:.2f} / {c['warm']:.2f} | "
                f"{c['warm'] / a['warm']:.1f}× | {agree[P]:.1e} |"
            )
        else:
            lines.append(f"| {P} | {a['first']:.2f} / {a['warm']:.2f} | — | — | — |")
    lines += [
        "",
        "Two-layer tanh DMFT vs real mean-field networks (γ₀ = 1, P = 256, D = 16, gradient flow to t = 10, "
        "rtol 1e-6; warm seconds on the accelerator):",
        "",
        "| run | seconds | max_t,x abs(f − f_DMFT) / y₀ |",
        "| --- | --- | --- |",
    ]
    for k, v in dm.items():
        if k.startswith("dmft_"):
            lines.append(f"| DMFT, M = {k[6:]} sites | {v:.3f} | — |")
        elif not k.endswith("_vs_dmft"):
            lines.append(f"| real network, N = {k[6:]} | {v:.3f} | {dm[k + '_vs_dmft']:.2g} |")
    body = "\n".join(lines)
    print(body)
    if args.write:
        from _common import write_section

        write_section("lmech on a GPU", body)


if __name__ == "__main__":
    main()
