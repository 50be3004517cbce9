"""Named experiments. Each module has `NAME`, `DESCRIPTION`, a frozen `Config` dataclass (with a
`seed` field and `Config.quick(seed)`), `compute(config, *, progress) -> {"metrics", "curves"}`,
`figures(results)`, `summary(results)` and `headline(metrics)`; `run_experiment` assembles
them into a `Report` (see `_runner.py`)."""

from . import coordinate_check, deep_linear, discrete_gd, dmft, finite_width, kernel
from ._runner import run_experiment

EXPERIMENTS = {m.NAME: m for m in (deep_linear, kernel, discrete_gd, finite_width, coordinate_check, dmft)}

__all__ = [
    "EXPERIMENTS",
    "coordinate_check",
    "deep_linear",
    "discrete_gd",
    "dmft",
    "finite_width",
    "kernel",
    "run_experiment",
]
