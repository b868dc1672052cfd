"""Write the two smoke records the report tests start from (tests/data/records/): a Baseline
and an FTWA run on generated data at the ``smoke`` profile, as ``run`` writes them. The report
tests copy them and change methods, seeds and metrics, so they need no training of their own
(the fast test loop, ``pytest -m "not slow"``); tests/test_records_fixture.py checks that the
records the current code writes still have the same shape.

    python scripts/make_test_records.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FOLDER = ROOT / "tests" / "data" / "records"
SETTINGS = ["model.weights=none"]
METHODS = ("baseline", "ftwa")


def make(method: str, out: Path) -> dict:
    from benchmark.harness.config import load_config
    from benchmark.harness.experiment import run_experiment

    cfg = load_config("smoke", SETTINGS)
    record = run_experiment(method, "synthetic", cfg, out_dir=out, progress=False)
    return json.loads(Path(record["path"]).read_text())


def main() -> int:
    FOLDER.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            record = make(method, Path(tmp) / method)
            path = FOLDER / f"{method}-smoke.json"
            path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            print(f"wrote {path.relative_to(ROOT)} ({record['run_id']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
