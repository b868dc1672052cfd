"""Datasets of mlr-bench: one file per dataset (parser, protocol, stand-in writer, options),
shared protocol helpers, the image bank, generated data.

Note: Hugging Face also ships a top-level package called ``datasets``. ``MLR_BENCH`` marks this
one; ``python -m benchmark`` checks it and explains the clash if another package wins.
"""

# Importing a dataset's file registers it.
from datasets import caviar as _caviar  # noqa: F401
from datasets import cuhk03 as _cuhk03  # noqa: F401
from datasets import market1501 as _market1501  # noqa: F401
from datasets import synthetic as _synthetic  # noqa: F401
from datasets import viper as _viper  # noqa: F401
from datasets.base import (
    DATASETS,
    DatasetSpec,
    MLRData,
    Sample,
    build_dataset,
    fingerprint,
    register_dataset,
    trial_configs,
)

MLR_BENCH = True

__all__ = ["DATASETS", "DatasetSpec", "MLRData", "Sample", "build_dataset", "fingerprint",
           "register_dataset", "trial_configs", "MLR_BENCH"]
