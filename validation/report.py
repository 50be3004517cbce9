"""Reports: metrics (JSON), figures (PNG) and a markdown summary, written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Report", "write_atomic", "to_jsonable"]


@dataclass
class Report:
    """The outcome of one experiment.

    - `name`: the experiment's name (also the folder it is written to).
    - `config`: the configuration it ran with (JSON-able).
    - `metrics`: nested dict of headline numbers. Non-finite numbers are refused when
      writing: a failure must be reported as such (e.g. `"diverged at step 37"`), never
      as a NaN.
    - `figures`: name → matplotlib Figure.
    - `summary`: markdown, a few lines a person reads first.
    """

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    summary: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write `metrics.json`, `summary.md` and `<figure>.png` into `out_dir/name/`;
        every file is written to a temporary file and renamed into place."""
        folder = Path(out_dir) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "name": self.name,
            "config": to_jsonable(self.config),
            "metrics": to_jsonable(self.metrics),
        }
        write_atomic(folder / "metrics.json", json.dumps(payload, indent=2, allow_nan=False) + "\n")
        for fname, fig in self.figures.items():
            target = folder / f"{fname}.png"
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png.tmp")
            os.close(fd)
            try:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        figs = "\n".join(f"![{f}]({f}.png)" for f in self.figures)
        write_atomic(folder / "summary.md", f"# {self.name}\n\n{self.summary.strip()}\n\n{figs}\n")
        return folder


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
