"""Write docs/commands.md from the command line's own parsers (``benchmark.cli``), so the page
never drifts from ``--help``; tests/test_docs.py checks the committed page is current.

    python scripts/gen_commands.py            # rewrite docs/commands.md
    python scripts/gen_commands.py --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmark.cli import EPILOG, build_parser  # noqa: E402

PAGE = ROOT / "docs" / "commands.md"


def render() -> str:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width: fix it
    try:
        return _render()
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def _render() -> str:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out = ["# Commands", "",
           "Every command of `python -m benchmark`, as `--help` prints it (this page is "
           "generated from the parsers by `python scripts/gen_commands.py`).", "",
           " ".join(EPILOG.split()), ""]
    for name, p in sub.choices.items():
        out += [f"## `{name}`", "", p.description or "", "", "```text",
                p.format_help().rstrip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: python scripts/gen_commands.py")
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
