"""lmech.solvers — how a dynamics is integrated, iterated or evaluated.

`solve(dynamics, method, lr=..., steps=...)` advances any `AbstractDynamics` with a
method (`GradientFlow`, `GradientDescent`, `ClosedForm`, `ModifiedFlow`,
`CentralFlow`, `SelfConsistent`) and returns a `Trajectory` on the flow-time axis $t = \\eta k$. What a
dynamics can do beyond a flow is said by its abstract bases (`AbstractLossDynamics`,
`AbstractClosedFormFlow`, `AbstractClosedFormMap`, `AbstractMapDynamics`,
`AbstractSelfConsistent`).
"""

import importlib
from typing import TYPE_CHECKING

from ._closed_form import ClosedForm
from ._dynamics import (
    AbstractClosedFormFlow,
    AbstractClosedFormMap,
    AbstractDynamics,
    AbstractLossDynamics,
    AbstractMapDynamics,
    AbstractSelfConsistent,
    euler_step,
    gd_step,
)
from ._gradient_descent import GradientDescent
from ._hessian import hessian_eigenpairs, hvp, lanczos, sharpness
from ._methods import AbstractMethod
from ._outcome import Divergence, SaveGrid
from ._psd import psd_complementarity, psd_part
from ._recorded import Recorded
from ._solve import solve
from ._trajectory import RESULTS, SolveError, Trajectory

# The flows (and the self-consistent grid solver) need diffrax / optimistix (a quarter of a second to import): they are loaded
# on first use (PEP 562), so a closed-form job does not pay for them.
_LAZY = {
    "CentralFlow": "._central_flow",
    "GradientFlow": "._gradient_flow",
    "default_tolerances": "._gradient_flow",
    "ModifiedFlow": "._modified_flow",
    "SelfConsistent": "._self_consistent",
}

if TYPE_CHECKING:
    from ._central_flow import CentralFlow
    from ._gradient_flow import GradientFlow, default_tolerances
    from ._modified_flow import ModifiedFlow
    from ._self_consistent import SelfConsistent


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "RESULTS",
    "AbstractClosedFormFlow",
    "AbstractClosedFormMap",
    "AbstractDynamics",
    "AbstractLossDynamics",
    "AbstractMapDynamics",
    "AbstractMethod",
    "AbstractSelfConsistent",
    "CentralFlow",
    "ClosedForm",
    "Divergence",
    "GradientDescent",
    "GradientFlow",
    "ModifiedFlow",
    "Recorded",
    "SaveGrid",
    "SelfConsistent",
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
