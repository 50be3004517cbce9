"""Reports: metrics (JSON), curves (NPZ), figures (PNG) and a markdown summary, written as a whole.

A report folder `out/<name>/` holds

- `metrics.json`: `{"name", "config", "metrics"}`;
- `curves.npz`: the arrays the figures are drawn from (absent when there are none);
- `<figure>.png` and `summary.md`.

Every file is written into a fresh hidden folder next to the target, which is then renamed
into place: an interrupted write never leaves a report that mixes two runs. Files get the
ordinary modes of the process (`0666 & ~umask`, folders `0777 & ~umask`).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Report", "check_report_name", "read_results", "to_jsonable", "write_atomic"]


@dataclass
class Report:
    """The outcome of one experiment.

    - `name`: the experiment's name, also the folder it is written to: a single path
      component (no separators, not `.`/`..`), so it stays inside the output folder.
    - `config`: the configuration it ran with (JSON-able).
    - `metrics`: nested dict of headline numbers. Non-finite numbers are refused when
      writing: a failure must be reported as such (e.g. `"diverged at step 37"`), never
      as a NaN.
    - `summary`: markdown, a few lines a person reads first.
    - `figures`: name → matplotlib Figure.
    - `curves`: name → array, the data the figures are drawn from (may hold `inf`, e.g.
      "never reached").
    """

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    summary: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check_report_name(self.name)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write the report to `out_dir/name/` as a whole and return that folder.

        Everything is written into a hidden temporary folder in `out_dir` first; an existing
        report of the same name is then renamed away, the new one renamed in, and the old one
        deleted. On any error (or an interrupt) the temporary folder is removed and the
        previous report, if any, is left as it was.
        """
        check_report_name(self.name)
        for fname in list(self.figures) + list(self.curves):
            if not isinstance(fname, str):
                raise TypeError(
                    f"Report {self.name!r}: figure and curve names must be strings, got {fname!r}."
                )
        for fname in self.figures:
            check_report_name(fname, what="figure name")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        target = out / self.name
        if target.exists() and not target.is_dir():
            raise ValueError(
                f"Report: {target} exists and is not a folder; remove it or choose another output folder."
            )
        payload = {
            "name": self.name,
            "config": to_jsonable(self.config),
            "metrics": to_jsonable(self.metrics),
        }
        text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
        tmp = _fresh_dir(out, f".{self.name}.partial-")
        try:
            (tmp / "metrics.json").write_text(text)
            if self.curves:
                with open(tmp / "curves.npz", "wb") as fh:
                    np.savez(fh, **{k: np.asarray(v) for k, v in self.curves.items()})
            for fname, fig in self.figures.items():
                fig.savefig(tmp / f"{fname}.png", dpi=110, bbox_inches="tight", format="png")
            figs = "\n".join(f"![{f}]({f}.png)" for f in self.figures)
            (tmp / "summary.md").write_text(f"# {self.name}\n\n{self.summary.strip()}\n\n{figs}\n")
            _swap_in(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target


def check_report_name(name: Any, *, what: str = "report name") -> str:
    """`name` must be one plain path component: a non-empty string without path separators,
    not `.` or `..`, without NUL, not starting with `.` (hidden names are the writer's own)."""
    if not isinstance(name, str):
        raise TypeError(f"Report: the {what} must be a string, got {type(name).__name__}.")
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if not name or name.startswith(".") or "\0" in name or any(s in name for s in seps):
        raise ValueError(
            f"Report: the {what} {name!r} must be a single plain file name (no path separators, "
            "not empty, not starting with '.'), so the report stays inside the output folder."
        )
    return name


def read_results(folder: str | os.PathLike) -> dict[str, Any]:
    """Read a written report back as `{"name", "config", "metrics", "curves"}` (curves as numpy
    arrays), e.g. to redraw its figures with the experiment's `figures`."""
    folder = Path(folder)
    payload = json.loads((folder / "metrics.json").read_text())
    curves = {}
    if (folder / "curves.npz").exists():
        with np.load(folder / "curves.npz") as z:
            curves = {k: z[k] for k in z.files}
    return {**payload, "curves": curves}


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder + rename. The file
    gets the process's ordinary mode (`0666 & ~umask`)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"write_atomic: {path} is a folder; give a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def to_jsonable(obj: Any) -> Any:
    """Arrays to lists, numpy scalars to Python numbers; raises on NaN/inf."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        return to_jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(float(obj)):
            raise ValueError(
                "Report: a metric is NaN or inf; report the failure explicitly (e.g. as a "
                "string such as 'diverged at step k') instead."
            )
        return float(obj)
    return obj


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder `parent/prefix<random>` with mode `0777 & ~umask`."""
    while True:
        d = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(d, 0o777)
            return d
        except FileExistsError:
            continue


def _swap_in(new: Path, target: Path) -> None:
    """Put folder `new` at `target`, replacing a previous folder there. Where the OS can swap
    two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`) the swap is one step; otherwise
    the old folder is renamed away, the new one renamed in (the old one restored if that
    fails), and the old one deleted."""
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the previous report
        return
    old = _fresh_dir(target.parent, f".{target.name}.old-")
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap paths `a` and `b`; False where the OS or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
