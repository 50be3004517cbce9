"""Finite-width theories vs real GD, one realization each: max-over-time relative output
error of the linearized model, the tangent hierarchy (O3-frozen, O4-frozen) and the
order-2/3 Taylor models, against width, with fitted log-log slopes.

2-layer MLP (NTK parameterization, sigma_w = 1), digits with the parity target, eta = 0.5.
Prints one JSON line per (width, seed) and a summary table (mean over seeds, slopes).

    python benchmarks/finite_width_errors.py --P 64 --widths 64,256,1024,4096 --seeds 0,1 --act tanh
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import lmech.models as lm  # noqa: E402
import lmech.solvers as ls  # noqa: E402
import lmech.validation as lv  # noqa: E402
from lmech.models import TangentHierarchy, TaylorModel  # noqa: E402

MODELS = ("lin", "o3", "o4", "o4_euler", "taylor2", "taylor3")


def run(P, widths, seeds, act, steps, models, lr=0.5):
    data = lv.datasets.digits(n_train=P, n_test=P, key=jax.random.key(0))
    gd = ls.GradientDescent()
    kw = dict(lr=lr, steps=steps, save_every=steps // 50, progress=False, throw=False)
    rows = []
    for w in widths:
        for s in seeds:
            net = lm.MLP(in_size=64, widths=(w,), out_size=1, activation=act)
            p0 = net.init(jax.random.key(s))
            t = time.perf_counter()
            real = ls.solve(lm.Trained(net, data, params=p0), gd, **kw)
            row = {"P": P, "act": act, "width": w, "seed": s, "time_real": time.perf_counter() - t}
            for m in models:
                if m.startswith("taylor"):
                    dyn = TaylorModel(net, p0, order=int(m[-1])).trained(data)
                else:
                    frozen = {"lin": 2, "o3": 3, "o4": 4, "o4_euler": 4}[m]
                    disc = "euler" if m.endswith("euler") else "remainder"
                    dyn = TangentHierarchy(
                        net, data, params=p0, frozen=frozen, discrete=disc, observe_ntk=False
                    )
                t = time.perf_counter()
                traj = ls.solve(dyn, gd, **kw)
                row[f"time_{m}"] = time.perf_counter() - t
                row[f"result_{m}"] = traj.message() or "ok"
                if traj.succeeded:
                    err = lv.compare(traj, real).max_relative_error
                    row[f"{m}_test"] = float(err["f_test"])
                    row[f"{m}_train"] = float(err["f_train"])
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def summary(rows, models):
    widths = sorted({r["width"] for r in rows})
    lines = [
        "| model | " + " | ".join(f"n={w}" for w in widths) + " | slope | slope (n >= 256) |",
        "|---" * (len(widths) + 3) + "|",
    ]
    for m in models:
        for split in ("test", "train"):
            means, cells = [], []
            for w in widths:
                vals = [r.get(f"{m}_{split}") for r in rows if r["width"] == w and f"result_{m}" in r]
                good = [v for v in vals if v is not None]
                means.append(np.mean(good) if good else np.nan)
                bad = len(vals) - len(good)
                cells.append(
                    ("—" if not good else f"{means[-1]:.2e}")
                    + (f" ({bad}/{len(vals)} diverged)" if bad else "")
                )
            ok = np.isfinite(means)
            x, y = np.log(np.array(widths)[ok]), np.log(np.array(means)[ok])
            slope = np.polyfit(x, y, 1)[0] if ok.sum() >= 2 else np.nan
            big = np.exp(x) >= 256
            slope_big = np.polyfit(x[big], y[big], 1)[0] if big.sum() >= 2 else np.nan
            lines.append(f"| {m} ({split}) | {' | '.join(cells)} | {slope:.2f} | {slope_big:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, default=64)
    ap.add_argument("--widths", default="64,256,1024,4096")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--act", default="tanh")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    models = tuple(a.models.split(","))
    rows = run(
        a.P,
        [int(w) for w in a.widths.split(",")],
        [int(s) for s in a.seeds.split(",")],
        a.act,
        a.steps,
        models,
    )
    print(summary(rows, models))


def summary_from(path, models=MODELS):
    """The table again from a file of the JSON lines printed by `run`."""
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    return summary(rows, models)
