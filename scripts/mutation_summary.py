"""Kill rate per module from mutmut's results (``mutants/**/*.py.meta``), and the survivors.

    python scripts/mutation_summary.py [--survivors]

Kill rate = killed / (killed + survived + timeout + no tests): a mutant no test runs counts
against the module. Mutants not checked yet (an interrupted run) are reported apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED, SURVIVED, NO_TESTS, TIMEOUT = (1, 3), (0,), (5, 33), (24, 36, 152, 255, -24)


def summarize(root: Path) -> dict[str, dict]:
    out = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        module = str(meta.relative_to(root))[: -len(".meta")]
        count = Counter()
        survivors = []
        for key, code in codes.items():
            kind = ("not checked" if code is None else "killed" if code in KILLED else
                    "survived" if code in SURVIVED else "no tests" if code in NO_TESTS else
                    "timeout" if code in TIMEOUT else "other")
            count[kind] += 1
            if kind in ("survived", "no tests"):
                survivors.append(key)
        checked = sum(v for k, v in count.items() if k != "not checked")
        if checked:
            out[module] = {"counts": dict(count), "checked": checked,
                           "kill_rate": count["killed"] / checked, "survivors": survivors}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", default="mutants", help="mutmut's folder (default: mutants)")
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    args = parser.parse_args(argv)
    result = summarize(Path(args.mutants))
    if not result:
        print(f"no checked mutants under {args.mutants}; run mutmut first")
        return 1
    print(f"{'module':<28}{'killed':>8}{'survived':>10}{'no tests':>10}{'timeout':>9}"
          f"{'unchecked':>11}{'kill rate':>11}")
    for module, r in result.items():
        c = r["counts"]
        print(f"{module:<28}{c.get('killed', 0):>8}{c.get('survived', 0):>10}"
              f"{c.get('no tests', 0):>10}{c.get('timeout', 0):>9}{c.get('not checked', 0):>11}"
              f"{100 * r['kill_rate']:>10.1f}%")
        if args.survivors:
            for key in r["survivors"]:
                print(f"    {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
