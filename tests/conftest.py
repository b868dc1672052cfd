import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never look at a user's real torchvision cache from the tests.
os.environ.setdefault("TORCH_HOME", str(ROOT / ".pytest_cache" / "torch_home"))
# nor at timm's (the Hugging Face cache): ImageNet HRNet weights come from a file a test names
os.environ.setdefault("HF_HUB_CACHE", str(ROOT / ".pytest_cache" / "hf_hub"))


@pytest.fixture(autouse=True)
def _a_test_that_trains_is_marked_slow(request, monkeypatch):
    """``pytest -m "not slow"`` is the fast loop: a test without the ``slow`` marker that starts
    training in this process fails, naming the marker (fixtures of a wider scope run before
    this one and are not seen)."""
    if request.node.get_closest_marker("slow") is None:
        from benchmark.harness import training

        def refuse(self, *args, **kwargs):
            raise AssertionError(f"{request.node.nodeid} trains a model: mark it "
                                 "@pytest.mark.slow")

        monkeypatch.setattr(training.TrainLoop, "run", refuse)


@pytest.fixture
def smoke_cfg():
    from benchmark.harness.config import load_config

    return load_config("smoke", ["model.weights=none"])


def smoke_record(method: str) -> dict:
    """A record ``run`` wrote for ``method`` on generated data at ``smoke`` (committed in
    tests/data/records/ by scripts/make_test_records.py; tests copy it and change what they
    need, without training)."""
    import json

    return json.loads((ROOT / "tests" / "data" / "records" / f"{method}-smoke.json").read_text())


@pytest.fixture(scope="session")
def kept_run(tmp_path_factory):
    """A genuine smoke run of the Baseline with its kept weights and ranked lists, made once
    per session by ``python -m benchmark run``'s entry point: (folder, record path). Tests copy
    the folder before they change anything in it."""
    from benchmark.cli import main

    out = tmp_path_factory.mktemp("kept-run")
    assert main(["run", "--method", "baseline", "--dataset", "synthetic", "--out", str(out),
                 "--keep-model", "--no-progress", "--profile", "smoke", "--set",
                 "model.weights=none"]) == 0
    (record,) = [p for p in out.glob("*.json") if not p.name.endswith(".ranks.json")]
    return out, record
