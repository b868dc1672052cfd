"""Rewrite older run records under a results folder in the current schema, in place.

    python scripts/migrate_records.py docs/results [--dry-run]

Each record is upgraded by ``benchmark.harness.upgrade.upgrade_record`` (metrics untouched;
config hash, trial, data fingerprint and run id recomputed), written atomically under its new
run id, and the old file removed; an SR picture strip beside it (``<old id>.sr.png``) follows it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.harness.records import OLD_RUN_SCHEMAS, SCHEMA
from benchmark.harness.store import write_json_atomic
from benchmark.harness.upgrade import upgrade_record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="results folder, searched recursively")
    parser.add_argument("--dry-run", action="store_true", help="say what would change")
    args = parser.parse_args(argv)
    changed = 0
    for path in sorted(Path(args.folder).rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(record, dict) or record.get("schema") not in (*OLD_RUN_SCHEMAS,
                                                                         SCHEMA):
            continue
        new = upgrade_record(record)
        if new is record:
            continue  # current already
        target = path.with_name(f"{new['run_id']}.json")
        print(f"{path.name} -> {target.name} (config {record['config_hash']} -> "
              f"{new['config_hash']}, data source {new['data']['fingerprint']['source']})")
        changed += 1
        if args.dry_run:
            continue
        strip = path.with_suffix(".sr.png")
        if strip.exists() and target != path:
            new_strip = target.with_suffix(".sr.png")
            strip.rename(new_strip)
            new["sr"]["strip"] = str(new_strip)
        write_json_atomic(target, new)
        if target != path:
            path.unlink()
    print(f"{changed} records {'would be ' if args.dry_run else ''}upgraded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
