import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never look at a user's real torchvision cache from the tests.
os.environ.setdefault("TORCH_HOME", str(ROOT / ".pytest_cache" / "torch_home"))


@pytest.fixture
def smoke_cfg():
    from benchmark.harness.config import load_config

    return load_config("smoke", ["model.weights=none"])
