"""SaxeModes vs training the full deep linear network it describes, to the same flow time.

Width 256 (in = hidden = out = 256, 256 modes), depth 4, 10^4 GD steps, float64.
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from _common import saxe_problem, timed, write_section  # noqa: E402

import lmech.solvers as ls  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    width, depth = (64, 4) if args.quick else (256, 4)
    steps, lr = (1_000, 0.01) if args.quick else (10_000, 0.01)
    save_every = steps // 10
    modes, real = saxe_problem(width, depth)
    kw = dict(lr=lr, steps=steps, save_every=save_every, progress=False)
    rows = []
    c_full, t_full, tr_full = timed(lambda: ls.solve(real, ls.GradientDescent(), **kw), repeats=1)
    rows.append(("full network, GradientDescent (real training)", c_full, t_full))
    c_map, t_map, tr_map = timed(lambda: ls.solve(modes, ls.GradientDescent(), **kw), repeats=5)
    rows.append(("SaxeModes, exact mode GD map", c_map, t_map))
    c_fl, t_fl, tr_fl = timed(lambda: ls.solve(modes, ls.GradientFlow(), **kw), repeats=5)
    rows.append(("SaxeModes, GradientFlow (Tsit5, rtol 1e-8)", c_fl, t_fl))
    err_map = float(
        jnp.max(jnp.abs(tr_map["end_to_end"] - tr_full["end_to_end"]))
        / jnp.max(jnp.abs(tr_full["end_to_end"]))
    )
    err_fl = float(
        jnp.max(jnp.abs(tr_fl["end_to_end"] - tr_full["end_to_end"]))
        / jnp.max(jnp.abs(tr_full["end_to_end"]))
    )
    lines = [
        f"Depth {depth}, width {width} ({width} modes), {steps} GD steps at η = {lr} (flow time {lr * steps:g}), "
        f"saving every {save_every}; float64. Warm time = median of repeated calls after the first (compiling) call.",
        "",
        "| what | first call (s) | warm (s) | speed-up vs full network (warm) |",
        "|---|---|---|---|",
    ]
    for name, c, t in rows:
        lines.append(f"| {name} | {c:.3f} | {t:.4f} | {t_full / t:.0f}× |")
    lines += [
        "",
        f"Sanity: max relative difference of the end-to-end matrix, mode map vs full GD: {err_map:.2e}; "
        f"mode flow vs full GD (the O(η) flow–GD gap): {err_fl:.2e}.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("Deep linear: SaxeModes vs full network" + (" (quick)" if args.quick else ""), body)


if __name__ == "__main__":
    main()
