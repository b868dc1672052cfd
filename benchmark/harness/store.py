"""Writing to the results store: JSON records and torch files, atomically (temp file +
rename), so a reader never sees half a file. The record schemas, the run id and the checks a
record must pass are ``benchmark.harness.records``; older records are brought up to date by
``benchmark.harness.upgrade``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.atomic import atomic_write, write_text


def _default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, torch.device)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: str | os.PathLike, data: Any,
                      within: str | os.PathLike | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` so a reader never sees a half-written file."""
    text = json.dumps(data, indent=1, default=_default) + "\n"  # fails before any file exists
    return write_text(path, text, within)


def save_atomic(obj: Any, path: str | os.PathLike,
                within: str | os.PathLike | None = None) -> Path:
    """torch.save, atomically (for checkpoints): a failed write leaves the previous file."""
    return atomic_write(path, lambda fh: torch.save(obj, fh), within)
