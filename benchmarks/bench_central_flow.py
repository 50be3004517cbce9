"""The central flow's cost per unit flow time: this version against an earlier one, side by side.

The job: the `discrete-gd` experiment's edge-of-stability network (tanh 64-64, 8256
parameters, 256 digits, MSE, η = 0.5), central flow with k = 2 and k = 3 over flow time
T = 20 (the sharpness reaches 2/η at t ≈ 6), saving 11 points; real GD over the same
flow time as the unit of cost. Each variant runs as a whole process (`--worker`), the
variants alternate A B A B ..., and each process reports its warm seconds (median of
repeated solves after the compiling one). The baseline is lmech at an earlier commit,
installed in its own venv by `benchmarks/baseline_env.sh COMMIT DIR`:

    bash benchmarks/baseline_env.sh 3553f2f BASELINE_DIR
    python benchmarks/bench_central_flow.py --baseline BASELINE_DIR/bin/python

Without `--baseline` only the current code is timed (warm and cold variants).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def worker(variant: str, T: float, repeats: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import lmech.models as lm
    import lmech.solvers as ls
    from lmech.validation import datasets

    lr = 0.5
    steps = int(round(T / lr))
    data = datasets.digits(256, 64, key=jax.random.fold_in(jax.random.key(0), 3))
    net = lm.MLP(64, (64, 64), 1, activation="tanh", parameterization="standard", sigma_w=0.5)
    real = lm.Trained(net, data, key=jax.random.fold_in(jax.random.key(0), 4))
    k = int(variant.split("k=")[1][0]) if "k=" in variant else 0
    if variant == "gd":
        method = ls.GradientDescent()
    elif variant.startswith("cold"):
        method = ls.CentralFlow(k=k, warm=False)
    else:  # "default k=..": the method as constructed by default in that version
        method = ls.CentralFlow(k=k)
    run = lambda: ls.solve(real, method, lr=lr, steps=steps, save_every=steps // 10)
    t0 = time.perf_counter()
    tr = jax.block_until_ready(run())
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tr = jax.block_until_ready(run())
        warm.append(time.perf_counter() - t0)
    out = {"first": first, "warm": statistics.median(warm), "num_steps": int(tr.stats["num_steps"])}
    if variant != "gd":
        out["loss_averaged"] = np.asarray(tr.observables["loss_averaged"]).tolist()
        out["sharpness"] = np.asarray(tr.observables["sharpness"]).tolist()
    return out


def _spawn(python: str, variant: str, T: float, repeats: int) -> dict:
    cmd = [python, __file__, "--worker", variant, "--T", str(T), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--T", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of whole processes")
    ap.add_argument("--baseline", help="python of a venv with an earlier lmech (baseline_env.sh)")
    ap.add_argument("--baseline-label", default="3553f2f")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.T, args.repeats)))
        return
    import numpy as np
    from _common import write_section

    variants = [
        ("now", sys.executable, v) for v in ("gd", "default k=2", "default k=3", "cold k=2", "cold k=3")
    ]
    if args.baseline:
        variants += [("baseline", args.baseline, v) for v in ("default k=2", "default k=3")]
    runs: dict = {}
    for r in range(args.rounds):
        for who, py, v in variants:
            res = _spawn(py, v, args.T, args.repeats)
            runs.setdefault((who, v), []).append(res)
            print(
                f"round {r}: {who:8s} {v:12s} warm {res['warm']:.3f} s, first {res['first']:.1f} s",
                flush=True,
            )
    med = {key: statistics.median(x["warm"] for x in rs) for key, rs in runs.items()}
    gd = med[("now", "gd")]
    T = args.T
    rows = [
        f"tanh MLP 64→64→64→1 (8256 parameters, σ_w = 0.5), 256 digits, MSE, η = 0.5, flow time {T:g} "
        f"({int(T / 0.5)} GD steps; the sharpness reaches 2/η at t ≈ 6), 11 saved points, float64. Every "
        f"variant is a whole process; the variants alternate, {args.rounds} rounds; warm = median over "
        f"rounds of each process's median of {args.repeats} solves after the compiling one.",
        "",
        "| code | central flow | warm s per unit flow time | × real GD | solver steps | first call (s) |",
        "|---|---|---|---|---|---|",
    ]
    labels = {"now": "this commit", "baseline": f"lmech {args.baseline_label} (before)"}
    names = {
        "gd": "— (real GD)",
        "default k=2": "default, k = 2",
        "default k=3": "default, k = 3",
        "cold k=2": "warm=False, k = 2",
        "cold k=3": "warm=False, k = 3",
    }
    for (who, v), rs in runs.items():
        rows.append(
            f"| {labels[who]} | {names[v]} | {med[(who, v)] / T:.4f} | {med[(who, v)] / gd:.0f}× | "
            f"{rs[-1]['num_steps']} | {statistics.median(x['first'] for x in rs):.1f} |"
        )
    lines = []
    for k in (2, 3):
        now = runs[("now", f"default k={k}")][-1]
        line = f"- k = {k}:"
        for who, v, label in (
            ("now", f"cold k={k}", "warm=False (this commit)"),
            ("baseline", f"default k={k}", "the baseline"),
        ):
            if (who, v) not in runs:
                continue
            ref = runs[(who, v)][-1]
            err = np.max(
                np.abs(np.subtract(now["loss_averaged"], ref["loss_averaged"])) / np.abs(ref["loss_averaged"])
            )
            line += (
                f" {med[(who, v)] / med[('now', f'default k={k}')]:.1f}× faster than {label}, predicted averaged "
                f"loss L + trΣ/η at the 11 saved points within {err:.1e} (relative) of its;"
            )
        lines.append(line.rstrip(";") + ".")
    rows += ["", *lines]
    write_section("Central flow: cost per unit flow time, side by side", "\n".join(rows))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
