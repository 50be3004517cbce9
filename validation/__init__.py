"""lmech.validation — data, real-vs-theory comparison, experiments, reports, plots, CLI."""

from . import datasets, plot
from ._compare import Comparison, compare
from ._eos import EdgeOfStability, edge_of_stability, moving_average
from .report import Report

__all__ = [
    "Comparison",
    "EdgeOfStability",
    "Report",
    "compare",
    "datasets",
    "edge_of_stability",
    "moving_average",
    "plot",
]
