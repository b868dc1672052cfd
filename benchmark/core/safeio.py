"""Reading what a user or another machine hands the suite, safely: YAML with a nesting limit,
and names that may become file names checked or made into slugs (torch files: weights only,
``benchmark.core.torchio``). No function here runs code from a file or lets a field of one
choose where a file goes. No torch: the reports use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from benchmark.core.errors import UnsafeFileError, UserError, short

#: a name that may be part of a file name: letters, digits, and . _ - + =, not starting with a
#: dot (no hidden files, no "..")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")
#: deepest nesting a YAML input may have (profiles and suites need 4)
YAML_DEPTH = 32


def is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(NAME.fullmatch(value)) and ".." not in value


def check_name(value: Any, field: str, where: str) -> str:
    """``value`` if it can safely be part of a file name, else a UserError naming the field."""
    if not is_name(value):
        raise UnsafeFileError(f"{where}: {field} {short(value, 80)} is not a plain name (letters, "
                              "digits, . _ - + =; no path separators or '..'); refused")
    return value


def slug(text: Any, limit: int = 120) -> str:
    """Any text as a file-name part: runs of characters other than letters, digits, _ . - become
    '-'; no leading dot and no '..' (so never a hidden file or a step up)."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text))
    while ".." in out:
        out = out.replace("..", ".")
    return out.lstrip(".")[:limit] or "x"


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """``path`` (resolved, links followed) lies in ``folder`` (resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def _depth(value: Any, limit: int, level: int = 0) -> int:
    if level > limit:
        return level
    if isinstance(value, dict):
        return max([level, *(_depth(v, limit, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, limit, level + 1) for v in value)])
    return level


def load_yaml(text: str, where: str, max_depth: int = YAML_DEPTH) -> Any:
    """``yaml.safe_load`` (no Python objects) with a nesting limit; errors name ``where``."""
    import yaml

    lead = text[: len(text) - len(text.lstrip("[{ \t\n"))]
    if sum(c in "[{" for c in lead) > max_depth:  # deep flow collections overflow the parser
        raise UserError(f"{where}: nested more than {max_depth} levels deep; refused")
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise UserError(f"{where}: nested too deeply to read (at most {max_depth} levels are "
                        "read); refused") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where} is not valid YAML: {str(exc).splitlines()[0][:200]}") from None
    if _depth(data, max_depth) > max_depth:
        raise UserError(f"{where}: nested more than {max_depth} levels deep; refused")
    return data
