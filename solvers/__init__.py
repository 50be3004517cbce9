"""lmech.solvers — how a dynamics is integrated, iterated or evaluated.

`solve(dynamics, method, lr=..., steps=...)` advances any `AbstractDynamics` with a
method (`GradientFlow`, `GradientDescent`, `ClosedForm`, `ModifiedFlow`,
`CentralFlow`) and returns a `Trajectory`
on the flow-time axis $t = \\eta k$.
"""

from ._central_flow import CentralFlow, psd_complementarity, psd_part
from ._closed_form import ClosedForm
from ._dynamics import AbstractDynamics
from ._gradient_descent import GradientDescent
from ._gradient_flow import GradientFlow
from ._hessian import hessian_eigenpairs, hvp, lanczos, sharpness
from ._methods import AbstractMethod
from ._modified_flow import ModifiedFlow
from ._recorded import Recorded
from ._solve import solve
from ._trajectory import RESULTS, SolveError, Trajectory

__all__ = [
    "AbstractDynamics",
    "AbstractMethod",
    "CentralFlow",
    "ClosedForm",
    "GradientDescent",
    "GradientFlow",
    "ModifiedFlow",
    "RESULTS",
    "Recorded",
    "SolveError",
    "Trajectory",
    "hessian_eigenpairs",
    "hvp",
    "lanczos",
    "psd_complementarity",
    "psd_part",
    "sharpness",
    "solve",
]
