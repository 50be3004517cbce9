"""lmech.solvers — how a dynamics is integrated, iterated or evaluated.

`solve(dynamics, method, lr=..., steps=...)` advances any `AbstractDynamics` with a
method (`GradientFlow`, `GradientDescent`, `ClosedForm`, `ModifiedFlow`,
`CentralFlow`) and returns a `Trajectory` on the flow-time axis $t = \\eta k$. What a
dynamics can do beyond a flow is said by its abstract bases (`AbstractLossDynamics`,
`AbstractClosedFormFlow`, `AbstractClosedFormMap`, `AbstractMapDynamics`).
"""

from ._central_flow import CentralFlow
from ._closed_form import ClosedForm
from ._dynamics import (
    AbstractClosedFormFlow,
    AbstractClosedFormMap,
    AbstractDynamics,
    AbstractLossDynamics,
    AbstractMapDynamics,
    euler_step,
    gd_step,
)
from ._gradient_descent import GradientDescent
from ._gradient_flow import GradientFlow, default_tolerances
from ._hessian import hessian_eigenpairs, hvp, lanczos, sharpness
from ._methods import AbstractMethod
from ._modified_flow import ModifiedFlow
from ._outcome import Divergence, SaveGrid
from ._psd import psd_complementarity, psd_part
from ._recorded import Recorded
from ._solve import solve
from ._trajectory import RESULTS, SolveError, Trajectory

__all__ = [
    "RESULTS",
    "AbstractClosedFormFlow",
    "AbstractClosedFormMap",
    "AbstractDynamics",
    "AbstractLossDynamics",
    "AbstractMapDynamics",
    "AbstractMethod",
    "CentralFlow",
    "ClosedForm",
    "Divergence",
    "GradientDescent",
    "GradientFlow",
    "ModifiedFlow",
    "Recorded",
    "SaveGrid",
    "SolveError",
    "Trajectory",
    "default_tolerances",
    "euler_step",
    "gd_step",
    "hessian_eigenpairs",
    "hvp",
    "lanczos",
    "psd_complementarity",
    "psd_part",
    "sharpness",
    "solve",
]
