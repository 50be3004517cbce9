"""Run one experiment module and assemble its `Report`.

An experiment module has

- `NAME: str`, `DESCRIPTION: str`;
- a frozen dataclass `Config` with a `seed` field and `Config.quick(seed=0)`;
- `compute(config, *, progress=True) -> dict` with keys `"metrics"` (a JSON-able nested dict of
  the measured numbers and strings) and `"curves"` (flat name → numpy array: everything the
  figures draw);
- `figures(results) -> dict[str, Figure]`, drawn through `lmech.validation.plot` from
  `results` alone (so a written report can be redrawn from its `curves.npz`);
- `summary(results) -> str` (markdown);
- `headline(metrics) -> dict[str, str]` (rows of the validation table).

`run_experiment` calls `compute`, `figures` and `summary` and records, next to the module's
own config, the floating dtype the run was traced in and the wall time.
"""

from __future__ import annotations

import dataclasses
import time
from types import ModuleType
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..report import Report

__all__ = ["run_experiment", "config_dict", "float_dtype_name"]


def float_dtype_name() -> str:
    """The default floating dtype JAX traces in now: `"float64"` or `"float32"`."""
    return jnp.dtype(jnp.result_type(float)).name


def config_dict(config: Any) -> dict[str, Any]:
    """The config dataclass as a dict, plus the `dtype` of the run."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"run_experiment: `config` must be a Config dataclass instance, got {type(config)}.")
    d = dataclasses.asdict(config)
    d["dtype"] = float_dtype_name()
    return d


def run_experiment(module: ModuleType, config: Any, *, progress: bool = True) -> Report:
    """Run `module` (an experiment, see the module docstring) with `config` and return its
    `Report` (not yet written). The wall time of the run goes to `metrics["wall_time_s"]`."""
    name = getattr(module, "NAME", None)
    if not isinstance(name, str):
        raise TypeError(f"run_experiment: `module` {module!r} has no string NAME; is it an experiment?")
    if not isinstance(config, module.Config):
        raise TypeError(
            f"run_experiment: `config` is a {type(config).__name__}, expected {name}'s Config "
            f"({module.__name__}.Config)."
        )
    start = time.perf_counter()
    for part in ("compute", "figures", "summary", "headline"):
        if not callable(getattr(module, part, None)):
            raise TypeError(f"run_experiment: experiment {name!r} has no function `{part}`.")
    results = module.compute(config, progress=progress)
    _check_results(name, results)
    figs = module.figures(results)
    if not isinstance(figs, dict):
        raise TypeError(f"{name}.figures must return a dict name -> Figure, got {type(figs)}.")
    text = module.summary(results)
    if not isinstance(text, str):
        raise TypeError(f"{name}.summary must return a markdown string, got {type(text)}.")
    report = Report(
        name=name,
        config=config_dict(config),
        metrics=dict(results["metrics"]),
        summary=text,
        figures=figs,
        curves={k: np.asarray(v) for k, v in results["curves"].items()},
    )
    report.metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    return report


def _check_results(name: str, results: Any) -> None:
    if not isinstance(results, dict) or set(results) != {"metrics", "curves"}:
        got = sorted(results) if isinstance(results, dict) else type(results).__name__
        raise TypeError(f"{name}.compute must return a dict with keys 'metrics' and 'curves', got {got}.")
    if not isinstance(results["metrics"], dict):
        raise TypeError(f"{name}.compute: results['metrics'] must be a dict.")
    curves = results["curves"]
    if not isinstance(curves, dict) or not all(isinstance(k, str) and k for k in curves):
        raise TypeError(f"{name}.compute: results['curves'] must be a dict with non-empty string keys.")
