"""Before and after a refactor: every registered method x the synthetic, CUHK03 and CAVIAR
stand-ins at the smoke profile, run from scratch; the run ids, every metric, the loss history
and the parameter counts written to one JSON, and two such files compared.

    python scripts/equivalence.py dump before.json --data DIR   # at the old commit
    python scripts/equivalence.py dump after.json --data DIR    # at the new one
    python scripts/equivalence.py compare before.json after.json

"Identical" means equal to the last bit of every number (the same machine, the same software).
The run id is compared too: a refactor that changes what a run is, changes it. The stand-ins
are written once under ``--data`` and reused, since a data fingerprint covers the data root and
the files' sizes and times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

DATASETS = ("synthetic", "mlr-cuhk03", "caviar")
STAND_INS = {"mlr-cuhk03": "cuhk03", "caviar": "caviar"}


def _methods() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "benchmark", "list"], capture_output=True,
                         text=True, check=True).stdout
    section = out.split("Methods:")[1].split("Datasets:")[0]
    return [line.split()[0] for line in section.strip().splitlines()]


def _essence(record: dict) -> dict:
    m = record["metrics"]
    keep = {k: v for k, v in m.items() if k not in ("sweep_info",)}
    return {"metrics": keep, "control": record.get("control_hr_to_hr"),
            "history": record["training"].get("history"),
            "parameters": record["model"]["parameters"],
            "extras": {k: record[k] for k in ("swa", "sr") if k in record}}


def dump(path: str, data: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="equivalence-"))
    for like in STAND_INS.values():
        if not (data / like).is_dir():
            subprocess.run([sys.executable, "-m", "benchmark", "synth", "--like", like,
                            "--root", str(data)], check=True, capture_output=True)
    out: dict[str, dict] = {}
    for method in _methods():
        for dataset in DATASETS:
            res = work / "res" / f"{method}-{dataset}"
            subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", method,
                            "--dataset", dataset, "--data-root", str(data), "--profile",
                            "smoke", "--set", "model.weights=none", "--out", str(res),
                            "--no-progress"], check=True, capture_output=True)
            (record,) = [p for p in res.glob("*.json") if not p.name.endswith(".ranks.json")]
            rec = json.loads(record.read_text())
            for key in ("sr",):  # file paths of side pictures differ by folder
                if key in rec and isinstance(rec[key], dict):
                    rec[key].pop("strip", None)
            out[rec["run_id"]] = _essence(rec)
            print(f"{method} on {dataset}: {rec['run_id']}", flush=True)
    Path(path).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def compare(a: str, b: str) -> int:
    before, after = json.loads(Path(a).read_text()), json.loads(Path(b).read_text())
    problems = []
    for rid in sorted(set(before) | set(after)):
        if rid not in after:
            problems.append(f"{rid}: missing after (its run id changed?)")
        elif rid not in before:
            problems.append(f"{rid}: new after (its run id changed?)")
        elif before[rid] != after[rid]:
            keys = [k for k in before[rid] if before[rid][k] != after[rid].get(k)]
            problems.append(f"{rid}: differs in {', '.join(keys)}")
    for p in problems:
        print(p)
    print(f"{len(before)} runs before, {len(after)} after: "
          f"{'identical' if not problems else f'{len(problems)} differ'}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "dump" and sys.argv[3] == "--data":
        dump(sys.argv[2], Path(sys.argv[4]).resolve())
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__)
        sys.exit(2)
