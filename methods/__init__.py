"""Methods of mlr-bench. Importing this package registers every method in ``METHODS``."""

from methods import baseline as _baseline  # noqa: F401
from methods import cad_net as _cad_net  # noqa: F401
from methods import csr_gan as _csr_gan  # noqa: F401
from methods import dil as _dil  # noqa: F401
from methods import ffsr_rife as _ffsr_rife  # noqa: F401
from methods import ftwa as _ftwa  # noqa: F401
from methods import ps_hrnet as _ps_hrnet  # noqa: F401
from methods import rain as _rain  # noqa: F401
from methods import sing as _sing  # noqa: F401
from methods import sr as _sr  # noqa: F401
from methods.base import (
    METHODS,
    Batch,
    EvalContext,
    Method,
    Stage,
    StepContext,
    TrainContext,
    build_method,
    register_method,
    resolve_method,
)

__all__ = ["METHODS", "Batch", "EvalContext", "Method", "Stage", "StepContext", "TrainContext",
           "build_method", "register_method", "resolve_method"]
