"""The command line: `lmech list`, `lmech run NAME [--quick] [--out DIR] [--seed S]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmech", description="Learning mechanics: theory vs real training.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    r = sub.add_parser("run", help="run an experiment and write its report")
    r.add_argument("name", nargs="?", help="experiment name (see `lmech list`)")
    r.add_argument("--all", action="store_true", help="run every experiment")
    r.add_argument("--quick", action="store_true", help="small sizes (minutes on a laptop)")
    r.add_argument("--out", default="runs", help="output folder (default: runs)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    r.add_argument(
        "--write-results",
        nargs="?",
        const="validation/RESULTS.md",
        default=None,
        metavar="PATH",
        help="also write the headline numbers to PATH (default validation/RESULTS.md)",
    )
    res = sub.add_parser("results", help="rebuild the results table from written reports")
    res.add_argument("folders", nargs="+", help="report folders (e.g. runs/deep-linear) or their parent")
    res.add_argument(
        "--write", default="validation/RESULTS.md", metavar="PATH", help="where to write the table"
    )
    res.add_argument(
        "--quick", action="store_true", help="say in the table that the reports are --quick runs"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from .experiments import EXPERIMENTS

    if args.command == "list":
        for name, mod in EXPERIMENTS.items():
            print(f"{name:16s} {mod.DESCRIPTION}")
        return 0
    if args.command == "results":
        return _rebuild(args, EXPERIMENTS)
    if args.all == (args.name is not None):
        print("lmech run: give one experiment NAME or --all (see `lmech list`).", file=sys.stderr)
        return 2
    names = list(EXPERIMENTS) if args.all else [args.name]
    for n in names:
        if n not in EXPERIMENTS:
            print(f"lmech run: unknown experiment {n!r}; choose one of {list(EXPERIMENTS)}.", file=sys.stderr)
            return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .experiments import run_experiment
    from .report import write_atomic

    headlines = {}
    for n in names:
        mod = EXPERIMENTS[n]
        config = mod.Config.quick(args.seed) if args.quick else mod.Config(seed=args.seed)
        report = run_experiment(mod, config, progress=not args.no_progress)
        elapsed = report.metrics["wall_time_s"]
        folder = report.write(args.out)
        plt.close("all")
        print(f"\n{report.summary}\n")
        print(f"[{n}] done in {elapsed:.1f} s; report written to {folder}")
        headlines[n] = (mod.headline(report.metrics), elapsed)
    if args.write_results:
        write_atomic(Path(args.write_results), _results_md(headlines, quick=args.quick, seed=args.seed))
        print(f"headline numbers written to {args.write_results}")
    return 0


def _rebuild(args, experiments) -> int:
    import json

    from .report import write_atomic

    found = {}
    for f in map(Path, args.folders):
        for m in [f / "metrics.json"] if (f / "metrics.json").exists() else sorted(f.glob("*/metrics.json")):
            payload = json.loads(m.read_text())
            name = payload["name"]
            if name not in experiments:
                print(f"lmech results: skipping unknown experiment {name!r} in {m}", file=sys.stderr)
                continue
            metrics = payload["metrics"]
            found[name] = (experiments[name].headline(metrics), metrics.get("wall_time_s", float("nan")))
    if not found:
        print("lmech results: no metrics.json found.", file=sys.stderr)
        return 2
    ordered = {n: found[n] for n in experiments if n in found}
    write_atomic(Path(args.write), _results_md(ordered, quick=args.quick, seed=0))
    print(f"headline numbers of {list(ordered)} written to {args.write}")
    return 0


def _results_md(headlines, *, quick: bool, seed: int) -> str:
    import platform

    import jax

    cmd = (
        "lmech run --all"
        + (" --quick" if quick else "")
        + (f" --seed {seed}" if seed else "")
        + " --write-results"
    )
    lines = [
        "# Validation results",
        "",
        f"Written by `{cmd}`, or by `lmech results` from the reports of such runs (float64, {platform.machine()}, {jax.devices()[0].platform}, "
        f"{__import__('os').cpu_count()} cores).",
        "",
        "| experiment | quantity | value |",
        "|---|---|---|",
    ]
    for name, (h, elapsed) in headlines.items():
        for k, v in h.items():
            lines.append(f"| {name} | {k} | {v} |")
        lines.append(f"| {name} | wall time | {elapsed:.0f} s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
