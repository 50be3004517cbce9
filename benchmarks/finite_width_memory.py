"""Cost of each finite-width truncation against training the network it describes, side by
side: each job in its own process (peak RSS of that process, first call with compilation and
the warm repeat), the jobs alternating, at P = 256 and 1024.

2-layer tanh, digits (P train, 256 test), width 1024, eta = 0.5, 200 GD steps. Writes the
section "Finite width: truncations vs training" of RESULTS.md.

    python benchmarks/finite_width_memory.py [--Ps 256,1024] [--rounds 2]
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
    run = lambda: ls.solve(
        dyn, ls.GradientDescent(), lr=0.5, steps=steps, save_every=steps // 10, progress=False
    )  # noqa: E731
    t = time.perf_counter()
    traj = jax.block_until_ready(run())
    first = time.perf_counter() - t
    t = time.perf_counter()
    traj = jax.block_until_ready(run())
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "job": name,
        "P": P,
        "width": width,
        "steps": steps,
        "first_s": first,
        "wall_s": wall,
        "peak_rss_MB": peak / 1024,
        "rss_before_MB": base / 1024,
        "final_loss": float(traj["loss"][-1]),
    }


LABELS = {
    "real": "real network (Trained)",
    "taylor2": "Taylor model, order 2",
    "taylor3": "Taylor model, order 3",
    "o3": "tangent hierarchy, O3 frozen",
    "o4": "tangent hierarchy, O4 frozen",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--Ps", default="256,1024")
    ap.add_argument("--P", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--job", default=None)
    a = ap.parse_args()
    if a.job:
        print(json.dumps(job(a.job, a.P, a.width, a.steps)))
        return
    import statistics

    from _common import write_section

    lines = [
        f"2-layer tanh MLP, width {a.width}, digits (P training points, 256 test), η = 0.5, {a.steps} GD "
        f"steps; each job a whole process, the jobs alternating, {a.rounds} rounds; warm = the second "
        "solve in the process (median over rounds); peak RSS of the process (max over rounds).",
        "",
        "| P | job | first call (s) | warm (s) | × real (warm) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for P in (int(p) for p in a.Ps.split(",")):
        runs = {name: [] for name in JOBS}
        for _ in range(a.rounds):
            for name in JOBS:
                cmd = [sys.executable, __file__, "--job", name, "--P", str(P), "--width", str(a.width)]
                out = subprocess.run(
                    [*cmd, "--steps", str(a.steps)], capture_output=True, text=True, check=True
                )
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(runs[name][-1], flush=True)
        real = statistics.median(r["wall_s"] for r in runs["real"])
        for name in JOBS:
            warm = statistics.median(r["wall_s"] for r in runs[name])
            first = statistics.median(r["first_s"] for r in runs[name])
            rss = max(r["peak_rss_MB"] for r in runs[name])
            lines.append(
                f"| {P} | {LABELS[name]} | {first:.2f} | {warm:.2f} | {warm / real:.1f}× | {rss:.0f} |"
            )
    body = "\n".join(lines)
    print(body)
    write_section("Finite width: truncations vs training", body)


if __name__ == "__main__":
    main()
