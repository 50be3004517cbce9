"""DMFT cost, side by side with training the network it describes.

1. `DeepLinearDMFT` (3 weight layers, γ₀ = 1; whitened D = 16, P = 64) solved by
   `SelfConsistent` on grids of n = 65 … 513 flow times: time (first call with compilation,
   warm median) and the compiled program's memory (XLA's memory analysis: arguments + outputs
   + temporaries), with fitted exponents in n, and the grid error against the finest grid.
   The generic DMFT cost is O(P³T³) time and O(P²T²) memory (THEORY.md §4); whitened data
   reduce the deep linear theory to one direction, so P drops out and n³ (the triangular
   solves of n×n two-time operators) is the wall.
2. The deep linear DMFT at the experiment's settings (8 grid intervals per saved point,
   Richardson-extrapolated) against gradient flow of one width-N real network of the same
   depth to the same time, N = 1024, 4096 — timed side by side (alternating warm calls).
3. `TwoLayerDMFT` (tanh, M = 4096 Monte-Carlo sites) against one width-4096 tanh network, both
   by gradient flow to the same time, for P = 32 … 512 training points: time and fitted
   exponents in P (the DMFT's ODE costs O(M·P·(P + Q)) per step).
4. `--deep-tanh` (its own section): `DeepDMFT` (depth 3, tanh; Monte-Carlo sites and response
   functions on a time grid) against one width-4096 network, P = 4 and 8.

Timings need a quiet machine: the 1-minute load average is recorded at the start and end.

    python benchmarks/bench_dmft.py [--quick] [--deep-tanh]
"""

from __future__ import annotations

import argparse
import os

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402
from _common import timed, timed_interleaved, write_section  # noqa: E402

import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402

D, Q, Y0, TIME, SAVES = 16, 32, 1.5, 20.0, 16


def task(P: int, model: str = "linear", seed: int = 0) -> lm.Dataset:
    rng = np.random.default_rng(seed)
    x = lm.whiten(rng.standard_normal((P, D)))
    xt = rng.standard_normal((Q, D))
    beta = rng.standard_normal(D)
    z = lambda v: v @ beta / np.sqrt(D)  # noqa: E731
    f = (lambda v: Y0 * z(v)) if model == "linear" else (lambda v: Y0 * np.tanh(z(v)))
    return lm.Dataset(x, f(x)[:, None], xt, f(xt)[:, None])


def fit(x, t) -> float:
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(t, float)), 1)[0])


def memory_mb(fn) -> float:
    """Arguments + outputs + temporaries of the compiled program, in MB."""
    m = jax.jit(fn).lower().compile().memory_analysis()
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20


def sched(saves: int = SAVES) -> dict:
    return dict(lr=TIME / saves, steps=saves, save_every=1)


def deep_grid(quick: bool) -> list[str]:
    data = task(64)
    dmft = lm.DeepLinearDMFT(data, 1.0, 3)
    points = (4, 8, 16) if quick else (4, 8, 16, 32)
    rows, times, mems, outs = [], [], [], {}
    for p in points:
        fn = lambda p=p: ls.solve(dmft, ls.SelfConsistent(points=p, max_memory=64e9), **sched())["f_test"]  # noqa: E731
        first, warm, out = timed(fn, repeats=2)
        n = SAVES * p + 1
        mem = memory_mb(fn)
        times.append(warm)
        mems.append(mem)
        outs[n] = np.asarray(out)
        rows.append((n, first, warm, mem))
    ns = [r[0] for r in rows]
    finest = outs[ns[-1]]
    scale = float(np.max(np.abs(finest)))
    lines = [
        "### Deep linear DMFT on a time grid (3 weight layers, γ₀ = 1)",
        "",
        "| grid times n | first call (s) | warm (s) | memory (MB) | max error vs finest grid |",
        "|---|---|---|---|---|",
    ]
    for n, first, warm, mem in rows:
        err = float(np.max(np.abs(outs[n] - finest))) / scale if n != ns[-1] else float("nan")
        lines.append(
            f"| {n} | {first:.2f} | {warm:.3f} | {mem:.1f} | {'—' if n == ns[-1] else f'{err:.1e}'} |"
        )
    tail = max(2, len(ns) - 2)
    lines += [
        "",
        f"Fitted exponents over the {tail} largest grids: time ∝ n^{fit(ns[-tail:], times[-tail:]):.2f}, "
        f"memory ∝ n^{fit(ns[-tail:], mems[-tail:]):.2f} (n³ work, n² storage expected at large n).",
        "",
    ]
    return lines


def deep_vs_network(quick: bool) -> list[str]:
    data = task(64)
    dmft = lm.DeepLinearDMFT(data, 1.0, 3)
    method = ls.SelfConsistent(points=8, extrapolate=True)
    fns = {"DMFT (8 per save, extrapolated)": lambda: ls.solve(dmft, method, **sched())["f_test"]}
    for N in (1024,) if quick else (1024, 4096):
        net = lm.MLP(
            D,
            [N, N],
            1,
            activation="linear",
            parameterization=lm.Parameterization.mean_field(3, 1.0),
            bias=False,
        )
        trained = lm.Trained(net, data, key=jax.random.key(0))
        fns[f"network N = {N}"] = lambda t=trained: ls.solve(t, ls.GradientFlow(), **sched())["f_test"]
    res = timed_interleaved(fns, repeats=2)
    base = res[next(iter(fns))][1]
    lines = [
        "### Deep linear DMFT vs training the network (gradient flow to t = 20, 3 weight layers, γ₀ = 1)",
        "",
        "| job | first call (s) | warm (s) | × DMFT (warm) |",
        "|---|---|---|---|",
    ]
    for k, (first, warm, _) in res.items():
        lines.append(f"| {k} | {first:.2f} | {warm:.2f} | {warm / base:.1f}× |")
    return lines + [""]


def two_layer_vs_P(quick: bool) -> list[str]:
    Ps = (32, 64, 128) if quick else (32, 64, 128, 256, 512)
    M, N = (1024, 1024) if quick else (4096, 4096)
    rows = []
    for P in Ps:
        data = task(P, "tanh")
        dmft = lm.TwoLayerDMFT(data, 1.0, "tanh", samples=M, key=jax.random.key(1))
        net = lm.MLP(
            D, [N], 1, activation="tanh", parameterization=lm.Parameterization.mean_field(2, 1.0), bias=False
        )
        trained = lm.Trained(net, data, key=jax.random.key(0))
        res = timed_interleaved(
            {
                "dmft": lambda d=dmft: ls.solve(d, ls.GradientFlow(), **sched())["f_test"],
                "net": lambda t=trained: ls.solve(t, ls.GradientFlow(), **sched())["f_test"],
            },
            repeats=2,
        )
        rows.append((P, res["dmft"][0], res["dmft"][1], res["net"][0], res["net"][1]))
    lines = [
        f"### Two-layer tanh DMFT ({M} sites) vs one width-{N} network, against P (gradient flow to t = 20)",
        "",
        "| P | DMFT first (s) | DMFT warm (s) | network first (s) | network warm (s) | network / DMFT (warm) |",
        "|---|---|---|---|---|---|",
    ]
    for P, df, dw, nf, nw in rows:
        lines.append(f"| {P} | {df:.2f} | {dw:.3f} | {nf:.2f} | {nw:.3f} | {nw / dw:.1f}× |")
    P = [r[0] for r in rows]
    lines += [
        "",
        f"Fitted exponents in P (all sizes): DMFT {fit(P, [r[2] for r in rows]):.2f}, "
        f"network {fit(P, [r[4] for r in rows]):.2f}.",
        "",
    ]
    return lines


def deep_tanh_vs_network(quick: bool) -> list[str]:
    """`DeepDMFT` (depth 3, tanh, γ₀ = 1; raw Gaussian inputs, flow time 10, 11 grid times,
    8192 sites, 1024 response sites) against one width-4096 network of the same depth, both to
    the same time, for P = 4 and 8 (+ 8 test points)."""
    rows = []
    for P in (4,) if quick else (4, 8):
        rng = np.random.default_rng(P)
        x, xt, beta = rng.standard_normal((P, D)), rng.standard_normal((8, D)), rng.standard_normal(D)
        f = lambda v: Y0 * np.tanh(v @ beta / np.sqrt(D))[:, None]  # noqa: E731
        data = lm.Dataset(x, f(x), xt, f(xt))
        kw = dict(lr=1.0, steps=10, save_every=1)
        dmft = lm.DeepDMFT(data, 1.0, 3, "tanh", samples=8192)
        method = ls.SelfConsistent(points=1, rtol=1e-6, atol=1e-6)
        net = lm.MLP(
            D,
            [4096, 4096],
            1,
            activation="tanh",
            parameterization=lm.Parameterization.mean_field(3, 1.0),
            bias=False,
        )
        trained = lm.Trained(net, data, key=jax.random.key(0))
        fns = {
            "DMFT": lambda: ls.solve(dmft, method, **kw)["f_test"],
            "network": lambda: ls.solve(trained, ls.GradientFlow(), **kw)["f_test"],
        }
        res = timed_interleaved(fns, repeats=1)
        rows.append((P, res["DMFT"], res["network"]))
    lines = [
        "### Deep tanh DMFT (Monte Carlo) vs training the network (3 weight layers, γ₀ = 1, flow time 10)",
        "",
        "`DeepDMFT` with 8192 sites per layer (1024 for the response functions) on 11 grid times "
        "against gradient flow of one width-4096 network to the same time; + 8 test points.",
        "",
        "| P | DMFT first (s) | DMFT warm (s) | network first (s) | network warm (s) | DMFT / network (warm) |",
        "|---|---|---|---|---|---|",
    ]
    for P, d, n in rows:
        lines.append(f"| {P} | {d[0]:.1f} | {d[1]:.1f} | {n[0]:.1f} | {n[1]:.1f} | {d[1] / n[1]:.1f}× |")
    return lines + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (≤ 2 min)")
    ap.add_argument(
        "--deep-tanh", action="store_true", help="only the deep tanh DMFT vs its network (its own section)"
    )
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    if args.deep_tanh:
        lines = deep_tanh_vs_network(args.quick)
        lines += [
            f"Machine load (1-minute average): {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end."
        ]
        print("\n".join(lines))
        write_section(
            "DMFT: deep tanh (Monte Carlo) against training" + (" (quick)" if args.quick else ""),
            "\n".join(lines),
        )
        return
    lines = ["Warm = median of alternating calls after one compiling call each; float64.", ""]
    lines += deep_grid(args.quick)
    lines += deep_vs_network(args.quick)
    lines += two_layer_vs_P(args.quick)
    lines += [
        f"Machine load (1-minute average): {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end."
    ]
    body = "\n".join(lines)
    print(body)
    write_section(
        "DMFT: cost against grid size and P, and against training" + (" (quick)" if args.quick else ""), body
    )


if __name__ == "__main__":
    main()
