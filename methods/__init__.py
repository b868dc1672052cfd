"""Methods of mlr-bench. Importing this package registers every method in ``METHODS``."""

from methods import baseline as _baseline  # noqa: F401
from methods import ftwa as _ftwa  # noqa: F401
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
