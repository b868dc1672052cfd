"""Datasets of mlr-bench: parsers of the original layouts, MLR protocols, generated data.

Note: Hugging Face also ships a top-level package called ``datasets``. ``MLR_BENCH`` marks this
one; ``python -m benchmark`` checks it and explains the clash if another package wins.
"""

from datasets import protocols as _protocols  # noqa: F401  (registers the MLR datasets)
from datasets import synthetic as _synthetic  # noqa: F401  (registers `synthetic`)
from datasets.base import DATASETS, MLRData, Sample, build_dataset, register_dataset

MLR_BENCH = True

__all__ = ["DATASETS", "MLRData", "Sample", "build_dataset", "register_dataset", "MLR_BENCH"]
