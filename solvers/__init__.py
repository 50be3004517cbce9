"""lmech.solvers — how a dynamics is integrated, iterated or evaluated.

`solve(dynamics, method, lr=..., steps=...)` advances any `AbstractDynamics` with a
method (`GradientFlow`, `GradientDescent`, `ClosedForm`) and returns a `Trajectory`
on the flow-time axis $t = \\eta k$.
"""

from ._closed_form import ClosedForm
from ._dynamics import AbstractDynamics
from ._gradient_descent import GradientDescent
from ._gradient_flow import GradientFlow
from ._methods import AbstractMethod
from ._solve import solve
from ._trajectory import RESULTS, SolveError, Trajectory

__all__ = [
    "AbstractDynamics",
    "AbstractMethod",
    "ClosedForm",
    "GradientDescent",
    "GradientFlow",
    "RESULTS",
    "SolveError",
    "Trajectory",
    "solve",
]
