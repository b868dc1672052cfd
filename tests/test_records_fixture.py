"""The smoke records the report tests start from (tests/data/records/) have the shape of the
records the current code writes: when a record gains or loses a field, this fails and
``python scripts/make_test_records.py`` writes them again."""

import sys
from pathlib import Path

import pytest

from benchmark.harness.records import record_problem
from tests.conftest import ROOT, smoke_record

sys.path.insert(0, str(ROOT / "scripts"))
import make_test_records  # noqa: E402

sys.path.pop(0)


def _shape(obj, prefix=""):
    """Every key path of the nested objects (lists are leaves; environment facts and
    per-machine timings vary and are left out)."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("environment",):
                continue
            out.add(prefix + k)
            out |= _shape(v, prefix + k + ".")
    return out


@pytest.mark.parametrize("method", make_test_records.METHODS)
def test_committed_smoke_records_are_valid_records(method):
    record = smoke_record(method)
    assert record_problem(record, Path(f"{record['run_id']}.json")) is None
    assert record["method"] == method and record["profile"] == "smoke"
    if method == "baseline":
        def blocks(rec):  # module names are each method's own
            return {k for k in _shape(rec) if not k.startswith("model.parameters.modules.")}

        assert blocks(record) < blocks(smoke_record("ftwa"))


@pytest.mark.slow
def test_committed_smoke_records_have_the_shape_the_code_writes(tmp_path):
    """FTWA's record holds every block the Baseline's does, and more (its SWA diagnostics)."""
    method = "ftwa"
    fresh = make_test_records.make(method, tmp_path)
    committed = smoke_record(method)
    assert fresh["run_id"] == committed["run_id"]
    assert _shape(fresh) == _shape(committed), (
        sorted(_shape(fresh) ^ _shape(committed))[:10],
        "python scripts/make_test_records.py writes them again")
