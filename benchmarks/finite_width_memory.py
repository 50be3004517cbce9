"""Peak memory and time of training a network and its matrix-free finite-width theories at
large P: each job in its own process (peak RSS of that process), alternating rounds.

2-layer tanh, digits (1024 train, 256 test), width 1024, eta = 0.5, 200 GD steps.

    python benchmarks/finite_width_memory.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

JOBS = ("real", "taylor2", "taylor3", "o3", "o4")


def job(name: str, P: int, width: int, steps: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import lmech.models as lm
    import lmech.solvers as ls
    import lmech.validation as lv
    from lmech.models import TangentHierarchy, TaylorModel

    data = lv.datasets.digits(n_train=P, n_test=256, key=jax.random.key(0))
    net = lm.MLP(in_size=64, widths=(width,), out_size=1, activation="tanh")
    p0 = net.init(jax.random.key(1))
    if name == "real":
        dyn = lm.Trained(net, data, params=p0)
    elif name.startswith("taylor"):
        dyn = TaylorModel(net, p0, order=int(name[-1])).trained(data)
    else:
        dyn = TangentHierarchy(net, data, params=p0, frozen=int(name[-1]), observe_ntk=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    traj = ls.solve(dyn, ls.GradientDescent(), lr=0.5, steps=steps, save_every=steps // 10, progress=False)
    jax.block_until_ready(traj["f_test"])
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "job": name,
        "P": P,
        "width": width,
        "steps": steps,
        "wall_s": wall,
        "peak_rss_MB": peak / 1024,
        "rss_before_MB": base / 1024,
        "final_loss": float(traj["loss"][-1]),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--job", default=None)
    a = ap.parse_args()
    if a.job:
        print(json.dumps(job(a.job, a.P, a.width, a.steps)))
        sys.exit()
    for _ in range(a.rounds):
        for name in JOBS:
            cmd = [
                sys.executable,
                __file__,
                "--job",
                name,
                "--P",
                str(a.P),
                "--width",
                str(a.width),
                "--steps",
                str(a.steps),
            ]
            print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip(), flush=True)
