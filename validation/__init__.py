"""lmech.validation — data, real-vs-theory comparison, experiments, reports, plots, CLI."""

from . import datasets, plot
from ._compare import Comparison, compare
from .report import Report

__all__ = ["Comparison", "Report", "compare", "datasets", "plot"]
