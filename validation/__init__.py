"""lmech.validation — data, real-vs-theory comparison, experiments, reports, plots, CLI."""

from . import datasets
from ._compare import Comparison, compare

__all__ = ["Comparison", "compare", "datasets"]
