"""The command line.

- `lmech list` — the experiments;
- `lmech run NAME|--all [--quick] [--out DIR] [--seed S] [--dtype float32|float64]
  [--no-progress] [--write-results [PATH]]` — run and write `DIR/NAME/` (see `report.py`);
- `lmech results FOLDER... [--write PATH]` — rebuild the results table from written reports.

Bad input (an unknown experiment, an output path that cannot be written, a negative seed,
an unknown dtype) is reported in one line on stderr with exit status 2, before anything is
computed. `--dtype` sets JAX's `jax_enable_x64` before anything is traced (float64 is the
default) and is restored when `main` returns.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]

_DTYPES = ("float64", "float32")


class _UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--seed must be a non-negative integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmech", description="Learning mechanics: theory vs real training.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    r = sub.add_parser("run", help="run an experiment and write its report")
    r.add_argument("name", nargs="?", help="experiment name (see `lmech list`)")
    r.add_argument("--all", action="store_true", help="run every experiment")
    r.add_argument("--quick", action="store_true", help="small sizes (minutes on a laptop)")
    r.add_argument("--out", default="runs", help="output folder (default: runs)")
    r.add_argument("--seed", type=_seed, default=0, help="random seed, >= 0 (default 0)")
    r.add_argument(
        "--dtype", choices=_DTYPES, default="float64", help="floating dtype of the run (default float64)"
    )
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
    """Run the command line with `argv` (default `sys.argv[1:]`); returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed its message (or the help)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        if args.command == "list":
            from .experiments import EXPERIMENTS

            for name, mod in EXPERIMENTS.items():
                print(f"{name:16s} {mod.DESCRIPTION}")
            return 0
        if args.command == "results":
            _check_file_target(args.write, "--write")
            return _rebuild(args)
        return _run(args)
    except _UsageError as e:
        print(f"lmech {args.command}: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import jax

    previous_x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", args.dtype == "float64")  # before anything is traced
    try:
        from .experiments import EXPERIMENTS

        if args.all == (args.name is not None):
            raise _UsageError("give one experiment NAME or --all (see `lmech list`).")
        names = list(EXPERIMENTS) if args.all else [args.name]
        for n in names:
            if n not in EXPERIMENTS:
                raise _UsageError(f"unknown experiment {n!r}; choose one of {list(EXPERIMENTS)}.")
        _check_out(args.out, names)
        if args.write_results:
            _check_file_target(args.write_results, "--write-results")
        return _run_experiments(args, names, EXPERIMENTS)
    finally:
        jax.config.update("jax_enable_x64", previous_x64)


def _run_experiments(args, names, experiments) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .experiments import run_experiment
    from .report import write_atomic

    headlines = {}
    for n in names:
        mod = experiments[n]
        config = mod.Config.quick(args.seed) if args.quick else mod.Config(seed=args.seed)
        report = run_experiment(mod, config, progress=not args.no_progress)
        elapsed = report.metrics["wall_time_s"]
        folder = report.write(args.out)
        plt.close("all")
        print(f"\n{report.summary}\n")
        print(f"[{n}] done in {elapsed:.1f} s ({args.dtype}); report written to {folder}")
        headlines[n] = (mod.headline(report.metrics), elapsed)
    if args.write_results:
        text = _results_md(headlines, quick=args.quick, seed=args.seed, dtypes={args.dtype})
        write_atomic(Path(args.write_results), text)
        print(f"headline numbers written to {args.write_results}")
    return 0


def _check_out(out: str, names: list[str]) -> None:
    """`--out` must be a folder we can create reports in (or be creatable), checked before running."""
    p = Path(out)
    if p.exists():
        if not p.is_dir():
            raise _UsageError(f"--out {out}: exists and is not a folder; choose a folder.")
        _check_writable_dir(p, f"--out {out}")
        for n in names:
            if (p / n).exists() and not (p / n).is_dir():
                raise _UsageError(
                    f"--out {out}: {p / n} exists and is not a folder, so the report {n!r} cannot "
                    "be written there; remove it or choose another --out."
                )
        return
    parent = _nearest_existing(p)
    if not parent.is_dir():
        raise _UsageError(f"--out {out}: cannot be created, {parent} is not a folder.")
    _check_writable_dir(parent, f"--out {out}: cannot be created, {parent}")


def _check_file_target(path: str, flag: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise _UsageError(f"{flag} {path}: is a folder; give a file path.")
    if p.exists():
        _check_writable_dir(p.parent, f"{flag} {path}: its folder")
        return
    parent = _nearest_existing(p.parent)
    if not parent.is_dir():
        raise _UsageError(f"{flag} {path}: cannot be created, {parent} is not a folder.")
    _check_writable_dir(parent, f"{flag} {path}: cannot be created, {parent}")


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    return p


def _check_writable_dir(d: Path, what: str) -> None:
    if not os.access(d, os.W_OK | os.X_OK):
        raise _UsageError(f"{what} is not writable.")
    import tempfile

    try:  # os.access can say yes where a write fails (read-only mounts, ACLs)
        tempfile.TemporaryDirectory(dir=d, prefix=".lmech-probe-").cleanup()
    except OSError as e:
        raise _UsageError(f"{what} is not writable ({e.strerror}).") from None


def _rebuild(args) -> int:
    import json

    from .experiments import EXPERIMENTS
    from .report import write_atomic

    found, dtypes = {}, set()
    for f in map(Path, args.folders):
        for m in [f / "metrics.json"] if (f / "metrics.json").exists() else sorted(f.glob("*/metrics.json")):
            try:
                payload = json.loads(m.read_text())
                name, metrics = payload["name"], payload["metrics"]
            except (ValueError, KeyError, TypeError) as e:
                raise _UsageError(f"{m} is not a report's metrics.json ({e}).") from None
            if name not in EXPERIMENTS:
                print(f"lmech results: skipping unknown experiment {name!r} in {m}", file=sys.stderr)
                continue
            dtypes.add(payload.get("config", {}).get("dtype", "dtype not recorded"))
            found[name] = (EXPERIMENTS[name].headline(metrics), metrics.get("wall_time_s", float("nan")))
    if not found:
        raise _UsageError("no metrics.json found.")
    ordered = {n: found[n] for n in EXPERIMENTS if n in found}
    write_atomic(Path(args.write), _results_md(ordered, quick=args.quick, seed=0, dtypes=dtypes))
    print(f"headline numbers of {list(ordered)} written to {args.write}")
    return 0


def _results_md(headlines, *, quick: bool, seed: int, dtypes: set[str]) -> str:
    import platform

    import jax

    dtype = ", ".join(sorted(dtypes))
    cmd = (
        "lmech run --all"
        + (" --quick" if quick else "")
        + (f" --seed {seed}" if seed else "")
        + (f" --dtype {dtype}" if dtypes == {"float32"} else "")
        + " --write-results"
    )
    lines = [
        "# Validation results",
        "",
        f"Written by `{cmd}`, or by `lmech results` from the reports of such runs ({dtype}, "
        f"{platform.machine()}, {jax.devices()[0].platform}, {os.cpu_count()} cores).",
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
